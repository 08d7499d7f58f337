"""Plain-HF reference for the peer benchmarks: transformers + torch forward hooks, nothing else.

    python benchmarks/peers/hf_reference.py MODEL_DIR --experiment act_patch_heads [--repeats 3]

Same experiments and JSON line as tl_bench.py and pyvene_bench.py (see README.md here).
A head's output is its z (the input of ``attn.c_proj``, split into heads); patching z is
patching the head's write ``z @ W_O[h]``, since c_proj is linear.
"""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch  # noqa: E402

import common  # noqa: E402

TOOL = "hf_hooks"


@contextmanager
def hooks(*registrations):
    handles = []
    try:
        for module, kind, fn in registrations:
            register = module.register_forward_pre_hook if kind == "pre" else module.register_forward_hook
            handles.append(register(fn))
        yield
    finally:
        for handle in handles:
            handle.remove()


def capture(model, tokens, layers, what):
    """One plain forward; per layer, the z's (``"z"``: c_proj input, (B, T, H, dh)) or the
    residual stream entering ln_1 (``"resid"``: (B, T, D))."""
    seen = {}
    blocks = model.transformer.h
    regs = []
    for layer in layers:
        if what == "z":
            attn = blocks[layer].attn

            def grab(_, args, layer=layer, attn=attn):
                seen[layer] = args[0].view(*args[0].shape[:2], attn.num_heads, attn.head_dim).clone()

            regs.append((attn.c_proj, "pre", grab))
        else:

            def grab(_, args, layer=layer):
                seen[layer] = args[0].clone()

            regs.append((blocks[layer].ln_1, "pre", grab))
    with hooks(*regs):
        model(tokens)
    return seen


def act_patch_heads(model, data):
    """(L, H): mean logit diff with head L.H's output at the last position from the corrupt run.

    One forward per layer, its H heads' patched runs stacked in the batch (H * B rows)."""
    clean, corrupt = data["clean"], data["corrupt"]
    n_layers, n_heads = model.config.n_layer, model.config.n_head
    batch, last = clean.shape[0], clean.shape[1] - 1
    z_corrupt = capture(model, corrupt, range(n_layers), "z")
    heads = torch.arange(n_heads)
    out = torch.empty(n_layers, n_heads)
    for layer in range(n_layers):
        attn = model.transformer.h[layer].attn
        source = z_corrupt[layer][:, last].transpose(0, 1)  # (H, B, dh)

        def swap(_, args, source=source):
            z = args[0].view(n_heads, batch, args[0].shape[1], n_heads, attn.head_dim).clone()
            z[heads, :, last, heads] = source
            return (z.view(args[0].shape),)

        with hooks((attn.c_proj, "pre", swap)):
            logits = model(clean.repeat(n_heads, 1)).logits
        out[layer] = common.logit_diff(logits, data["answer"], data["distractor"])
    return out


def path_patch_q(model, data):
    """(sender layer, sender head): each receiver's query input is
    ln_1(clean residual + sender's corrupt write - sender's clean write), all else clean,
    everything downstream of the receivers recomputed. One forward per sender layer."""
    clean, corrupt = data["clean"], data["corrupt"]
    n_heads = model.config.n_head
    senders = list(common.SENDER_LAYERS)
    z_clean = capture(model, clean, senders, "z")
    z_corrupt = capture(model, corrupt, senders, "z")
    receiver_layers = sorted({layer for layer, _ in common.RECEIVERS})
    resid = capture(model, clean, receiver_layers, "resid")
    rows = clean.repeat(n_heads, 1)
    out = torch.empty(len(senders), n_heads)
    for layer in senders:
        attn = model.transformer.h[layer].attn
        dh = attn.head_dim
        w_o = attn.c_proj.weight.view(n_heads, dh, -1)  # Conv1D: (in, out); head h's rows
        # (H, B, T, D): sender h's corrupt write minus its clean write.
        delta = torch.einsum("bthd,hde->hbte", z_corrupt[layer] - z_clean[layer], w_o)
        regs = []
        for r_layer, r_head in common.RECEIVERS:
            block = model.transformer.h[r_layer]
            qkv = block.attn.c_attn(block.ln_1(resid[r_layer].unsqueeze(0) + delta))  # (H, B, T, 3D)
            new_q = qkv[..., r_head * dh : (r_head + 1) * dh].reshape(-1, clean.shape[1], dh)

            def swap(_, __, output, new_q=new_q, r_head=r_head):
                output = output.clone()
                output[..., r_head * dh : (r_head + 1) * dh] = new_q
                return output

            regs.append((block.attn.c_attn, "post", swap))
        with hooks(*regs):
            logits = model(rows).logits
        out[layer] = common.logit_diff(logits, data["answer"], data["distractor"])
    return out


def main() -> None:
    started = common.start(__doc__, TOOL, no_scrub="not implemented in the plain-HF reference")
    if started is None:
        return
    args, _ = started
    model = common.load_hf(args.model_dir)
    data = common.load_batch(args.model_dir)
    fn = {"act_patch_heads": act_patch_heads, "path_patch_q": path_patch_q}[args.experiment]

    def run():
        with torch.inference_mode():
            return fn(model, data)

    values, seconds, times, memory = common.measure(run, args.repeats)
    common.emit(TOOL, args.experiment, values, seconds, times, memory, args.repeats,
                transformers=__import__("transformers").__version__)


if __name__ == "__main__":
    main()
