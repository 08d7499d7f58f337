"""What every architecture adapter shares: the capturing forward, gathers, and head math.

An adapter says where each component lives in one HF architecture.  Subclasses provide
``embed``, ``qkv`` (all heads' q, k, v on a residual stream, as (B, T, 3, H, d_head)),
``ln1_proj`` (one head's q, k or v; both take the sequence positions of their T axis,
which differ from 0..T-1 when only some entries are recomputed), ``w_out`` (a head's rows of the output projection),
``out_proj``, ``mlp`` (norm included), and the attributes ``model`` (with ``lm_head``) and
``final_norm``; this class builds the rest from them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


class Adapter:
    n_layers: int
    n_heads: int
    d_head: int
    _scales: list[float]

    # ------------------------------------------------------------ per architecture
    def embed(self, tokens: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def qkv(self, layer: int, resid: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def w_out(self, layer: int, head: int) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def out_proj(self, layer: int, z_flat: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def mlp(self, layer: int, resid: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    # ------------------------------------------------------------ shared
    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Causal attention; q, k, v: (B, H, T, d_head) -> z: (B, H, T, d_head)."""
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self._scales[layer])

    def core_from_qkv(self, layer: int, qkv: torch.Tensor) -> torch.Tensor:
        q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))  # (B, H, T, dh)
        return self.attend(layer, q, k, v).transpose(1, 2)  # (B, T, H, dh)

    @torch.no_grad()
    def capture(self, tokens: torch.Tensor) -> dict[str, object]:
        """One ordinary forward on ``tokens`` (B, T), recording every gatherable site."""
        acts: dict[str, object] = {"resid_pre": [], "qkv": [], "z": [], "attn_out": [], "resid_mid": [], "mlp_out": []}
        x = self.embed(tokens)  # (B, T, D)
        acts["embed"] = x
        for layer in range(self.n_layers):
            acts["resid_pre"].append(x)
            qkv = self.qkv(layer, x)  # (B, T, 3, H, dh)
            z = self.core_from_qkv(layer, qkv)  # (B, T, H, dh)
            attn_out = self.out_proj(layer, z.flatten(2))
            x = x + attn_out
            acts["qkv"].append(qkv)
            acts["z"].append(z)
            acts["attn_out"].append(attn_out)
            acts["resid_mid"].append(x)
            mlp_out = self.mlp(layer, x)
            x = x + mlp_out
            acts["mlp_out"].append(mlp_out)
        acts["resid_final"] = x
        return acts

    @torch.no_grad()
    def zero_activations(self, like: dict) -> dict[str, object]:
        """The activations of a zero input (one row shaped like ``like``'s): every component
        computes zero (embedding, each head's z, each MLP), and an attention layer's constant
        output bias, which belongs to no head, stays, so the residual stream holds the biases
        of the layers below.  Zero-ablating a layer and zero-ablating each of its heads agree."""
        acts: dict[str, object] = {"resid_pre": [], "qkv": [], "z": [], "attn_out": [], "resid_mid": [], "mlp_out": []}
        x = torch.zeros_like(like["embed"][:1])
        acts["embed"] = x
        for layer in range(self.n_layers):
            acts["resid_pre"].append(x)
            z = torch.zeros_like(like["z"][layer][:1])
            attn_out = self.out_proj(layer, z.flatten(2))  # the bias alone
            x = x + attn_out
            acts["qkv"].append(torch.zeros_like(like["qkv"][layer][:1]))
            acts["z"].append(z)
            acts["attn_out"].append(attn_out)
            acts["resid_mid"].append(x)
            acts["mlp_out"].append(torch.zeros_like(like["mlp_out"][layer][:1]))
        acts["resid_final"] = x
        return acts

    def site(self, acts: dict, site: tuple, rows: torch.Tensor, positions: torch.Tensor | None) -> torch.Tensor:
        """Gather ``site`` for batch rows ``rows``: (B,) for whole rows, (B, T) with ``positions``
        (B, T) per example and position, or (n,) with ``positions`` (n,) for n entries."""
        kind = site[0]
        if kind == "embed":
            source = acts["embed"]
        elif kind == "resid":
            _, where, layer = site
            source = acts["resid_final"] if where == "final" else acts["resid_pre" if where == "attn_in" else "resid_mid"][layer]
        elif kind in ("attn_out", "mlp_out"):
            source = acts[kind][site[1]]
        elif kind == "qkv" and len(site) == 2:  # every head: (U, T, 3, H, dh)
            source = acts["qkv"][site[1]]
        elif kind == "qkv":
            _, layer, head, channel = site
            source = acts["qkv"][layer][:, :, channel, head]  # (U, T, dh)
        elif kind == "z":
            source = acts["z"][site[1]]  # (U, T, H, dh)
        elif kind == "head_out":
            _, layer, head = site
            z = take(acts["z"][layer][:, :, head], rows, positions)  # (B, T, dh)
            return z @ self.w_out(layer, head)
        else:  # pragma: no cover - the planner only makes the sites above
            raise KeyError(site)
        return take(source, rows, positions)

    def head_from_qkv(self, layer: int, head: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """One head's output written to the residual stream (no bias): (B, T, D)."""
        z = self.attend(layer, q[:, None], k[:, None], v[:, None])[:, 0]  # (B, T, dh)
        return z @ self.w_out(layer, head)

    def attn_core(self, layer: int, resid: torch.Tensor) -> torch.Tensor:
        """All heads of a layer on one residual stream: z (B, T, H, dh)."""
        return self.core_from_qkv(layer, self.qkv(layer, resid))

    def head_from_core(self, layer: int, head: int, z: torch.Tensor) -> torch.Tensor:
        return z[:, :, head] @ self.w_out(layer, head)

    def final(self, resid: torch.Tensor, positions: tuple | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Final norm and unembedding: (hidden_states, logits), both only at ``positions`` if given."""
        hidden = self.final_norm(resid if positions is None else resid[:, list(positions)])
        return hidden, self.model.lm_head(hidden)

    def layer_from_core(self, layer: int, z: torch.Tensor) -> torch.Tensor:
        """The whole attention layer's output, bias included: (B, T, D)."""
        return self.out_proj(layer, z.flatten(2))


def take(source: torch.Tensor, rows: torch.Tensor, positions: torch.Tensor | None) -> torch.Tensor:
    """Rows of ``source`` (U, T, ...): per example (B,), or per example and position (B, T)."""
    if positions is None:
        return source.index_select(0, rows)
    return source[rows, positions]
