"""The adapter protocol: everything the engine asks of one HF architecture, with its shapes.

The engine (planner, evaluator, ``Engine.run``) talks to a model only through an adapter.
:class:`ArchitectureAdapter` is that contract, every member with its tensor shapes;
:class:`Adapter` is the base that builds most of it (the capturing forward, gathers, head
math, attention) from a few per-architecture primitives.  Which architectures exist, and
where each keeps its parts, is the table in :mod:`causal_hypotheses.engine.architectures`.

Shapes use B examples (or U distinct captured rows, or n single entries), T positions, D the
model width, H query heads, d_head (written dh) the head width, V the vocabulary.

Captured activations (what :meth:`ArchitectureAdapter.capture` returns; every tensor is per
captured row, lists are per layer)::

    "embed"        (U, T, D)             the embedding, positions included where learned
    "resid_pre"    [L] (U, T, D)         the residual stream attention layer L reads
    "qkv"          [L] (U, T, 3, H, dh)  every query head's q, k, v, as attention uses them
                                         (after rotary; k and v repeated to the query heads
                                         of their group under grouped-query attention)
    "z"            [L] (U, T, H, dh)     every head's attention output, before the output projection
    "attn_out"     [L] (U, T, D)         the attention layer's output, output bias included
    "resid_mid"    [L] (U, T, D)         the residual stream MLP L reads: resid_pre + attn_out,
                                         or resid_pre itself when attention and MLP run in
                                         parallel (``parallel_attn_mlp``)
    "mlp_out"      [L] (U, T, D)         the MLP's output
    "resid_final"  (U, T, D)             the stream the final norm reads

Sites (tuples, what :meth:`ArchitectureAdapter.site` gathers; see also engine/ir.py)::

    ("embed",)                     (., T, D)
    ("resid", where, layer)        where "attn_in" (resid_pre), "mlp_in" (resid_mid) or "final"
    ("attn_out", layer)            (., T, D)
    ("mlp_out", layer)             (., T, D)
    ("head_out", layer, head)      one head's write to the residual stream, no bias (., T, D)
    ("qkv", layer)                 (., T, 3, H, dh)
    ("qkv", layer, head, channel)  one head's q (0), k (1) or v (2)  (., T, dh)
    ("q", layer)                   every query head's q  (., T, H, dh)
    ("kv", layer)                  the key (0) and value (1) of each key/value head, not repeated
                                   to the query heads of its group  (., T, 2, n_kv_heads, dh)
    ("z", layer)                   (., T, H, dh)
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from ..graph import ModelGraph

Activations = dict  # the capture layout above


@runtime_checkable
class ArchitectureAdapter(Protocol):
    """What the engine needs from an architecture.  Every member is used by ``Engine``
    (core.py), the planner (plan.py, through ``graph``) or the evaluator (evaluate.py).

    ``positions`` arguments are the sequence positions of the T axis of the tensor they go
    with, (T,) LongTensor: the evaluator recomputes scattered entries (example, position) as
    one "sequence" of n entries and passes their true positions, which rotary embeddings need.
    None means 0..T-1.
    """

    # ---------------------------------------------------------------- description
    architecture: str  # the HF model_type, e.g. "llama", "gpt_neox"
    model: torch.nn.Module  # the unmodified HF *ForCausalLM; never patched
    graph: ModelGraph  # the component names of this model (the planner's view of it)
    n_layers: int
    n_heads: int  # query heads: the heads a{L}.h{H} name
    n_kv_heads: int  # key/value heads (== n_heads without grouped-query attention)
    d_model: int  # D
    d_head: int  # dh
    n_positions: int  # the longest sequence the model accepts
    vocab_size: int  # V
    parallel_attn_mlp: bool  # MLP L reads resid_pre (as attention L does), not resid_pre + attn_out

    # ---------------------------------------------------------------- whole runs (core.py)
    def capture(self, tokens: torch.Tensor) -> Activations:
        """One ordinary forward on tokens (U, T), recording every site (layout above)."""

    def zero_activations(self, like: Activations) -> Activations:
        """Activations (1 row) of an input on which every component computes zero; an
        attention layer's output bias (belonging to no head) stays.  ``like``: a capture."""

    # ---------------------------------------------------------------- gathers (evaluate.py)
    def site(self, acts: Activations, site: tuple, rows: torch.Tensor, positions: torch.Tensor | None) -> torch.Tensor:
        """Gather ``site`` of captured rows: ``rows`` (B,) whole rows -> (B, T, ...); rows and
        ``positions`` (B, T) -> (B, T, ...); rows and positions (n,) -> (n, ...).  Always a new
        tensor (a copy), which the caller may write into."""

    # ---------------------------------------------------------------- components (evaluate.py)
    def qkv(self, layer: int, resid: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """Every head's q, k, v read from residual stream resid (B, T, D): (B, T, 3, H, dh)."""

    def q_kv(self, layer: int, resid: torch.Tensor, positions: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``qkv`` without repeating keys and values to the query heads of their group: q
        (B, T, H, dh) and kv (B, T, 2, n_kv_heads, dh), as the "q" and "kv" sites hold them."""

    def kv(self, layer: int, resid: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """The keys (after rotary) and values of every key/value head read from resid (B, T, D),
        no queries projected: (B, T, 2, n_kv_heads, dh)."""

    def ln1_proj(self, layer: int, head: int, channel: int, resid: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """One query head's q (channel 0), k (1) or v (2) read from resid (B, T, D): (B, T, dh)."""

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Causal attention (scale and any sliding window included): q, k, v (B, h, T, dh) -> z (B, h, T, dh).
        T is always the whole sequence here."""

    def attend_from(self, layer: int, start: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Causal attention of the queries at positions start..start+Tq-1 alone: q (B, h, Tq, dh),
        k and v (B, h, start+Tq, dh) -> z (B, h, Tq, dh), rows start.. of ``attend``'s z."""

    def attend_keys(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Attention of q (B, h, Tq, dh) over k and v (B, h, S, dh) where ``mask`` (Tq, S) allows
        (True: may attend; None: every key), with the layer's scale; the caller's mask is the
        whole of it."""

    def attend_grouped(self, layer: int, start: int, key_start: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Causal attention of the queries at positions start..start+Tq-1 over the keys at positions
        key_start..start+Tq-1 alone (key_start > 0 only where no query reads earlier keys: under a
        sliding window): q (B, H, Tq, dh), k and v (B, n_kv_heads, S, dh), query head h reading
        key/value head h // (H / n_kv_heads) -> z (B, H, Tq, dh), rows start.. of ``attend``'s z."""

    def core_from_qkv(self, layer: int, qkv: torch.Tensor) -> torch.Tensor:
        """qkv (B, T, 3, H, dh) -> z (B, T, H, dh)."""

    def attn_core(self, layer: int, resid: torch.Tensor) -> torch.Tensor:
        """Every head of a layer on resid (B, T, D), positions 0..T-1: z (B, T, H, dh)."""

    def w_out(self, layer: int, head: int) -> torch.Tensor:
        """(dh, D): the rows of the output projection that read one head (z_h @ w_out)."""

    def head_from_qkv(self, layer: int, head: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """One head from its own q, k, v (B, T, dh): its write to the residual stream (B, T, D), no bias."""

    def head_from_core(self, layer: int, head: int, z: torch.Tensor) -> torch.Tensor:
        """z (B, T, H, dh) -> one head's write (B, T, D), no bias."""

    def layer_from_core(self, layer: int, z: torch.Tensor) -> torch.Tensor:
        """z (B, T, H, dh) -> the whole attention layer's output (B, T, D), bias included."""

    def mlp(self, layer: int, resid: torch.Tensor) -> torch.Tensor:
        """MLP L (its norm included) on the stream it reads, resid (B, T, D): (B, T, D)."""

    def mlp_macs(self, layer: int) -> int:
        """Multiply-adds of MLP ``layer``'s matmuls per token position (for the work counters, engine/flops.py)."""

    def final(self, resid: torch.Tensor, positions: tuple | None = None, vocab: tuple | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Final norm and unembedding of resid (B, T, D): hidden (B, P, D) and logits (B, P, K),
        P the ``positions`` (indices into T) or all T, K the ``vocab`` ids (columns) or all V."""

    def unembed(self, hidden: torch.Tensor, vocab: tuple | None = None) -> torch.Tensor:
        """The unembedding of hidden (..., D) (after the final norm): logits (..., V), or (..., K)
        at the vocabulary ids ``vocab`` (K,) only."""

    def pattern(self, layer: int, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Attention probabilities (the softmax ``attend`` weights v by): q, k (B, h, T, dh) -> (B, h, T, T),
        query x key; zero where a query may not read a key (later positions, outside a sliding window)."""

    def frozen_final_norm(self, resid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, bool]:
        """The final norm at resid (N, D) as an affine map whose scale is frozen at resid:
        ``(scale (N, 1), gain (D,), shift (D,) or None, centred)`` such that the final norm of resid
        is ``centre(resid) / scale * gain + shift``, ``centre`` subtracting each row's mean when
        ``centred`` (LayerNorm) and nothing otherwise (RMSNorm, or no final norm)."""


def model_graph(n_layers: int, n_heads: int, architecture: str, parallel_attn_mlp: bool = False) -> ModelGraph:
    """The graph of a model (``parallel_attn_mlp``: MLP L reads the layer's input)."""
    return ModelGraph(n_layers, n_heads, architecture, parallel_attn_mlp=parallel_attn_mlp)


class Adapter:
    """Base of the adapters: builds the protocol from per-architecture primitives.

    Subclasses provide ``embed(tokens (B, T)) -> (B, T, D)``, ``qkv``, ``ln1_proj``,
    ``w_out``, ``out_proj(layer, z_flat (B, T, H*dh)) -> (B, T, D)`` (bias included),
    ``mlp``, and the attributes of :class:`ArchitectureAdapter`, plus ``final_norm`` (a
    module) and ``_scales`` (the attention scale of each layer); ``_windows`` (per layer,
    a sliding-window size or None) when attention is windowed.
    """

    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_head: int
    _scales: list[float]
    _windows: tuple = ()  # per layer: None (full causal) or the sliding-window size
    parallel_attn_mlp: bool = False
    final_norm_kind: str = "layernorm"  # "layernorm", "rmsnorm", "rmsnorm_plus_one" (gain 1 + w) or "none"

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
        """Causal attention; q, k, v: (B, H, T, dh) -> z: (B, H, T, dh)."""
        window = self._windows[layer] if self._windows else None
        T = q.shape[-2]
        if window is None or T <= window:  # a window as long as the sequence changes nothing
            return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self._scales[layer])
        return F.scaled_dot_product_attention(q, k, v, attn_mask=_window_mask(T, window, q.device), scale=self._scales[layer])

    def attend_from(self, layer: int, start: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Causal attention of the queries at positions ``start``.. alone: q (B, H, Tq, dh), k and
        v (B, H, S, dh) with S = start + Tq (the keys those queries may read) -> z (B, H, Tq, dh)."""
        if start == 0:
            return self.attend(layer, q, k, v)
        window = self._windows[layer] if self._windows else None
        Tq, S = q.shape[-2], k.shape[-2]
        if Tq == 1 and (window is None or S <= window):  # one query that reads every key: no mask
            return F.scaled_dot_product_attention(q, k, v, scale=self._scales[layer])
        return F.scaled_dot_product_attention(q, k, v, attn_mask=_offset_mask(start, Tq, S, window, q.device), scale=self._scales[layer])

    def attend_keys(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Attention of q (B, h, Tq, dh) over k and v (B, h, S, dh) where ``mask`` (Tq, S) allows
        (True: may attend; None: every key), with the layer's scale; the caller's mask is the
        whole of it."""
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self._scales[layer])

    def attend_grouped(self, layer: int, start: int, key_start: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Causal attention of the queries at positions ``start``.. over the keys at positions
        ``key_start``..: q (B, H, Tq, dh), k and v (B, Hkv, S, dh) with S = start + Tq - key_start,
        one key/value head per group of H / Hkv consecutive query heads -> z (B, H, Tq, dh).

        The keys and values are read once per group, not repeated to its query heads: a group's
        queries attend as Tq * group rows of one head (so the mask, when one is needed, repeats
        per query head of the group)."""
        B, H, Tq, dh = q.shape
        Hkv, S = k.shape[1], k.shape[2]
        group = H // Hkv
        if group == 1 and key_start == 0:
            return self.attend_from(layer, start, q, k, v)
        window = self._windows[layer] if self._windows else None
        mask = None
        if Tq > 1 or key_start + S != start + 1 or (window is not None and S > window):  # else one query that reads every key
            mask = _offset_mask(start - key_start, Tq, S, window, q.device).repeat(group, 1)
        return self.attend_keys(layer, q.reshape(B, Hkv, group * Tq, dh), k, v, mask).view(B, H, Tq, dh)

    def pattern(self, layer: int, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Attention probabilities, q, k (B, H, T, dh) -> (B, H, T, T) query x key, as ``attend``
        computes them (scale, causal mask, any sliding window; softmax in float32 at least)."""
        T = q.shape[-2]
        window = self._windows[layer] if self._windows else None
        allowed = _window_mask(T, T if window is None else window, q.device)  # a window of T: plain causal
        scores = (q @ k.transpose(-1, -2)).float() * self._scales[layer]
        scores = scores.masked_fill(~allowed, float("-inf"))
        return torch.softmax(scores, dim=-1).to(q.dtype)

    def frozen_final_norm(self, resid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, bool]:
        """See :class:`ArchitectureAdapter`: the final norm's scale at resid (N, D), gain, shift, centring."""
        kind = self.final_norm_kind
        x = resid.float()
        norm = self.final_norm
        weight, bias = getattr(norm, "weight", None), getattr(norm, "bias", None)
        gain = torch.ones(x.shape[-1], device=x.device) if weight is None else weight.detach().float()
        if kind == "none":
            return torch.ones_like(x[:, :1]), gain, None, False
        eps = float(getattr(norm, "eps", None) or getattr(norm, "variance_epsilon", None) or 1e-6)
        if kind == "layernorm":
            scale = torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + eps)
            return scale, gain, None if bias is None else bias.detach().float(), True
        scale = torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps)
        return scale, gain + 1 if kind == "rmsnorm_plus_one" else gain, None, False

    def core_from_qkv(self, layer: int, qkv: torch.Tensor) -> torch.Tensor:
        q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))  # (B, H, T, dh)
        return self.attend(layer, q, k, v).transpose(1, 2)  # (B, T, H, dh)

    @torch.no_grad()
    def capture(self, tokens: torch.Tensor) -> Activations:
        """One ordinary forward on ``tokens`` (B, T), recording every gatherable site."""
        acts: dict[str, object] = {"resid_pre": [], "qkv": [], "z": [], "attn_out": [], "resid_mid": [], "mlp_out": []}
        x = self.embed(tokens)  # (B, T, D)
        acts["embed"] = x
        for layer in range(self.n_layers):
            acts["resid_pre"].append(x)
            qkv = self.qkv(layer, x)  # (B, T, 3, H, dh)
            z = self.core_from_qkv(layer, qkv)  # (B, T, H, dh)
            attn_out = self.out_proj(layer, z.flatten(2))
            mid = x if self.parallel_attn_mlp else x + attn_out
            acts["qkv"].append(qkv)
            acts["z"].append(z)
            acts["attn_out"].append(attn_out)
            acts["resid_mid"].append(mid)
            mlp_out = self.mlp(layer, mid)
            x = mlp_out + attn_out + x if self.parallel_attn_mlp else mid + mlp_out
            acts["mlp_out"].append(mlp_out)
        acts["resid_final"] = x
        return acts

    @torch.no_grad()
    def zero_activations(self, like: Activations) -> Activations:
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
            acts["qkv"].append(torch.zeros_like(like["qkv"][layer][:1]))
            acts["z"].append(z)
            acts["attn_out"].append(attn_out)
            acts["resid_mid"].append(x if self.parallel_attn_mlp else x + attn_out)
            x = x + attn_out
            acts["mlp_out"].append(torch.zeros_like(like["mlp_out"][layer][:1]))
        acts["resid_final"] = x
        return acts

    def site(self, acts: Activations, site: tuple, rows: torch.Tensor, positions: torch.Tensor | None) -> torch.Tensor:
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
        elif kind == "q":
            source = acts["qkv"][site[1]][:, :, 0]  # (U, T, H, dh), a view
        elif kind == "kv":  # one key and value per key/value head: (U, T, 2, n_kv_heads, dh), a view
            source = acts["qkv"][site[1]][:, :, 1:, :: self.n_heads // self.n_kv_heads]
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

    def final(self, resid: torch.Tensor, positions: tuple | None = None, vocab: tuple | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Final norm and unembedding: (hidden_states, logits), both only at ``positions`` if given,
        the logits only at the vocabulary ids ``vocab`` if given."""
        hidden = self.final_norm(resid if positions is None else resid[:, list(positions)])
        return hidden, self.unembed(hidden, vocab)

    def unembed(self, hidden: torch.Tensor, vocab: tuple | None = None) -> torch.Tensor:
        """Logits of hidden (..., D): (..., V), or (..., K) at the vocabulary ids ``vocab`` alone
        (the unembedding's rows for those ids: K x D multiply-adds per position, not V x D)."""
        head = self.unembedding()
        if vocab is None:
            return head(hidden)
        ids = torch.tensor(vocab, dtype=torch.long, device=head.weight.device)
        return F.linear(hidden, head.weight[ids], None if head.bias is None else head.bias[ids])

    def unembedding(self) -> torch.nn.Linear:
        """The unembedding module (V x D weight, optional bias)."""
        return self.model.lm_head

    def layer_from_core(self, layer: int, z: torch.Tensor) -> torch.Tensor:
        """The whole attention layer's output, bias included: (B, T, D)."""
        return self.out_proj(layer, z.flatten(2))


_WINDOW_MASKS: dict[tuple, torch.Tensor] = {}


def _window_mask(T: int, window: int, device) -> torch.Tensor:
    """(T, T) bool, True where query t may attend key s: s <= t and t - s < window (HF's
    sliding-window mask: ``kv_idx > q_idx - sliding_window``)."""
    key = (T, window, str(device))
    mask = _WINDOW_MASKS.get(key)
    if mask is None:
        t = torch.arange(T, device=device)
        offset = t[:, None] - t[None, :]
        mask = _WINDOW_MASKS[key] = (offset >= 0) & (offset < window)
    return mask


def _offset_mask(start: int, queries: int, keys: int, window: int | None, device) -> torch.Tensor:
    """(queries, keys) bool, True where the query at position start + i may attend key s:
    s <= start + i, and start + i - s < window under a sliding window."""
    offset = torch.arange(start, start + queries, device=device)[:, None] - torch.arange(keys, device=device)[None, :]
    allowed = offset >= 0
    return allowed if window is None else allowed & (offset < window)


def take(source: torch.Tensor, rows: torch.Tensor, positions: torch.Tensor | None) -> torch.Tensor:
    """Rows of ``source`` (U, T, ...): per example (B,), or per example and position (B, T)."""
    if positions is None:
        return source.index_select(0, rows)
    if source.stride(0) == source.shape[1] * source.stride(1):  # (U, T) flatten to one dimension: a row gather
        flat = source.flatten(0, 1)
        return flat.index_select(0, (rows * source.shape[1] + positions).flatten()).view(tuple(rows.shape) + tuple(flat.shape[1:]))
    return source[rows, positions]
