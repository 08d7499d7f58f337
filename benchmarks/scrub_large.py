"""CPU time of causal scrubbing a large hypothesis: the 671 paths found for IOI on SmolLM2-135M.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/scrub_large.py [--n 16] [--draws 1] [--paths 671] [--profile]

Loads the registered ``smollm2`` model, builds the ``ioi`` task (n prompts, task seed 1) and
scrubs it under the hypothesis of ``circuits/test_ioi_found_default.py``
(its first ``--paths`` paths, each reading the example itself) with independent resampling
(Chan et al.: every input the hypothesis leaves out reads its own sample), metric the logit
difference, seed 0.  Each draw is two engine runs (scrubbed and ablated) besides the one
clean run.  Prints one JSON line: the result (fraction recovered, scrubbed, ablated), the
engine's node evaluations, and the scrub's CPU seconds of this process (``process_time``; run
with one thread on a shared machine and state its load) and wall seconds; ``--profile`` also
prints a cProfile of the scrub, sorted by cumulative time.

The real claim runs n=96 with draws=2.  Measured (issue 13; one thread, 2-core machine shared
with other jobs, load average 1.2-2.3; old and new code run back to back; same results every
time: n=16 fraction recovered 0.6236108736943136, scrubbed 2.924397587776184; n=96 with two draws
0.6802611764192119, scrubbed 3.4357107812538743; node evaluations 1,896 and 3,792):

    n=16, one draw    33.6, 30.4, 24.3, 28.5 CPU s before; 19.6 and 18.5 with every change
                      (planning 8.4 -> 2.6 CPU s; cProfile: 22.1 M calls -> 4.2 M)
    n=96, two draws   197.8 CPU s before, 177.2 after

At n=16 the walk of the correspondence from the output for every path (resolve: 10 s under
cProfile) and the per-delta bookkeeping dominated; both are gone.  What is left at n=96 is
data movement: the scrubbed run's residual streams sum about 22,000 deltas (one per writer that
reads its own sample), each two (n * T, D) gathers, a subtraction and an addition, plus the
recomputed MLPs and head outputs (matmuls); the plan's arithmetic fixes those bytes and FLOPs.
"""
from __future__ import annotations

import argparse
import cProfile
import importlib.util
import json
import os
import pstats
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FOUND = os.path.join(ROOT, "circuits", "test_ioi_found_default.py")


def found_paths() -> list[tuple]:
    """The PATHS of the found IOI circuit's claims module (imported without pytest collecting it)."""
    spec = importlib.util.spec_from_file_location("ioi_found", FOUND)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.PATHS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=16, help="IOI prompts")
    parser.add_argument("--draws", type=int, default=1, help="resampling draws")
    parser.add_argument("--paths", type=int, default=671, help="the first this many paths of the found circuit")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the scrub")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from causal_hypotheses import Hypothesis, scrub
    from causal_hypotheses.claims import build_task, load_model

    paths = found_paths()[: args.paths]
    loaded = load_model("smollm2")
    task = build_task("ioi", loaded, args.n, 1)
    hypothesis = Hypothesis({path: None for path in paths}, name="found")
    profile = cProfile.Profile() if args.profile else None
    cpu, wall = time.process_time(), time.perf_counter()
    if profile:
        profile.enable()
    result = scrub(loaded.engine, hypothesis, task, metric="logit_diff", draws=args.draws, seed=0)
    if profile:
        profile.disable()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(json.dumps({
        "n": args.n, "draws": args.draws, "paths": len(paths), "threads": torch.get_num_threads(),
        "fraction_recovered": result.fraction_recovered, "scrubbed": result.scrubbed, "ablated": result.ablated,
        "node_evaluations": result.node_evaluations, "cache_hits": result.cache_hits,
        "cpu_seconds": round(cpu, 2), "wall_seconds": round(wall, 2), "load_average": round(os.getloadavg()[0], 2),
    }), flush=True)
    if profile:
        pstats.Stats(profile).sort_stats(os.environ.get("SORT", "cumulative")).print_stats(40)


if __name__ == "__main__":
    main()
