"""Find the IOI circuit in SmolLM2-135M with the project's own path-patching sweeps.

    python scripts/find_ioi_circuit.py [--n 24] [--top 4] [--out reports/ioi-smollm2]

Following Wang et al. (2022), on ABC-corrupted IOI prompts, metric = logit difference
(indirect object minus subject) at the last position:

1. every head -> the logits directly: heads whose direct path moves the answer
   ("name movers": patching them lowers the logit difference most);
2. every earlier head -> the name movers' queries: heads that tell them where to look
   ("S-inhibition");
3. every earlier head -> the S-inhibition heads' values: heads that detect the repeated
   name ("induction / duplicate-token").

Each step keeps the ``--top`` heads with the largest drop.  Writes one CSV (layer x head)
per sweep and ``circuit.json`` with the heads found.
"""
from __future__ import annotations

import argparse
import json
import os
import time

from causal_hypotheses import Engine, path_patch_sweep
from causal_hypotheses.metrics import logit_diff
from causal_hypotheses.smollm2 import load_smollm2
from causal_hypotheses.tasks import ioi


def top_heads(table, k: int) -> list[str]:
    """The k heads whose patch lowers the metric most (most negative change)."""
    flat = table.stack().sort_values()
    return [f"a{layer}.h{head}" for (layer, head) in flat.index[:k]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--top", type=int, default=4)
    parser.add_argument("--out", default="reports/ioi-smollm2")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)

    model, tokenizer = load_smollm2()
    engine = Engine.from_hf(model)
    task = ioi(tokenizer, args.n, seed=args.seed)
    clean = float(logit_diff(engine.run([task.clean], lambda p: 0, logit_positions=-1).logits, task).mean())
    print(f"clean logit difference {clean:.3f} over {args.n} prompts")

    def metric(logits):
        return logit_diff(logits, task) - clean  # change from clean: negative = the head matters

    found = {}
    receivers = ["out"]
    for step, (name, channel) in enumerate([("name_movers", None), ("s_inhibition", "q"), ("induction", "v")]):
        started = time.perf_counter()
        if channel is not None:
            receivers = [f"{head}.{channel}" for head in found[list(found)[-1]]]
        table = path_patch_sweep(engine, task.clean, task.corrupt, receivers, metric, logit_positions=-1, progress=True)
        table.to_csv(os.path.join(args.out, f"{step + 1}-{name}.csv"))
        found[name] = top_heads(table, args.top)
        print(f"{name}: {found[name]} (sweep into {receivers}: {time.perf_counter() - started:.0f} s)")
        print(table.stack().sort_values().head(args.top * 2).round(3).to_string())
    with open(os.path.join(args.out, "circuit.json"), "w") as handle:
        json.dump({"clean_logit_diff": clean, "n": args.n, "seed": args.seed, **found}, handle, indent=2)


if __name__ == "__main__":
    main()
