"""Engine speed against one plain HF forward, on a GPT-2-small-shaped random model.

    python benchmarks/engine_speed.py [--batch 8] [--seq 32] [--repeats 7]

Prints median wall times (each run from a cold activation cache unless marked warm)
and their ratio to one HF forward of the same batch.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from causal_hypotheses import Engine, random_gpt2
from causal_hypotheses.interventions.compile import activation_patch_functions


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model = random_gpt2("small", seed=0)
    engine = Engine.from_hf(model)
    generator = torch.Generator().manual_seed(0)
    clean = torch.randint(0, model.config.vocab_size, (args.batch, args.seq), generator=generator)
    corrupt = torch.randint(0, model.config.vocab_size, (args.batch, args.seq), generator=generator)

    def hf():
        with torch.no_grad():
            model(clean)

    def all_clean():
        engine.cache.clear()
        engine.run([clean], lambda path: 0)

    which, branch, key = activation_patch_functions([frozenset(["a6.h3"])], args.batch)

    def one_head_cold():
        engine.cache.clear()
        engine.run([clean, corrupt], which, branch, key=key)

    def one_head_warm():
        engine.run([clean, corrupt], which, branch, key=key)

    rows = [("HF forward (clean)", median_seconds(hf, args.repeats))]
    rows.append(("engine, all paths clean (cold cache)", median_seconds(all_clean, args.repeats)))
    rows.append(("engine, head a6.h3 patched (cold cache)", median_seconds(one_head_cold, args.repeats)))
    rows.append(("engine, head a6.h3 patched (warm cache)", median_seconds(one_head_warm, args.repeats)))
    stats = engine.run([clean, corrupt], which, branch, key=key).stats
    base = rows[0][1]
    print(f"GPT-2-small shape, batch {args.batch} x {args.seq} tokens, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"{'experiment':45s} {'median s':>9s} {'x HF':>6s}")
    for name, seconds in rows:
        print(f"{name:45s} {seconds:9.3f} {seconds / base:6.2f}")
    print(f"head patch: {stats.node_evaluations} node evaluations, {stats.gathers} gathers, "
          f"{stats.paths_visited} paths visited, {stats.memo_hits} memo hits")


if __name__ == "__main__":
    main()
