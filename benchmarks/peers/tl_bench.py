"""TransformerLens (4.x, TransformerBridge) on the peer-benchmark experiments.

    python benchmarks/peers/tl_bench.py MODEL_DIR --experiment act_patch_heads [--method batched]

The bridge wraps the fixture's HF model offline (``boot_transformers(MODEL_DIR, hf_model=...,
tokenizer=None)``) with no weight processing (no LayerNorm folding, no centring), so its
numbers are HF's. Hooks: ``blocks.L.attn.hook_z`` (B, T, H, dh) is a head's output before
W_O, ``hook_q`` its query, ``hook_q_input`` (with ``use_split_qkv_input``) its own copy of
the residual stream before ln1, ``hook_mlp_out`` an MLP's write.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch  # noqa: E402

import common  # noqa: E402

TOOL = "transformer_lens"
METHODS = {
    "act_patch_heads": {
        "batched": "run_with_hooks on hook_z, one forward per layer with its 12 heads' patches stacked in the batch",
        "patching": "transformer_lens.patching.generic_activation_patch over (layer, pos, head) rows: one forward per head",
    },
    "path_patch_q": {
        "fork": "use_split_qkv_input: each receiver's own hook_q_input set to its clean-run value plus the sender's "
        "corrupt-minus-clean write (the mechanism of patching.get_act_patch_direct_path), one forward per sender layer",
        "two_run": "Wang et al. recipe: run 1 sender corrupt, every other head (hook_z) and MLP (hook_mlp_out) "
        "frozen clean, capture the receivers' hook_q; run 2 clean with those q's; two forwards per sender layer",
    },
}


def load(model_dir: str):
    from transformer_lens.model_bridge import TransformerBridge

    hf_model = common.load_hf(model_dir)
    bridge = TransformerBridge.boot_transformers(model_dir, hf_model=hf_model, tokenizer=None)
    return bridge.eval()


def z_cache(bridge, tokens, layers):
    names = {f"blocks.{layer}.attn.hook_z" for layer in layers}
    _, cache = bridge.run_with_cache(tokens, names_filter=lambda name: name in names)
    return cache


def act_patch_batched(bridge, data):
    clean, corrupt = data["clean"], data["corrupt"]
    n_layers, n_heads = bridge.cfg.n_layers, bridge.cfg.n_heads
    batch, last = clean.shape[0], clean.shape[1] - 1
    cache = z_cache(bridge, corrupt, range(n_layers))
    heads = torch.arange(n_heads)
    rows = clean.repeat(n_heads, 1)
    out = torch.empty(n_layers, n_heads)
    for layer in range(n_layers):
        source = cache[f"blocks.{layer}.attn.hook_z"][:, last].transpose(0, 1)  # (H, B, dh)

        def patch(z, hook, source=source):
            grouped = z.view(n_heads, batch, *z.shape[1:])  # (G, B, T, H, dh)
            grouped[heads, :, last, heads] = source
            return z

        logits = bridge.run_with_hooks(rows, fwd_hooks=[(f"blocks.{layer}.attn.hook_z", patch)])
        out[layer] = common.logit_diff(logits, data["answer"], data["distractor"])
    return out


def act_patch_library(bridge, data):
    import pandas as pd
    from transformer_lens import patching

    clean, corrupt = data["clean"], data["corrupt"]
    n_layers, n_heads = bridge.cfg.n_layers, bridge.cfg.n_heads
    last = clean.shape[1] - 1
    cache = z_cache(bridge, corrupt, range(n_layers))
    index = pd.DataFrame(
        [(layer, last, head) for layer in range(n_layers) for head in range(n_heads)],
        columns=["layer", "pos", "head_index"],
    )

    def metric(logits):
        return common.logit_diff(logits, data["answer"], data["distractor"])[0]

    # The utility patches the cache's activation into a run on its token argument: here the
    # corrupt cache into clean runs (noising).
    values = patching.generic_activation_patch(
        bridge, clean, cache, metric, patching.layer_pos_head_vector_patch_setter, "z", index_df=index
    )
    return values.view(n_layers, n_heads)


def sender_writes(bridge, data, layer, clean_cache, corrupt_cache):
    """(H, B, T, D): each head of ``layer``: its corrupt write minus its clean write."""
    name = f"blocks.{layer}.attn.hook_z"
    w_o = bridge.blocks[layer].attn.W_O  # (H, dh, D)
    return torch.einsum("bthd,hde->hbte", corrupt_cache[name] - clean_cache[name], w_o)


def path_patch_fork(bridge, data):
    clean, corrupt = data["clean"], data["corrupt"]
    n_heads = bridge.cfg.n_heads
    senders = list(common.SENDER_LAYERS)
    clean_cache = z_cache(bridge, clean, senders)
    corrupt_cache = z_cache(bridge, corrupt, senders)
    rows = clean.repeat(n_heads, 1)
    out = torch.empty(len(senders), n_heads)
    bridge.set_use_split_qkv_input(True)
    try:
        # The receivers' query inputs in the clean run: a receiver reads the clean stream plus
        # the sender's change, not another receiver's recomputed output (a10.h7 -> a11.h10).
        names = {f"blocks.{r_layer}.attn.hook_q_input" for r_layer, _ in common.RECEIVERS}
        _, q_in_cache = bridge.run_with_cache(clean, names_filter=lambda name: name in names)
        clean_q_in = {r_layer: q_in_cache[f"blocks.{r_layer}.attn.hook_q_input"].repeat(n_heads, 1, 1, 1)
                      for r_layer, _ in common.RECEIVERS}
        for layer in senders:
            delta = sender_writes(bridge, data, layer, clean_cache, corrupt_cache).flatten(0, 1)  # (G*B, T, D)

            def set_input(fork, hook, layer, head):
                fork = fork.clone()  # (G*B, T, H, D): each head's own copy of the stream
                fork[:, :, head] = clean_q_in[layer][:, :, head] + delta
                return fork

            hooks = [(f"blocks.{r_layer}.attn.hook_q_input", lambda x, hook, l=r_layer, h=r_head: set_input(x, hook, l, h))
                     for r_layer, r_head in common.RECEIVERS]
            logits = bridge.run_with_hooks(rows, fwd_hooks=hooks)
            out[layer] = common.logit_diff(logits, data["answer"], data["distractor"])
    finally:
        bridge.set_use_split_qkv_input(False)
    return out


def path_patch_two_run(bridge, data):
    clean, corrupt = data["clean"], data["corrupt"]
    n_heads = bridge.cfg.n_heads
    senders = list(common.SENDER_LAYERS)
    last_receiver = max(layer for layer, _ in common.RECEIVERS)
    frozen = range(last_receiver)  # every writer the receivers' queries read
    names = {f"blocks.{m}.attn.hook_z" for m in frozen} | {f"blocks.{m}.hook_mlp_out" for m in frozen}
    _, clean_cache = bridge.run_with_cache(clean, names_filter=lambda name: name in names)
    corrupt_cache = z_cache(bridge, corrupt, senders)
    heads = torch.arange(n_heads)
    rows = clean.repeat(n_heads, 1)
    out = torch.empty(len(senders), n_heads)

    def set_to(value):
        def hook(act, hook):
            return value.repeat(n_heads, *([1] * (value.dim() - 1)))
        return hook

    for layer in senders:
        source = corrupt_cache[f"blocks.{layer}.attn.hook_z"]  # (B, T, H, dh)

        def patch_sender(z, hook, source=source):
            z = z.clone()
            z.view(n_heads, -1, *z.shape[1:])[heads, :, :, heads] = source.permute(2, 0, 1, 3)
            return z

        run1 = [(f"blocks.{layer}.attn.hook_z", patch_sender)]
        for m in frozen:
            if m > layer:
                run1.append((f"blocks.{m}.attn.hook_z", set_to(clean_cache[f"blocks.{m}.attn.hook_z"])))
            if m >= layer:
                run1.append((f"blocks.{m}.hook_mlp_out", set_to(clean_cache[f"blocks.{m}.hook_mlp_out"])))
        captured = {}
        for r_layer, r_head in common.RECEIVERS:
            def grab(q, hook, key=(r_layer, r_head)):
                captured[key] = q[:, :, key[1]].clone()
            run1.append((f"blocks.{r_layer}.attn.hook_q", grab))
        bridge.run_with_hooks(rows, fwd_hooks=run1)

        run2 = []
        for r_layer, r_head in common.RECEIVERS:
            def put(q, hook, key=(r_layer, r_head)):
                q[:, :, key[1]] = captured[key]
                return q
            run2.append((f"blocks.{r_layer}.attn.hook_q", put))
        logits = bridge.run_with_hooks(rows, fwd_hooks=run2)
        out[layer] = common.logit_diff(logits, data["answer"], data["distractor"])
    return out


RUNNERS = {
    ("act_patch_heads", "batched"): act_patch_batched,
    ("act_patch_heads", "patching"): act_patch_library,
    ("path_patch_q", "fork"): path_patch_fork,
    ("path_patch_q", "two_run"): path_patch_two_run,
}


def main() -> None:
    started = common.start(__doc__, TOOL, METHODS, no_scrub="TransformerLens has no causal-scrubbing API "
                           "(hypothesis graphs with resampled inputs per path); only activation/path patching")
    if started is None:
        return
    args, method = started
    bridge = load(args.model_dir)
    data = common.load_batch(args.model_dir)
    fn = RUNNERS[(args.experiment, method)]

    def run():
        with torch.inference_mode():
            return fn(bridge, data)

    values, seconds, times, memory = common.measure(run, args.repeats)
    from importlib.metadata import version

    common.emit(TOOL, args.experiment, values, seconds, times, memory, args.repeats, method=method,
                transformer_lens=version("transformer_lens"), transformers=version("transformers"))


if __name__ == "__main__":
    main()
