"""Time of Wang et al.'s circuit criteria on SmolLM2-135M (IOI), the circuit of circuits/test_ioi_smollm2.py.

    PYTHONPATH=. python benchmarks/criteria_speed.py [--n 48] [--k-complete 3] [--k-minimal 1] [--repeats 3] [--threads 1]
                                                     [--profile faithfulness]

Loads the registered ``smollm2`` model and the ``ioi`` task (n prompts, seed 0), then times
``faithfulness``, ``completeness`` (k subsets) and ``minimality`` (k subsets per component)
from causal_hypotheses/interventions/criteria.py on the six heads of the circuit (every other head
mean-ablated at every position: most entries of most values change), each on a fresh engine
(so no run is served from another's cache), ``--repeats`` times.  Prints the medians of CPU
time (``time.process_time``; steady with ``--threads 1`` on a shared machine) and wall time, and
each criterion's value (the numbers must not move between versions).  ``--profile NAME``
prints cProfile's top functions for one run of that criterion instead.  Needs the SmolLM2
package (see causal_hypotheses/smollm2.py).

Measured (issue 13; 1 thread, CPU-time medians of 3, on a 2-core machine under heavy load,
load average ~14, before and after run side by side): faithfulness 8.24 s -> 7.76 s,
completeness (k=3) 27.37 s -> 18.83 s, same values (0.174050, 0.825950); minimality (k=1)
29.49 s after (0.008236), against 40.88 s before measured earlier at a lighter load.
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import time

import torch

import causal_hypotheses
from causal_hypotheses.interventions import criteria

NAME_MOVERS = ["a23.h3", "a29.h1", "a23.h0", "a23.h1"]
S_INHIBITION = ["a20.h0", "a19.h2"]
CIRCUIT = NAME_MOVERS + S_INHIBITION


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=48)
    parser.add_argument("--k-complete", type=int, default=3)
    parser.add_argument("--k-minimal", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--profile", choices=["faithfulness", "completeness", "minimality"], default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from causal_hypotheses.claims.registry import build_task, load_model
    import causal_hypotheses.claims.builtins  # noqa: F401  (registers smollm2 and ioi)
    from causal_hypotheses import Engine

    model = load_model("smollm2")
    task = build_task("ioi", model, args.n, 0)
    calls = {
        "faithfulness": lambda engine: criteria.faithfulness(engine, CIRCUIT, task),
        "completeness": lambda engine: criteria.completeness(engine, CIRCUIT, task, k=args.k_complete),
        "minimality": lambda engine: criteria.minimality(engine, CIRCUIT, task, k=args.k_minimal),
    }

    def fresh():
        return Engine(model.engine.model)

    print(f"{causal_hypotheses.__file__}; SmolLM2-135M, IOI n={args.n} x {task.clean.shape[1]} tokens, "
          f"{torch.get_num_threads()} thread(s)")
    if args.profile:
        engine = fresh()
        profiler = cProfile.Profile()
        profiler.enable()
        calls[args.profile](engine)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        return
    for name, call in calls.items():
        cpu, wall, value = [], [], None
        for _ in range(args.repeats):
            engine = fresh()
            began_wall, began_cpu = time.perf_counter(), time.process_time()
            with torch.no_grad():
                result = call(engine)
            cpu.append(time.process_time() - began_cpu)
            wall.append(time.perf_counter() - began_wall)
            value = result.value
        print(f"{name:13s} cpu median {statistics.median(cpu):7.2f} s  wall median {statistics.median(wall):7.2f} s  "
              f"value {value:.6f}  (cpu runs: {', '.join(f'{c:.2f}' for c in cpu)})")


if __name__ == "__main__":
    main()
