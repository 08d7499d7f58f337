"""Tiny random models of every supported architecture, and hook-based references on them.

Nothing here imports the engine.  Where each HF architecture keeps its parts is written out
below (``LAYOUT``), from the HF modeling code and independently of the engine's architecture
table, so a test comparing the two is not comparing the table with itself.  Patches replace a
module's input or output with forward hooks on the unmodified HF model (removed on exit).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from hf_reference import hooks, logits, record  # noqa: F401  (shared hook helpers, re-exported)

VOCAB = 256


@dataclass(frozen=True)
class Layout:
    """Where one HF architecture keeps what the references hook."""

    layers: str  # from the *ForCausalLM
    attn: str  # from a decoder layer
    attn_norm: str  # from a decoder layer; its input is the layer's input
    o: str  # output projection, from attn
    q: str  # query projection (or the fused q/k/v one), from attn; k_proj / v_proj beside it
    mlp_norm: str  # the norm the MLP reads through, from a decoder layer
    mlp_out: str  # the module whose output is the MLP's output, from a decoder layer
    final_norm: str  # from the *ForCausalLM
    fused: bool = False  # q/k/v in one projection, per head [q_h | k_h | v_h] (GPT-NeoX)


LAYOUT = {
    "llama": Layout("model.layers", "self_attn", "input_layernorm", "o_proj", "q_proj", "post_attention_layernorm", "mlp", "model.norm"),
    "mistral": Layout("model.layers", "self_attn", "input_layernorm", "o_proj", "q_proj", "post_attention_layernorm", "mlp", "model.norm"),
    "qwen2": Layout("model.layers", "self_attn", "input_layernorm", "o_proj", "q_proj", "post_attention_layernorm", "mlp", "model.norm"),
    "gemma": Layout("model.layers", "self_attn", "input_layernorm", "o_proj", "q_proj", "post_attention_layernorm", "mlp", "model.norm"),
    "gpt_neox": Layout("gpt_neox.layers", "attention", "input_layernorm", "dense", "query_key_value", "post_attention_layernorm", "mlp",
                       "gpt_neox.final_layer_norm", fused=True),
    "opt": Layout("model.decoder.layers", "self_attn", "self_attn_layer_norm", "out_proj", "q_proj", "final_layer_norm", "fc2",
                  "model.decoder.final_layer_norm"),
}


def module_at(root, path):
    for part in path.split("."):
        root = getattr(root, part)
    return root


def layout(model) -> Layout:
    return LAYOUT[model.config.model_type]


def block(model, layer):
    return module_at(model, layout(model).layers)[layer]


def attention(model, layer):
    return module_at(block(model, layer), layout(model).attn)


def final_norm(model):
    return module_at(model, layout(model).final_norm)


def head_dim(model) -> int:
    config = model.config
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


# ------------------------------------------------------------------ models
def configs():
    """model_type -> (config class, *ForCausalLM class, tiny config options)."""
    from transformers import (GemmaConfig, GemmaForCausalLM, GPTNeoXConfig, GPTNeoXForCausalLM, LlamaConfig,
                              LlamaForCausalLM, MistralConfig, MistralForCausalLM, OPTConfig, OPTForCausalLM,
                              Qwen2Config, Qwen2ForCausalLM)

    common = dict(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=64)
    return {
        "llama": (LlamaConfig, LlamaForCausalLM, dict(common, intermediate_size=128, num_key_value_heads=2, tie_word_embeddings=False)),
        "mistral": (MistralConfig, MistralForCausalLM, dict(common, intermediate_size=128, num_key_value_heads=2, tie_word_embeddings=False)),
        "qwen2": (Qwen2Config, Qwen2ForCausalLM, dict(common, intermediate_size=128, num_key_value_heads=2, tie_word_embeddings=False)),
        "gemma": (GemmaConfig, GemmaForCausalLM, dict(common, intermediate_size=128, num_key_value_heads=1, head_dim=16)),
        "gpt_neox": (GPTNeoXConfig, GPTNeoXForCausalLM, dict(common, intermediate_size=128, rotary_pct=0.25)),
        "opt": (OPTConfig, OPTForCausalLM, dict(common, ffn_dim=128, word_embed_proj_dim=64, do_layer_norm_before=True)),
    }


def random_model(model_type: str, seed: int = 0, **overrides):
    """A tiny model of ``model_type`` with every parameter drawn from a seeded normal: norm gains
    near 1 (for Gemma's 1 + w norms, w near 0), embeddings std 1, linear weights std 0.15 (which
    makes attention peaked, so patching one head shows in the logits), biases std 0.1."""
    config_class, model_class, options = configs()[model_type]
    model = model_class(config_class(**dict(options, **overrides)))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            is_norm = isinstance(module, torch.nn.LayerNorm) or type(module).__name__.endswith("RMSNorm")
            for name, parameter in module.named_parameters(recurse=False):
                noise = torch.randn(parameter.shape, generator=generator)
                if is_norm and name == "weight":
                    parameter.copy_((0.0 if model_type == "gemma" else 1.0) + 0.1 * noise)
                elif isinstance(module, torch.nn.Embedding):
                    parameter.copy_(noise)
                elif name == "bias":
                    parameter.copy_(0.1 * noise)
                else:
                    parameter.copy_(0.15 * noise)
    return model.eval()


def prompts(seeds=(5, 6), shape=(3, 8)):
    return [torch.randint(0, VOCAB, shape, generator=torch.Generator().manual_seed(s)) for s in seeds]


# ------------------------------------------------------------------ references
@torch.no_grad()
def layer_input(model, tokens, layer):
    """The residual stream entering decoder layer ``layer`` (B, T, D)."""
    return record(model, tokens, module_at(block(model, layer), layout(model).attn_norm), kind="in")


@torch.no_grad()
def head_z(model, tokens, layer):
    """Per-head attention outputs z, the output projection's input: (B, T, H, dh)."""
    z = record(model, tokens, module_at(attention(model, layer), layout(model).o), kind="in")
    return z.view(*z.shape[:2], -1, head_dim(model))


