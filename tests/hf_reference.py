"""Independent references: hook-based patching on the unmodified HF GPT-2.

Nothing here imports the engine; every function runs ``model(...)`` with forward hooks
that are removed in ``finally``.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch


@contextmanager
def hooks(*registrations):
    """registrations: (module, "pre" | "post" | "post_kwargs", fn); removed on exit."""
    handles = []
    try:
        for module, kind, fn in registrations:
            if kind == "pre":
                handles.append(module.register_forward_pre_hook(fn))
            else:
                handles.append(module.register_forward_hook(fn, with_kwargs=kind == "post_kwargs"))
        yield
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def logits(model, tokens):
    return model(tokens).logits


@torch.no_grad()
def record(model, tokens, module, kind="out"):
    """The output (or, with kind="in", the first input) of ``module`` in a plain run."""
    seen = {}

    def grab_out(_, __, output):
        seen["x"] = (output[0] if isinstance(output, tuple) else output).clone()

    def grab_in(_, args):
        seen["x"] = args[0].clone()

    with hooks((module, "pre" if kind == "in" else "post", grab_in if kind == "in" else grab_out)):
        model(tokens)
    return seen["x"]


@torch.no_grad()
def final_residual_patch(model, tokens, delta):
    """Logits when ``delta`` is added to the final residual stream (before ln_f)."""

    def add(_, args):
        return (args[0] + delta,)

    with hooks((model.transformer.ln_f, "pre", add)):
        return model(tokens).logits


@torch.no_grad()
def replace_output(model, tokens, module, value):
    """Logits of a run in which ``module``'s output is replaced by ``value``."""

    def swap(_, __, output):
        if isinstance(output, tuple):
            return (value,) + tuple(output[1:])
        return value

    with hooks((module, "post", swap)):
        return model(tokens).logits


@torch.no_grad()
def head_z(model, tokens, layer):
    """Per-head attention outputs z before c_proj: (B, T, H, d_head)."""
    attn = model.transformer.h[layer].attn
    z = record(model, tokens, attn.c_proj, kind="in")
    return z.view(*z.shape[:2], attn.num_heads, attn.head_dim)


@torch.no_grad()
def patch_head_z(model, tokens, layer, head, z_source):
    """Logits when head ``layer.head``'s z is taken from ``z_source`` (activation patching)."""
    attn = model.transformer.h[layer].attn

    def swap(_, args):
        z = args[0].view(*args[0].shape[:2], attn.num_heads, attn.head_dim).clone()
        z[:, :, head] = z_source[:, :, head]
        return (z.view(*args[0].shape),)

    with hooks((attn.c_proj, "pre", swap)):
        return model(tokens).logits


@torch.no_grad()
def patch_channel(model, tokens, layer, head, channel, source_tokens):
    """Hand-built reference: only head ``layer.head``'s query, key or value input
    (``channel`` 0, 1 or 2) is computed on ``source_tokens``.

    That slice of the source run's c_attn output replaces the same slice in the base
    run's; everything downstream is recomputed by HF.
    """
    attn = model.transformer.h[layer].attn
    source_qkv = record(model, source_tokens, attn.c_attn)
    start = channel * attn.embed_dim + head * attn.head_dim
    stop = start + attn.head_dim

    def swap(_, __, output):
        output = output.clone()
        output[..., start:stop] = source_qkv[..., start:stop]
        return output

    with hooks((attn.c_attn, "post", swap)):
        return model(tokens).logits


@torch.no_grad()
def head_output(model, tokens, layer, head):
    """What one head writes to the residual stream (its share of c_proj, no bias)."""
    attn = model.transformer.h[layer].attn
    z = head_z(model, tokens, layer)[:, :, head]  # (B, T, dh)
    return z @ attn.c_proj.weight[head * attn.head_dim : (head + 1) * attn.head_dim]


@torch.no_grad()
def path_patch_channel(model, clean, delta, layer, head, channel):
    """Hand-built path patch: head ``layer.head``'s ``channel`` input reads the clean
    residual stream plus ``delta`` (the senders' corrupt-minus-clean outputs); its other
    inputs and every other head read clean; HF recomputes everything downstream."""
    block = model.transformer.h[layer]
    attn = block.attn
    stream = record(model, clean, block.ln_1, kind="in") + delta
    new_qkv = attn.c_attn(block.ln_1(stream))
    start = channel * attn.embed_dim + head * attn.head_dim
    stop = start + attn.head_dim

    def swap(_, __, output):
        output = output.clone()
        output[..., start:stop] = new_qkv[..., start:stop]
        return output

    with hooks((attn.c_attn, "post", swap)):
        return model(clean).logits


@torch.no_grad()
def patch_head_z_at(model, tokens, layer, head, z_source, positions):
    """Like patch_head_z, only at ``positions`` (a list of indices)."""
    attn = model.transformer.h[layer].attn

    def swap(_, args):
        z = args[0].view(*args[0].shape[:2], attn.num_heads, attn.head_dim).clone()
        z[:, positions, head] = z_source[:, positions, head]
        return (z.view(*args[0].shape),)

    with hooks((attn.c_proj, "pre", swap)):
        return model(tokens).logits


@torch.no_grad()
def path_patch_mlp(model, clean, delta, layer):
    """MLP ``layer`` reads the clean residual plus ``delta``; HF recomputes downstream."""
    block = model.transformer.h[layer]

    def add(_, args):
        return (args[0] + delta,)

    with hooks((block.ln_2, "pre", add)):
        return model(clean).logits


@torch.no_grad()
def path_patch_channels(model, clean, delta, receivers):
    """Several head inputs at once: receivers = [(layer, head, channel), ...], each reading
    the clean stream plus ``delta`` at its layer; HF recomputes downstream."""
    registrations = []
    for layer in sorted({r[0] for r in receivers}):
        block = model.transformer.h[layer]
        attn = block.attn
        stream = record(model, clean, block.ln_1, kind="in") + delta
        new_qkv = attn.c_attn(block.ln_1(stream))
        slices = [slice(c * attn.embed_dim + h * attn.head_dim, c * attn.embed_dim + (h + 1) * attn.head_dim) for l, h, c in receivers if l == layer]

        def swap(_, __, output, new_qkv=new_qkv, slices=slices):
            output = output.clone()
            for s in slices:
                output[..., s] = new_qkv[..., s]
            return output

        registrations.append((attn.c_attn, "post", swap))
    with hooks(*registrations):
        return model(clean).logits
