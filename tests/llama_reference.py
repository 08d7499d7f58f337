"""Independent references for Llama models: hooks on the unmodified HF ``LlamaForCausalLM``.

Nothing here imports the engine.  Plain patches replace a module's input or output with
forward hooks (removed in ``finally``); patches of one query head's key or value, which
no HF module holds on its own under grouped-query attention, recompute the attention
layer by hand from HF's own pieces (projections, ``apply_rotary_pos_emb``, ``repeat_kv``)
with an explicit causal mask and softmax.
"""
from __future__ import annotations

import torch
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb, repeat_kv

from hf_reference import hooks, logits, record, replace_output  # noqa: F401  (shared hook helpers, re-exported)


def _layer(model, layer):
    return model.model.layers[layer]


@torch.no_grad()
def attention_call(model, tokens, layer):
    """(hidden_states, cos, sin) that HF passes to attention layer ``layer`` (after input_layernorm)."""
    seen = {}

    def grab(_, args, kwargs, output):
        seen["hidden"] = (args[0] if args else kwargs["hidden_states"]).clone()
        seen["cos"], seen["sin"] = (t.clone() for t in kwargs["position_embeddings"])

    with hooks((_layer(model, layer).self_attn, "post_kwargs", grab)):
        model(tokens)
    return seen["hidden"], seen["cos"], seen["sin"]


@torch.no_grad()
def head_z(model, tokens, layer):
    """Per-head attention outputs z before o_proj: (B, T, H, head_dim)."""
    attn = _layer(model, layer).self_attn
    z = record(model, tokens, attn.o_proj, kind="in")
    return z.view(*z.shape[:2], -1, attn.head_dim)


@torch.no_grad()
def patch_head_z(model, tokens, layer, head, z_source):
    """Logits when head ``layer.head``'s z (its slice of o_proj's input) comes from ``z_source``."""
    attn = _layer(model, layer).self_attn

    def swap(_, args):
        z = args[0].view(*args[0].shape[:2], -1, attn.head_dim).clone()
        z[:, :, head] = z_source[:, :, head]
        return (z.view(*args[0].shape),)

    with hooks((attn.o_proj, "pre", swap)):
        return model(tokens).logits


@torch.no_grad()
def head_output(model, tokens, layer, head):
    """What one head writes to the residual stream: z_h @ o_proj.weight[:, h*dh:(h+1)*dh].T."""
    attn = _layer(model, layer).self_attn
    dh = attn.head_dim
    z = head_z(model, tokens, layer)[:, :, head]
    return z @ attn.o_proj.weight[:, head * dh : (head + 1) * dh].T


@torch.no_grad()
def patch_projection(model, tokens, layer, proj, head_slot, source_tokens):
    """Logits when slot ``head_slot`` of ``proj`` ("q_proj", "k_proj" or "v_proj") output, before
    rotary, is taken from the run on ``source_tokens``.  For k_proj/v_proj a slot is a key/value
    head, so under grouped-query attention it changes every query head of that group."""
    module = getattr(_layer(model, layer).self_attn, proj)
    dh = _layer(model, layer).self_attn.head_dim
    source = record(model, source_tokens, module)
    cols = slice(head_slot * dh, (head_slot + 1) * dh)

    def swap(_, __, output):
        output = output.clone()
        output[..., cols] = source[..., cols]
        return output

    with hooks((module, "post", swap)):
        return model(tokens).logits


def _projected(attn, normed, cos, sin):
    """q, k, v (B, H, T, dh), k and v repeated to the query heads, q and k rotated (HF's functions)."""
    B, T, _ = normed.shape
    q = attn.q_proj(normed).view(B, T, -1, attn.head_dim).transpose(1, 2)
    k = attn.k_proj(normed).view(B, T, -1, attn.head_dim).transpose(1, 2)
    v = attn.v_proj(normed).view(B, T, -1, attn.head_dim).transpose(1, 2)
    q, k = apply_rotary_pos_emb(q, k, cos, sin)
    groups = q.shape[1] // k.shape[1]
    return q, repeat_kv(k, groups), repeat_kv(v, groups)


def _attention_by_hand(attn, q, k, v):
    """Explicit causal softmax attention and o_proj: (B, T, D)."""
    T = q.shape[2]
    scores = (q @ k.transpose(-1, -2)) * attn.scaling
    future = torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1)
    weights = scores.masked_fill(future, float("-inf")).softmax(-1)
    z = (weights @ v).transpose(1, 2).flatten(2)
    return attn.o_proj(z)


@torch.no_grad()
def patch_head_input(model, tokens, layer, head, channel, stream):
    """Hand-built reference: query head ``layer.head``'s q, k or v input (``channel`` 0, 1, 2)
    is computed from residual stream ``stream`` (B, T, D, the decoder layer's input); every
    other head, including the others of its key/value group, reads the run's own stream.
    The attention layer is recomputed by hand; HF runs everything else.
    """
    block = _layer(model, layer)
    attn = block.self_attn
    _, cos, sin = attention_call(model, tokens, layer)
    replacement = _projected(attn, block.input_layernorm(stream), cos, sin)[channel][:, head].clone()

    def recompute(_, args, kwargs, output):
        hidden = args[0] if args else kwargs["hidden_states"]
        qkv = list(_projected(attn, hidden, cos, sin))
        qkv[channel] = qkv[channel].clone()
        qkv[channel][:, head] = replacement
        return (_attention_by_hand(attn, *qkv),) + tuple(output[1:])

    with hooks((attn, "post_kwargs", recompute)):
        return model(tokens).logits


@torch.no_grad()
def layer_input(model, tokens, layer):
    """The residual stream entering decoder layer ``layer`` (B, T, D)."""
    return record(model, tokens, _layer(model, layer).input_layernorm, kind="in")


@torch.no_grad()
def final_residual_patch(model, tokens, delta):
    """Logits when ``delta`` is added to the final residual stream (before model.norm)."""

    def add(_, args):
        return (args[0] + delta,)

    with hooks((model.model.norm, "pre", add)):
        return model(tokens).logits
