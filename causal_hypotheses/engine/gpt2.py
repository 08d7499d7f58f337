"""GPT-2 adapter: where each component lives in the HF module tree, and its math.

The engine only talks to a model through an adapter like this one: a capturing forward
pass that records every site the engine may gather from, and one function per kind of
component that recomputes it on a new residual stream.  Weights are read from the
unmodified HF model; nothing is copied or patched.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import UnsupportedModelError
from ..graph import ModelGraph


class GPT2Adapter:
    """Component math for ``transformers.GPT2LMHeadModel`` (pre-LN blocks, tied or untied head)."""

    architecture = "gpt2"

    def __init__(self, model) -> None:
        config = model.config
        if getattr(config, "add_cross_attention", False):
            raise UnsupportedModelError(
                "GPT-2 models with cross-attention (config.add_cross_attention=True) are not "
                "supported; load a decoder-only GPT2LMHeadModel"
            )
        self.model = model
        self.transformer = model.transformer
        self.blocks = list(self.transformer.h)
        self.n_layers = config.n_layer
        self.n_heads = config.n_head
        self.d_model = config.n_embd
        self.d_head = self.d_model // self.n_heads
        self.graph = ModelGraph(self.n_layers, self.n_heads, self.architecture)
        self.n_positions = config.n_positions
        self.vocab_size = config.vocab_size
        self._tanh_gelu = config.activation_function in ("gelu_new", "gelu_pytorch_tanh")
        self._scales = []
        for layer in range(self.n_layers):
            scale = self.d_head**-0.5 if config.scale_attn_weights else 1.0
            if config.scale_attn_by_inverse_layer_idx:
                scale /= float(layer + 1)
            self._scales.append(scale)

    # ------------------------------------------------------------------ weights
    def _w_qkv(self, layer: int, head: int, channel: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(D, d_head) weight and (d_head,) bias of one head's q, k or v projection."""
        c_attn = self.blocks[layer].attn.c_attn
        start = channel * self.d_model + head * self.d_head
        return c_attn.weight[:, start : start + self.d_head], c_attn.bias[start : start + self.d_head]

    def _w_out(self, layer: int, head: int) -> torch.Tensor:
        """(d_head, D) rows of the output projection that belong to one head."""
        start = head * self.d_head
        return self.blocks[layer].attn.c_proj.weight[start : start + self.d_head]

    # ------------------------------------------------------------------ math
    def _attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Causal attention; q, k, v: (B, H, T, d_head) -> z: (B, H, T, d_head)."""
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self._scales[layer])

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        return self.transformer.wte(tokens) + self.transformer.wpe(positions)  # (B, T, D)

    @torch.no_grad()
    def capture(self, tokens: torch.Tensor) -> dict[str, object]:
        """One ordinary forward on ``tokens`` (B, T), recording every gatherable site."""
        B, T = tokens.shape
        H, dh = self.n_heads, self.d_head
        acts: dict[str, object] = {"resid_pre": [], "qkv": [], "z": [], "attn_out": [], "resid_mid": [], "mlp_out": []}
        x = self.embed(tokens)  # (B, T, D)
        acts["embed"] = x
        for layer, block in enumerate(self.blocks):
            acts["resid_pre"].append(x)
            qkv = block.attn.c_attn(block.ln_1(x)).view(B, T, 3, H, dh)  # (B, T, 3, H, dh)
            q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))  # (B, H, T, dh)
            z = self._attend(layer, q, k, v).transpose(1, 2)  # (B, T, H, dh)
            attn_out = block.attn.c_proj(z.reshape(B, T, self.d_model))
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

    def site(self, acts: dict, site: tuple, rows: torch.Tensor, positions: torch.Tensor | None) -> torch.Tensor:
        """Gather ``site`` for batch rows ``rows`` ((B,) or (B, T) with ``positions``)."""
        kind = site[0]
        if kind == "embed":
            source = acts["embed"]
        elif kind == "resid":
            _, where, layer = site
            source = acts["resid_final"] if where == "final" else acts["resid_pre" if where == "attn_in" else "resid_mid"][layer]
        elif kind in ("attn_out", "mlp_out"):
            source = acts[kind][site[1]]
        elif kind == "qkv":
            _, layer, head, channel = site
            source = acts["qkv"][layer][:, :, channel, head]  # (U, T, dh)
        elif kind == "head_out":
            _, layer, head = site
            z = _take(acts["z"][layer][:, :, head], rows, positions)  # (B, T, dh)
            return z @ self._w_out(layer, head)
        else:  # pragma: no cover - the planner only makes the sites above
            raise KeyError(site)
        return _take(source, rows, positions)

    def ln1_proj(self, layer: int, head: int, channel: int, resid: torch.Tensor) -> torch.Tensor:
        """One head's q/k/v on a residual stream (B, T, D) -> (B, T, dh)."""
        weight, bias = self._w_qkv(layer, head, channel)
        return torch.addmm(bias, self.blocks[layer].ln_1(resid).flatten(0, 1), weight).view(*resid.shape[:2], -1)

    def head_from_qkv(self, layer: int, head: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """One head's output written to the residual stream (no bias): (B, T, D)."""
        z = self._attend(layer, q[:, None], k[:, None], v[:, None])[:, 0]  # (B, T, dh)
        return z @ self._w_out(layer, head)

    def attn_core(self, layer: int, resid: torch.Tensor) -> torch.Tensor:
        """All heads of a layer on one residual stream: z (B, T, H, dh)."""
        B, T, _ = resid.shape
        block = self.blocks[layer]
        qkv = block.attn.c_attn(block.ln_1(resid)).view(B, T, 3, self.n_heads, self.d_head)
        q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))
        return self._attend(layer, q, k, v).transpose(1, 2)

    def head_from_core(self, layer: int, head: int, z: torch.Tensor) -> torch.Tensor:
        return z[:, :, head] @ self._w_out(layer, head)

    def layer_from_core(self, layer: int, z: torch.Tensor) -> torch.Tensor:
        """The whole attention layer's output, bias included: (B, T, D)."""
        return self.blocks[layer].attn.c_proj(z.flatten(2))

    def mlp(self, layer: int, resid: torch.Tensor) -> torch.Tensor:
        block = self.blocks[layer]
        if not self._tanh_gelu:
            return block.mlp(block.ln_2(resid))
        # GPT-2's "gelu_new" is the tanh approximation; torch's fused kernel computes the
        # same formula several times faster than HF's elementwise version.
        hidden = F.gelu(block.mlp.c_fc(block.ln_2(resid)), approximate="tanh")
        return block.mlp.c_proj(hidden)

    def final(self, resid: torch.Tensor, positions: tuple | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Final norm and unembedding: (hidden_states, logits), logits only at ``positions`` if given."""
        hidden = self.transformer.ln_f(resid)
        read = hidden if positions is None else hidden[:, list(positions)]
        return hidden, self.model.lm_head(read)


def _take(source: torch.Tensor, rows: torch.Tensor, positions: torch.Tensor | None) -> torch.Tensor:
    """Rows of ``source`` (U, T, ...): per example (B,), or per example and position (B, T)."""
    if positions is None:
        return source.index_select(0, rows)
    return source[rows, positions]
