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
from .adapter import Adapter, model_graph


class GPT2Adapter(Adapter):
    """Component math for ``transformers.GPT2LMHeadModel`` (pre-LN blocks, tied or untied head).

    Hand-written rather than driven by the table in architectures.py (whose "gpt2" row
    describes it): GPT-2's Conv1D weights are stored transposed, and its projections use
    ``addmm`` and torch's fused tanh-GELU for speed."""

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
        self.n_heads = self.n_kv_heads = config.n_head
        self.d_model = config.n_embd
        self.d_head = self.d_model // self.n_heads
        self.final_norm = self.transformer.ln_f
        self.graph = model_graph(self.n_layers, self.n_heads, self.architecture)
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

    def w_out(self, layer: int, head: int) -> torch.Tensor:
        """(d_head, D) rows of the output projection that belong to one head."""
        start = head * self.d_head
        return self.blocks[layer].attn.c_proj.weight[start : start + self.d_head]

    # ------------------------------------------------------------------ math
    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        return self.transformer.wte(tokens) + self.transformer.wpe(positions)  # (B, T, D)

    def qkv(self, layer: int, resid: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """All heads' q, k, v on one residual stream: (B, T, 3, H, d_head); positions enter
        GPT-2 at the embedding only, so ``positions`` is unused."""
        B, T, _ = resid.shape
        block = self.blocks[layer]
        return block.attn.c_attn(block.ln_1(resid)).view(B, T, 3, self.n_heads, self.d_head)

    def q_kv(self, layer: int, resid: torch.Tensor, positions: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        qkv = self.qkv(layer, resid)
        return qkv[:, :, 0], qkv[:, :, 1:]

    def kv(self, layer: int, resid: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """Every head's k and v alone (the last 2D columns of c_attn): (B, T, 2, H, d_head)."""
        B, T, D = resid.shape
        block = self.blocks[layer]
        c_attn = block.attn.c_attn
        out = torch.addmm(c_attn.bias[D:], block.ln_1(resid).flatten(0, 1), c_attn.weight[:, D:])
        return out.view(B, T, 2, self.n_heads, self.d_head)

    def out_proj(self, layer: int, z_flat: torch.Tensor) -> torch.Tensor:
        return self.blocks[layer].attn.c_proj(z_flat)

    def ln1_proj(self, layer: int, head: int, channel: int, resid: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """One head's q/k/v on a residual stream (B, T, D) -> (B, T, dh)."""
        weight, bias = self._w_qkv(layer, head, channel)
        return torch.addmm(bias, self.blocks[layer].ln_1(resid).flatten(0, 1), weight).view(*resid.shape[:2], -1)

    def mlp_macs(self, layer: int) -> int:
        """Multiply-adds of MLP ``layer``'s matmuls per token position."""
        mlp = self.blocks[layer].mlp
        return mlp.c_fc.weight.numel() + mlp.c_proj.weight.numel()

    def mlp(self, layer: int, resid: torch.Tensor) -> torch.Tensor:
        block = self.blocks[layer]
        if not self._tanh_gelu:
            return block.mlp(block.ln_2(resid))
        # GPT-2's "gelu_new" is the tanh approximation; torch's fused kernel computes the
        # same formula several times faster than HF's elementwise version.
        hidden = F.gelu(block.mlp.c_fc(block.ln_2(resid)), approximate="tanh")
        return block.mlp.c_proj(hidden)
