"""Find the IOI circuit in SmolLM2-135M with the project's own path-patching sweeps.

    python scripts/find_ioi_circuit.py [--n 24] [--seed 0] [--out circuits/findings/ioi-smollm2]

Following Wang et al. (2022), metric = logit difference (indirect object minus subject) at the
last position, noising (the clean run, with the senders' paths reading the corrupt prompt):

1. every head -> the logits (corruption: the second mention of S replaced): name movers (the
   largest drops) and negative name movers (the largest rises);
2. every earlier head -> the name movers' queries: S-inhibition heads;
3. every earlier head -> the S-inhibition heads' queries, keys and values, one sweep per
   channel: induction and duplicate-token heads, and the channel they feed;
4. every earlier head -> those heads' keys, with all three names replaced (``corruption="abc"``:
   the previous-token heads read positions before the second mention, which the default
   corruption leaves equal): previous-token heads;
5. backup name movers: every head's direct effect on the logit difference (its output at the
   last position through the final norm, frozen, and the unembedding), in the clean run and with
   the name movers' outputs read from the corrupt prompts; heads whose direct effect rises;
6. attention patterns (eager attention on the unmodified HF model) of every head found: where
   the last position, the second mention and the token after the first mention look.

Each sweep is written as a CSV (layer x head: the change in the mean logit difference) into
``--out``; a sweep whose CSV is there already is read back instead of run again (``--force``
reruns).  ``circuit.json`` holds the heads found and the numbers the README quotes.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import pandas as pd
import torch

from causal_hypotheses import Engine, path_patch_sweep
from causal_hypotheses.metrics import logit_diff
from causal_hypotheses.smollm2 import load_smollm2
from causal_hypotheses.tasks import ioi


def heads_by(table: pd.DataFrame, k: int, *, largest: bool = False) -> list[tuple[str, float]]:
    """The k heads with the most negative (or, with largest, most positive) value."""
    flat = table.stack().sort_values(ascending=not largest)
    return [(f"a{layer}.h{head}", round(float(value), 3)) for (layer, head), value in flat.iloc[:k].items()]


def sweep(name: str, args, engine, clean, corrupt, receivers, task) -> pd.DataFrame:
    """One path-patching sweep into ``receivers``, cached as ``<out>/<name>.csv``."""
    path = os.path.join(args.out, f"{name}.csv")
    if os.path.exists(path) and not args.force:
        table = pd.read_csv(path, index_col=0)
        table.columns = table.columns.astype(int)
        print(f"{name}: read {path}")
        return table
    with torch.no_grad():
        base = float(logit_diff(engine.run([clean], lambda p: 0, logit_positions=-1).logits, task).mean())

    def metric(logits):
        return logit_diff(logits, task) - base  # change from clean: negative = the path matters

    started = time.perf_counter()
    table = path_patch_sweep(engine, clean, corrupt, receivers, metric, logit_positions=-1, progress=True)
    print(f"{name}: {len(receivers)} receivers, {time.perf_counter() - started:.0f} s")
    table.index.name = "layer"
    table.to_csv(path)
    return table


class Heads:
    """Forward hooks on the HF model's output projections: every head's input to it (z)."""

    def __init__(self, model) -> None:
        self.model, self.z, self.replace = model, {}, {}
        config = model.config
        self.n_heads, self.d_head = config.num_attention_heads, config.hidden_size // config.num_attention_heads

    def __enter__(self):
        self.handles = []
        for layer, block in enumerate(self.model.model.layers):
            self.handles.append(block.self_attn.o_proj.register_forward_pre_hook(self._hook(layer)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self.handles:
            handle.remove()

    def _hook(self, layer: int):
        def hook(module, inputs):
            z = inputs[0].clone()
            for head, value in self.replace.get(layer, {}).items():
                z[..., head * self.d_head:(head + 1) * self.d_head] = value
            self.z[layer] = z
            return (z,)

        return hook


@torch.no_grad()
def direct_effects(model, task, replace: dict) -> pd.DataFrame:
    """Each head's direct effect on the mean logit difference at the last position (layer x head):
    its output through the final RMSNorm's scale (frozen at the run's value) and the unembedding."""
    norm = model.model.norm
    seen = {}
    handle = norm.register_forward_pre_hook(lambda module, inputs: seen.update(stream=inputs[0]))
    try:
        with Heads(model) as heads:
            heads.replace = replace
            with torch.no_grad():
                model(task.clean)
    finally:
        handle.remove()
    final = seen["stream"][:, -1]  # the residual stream the final norm reads: (B, d)
    scale = torch.rsqrt(final.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon)  # (B, 1)
    unembed = model.get_output_embeddings().weight  # (V, d)
    direction = (unembed[task.answer] - unembed[task.distractor]) * norm.weight  # (B, d)
    rows = []
    for layer, block in enumerate(model.model.layers):
        weight = block.self_attn.o_proj.weight  # (d, H * d_head)
        z = heads.z[layer][:, -1]  # (B, H * d_head)
        row = []
        for head in range(heads.n_heads):
            part = slice(head * heads.d_head, (head + 1) * heads.d_head)
            written = z[:, part] @ weight[:, part].T  # (B, d)
            row.append(float(((written * scale) * direction).sum(-1).mean()))
        rows.append(row)
    return pd.DataFrame(rows, index=pd.RangeIndex(len(rows), name="layer"))


def attention_summary(model, task, heads: list[str]) -> pd.DataFrame:
    """Mean attention of each head from the last position (to IO, S1, S2), from S2 (to S1 and to
    S1+1) and from S1+1 (to S1), over the clean prompts; eager attention on the HF model."""
    previous = model.config._attn_implementation
    model.config._attn_implementation = "eager"
    try:
        with torch.no_grad():
            attentions = model(task.clean, output_attentions=True).attentions  # per layer (B, H, T, T)
    finally:
        model.config._attn_implementation = previous
    f = task.features
    rows = torch.arange(task.clean.shape[0])
    io, s1, s2 = f["io_pos"], f["s1_pos"], f["s2_pos"]
    table = []
    for name in heads:
        layer, head = (int(x[1:]) for x in name.split("."))
        a = attentions[layer][:, head]
        table.append({
            "head": name,
            "end->io": float(a[rows, -1, io].mean()), "end->s1": float(a[rows, -1, s1].mean()),
            "end->s2": float(a[rows, -1, s2].mean()),
            "s2->s1": float(a[rows, s2, s1].mean()), "s2->s1+1": float(a[rows, s2, s1 + 1].mean()),
            "s1+1->s1": float(a[rows, s1 + 1, s1].mean()),
        })
    return pd.DataFrame(table).set_index("head").round(3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="circuits/findings/ioi-smollm2")
    parser.add_argument("--force", action="store_true", help="rerun sweeps whose CSV exists")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)

    model, tokenizer = load_smollm2()
    engine = Engine.from_hf(model)
    task = ioi(tokenizer, args.n, seed=args.seed)
    abc = ioi(tokenizer, args.n, seed=args.seed, corruption="abc")
    clean = float(logit_diff(engine.run([task.clean], lambda p: 0, logit_positions=-1).logits, task).mean())
    found = {"n": args.n, "seed": args.seed, "clean_logit_diff": round(clean, 3)}
    print(f"clean logit difference {clean:.3f} over {args.n} prompts")

    # 1. Direct paths to the logits.
    direct = sweep("1-name_movers", args, engine, task.clean, task.corrupt, ["out"], task)
    found["direct"] = heads_by(direct, 8)
    found["negative"] = [h for h in heads_by(direct, 4, largest=True) if h[1] > 0.1]
    movers = [h for h, _ in found["direct"][:4]]
    print("name movers", found["direct"][:4], "negative", found["negative"])

    # 2. Into the name movers' queries.
    s_inh = sweep("2-s_inhibition", args, engine, task.clean, task.corrupt, [f"{h}.q" for h in movers], task)
    found["s_inhibition"] = heads_by(s_inh, 6)
    inhibitors = [h for h, _ in found["s_inhibition"][:2]]

    # 3. Into the S-inhibition heads, one channel at a time.
    channels = {}
    for channel in ("q", "k", "v"):
        table = sweep(f"3-s_inhibition_{channel}", args, engine, task.clean, task.corrupt,
                      [f"{h}.{channel}" for h in inhibitors], task)
        channels[channel] = table
        found[f"into_s_inhibition_{channel}"] = heads_by(table, 6)
    strongest = sorted({h for c in ("q", "k", "v") for h, v in found[f"into_s_inhibition_{c}"] if v < -0.1},
                       key=lambda h: min(dict(found[f"into_s_inhibition_{c}"]).get(h, 0) for c in ("q", "k", "v")))
    found["s_inhibition_inputs"] = strongest
    print("into S-inhibition:", {c: found[f"into_s_inhibition_{c}"][:4] for c in ("q", "k", "v")})

    # 4. Into the keys of the heads feeding S-inhibition, all names replaced.
    if strongest:
        prev = sweep("4-previous_token", args, engine, abc.clean, abc.corrupt, [f"{h}.k" for h in strongest], abc)
        found["previous_token"] = heads_by(prev, 6)

    # 5. Backup name movers: direct effects with the name movers knocked out.
    with torch.no_grad():
        corrupt_heads = Heads(model)
        with corrupt_heads:
            model(task.corrupt)
    replace = {}
    for name in movers:
        layer, head = (int(x[1:]) for x in name.split("."))
        d = corrupt_heads.d_head
        replace.setdefault(layer, {})[head] = corrupt_heads.z[layer][..., head * d:(head + 1) * d]
    before, after = direct_effects(model, task, {}), direct_effects(model, task, replace)
    before.to_csv(os.path.join(args.out, "5-direct_effect_clean.csv"))
    after.to_csv(os.path.join(args.out, "5-direct_effect_movers_knocked_out.csv"))
    rise = after - before
    for name in movers:
        layer, head = (int(x[1:]) for x in name.split("."))
        rise.loc[layer, head] = float("nan")
    found["direct_effect_clean"] = heads_by(before, 6, largest=True)
    found["backup"] = heads_by(rise, 6, largest=True)
    found["direct_effect_total"] = {"clean": round(float(before.values.sum()), 3), "movers_knocked_out": round(float(after.values.sum()), 3)}

    # 6. Attention patterns of every head found.
    named = dict.fromkeys(movers + [h for h, _ in found["negative"]] + inhibitors + strongest
                          + [h for h, v in found.get("previous_token", []) if v < -0.1] + [h for h, v in found["backup"] if v > 0.1])
    patterns = attention_summary(model, task, list(named))
    patterns.to_csv(os.path.join(args.out, "6-attention.csv"))
    print(patterns.to_string())
    with open(os.path.join(args.out, "circuit.json"), "w") as handle:
        json.dump(found, handle, indent=1)
    print(json.dumps(found, indent=1))


if __name__ == "__main__":
    main()
