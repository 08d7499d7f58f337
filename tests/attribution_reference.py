"""Independent references for attribution scores: central finite differences of the metric on the
unmodified HF model (GPT-2 or Llama), one hook-patched forward pair per node or edge.

A node's score is d/de M(clean with e * (a_corrupt - a_clean) added to the node's output) at 0;
an edge's is the same with the sender's difference added to one receiver's input only.  For
EAP-IG the runs start from interpolated input embeddings.  Nothing here imports the package's
attribution code or the engine: each perturbation is a hook (hf_reference / llama_reference).
"""
from __future__ import annotations

import torch

import hf_reference as gpt2_ref
import llama_reference as llama_ref




def eps(model) -> float:
    """The step: central differences in float64 have truncation error ~ step**2 and rounding error
    ~ precision / step.  HF's Llama RMSNorm computes in float32 whatever the model's dtype, so
    Llama gets a larger step (and Richardson extrapolation, below, against its truncation)."""
    return 1e-5 if is_gpt2(model) else 2e-2


def tolerance(model) -> float:
    """How close a derivative is to the exact one, relative to the largest score: the rounding
    error of float32 norms over a step of 2e-2 is ~2e-5 for the Llama (measured: 1e-4 at 2e-3)."""
    return 1e-6 if is_gpt2(model) else 5e-5


def _derivative(value, step: float) -> float:
    """Richardson-extrapolated central difference of value(e) at 0: error ~ step**4."""
    wide = (value(step) - value(-step)) / (2 * step)
    narrow = (value(step / 2) - value(-step / 2)) / step
    return (4 * narrow - wide) / 3


def is_gpt2(model) -> bool:
    return model.config.model_type == "gpt2"


def blocks(model):
    return model.transformer.h if is_gpt2(model) else model.model.layers


def token_embedding(model, tokens):
    """What HF's inputs_embeds replaces (GPT-2 adds its positions after it)."""
    table = model.transformer.wte if is_gpt2(model) else model.model.embed_tokens
    return table(tokens).detach()


def stream_input(model, tokens, layer):
    """The residual stream entering decoder layer ``layer``."""
    block = blocks(model)[layer]
    return gpt2_ref.record(model, tokens, block.ln_1 if is_gpt2(model) else block.input_layernorm, kind="in")


def head_z(model, tokens, layer):
    return (gpt2_ref if is_gpt2(model) else llama_ref).head_z(model, tokens, layer)


def sender_delta(model, clean, corrupt, name):
    """a_corrupt - a_clean of a sender's write to the residual stream (B, T, D)."""
    ref = gpt2_ref if is_gpt2(model) else llama_ref
    if name == "embed":
        return stream_input(model, corrupt, 0) - stream_input(model, clean, 0)
    layer = int(name[1:].split(".")[0])
    if ".h" in name:
        head = int(name.split(".h")[1])
        return ref.head_output(model, corrupt, layer, head) - ref.head_output(model, clean, layer, head)
    mlp = blocks(model)[layer].mlp
    return gpt2_ref.record(model, corrupt, mlp) - gpt2_ref.record(model, clean, mlp)


def _metric_of(model, metric, embeds, registrations):
    with gpt2_ref.hooks(*registrations), torch.no_grad():
        return float(metric(model(inputs_embeds=embeds).logits).mean())


def _central(model, metric, embeds, registrations_at) -> float:
    return _derivative(lambda e: _metric_of(model, metric, embeds, registrations_at(e)), eps(model))


def _add_to_output(module, delta):
    def add(_, __, output):
        if isinstance(output, tuple):
            return (output[0] + delta,) + tuple(output[1:])
        return output + delta

    return (module, "post", add)


def _add_to_input(module, delta):
    def add(_, args):
        return (args[0] + delta,) + tuple(args[1:])

    return (module, "pre", add)


def _add_to_head_z(model, layer, head, delta_z):
    """Adds delta_z (B, T, dh) to one head's slice of the output projection's input."""
    attn = blocks(model)[layer].attn if is_gpt2(model) else blocks(model)[layer].self_attn
    proj = attn.c_proj if is_gpt2(model) else attn.o_proj
    dh = attn.head_dim

    def add(_, args):
        z = args[0].clone()
        z[..., head * dh : (head + 1) * dh] += delta_z
        return (z,)

    return (proj, "pre", add)


def node_derivative(model, metric, embeds, name, delta, position=None):
    """d/de M at e = 0 when the node's output moves by e * delta; ``embeds``: the run's inputs_embeds.
    For a head, ``delta`` is its z difference (B, T, dh).  ``position``: move only that position."""
    if position is not None:
        keep = torch.zeros(delta.shape[1], dtype=delta.dtype)
        keep[position] = 1
        delta = delta * keep.view(1, -1, *([1] * (delta.dim() - 2)))
    if name == "embed":
        return _derivative(lambda e: _metric_of(model, metric, embeds + e * delta, []), eps(model))
    layer = int(name[1:].split(".")[0])
    if ".h" in name:
        head = int(name.split(".h")[1])
        return _central(model, metric, embeds, lambda e: [_add_to_head_z(model, layer, head, e * delta)])
    return _central(model, metric, embeds, lambda e: [_add_to_output(blocks(model)[layer].mlp, e * delta)])


def edge_derivative(model, metric, clean, receiver, delta):
    """d/de M(clean) at e = 0 when only ``receiver``'s input reads the clean stream + e * delta."""
    if receiver == "out":
        norm = model.transformer.ln_f if is_gpt2(model) else model.model.norm
        registrations = lambda e: [_add_to_input(norm, e * delta)]  # noqa: E731
        return _central(model, metric, token_embedding(model, clean), registrations)
    layer = int(receiver[1:].split(".")[0])
    if ".h" not in receiver:
        block = blocks(model)[layer]
        norm = block.ln_2 if is_gpt2(model) else block.post_attention_layernorm
        return _central(model, metric, token_embedding(model, clean), lambda e: [_add_to_input(norm, e * delta)])
    head = int(receiver.split(".h")[1].split(".")[0])
    channel = "qkv".index(receiver[-1])

    def value(e):
        if is_gpt2(model):
            logits = gpt2_ref.path_patch_channel(model, clean, e * delta, layer, head, channel)
        else:
            logits = llama_ref.patch_head_input(model, clean, layer, head, channel, stream_input(model, clean, layer) + e * delta)
        return float(metric(logits).mean())

    return _derivative(value, eps(model))