@torch.no_grad()
def patch_head_z(model, tokens, layer, head, z_source, where=None):
    """Logits when head ``layer.head``'s z comes from ``z_source`` (at examples ``where`` (B,)
    bool, all if None): activation patching of one head."""
    o = module_at(attention(model, layer), layout(model).o)
    dh = head_dim(model)

    def swap(_, args):
        z = args[0].view(*args[0].shape[:2], -1, dh).clone()
        rows = slice(None) if where is None else where
        z[rows, :, head] = z_source[rows, :, head]
        return (z.view(*args[0].shape),)

    with hooks((o, "pre", swap)):
        return model(tokens).logits


@torch.no_grad()
def head_output(model, tokens, layer, head):
    """What one head writes to the residual stream: z_h @ W_o[:, h*dh:(h+1)*dh].T."""
    o = module_at(attention(model, layer), layout(model).o)
    dh = head_dim(model)
    return head_z(model, tokens, layer)[:, :, head] @ o.weight[:, head * dh : (head + 1) * dh].T


def _channel(model, layer, head, channel):
    """(module, output columns) holding head ``layer.head``'s q (channel 0), k (1) or v (2)
    before rotary.  GPT-NeoX views its fused output as (B, T, H, 3 * dh) and chunks the last
    axis into q, k, v; separate projections hold head h in columns h*dh..(h+1)*dh (k and v:
    without grouped-query attention only, where a key/value head is one query head's)."""
    dh = head_dim(model)
    attn = attention(model, layer)
    if layout(model).fused:
        start = head * 3 * dh + channel * dh
        return module_at(attn, layout(model).q), slice(start, start + dh)
    config = model.config
    if channel:
        assert (getattr(config, "num_key_value_heads", None) or config.num_attention_heads) == config.num_attention_heads
    return getattr(attn, ("q_proj", "k_proj", "v_proj")[channel]), slice(head * dh, (head + 1) * dh)


@torch.no_grad()
def patch_channel(model, tokens, layer, head, channel, replacement):
    """Logits when head ``layer.head``'s projected q, k or v (``channel`` 0, 1, 2; before
    rotary) is ``replacement`` (B, T, dh): those output columns of the projection are swapped."""
    proj, cols = _channel(model, layer, head, channel)

    def swap(_, __, output):
        output = output.clone()
        output[..., cols] = replacement
        return output

    with hooks((proj, "post", swap)):
        return model(tokens).logits


@torch.no_grad()
def channel_of(model, tokens, layer, head, channel, stream=None):
    """Head ``layer.head``'s projected q, k or v (B, T, dh) in the run on ``tokens``, or, given
    ``stream`` (B, T, D), what the layer's attention norm and projection make of it."""
    proj, cols = _channel(model, layer, head, channel)
    if stream is None:
        out = record(model, tokens, proj)
    else:
        out = proj(module_at(block(model, layer), layout(model).attn_norm)(stream))
    return out[..., cols]


@torch.no_grad()
def mlp_input(model, tokens, layer, perturb_attention=None):
    """The stream MLP ``layer``'s norm reads (B, T, D); with ``perturb_attention`` (a layer),
    in a run where 1.0 is added to that attention layer's output."""
    norm = module_at(block(model, layer), layout(model).mlp_norm)
    if perturb_attention is None:
        return record(model, tokens, norm, kind="in")

    def bump(_, __, output):
        return (output[0] + 1.0,) + tuple(output[1:]) if isinstance(output, tuple) else output + 1.0

    with hooks((attention(model, perturb_attention), "post", bump)):
        return record(model, tokens, norm, kind="in")


def mlp_reads_its_attention(model, tokens, layer) -> bool:
    """Whether attention layer ``layer`` writes into the stream MLP ``layer`` reads, as HF
    runs it: False where the two run in parallel on the layer's input (GPT-NeoX, Pythia)."""
    return not torch.equal(mlp_input(model, tokens, layer), mlp_input(model, tokens, layer, perturb_attention=layer))


@torch.no_grad()
def add_to_mlp_input(model, tokens, layer, delta):
    """Logits when MLP ``layer`` reads its stream plus ``delta``; HF recomputes downstream."""
    norm = module_at(block(model, layer), layout(model).mlp_norm)

    def add(_, args):  # OPT's MLP runs on (B * T, D)
        return (args[0] + (delta.reshape(args[0].shape) if torch.is_tensor(delta) else delta),)

    with hooks((norm, "pre", add)):
        return model(tokens).logits


@torch.no_grad()
def mlp_output(model, tokens, layer):
    return record(model, tokens, module_at(block(model, layer), layout(model).mlp_out))
