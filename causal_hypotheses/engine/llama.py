"""Llama-family adapter: RMSNorm, rotary positions, grouped-query attention, gated MLP.

Same interface as :class:`causal_hypotheses.engine.gpt2.GPT2Adapter`.  Every query head
is a component ``a{L}.h{H}``; its key and value inputs are those of the key/value group
it belongs to, so the captured "qkv" site holds k and v repeated to the query heads.
Queries and keys are stored after the rotary rotation.  The rotation acts on each
position separately, so patching a head's projected query (or key) before or after it
gives the same result.

Norms, the MLP, the rotary tables and the unembedding are the HF modules themselves;
weights are read from the unmodified model, nothing is copied or patched.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import UnsupportedModelError
from ..graph import ModelGraph
from .adapter import Adapter


class LlamaAdapter(Adapter):
    """Component math for ``transformers.LlamaForCausalLM``."""

    architecture = "llama"

    def __init__(self, model) -> None:
        config = model.config
        _check_supported(model)
        self.model = model
        self.base = model.model
        self.blocks = list(self.base.layers)
        self.n_layers = config.num_hidden_layers
        self.n_heads = config.num_attention_heads
        self.n_kv_heads = getattr(config, "num_key_value_heads", None) or self.n_heads
        self.group = self.n_heads // self.n_kv_heads  # query heads per key/value head
        self.d_model = config.hidden_size
        self.d_head = getattr(config, "head_dim", None) or self.d_model // self.n_heads
        self.final_norm = self.base.norm
        self.graph = ModelGraph(self.n_layers, self.n_heads, self.architecture)
        self.n_positions = config.max_position_embeddings
        self.vocab_size = config.vocab_size
        # HF's own scaling (head_dim ** -0.5 for Llama), read from each attention module.
        self._scales = [float(getattr(block.self_attn, "scaling", self.d_head**-0.5)) for block in self.blocks]
        self._rotary_cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    # ------------------------------------------------------------------ weights
    def _w_in(self, layer: int, head: int, channel: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(d_head, D) weight rows and (d_head,) bias (or None) of one query head's q, k or v."""
        attn = self.blocks[layer].self_attn
        proj = (attn.q_proj, attn.k_proj, attn.v_proj)[channel]
        index = head if channel == 0 else head // self.group  # k and v: the head's kv group
        rows = slice(index * self.d_head, (index + 1) * self.d_head)
        bias = None if proj.bias is None else proj.bias[rows]
        return proj.weight[rows], bias

    def w_out(self, layer: int, head: int) -> torch.Tensor:
        """(d_head, D): the transposed columns of o_proj that read one head."""
        start = head * self.d_head
        return self.blocks[layer].self_attn.o_proj.weight[:, start : start + self.d_head].T

    # ------------------------------------------------------------------ math
    def _rotary(self, x: torch.Tensor, positions: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin (T, d_head) for x's sequence axis: positions 0..T-1, or ``positions`` (T,)."""
        seq = x.shape[1] if positions is None else int(positions.max()) + 1
        key = (seq, x.device, x.dtype)
        found = self._rotary_cache.get(key)
        if found is None:
            table = torch.arange(seq, device=x.device)[None]  # (1, seq)
            with torch.no_grad():
                cos, sin = self.base.rotary_emb(x, table)
            found = self._rotary_cache[key] = (cos[0], sin[0])
        if positions is None:
            return found
        return found[0][positions], found[1][positions]

    def _rotate(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """Rotary rotation of x (B, T, ..., d_head) with cos/sin (T, d_head)."""
        extra = x.dim() - 3
        cos = cos.view(cos.shape[0], *([1] * extra), cos.shape[-1])
        sin = sin.view(sin.shape[0], *([1] * extra), sin.shape[-1])
        half = x.shape[-1] // 2
        turned = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
        return x * cos + turned * sin

    def qkv(self, layer: int, resid: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """All query heads' rotated q, k, v on one residual stream: (B, T, 3, H, d_head).

        ``positions`` (T,): the sequence positions of resid's T axis (default 0..T-1)."""
        B, T, _ = resid.shape
        attn = self.blocks[layer].self_attn
        normed = self.blocks[layer].input_layernorm(resid)
        q = attn.q_proj(normed).view(B, T, self.n_heads, self.d_head)
        k = attn.k_proj(normed).view(B, T, self.n_kv_heads, self.d_head)
        v = attn.v_proj(normed).view(B, T, self.n_kv_heads, self.d_head)
        cos, sin = self._rotary(resid, positions)
        q, k = self._rotate(q, cos, sin), self._rotate(k, cos, sin)
        if self.group > 1:  # query head h reads key/value head h // group
            k = k.repeat_interleave(self.group, dim=2)
            v = v.repeat_interleave(self.group, dim=2)
        return torch.stack((q, k, v), dim=2)

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.base.embed_tokens(tokens)  # (B, T, D); positions enter through rotary

    def ln1_proj(self, layer: int, head: int, channel: int, resid: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """One query head's q/k/v (q and k rotated) on a residual stream (B, T, D) -> (B, T, dh)."""
        weight, bias = self._w_in(layer, head, channel)
        out = F.linear(self.blocks[layer].input_layernorm(resid), weight, bias)
        if channel == 2:
            return out
        return self._rotate(out, *self._rotary(resid, positions))

    def out_proj(self, layer: int, z_flat: torch.Tensor) -> torch.Tensor:
        return self.blocks[layer].self_attn.o_proj(z_flat)

    def mlp(self, layer: int, resid: torch.Tensor) -> torch.Tensor:
        block = self.blocks[layer]
        return block.mlp(block.post_attention_layernorm(resid))



def _check_supported(model) -> None:
    """Raise UnsupportedModelError naming the first setting this adapter does not model."""
    config = model.config
    name = type(model).__name__
    if not hasattr(model, "model") or not hasattr(model, "lm_head") or not hasattr(model.model, "layers"):
        raise UnsupportedModelError(f"{name} has no .model.layers/.lm_head; load the checkpoint with transformers.LlamaForCausalLM")
    if getattr(config, "sliding_window", None) is not None and getattr(config, "use_sliding_window", True):
        raise UnsupportedModelError(
            f"sliding-window attention (config.sliding_window={config.sliding_window}) is not supported; "
            "the Llama adapter runs full causal attention only"
        )
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    if heads % kv_heads:
        raise UnsupportedModelError(
            f"num_attention_heads={heads} is not a multiple of num_key_value_heads={kv_heads}; "
            "grouped-query attention needs equal groups"
        )
    for layer, block in enumerate(model.model.layers):
        attn = block.self_attn
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            module = getattr(attn, proj, None)
            if type(module) is not torch.nn.Linear:
                raise UnsupportedModelError(
                    f"layer {layer} self_attn.{proj} is a {type(module).__name__}, not torch.nn.Linear "
                    "(quantized or modified model); load the weights de-quantized in float32, float16 or bfloat16"
                )
        for norm in ("q_norm", "k_norm"):
            if getattr(attn, norm, None) is not None:
                raise UnsupportedModelError(f"layer {layer} has self_attn.{norm} (query/key normalisation), which the Llama adapter does not model")

