"""The generic adapter for Llama-like architectures, driven by a row of the architecture table.

Llama is the reference: RMSNorm, rotary positions, grouped-query attention, gated MLP.  A row
of :mod:`causal_hypotheses.engine.architectures` says where another architecture keeps these
parts and how they differ (LayerNorm or RMSNorm with a 1 + w gain; a dense MLP; partial
rotary or learned positions; fused q/k/v projections; biases; embedding scaling; parallel
attention and MLP; sliding windows), and this class reads it.

Every query head is a component ``a{L}.h{H}``; its key and value inputs are those of the
key/value group it belongs to, so the captured "qkv" site holds k and v repeated to the query
heads.  Queries and keys are stored after the rotary rotation.  The rotation acts on each
position separately, so patching a head's projected query (or key) before or after it gives
the same result.

Norms, rotary tables, projections and the unembedding are the HF modules themselves; weights
are read from the unmodified model, nothing is copied or patched.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import UnsupportedModelError
from .adapter import Adapter, model_graph
from .architectures import ARCHITECTURES, Architecture, resolve


class LlamaAdapter(Adapter):
    """Component math for ``LlamaForCausalLM`` and every architecture the table describes
    as Llama-like (``row``: its table row; Llama's by default)."""

    def __init__(self, model, row: Architecture | None = None) -> None:
        row = ARCHITECTURES["llama"] if row is None else row
        config = model.config
        self.row = row
        self.architecture = row.model_type
        self.model = model
        self.base = resolve(model, row.base)
        self.blocks = list(resolve(self.base, row.layers) or ()) if self.base is not None else []
        _check_supported(model, row, self.base, self.blocks)
        self.attns = [resolve(block, row.attn) for block in self.blocks]
        self.attn_norms = [resolve(block, row.attn_norm) for block in self.blocks]
        self.mlp_norms = [resolve(block, row.mlp_norm) for block in self.blocks]
        self.n_layers = len(self.blocks)
        self.n_heads = config.num_attention_heads
        self.n_kv_heads = (getattr(config, row.kv_heads, None) if row.kv_heads else None) or self.n_heads
        self.group = self.n_heads // self.n_kv_heads  # query heads per key/value head
        self.d_model = config.hidden_size
        self.d_head = int(getattr(self.attns[0], row.head_dim, None) or self.d_model // self.n_heads)
        self.parallel_attn_mlp = row.is_parallel(config)
        self.graph = model_graph(self.n_layers, self.n_heads, self.architecture, self.parallel_attn_mlp)
        self.n_positions = int(getattr(config, row.max_positions))
        self.vocab_size = config.vocab_size
        self.final_norm = resolve(self.base, row.final_norm) or torch.nn.Identity()
        self.final_norm_kind = "none" if isinstance(self.final_norm, torch.nn.Identity) else row.norm
        self._embed = resolve(self.base, row.embed)
        self._positions = resolve(self.base, row.learned_positions)
        self._embed_scale = None
        if row.embed_scale == "sqrt_hidden":  # HF multiplies by sqrt(D) rounded to the weights' dtype
            self._embed_scale = torch.tensor(self.d_model**0.5, dtype=torch.float32)
        self._rotary_module = resolve(self.base, row.rotary)
        self._rotary_dim = int(self.d_head * row.rotary_share(config)) if self._rotary_module is not None else 0
        # HF's own scale (head_dim ** -0.5 unless the architecture says otherwise), per attention module.
        self._scales = [float(getattr(attn, row.scaling, None) or self.d_head**-0.5) for attn in self.attns]
        self._windows = row.windows(config, self.n_layers)
        self._rotary_cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        if row.qkv is None:
            self._separate = [tuple(getattr(attn, name) for name in (row.q, row.k, row.v)) for attn in self.attns]
        else:
            self._fused = [getattr(attn, row.qkv) for attn in self.attns]
        self._o = [getattr(attn, row.o) for attn in self.attns]
        mlps = [block if row.mlp is None else resolve(block, row.mlp) for block in self.blocks]
        self._mlp = [
            (getattr(m, row.mlp_up), None if row.mlp_gate is None else getattr(m, row.mlp_gate), getattr(m, row.mlp_down), getattr(m, row.mlp_act))
            for m in mlps
        ]
        _check_norm(row, self.attn_norms[0], self.d_model)
        if self._rotary_module is not None:  # the tables' width against the row's rotary share, now
            weight = self._embed.weight
            if weight.device.type != "meta":
                self._rotary(weight.new_zeros(1, 1, 1))

    # ------------------------------------------------------------------ weights
    def _w_in(self, layer: int, head: int, channel: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(d_head, D) weight rows and (d_head,) bias (or None) of one query head's q, k or v."""
        index = head if channel == 0 else head // self.group  # k and v: the head's kv group
        dh = self.d_head
        layout = self.row.qkv_layout
        if layout == "separate":
            proj = self._separate[layer][channel]
            start = index * dh
        else:
            proj = self._fused[layer]
            if layout == "per_head":  # [q_0 k_0 v_0 | q_1 k_1 v_1 | ...]
                start = (index * 3 + channel) * dh
            else:  # "blocks": [Q (H heads) | K (kv heads) | V (kv heads)]
                start = (0 if channel == 0 else (self.n_heads + (channel - 1) * self.n_kv_heads) * dh) + index * dh
        rows = slice(start, start + dh)
        bias = None if proj.bias is None else proj.bias[rows]
        return proj.weight[rows], bias

    def w_out(self, layer: int, head: int) -> torch.Tensor:
        """(d_head, D): the transposed columns of the output projection that read one head."""
        start = head * self.d_head
        return self._o[layer].weight[:, start : start + self.d_head].T

    # ------------------------------------------------------------------ math
    def _rotary(self, x: torch.Tensor, positions: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin (T, rotary_dim) for x's sequence axis: positions 0..T-1, or ``positions`` (T,)."""
        seq = x.shape[1] if positions is None else int(positions.max()) + 1
        key = (seq, x.device, x.dtype)
        found = self._rotary_cache.get(key)
        if found is None:
            table = torch.arange(seq, device=x.device)[None]  # (1, seq)
            with torch.no_grad():
                cos, sin = self._rotary_module(x, table)
            if cos.shape[-1] != self._rotary_dim:
                raise UnsupportedModelError(
                    f"{self.architecture}: the rotary tables rotate {cos.shape[-1]} of each head's {self.d_head} "
                    f"dimensions, but the architecture table expects {self._rotary_dim}"
                )
            found = self._rotary_cache[key] = (cos[0], sin[0])
        if positions is None:
            return found
        return found[0][positions], found[1][positions]

    def _rotate(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """Rotary rotation of x (B, T, ..., d_head) with cos/sin (T, rotary_dim): the first
        rotary_dim dimensions of each head turn, the rest pass through."""
        extra = x.dim() - 3
        cos = cos.view(cos.shape[0], *([1] * extra), cos.shape[-1])
        sin = sin.view(sin.shape[0], *([1] * extra), sin.shape[-1])
        rotary = cos.shape[-1]
        if rotary == x.shape[-1]:
            return _turn(x, cos, sin)
        return torch.cat((_turn(x[..., :rotary], cos, sin), x[..., rotary:]), dim=-1)

    def _project(self, layer: int, normed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q (B, T, H, dh), k and v (B, T, n_kv_heads, dh), before rotary."""
        B, T, _ = normed.shape
        dh = self.d_head
        layout = self.row.qkv_layout
        if layout == "separate":
            q_proj, k_proj, v_proj = self._separate[layer]
            return (q_proj(normed).view(B, T, self.n_heads, dh), k_proj(normed).view(B, T, self.n_kv_heads, dh),
                    v_proj(normed).view(B, T, self.n_kv_heads, dh))
        fused = self._fused[layer](normed)
        if layout == "per_head":
            q, k, v = fused.view(B, T, self.n_heads, 3, dh).unbind(3)
            return q, k, v
        q, k, v = fused.split([self.n_heads * dh, self.n_kv_heads * dh, self.n_kv_heads * dh], dim=-1)
        return q.view(B, T, -1, dh), k.view(B, T, -1, dh), v.view(B, T, -1, dh)

    def qkv(self, layer: int, resid: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """All query heads' rotated q, k, v on one residual stream: (B, T, 3, H, d_head).

        ``positions`` (T,): the sequence positions of resid's T axis (default 0..T-1)."""
        q, kv = self.q_kv(layer, resid, positions)
        if self.group > 1:  # query head h reads key/value head h // group
            kv = kv.repeat_interleave(self.group, dim=3)
        return torch.cat((q[:, :, None], kv), dim=2)

    def q_kv(self, layer: int, resid: torch.Tensor, positions: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotated q (B, T, H, d_head) and k, v (B, T, 2, n_kv_heads, d_head): one key and value
        per key/value head, not repeated to the query heads of its group."""
        q, k, v = self._project(layer, self.attn_norms[layer](resid))
        if self._rotary_module is not None:
            cos, sin = self._rotary(resid, positions)
            q, k = self._rotate(q, cos, sin), self._rotate(k, cos, sin)
        return q, torch.stack((k, v), dim=2)

    def kv(self, layer: int, resid: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """Every key/value head's rotated k and v, no queries projected: (B, T, 2, n_kv_heads, d_head)."""
        normed = self.attn_norms[layer](resid)
        B, T, _ = normed.shape
        dh = self.d_head
        layout = self.row.qkv_layout
        if layout == "separate":
            _, k_proj, v_proj = self._separate[layer]
            k, v = k_proj(normed).view(B, T, -1, dh), v_proj(normed).view(B, T, -1, dh)
        else:
            weight, bias = self._kv_weights(layer)
            k, v = F.linear(normed, weight, bias).view(B, T, 2, -1, dh).unbind(2)
        if self._rotary_module is not None:
            cos, sin = self._rotary(resid, positions)
            k = self._rotate(k, cos, sin)
        return torch.stack((k, v), dim=2)

    def _kv_weights(self, layer: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The fused projection's rows that make the keys and values, keys first: ((2 * kv heads * dh, D), bias)."""
        fused = self._fused[layer]
        dh, H, Hkv = self.d_head, self.n_heads, self.n_kv_heads
        if self.row.qkv_layout == "per_head":  # rows [head, (q, k, v), dh]: the k and v rows of every head
            rows = torch.arange(H * 3 * dh, device=fused.weight.device).view(H, 3, dh)[:, 1:].transpose(0, 1).reshape(-1)
            return fused.weight[rows], None if fused.bias is None else fused.bias[rows]
        return fused.weight[H * dh :], None if fused.bias is None else fused.bias[H * dh :]  # [Q | K | V]

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, T) -> (B, T, D): token embedding (scaled where the table says), plus learned positions."""
        x = F.embedding(tokens, self._embed.weight)
        if self._embed_scale is not None:
            x = x * self._embed_scale.to(x.device, x.dtype)
        if self._positions is not None:
            where = torch.arange(tokens.shape[1], device=tokens.device) + self.row.position_offset
            x = x + F.embedding(where, self._positions.weight)
        return x

    def ln1_proj(self, layer: int, head: int, channel: int, resid: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """One query head's q/k/v (q and k rotated) on a residual stream (B, T, D) -> (B, T, dh)."""
        weight, bias = self._w_in(layer, head, channel)
        out = F.linear(self.attn_norms[layer](resid), weight, bias)
        if channel == 2 or self._rotary_module is None:
            return out
        return self._rotate(out, *self._rotary(resid, positions))

    def out_proj(self, layer: int, z_flat: torch.Tensor) -> torch.Tensor:
        return self._o[layer](z_flat)

    def mlp_macs(self, layer: int) -> int:
        """Multiply-adds of MLP ``layer``'s matmuls per token position."""
        up, gate, down, _ = self._mlp[layer]
        return sum(m.weight.numel() for m in (up, gate, down) if m is not None)

    def mlp(self, layer: int, resid: torch.Tensor) -> torch.Tensor:
        """The MLP with its norm, on the stream it reads (B, T, D) -> (B, T, D)."""
        up, gate, down, act = self._mlp[layer]
        x = self.mlp_norms[layer](resid)
        if gate is None:
            return down(act(up(x)))
        hidden = act(gate(x))
        if torch.is_grad_enabled():  # an activation's backward may read its output (ReLU's does)
            return down(hidden * up(x))
        return down(hidden.mul_(up(x)))  # a new tensor (gate's output or the activation's): no copy

    def unembedding(self) -> torch.nn.Linear:
        return getattr(self.model, self.row.unembed)


def _turn(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x * cos + rotate_half(x) * sin, rotate_half(x) = (-x2, x1), as HF writes it (the same
    roundings: fused products-and-adds move some results by an ulp, which a deep random model
    amplifies past the tests' tolerance)."""
    half = x.shape[-1] // 2
    turned = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + turned * sin


def _check_supported(model, row: Architecture, base, blocks: list) -> None:
    """Raise UnsupportedModelError naming the first setting this adapter does not model."""
    config = model.config
    name = type(model).__name__
    if base is None or not blocks or not hasattr(model, row.unembed):
        raise UnsupportedModelError(
            f"{name} has no .{row.base}.{row.layers}/.{row.unembed}; load the checkpoint with transformers.{row.hf_class}"
        )
    for key, value, why in row.refuse_config:
        if getattr(config, key, None) == value:
            raise UnsupportedModelError(f"{name}: {why} (config.{key}={value!r}) is not supported")
    for module in row.refuse_modules:
        if getattr(base, module, None) is not None:
            raise UnsupportedModelError(
                f"{name} has {row.base}.{module} (e.g. word embeddings narrower than the hidden size), which the "
                f"{row.model_type} adapter does not model"
            )
    window = getattr(config, "sliding_window", None)
    if row.sliding_window is None and window is not None and getattr(config, "use_sliding_window", True):
        raise UnsupportedModelError(
            f"sliding-window attention (config.sliding_window={window}) is not supported for model_type "
            f"{row.model_type!r}; the adapter runs full causal attention only"
        )
    heads = config.num_attention_heads
    kv_heads = (getattr(config, row.kv_heads, None) if row.kv_heads else None) or heads
    if heads % kv_heads:
        raise UnsupportedModelError(
            f"num_attention_heads={heads} is not a multiple of num_key_value_heads={kv_heads}; "
            "grouped-query attention needs equal groups"
        )
    if row.qkv_layout == "per_head" and kv_heads != heads:
        raise UnsupportedModelError(f"{name}: a per-head fused q/k/v projection with grouped keys is not modelled")
    names = (row.q, row.k, row.v) if row.qkv is None else (row.qkv,)
    bias = row.has_qkv_bias(config)
    for layer, block in enumerate(blocks):
        attn = resolve(block, row.attn)
        if attn is None:
            raise UnsupportedModelError(f"layer {layer} of {name} has no .{row.attn}; load it with transformers.{row.hf_class}")
        for proj in names + (row.o,):
            module = getattr(attn, proj, None)
            if type(module) is not torch.nn.Linear:
                raise UnsupportedModelError(
                    f"layer {layer} {row.attn}.{proj} is a {type(module).__name__}, not torch.nn.Linear "
                    "(quantized or modified model); load the weights de-quantized in float32, float16 or bfloat16"
                )
        for proj in names:
            if (getattr(attn, proj).bias is not None) != bias:
                raise UnsupportedModelError(
                    f"layer {layer} {row.attn}.{proj} {'has' if not bias else 'lacks'} a bias, which the "
                    f"{row.model_type} configuration does not declare; the model was modified after loading"
                )
        for norm in row.refuse_attn_modules:
            if getattr(attn, norm, None) is not None:
                raise UnsupportedModelError(
                    f"layer {layer} has {row.attn}.{norm} (query/key normalisation), which the {row.model_type} adapter does not model"
                )
        mlp = block if row.mlp is None else resolve(block, row.mlp)
        parts = (row.mlp_up, row.mlp_down, row.mlp_act) + ((row.mlp_gate,) if row.mlp_gate else ())
        missing = [part for part in parts if mlp is None or getattr(mlp, part, None) is None]
        for part in (row.attn_norm, row.mlp_norm):
            if resolve(block, part) is None:
                missing.append(part)
        if missing:
            raise UnsupportedModelError(f"layer {layer} of {name} lacks {', '.join(missing)}; load it with transformers.{row.hf_class}")


@torch.no_grad()
def _check_norm(row: Architecture, norm, width: int) -> None:
    """The table's norm kind against what the module computes, on one test vector."""
    weight = getattr(norm, "weight", None)
    if weight is not None and weight.device.type == "meta":  # not materialised: nothing to check
        return
    probe = torch.linspace(-1.0, 3.0, width, dtype=torch.float32)
    device = weight.device if weight is not None else "cpu"
    got = norm(probe.to(device=device, dtype=weight.dtype if weight is not None else torch.float32)).float().cpu()
    gain = torch.ones(width) if weight is None else weight.detach().float().cpu()
    eps = float(getattr(norm, "eps", None) or getattr(norm, "variance_epsilon", None) or 1e-6)
    if row.norm == "layernorm":
        expected = F.layer_norm(probe, (width,), eps=eps) * gain
        bias = getattr(norm, "bias", None)
        if bias is not None:
            expected = expected + bias.detach().float().cpu()
    else:
        scale = gain + 1 if row.norm == "rmsnorm_plus_one" else gain
        expected = probe * torch.rsqrt(probe.pow(2).mean() + eps) * scale
    tolerance = 1e-2 if weight is not None and weight.dtype in (torch.float16, torch.bfloat16) else 1e-4
    if not torch.allclose(got, expected, atol=tolerance * (1 + expected.abs().max().item()), rtol=0):
        raise UnsupportedModelError(
            f"{row.model_type}: the layer norm ({type(norm).__name__}) does not compute the table's {row.norm!r}; "
            "the model is not the architecture its model_type names"
        )
