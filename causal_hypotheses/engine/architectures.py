"""Supported architectures, declared: one table row per HF ``model_type``.

Each row says where an architecture keeps its parts in the HF module tree and how its
parts differ from Llama's (as pyvene's per-model mapping does); the generic adapter
(:class:`causal_hypotheses.engine.llama.LlamaAdapter`) reads the row, so adding a
Llama-like architecture is mostly adding a row.  GPT-2 keeps its hand-written adapter
(Conv1D weights, tuned kernels); its row describes it and routes to it.

Module paths are dotted attribute names: ``base`` from the ``*ForCausalLM`` model,
``layers``/``embed``/``final_norm``/``learned_positions``/``rotary`` from the base model,
``attn``/``attn_norm``/``mlp_norm``/``mlp`` from a decoder layer, the projections from
``attn``, the MLP's linears from ``mlp`` (or from the layer when ``mlp`` is None).

How rows differ (defaults are Llama's)::

    model_type  norm               MLP             positions            q/k/v             other
    llama       RMSNorm            gated (SiLU)    rotary               separate, GQA     bias per config.attention_bias
    mistral     RMSNorm            gated (SiLU)    rotary               separate, GQA     sliding window (every layer)
    qwen2       RMSNorm            gated (SiLU)    rotary               separate+bias     sliding window (config.layer_types)
    gemma       RMSNorm (1 + w)    gated (GeGLU)   rotary               separate, GQA     embedding x sqrt(hidden_size)
    gpt_neox    LayerNorm          dense (GELU)    partial rotary       fused, per head   parallel attn+MLP (config)
    opt         LayerNorm          dense (ReLU)    learned, offset 2    separate+bias     pre-LN only
    gpt2        LayerNorm          dense (GELU)    learned              fused, blocks     hand-written adapter
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import UnsupportedModelError

NORMS = ("layernorm", "rmsnorm", "rmsnorm_plus_one")
MLPS = ("gated", "dense")
QKV_LAYOUTS = ("separate", "per_head", "blocks")


@dataclass(frozen=True)
class Architecture:
    """One architecture: where its parts live and how they compute."""

    model_type: str  # HF config.model_type
    hf_class: str  # the *ForCausalLM class, for messages

    # ---------------------------------------------------------------- model level
    base: str = "model"  # the decoder stack, from the *ForCausalLM
    layers: str = "layers"  # the decoder layers (a ModuleList), from base
    embed: str = "embed_tokens"  # token embedding, from base
    embed_scale: str | None = None  # None, or "sqrt_hidden": x * sqrt(hidden_size) (in the weights' dtype)
    learned_positions: str | None = None  # learned position embedding, from base (None: rotary)
    position_offset: int = 0  # row of position 0 in the learned table (OPT: 2)
    rotary: str | None = "rotary_emb"  # HF rotary module (cos, sin tables), from base
    rotary_fraction: str | float = 1.0  # share of each head rotated, or the config key holding it
    final_norm: str | None = "norm"  # from base; None or a missing module: no final norm
    unembed: str = "lm_head"  # from the *ForCausalLM
    max_positions: str = "max_position_embeddings"  # config attribute: the longest sequence

    # ---------------------------------------------------------------- layer level
    norm: str = "rmsnorm"  # NORMS: LayerNorm, RMSNorm x w, RMSNorm x (1 + w)
    parallel: bool | str = False  # MLP reads the layer's input (not input + attention); or a config key
    attn_norm: str = "input_layernorm"
    mlp_norm: str = "post_attention_layernorm"
    attn: str = "self_attn"
    q: str | None = "q_proj"
    k: str | None = "k_proj"
    v: str | None = "v_proj"
    qkv: str | None = None  # one fused projection instead of q/k/v
    qkv_layout: str = "separate"  # QKV_LAYOUTS: per_head = [q_h k_h v_h] per head; blocks = [Q | K | V]
    o: str = "o_proj"
    qkv_bias: bool | str = False  # q/k/v projections have biases; or the config key saying so
    kv_heads: str | None = "num_key_value_heads"  # config key for grouped-query attention (None: one per head)
    head_dim: str = "head_dim"  # attribute of the attention module holding the head width
    scaling: str = "scaling"  # attribute of the attention module holding the score scale
    sliding_window: str | None = None  # None (refused if configured), "all_layers", or "layer_types"

    mlp: str | None = "mlp"  # container of the MLP's linears (None: the layer itself)
    mlp_kind: str = "gated"  # MLPS: gated = down(act(gate(x)) * up(x)); dense = down(act(up(x)))
    mlp_up: str = "up_proj"
    mlp_gate: str | None = "gate_proj"
    mlp_down: str = "down_proj"
    mlp_act: str = "act_fn"  # the activation module, on the MLP container

    # ---------------------------------------------------------------- refusals
    refuse_config: tuple[tuple[str, object, str], ...] = ()  # (config key, unsupported value, why)
    refuse_modules: tuple[str, ...] = ()  # modules of base that must be absent (None)
    refuse_attn_modules: tuple[str, ...] = ("q_norm", "k_norm")  # modules of attn that must be absent
    adapter: str = "llama"  # "llama": the generic adapter; "gpt2": the hand-written one

    def __post_init__(self) -> None:
        problems = [
            f"norm={self.norm!r} is not one of {NORMS}" * (self.norm not in NORMS),
            f"mlp_kind={self.mlp_kind!r} is not one of {MLPS}" * (self.mlp_kind not in MLPS),
            f"qkv_layout={self.qkv_layout!r} is not one of {QKV_LAYOUTS}" * (self.qkv_layout not in QKV_LAYOUTS),
            "a fused qkv needs a fused qkv_layout, separate q/k/v the 'separate' one" * ((self.qkv is None) != (self.qkv_layout == "separate")),
            "positions are either learned or rotary" * ((self.learned_positions is None) == (self.rotary is None)),
            f"sliding_window={self.sliding_window!r}" * (self.sliding_window not in (None, "all_layers", "layer_types")),
        ]
        problems = [p for p in problems if p]
        if problems:
            raise ValueError(f"architecture row {self.model_type!r}: {'; '.join(problems)}")

    # ---------------------------------------------------------------- config reading
    def is_parallel(self, config) -> bool:
        return bool(getattr(config, self.parallel, False)) if isinstance(self.parallel, str) else self.parallel

    def has_qkv_bias(self, config) -> bool:
        return bool(getattr(config, self.qkv_bias, False)) if isinstance(self.qkv_bias, str) else self.qkv_bias

    def rotary_share(self, config) -> float:
        if not isinstance(self.rotary_fraction, str):
            return float(self.rotary_fraction)
        rope = getattr(config, "rope_parameters", None) or {}
        value = rope.get(self.rotary_fraction) if isinstance(rope, dict) else None
        if value is None:
            value = getattr(config, self.rotary_fraction, None)
        return 1.0 if value is None else float(value)

    def windows(self, config, n_layers: int) -> tuple:
        """Per layer, the sliding-window size or None."""
        window = getattr(config, "sliding_window", None)
        if self.sliding_window is None or window is None:
            return ()
        if self.sliding_window == "all_layers":
            return (int(window),) * n_layers
        types = getattr(config, "layer_types", None) or ["full_attention"] * n_layers
        return tuple(int(window) if t == "sliding_attention" else None for t in types)


ARCHITECTURES: dict[str, Architecture] = {
    row.model_type: row
    for row in (
        Architecture("llama", "LlamaForCausalLM", qkv_bias="attention_bias"),
        Architecture("mistral", "MistralForCausalLM", sliding_window="all_layers"),
        Architecture("qwen2", "Qwen2ForCausalLM", qkv_bias=True, sliding_window="layer_types"),
        Architecture(
            "gemma", "GemmaForCausalLM", norm="rmsnorm_plus_one", embed_scale="sqrt_hidden", qkv_bias="attention_bias",
            refuse_config=(("use_bidirectional_attention", True, "bidirectional (non-causal) attention"),),
        ),
        Architecture(
            "gpt_neox", "GPTNeoXForCausalLM", base="gpt_neox", embed="embed_in", final_norm="final_layer_norm",
            rotary_fraction="partial_rotary_factor", norm="layernorm", parallel="use_parallel_residual",
            attn="attention", q=None, k=None, v=None, qkv="query_key_value", qkv_layout="per_head", o="dense",
            qkv_bias="attention_bias", kv_heads=None, head_dim="head_size",
            mlp_kind="dense", mlp_up="dense_h_to_4h", mlp_gate=None, mlp_down="dense_4h_to_h", mlp_act="act",
        ),
        Architecture(
            "opt", "OPTForCausalLM", base="model.decoder", learned_positions="embed_positions", position_offset=2,
            rotary=None, final_norm="final_layer_norm", norm="layernorm", attn_norm="self_attn_layer_norm",
            mlp_norm="final_layer_norm", o="out_proj", qkv_bias="enable_bias", kv_heads=None,
            mlp=None, mlp_kind="dense", mlp_up="fc1", mlp_gate=None, mlp_down="fc2", mlp_act="activation_fn",
            refuse_config=(("do_layer_norm_before", False,
                            "post-LayerNorm blocks (do_layer_norm_before=False, as in OPT-350m): the residual stream "
                            "is normalised after each block, so it is not a sum of component outputs"),),
            refuse_modules=("project_in", "project_out"),
        ),
        Architecture(
            "gpt2", "GPT2LMHeadModel", base="transformer", layers="h", embed="wte", learned_positions="wpe", rotary=None,
            final_norm="ln_f", max_positions="n_positions", norm="layernorm", attn_norm="ln_1", mlp_norm="ln_2",
            attn="attn", q=None, k=None, v=None, qkv="c_attn", qkv_layout="blocks", o="c_proj", qkv_bias=True,
            kv_heads=None, mlp_kind="dense", mlp_up="c_fc", mlp_gate=None, mlp_down="c_proj", mlp_act="act",
            adapter="gpt2",
        ),
    )
}


def supported() -> str:
    """The supported model types and classes, for messages."""
    return ", ".join(f"{row.model_type!r} ({row.hf_class})" for row in sorted(ARCHITECTURES.values(), key=lambda r: r.model_type))


def architecture_of(model_type, what: str) -> Architecture:
    """The row for ``model_type``; UnsupportedModelError naming the supported types otherwise."""
    row = ARCHITECTURES.get(model_type)
    if row is None:
        raise UnsupportedModelError(
            f"cannot run {what} (model_type={model_type!r}); supported model types: {supported()}. "
            "Load a causal language model of one of these types (e.g. with AutoModelForCausalLM)"
        )
    return row


def adapter_for(model):
    """The adapter for a loaded HF ``*ForCausalLM``, chosen by ``config.model_type``."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    row = architecture_of(model_type, f"a {type(model).__name__}")
    if not hasattr(model, row.unembed) or resolve(model, row.base) is None:
        raise UnsupportedModelError(
            f"{type(model).__name__} (model_type={model_type!r}) has no .{row.base} and .{row.unembed}; "
            f"load the checkpoint as transformers.{row.hf_class} (a causal language model with its head)"
        )
    if row.adapter == "gpt2":
        from .gpt2 import GPT2Adapter

        return GPT2Adapter(model)
    from .llama import LlamaAdapter

    return LlamaAdapter(model, row)


def resolve(root, path: str | None):
    """The module at dotted ``path`` below ``root``, or None when any step is missing."""
    if path is None:
        return None
    for part in path.split("."):
        root = getattr(root, part, None)
        if root is None:
            return None
    return root
