"""Sweeps against the floor: time, HF-forward equivalents and the engine's work counters.

    PYTHONPATH=. python benchmarks/floor_speed.py [--batch 8] [--seq 16] [--threads 1]
        [--compare DIR:MODULE ...]

Two sweeps on a GPT-2-small-shaped random model, both with ``logit_positions=-1``:
path patching every head of layers 0-10 into the queries of a10.h7 and a11.h10 (as
benchmarks/sweep_speed.py), and activation patching every head at the last position.
Each is timed (wall and CPU, medians over repeats) against one plain HF forward of the
batch measured in the same process; ``--compare`` adds other copies of the package (a
directory holding it, and its module name, e.g. /tmp/old:ch_old), run alternately with this
one so that both see the same machine load.  Counters (RunStats.rows, flops, floor_flops)
are summed over a sweep's engine runs where the package reports them.
"""
from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import time

import torch


def _timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compare", nargs="*", default=[], help="DIR:MODULE of other copies of the package")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import causal_hypotheses

    packages = [("this", causal_hypotheses)]
    for spec in args.compare:
        directory, name = spec.split(":")
        sys.path.insert(0, directory)
        packages.append((name, importlib.import_module(name)))
    print("this package:", causal_hypotheses.__file__)

    model = causal_hypotheses.random_gpt2("small", seed=0)
    generator = torch.Generator().manual_seed(0)
    clean = torch.randint(0, model.config.vocab_size, (args.batch, args.seq), generator=generator)
    corrupt = torch.randint(0, model.config.vocab_size, (args.batch, args.seq), generator=generator)
    answer, distractor = 100, 200

    def metric(logits):
        return logits[:, 0, answer] - logits[:, 0, distractor]

    def hf():
        with torch.no_grad():
            model(clean)

    sweeps = {}
    for label, package in packages:
        # the package's own Engine: its lazy top-level names point at "causal_hypotheses" itself
        engine = importlib.import_module(package.__name__ + ".engine.core").Engine.from_hf(model)
        patching = importlib.import_module(package.__name__ + ".interventions.patching")
        runs = []
        original = engine.run

        def counting(*a, _original=original, _runs=runs, **k):
            result = _original(*a, **k)
            _runs.append(result.stats)
            return result

        engine.run = counting
        sweeps[(label, "path")] = (engine, runs, lambda e=engine, p=patching: p.path_patch_sweep(
            e, clean, corrupt, ["a10.h7.q", "a11.h10.q"], metric, logit_positions=-1))
        sweeps[(label, "activation")] = (engine, runs, lambda e=engine, p=patching: p.activation_patch_sweep(
            e, clean, corrupt, metric, positions=[-1], logit_positions=-1))

    hf()
    times: dict = {key: [] for key in sweeps}
    hf_times = []
    tables = {}
    counters = {}
    for _ in range(args.repeats):
        for _ in range(3):
            hf_times.append(_timed(hf)[1:])
        for key, (engine, runs, sweep) in sweeps.items():  # alternating variants
            engine.cache.clear()
            runs.clear()
            tables[key], wall, cpu = _timed(sweep)
            times[key].append((wall, cpu))
            counters[key] = list(runs)
    hf_wall = statistics.median(w for w, _ in hf_times)
    hf_cpu = statistics.median(c for _, c in hf_times)
    print(f"GPT-2-small shape, batch {args.batch} x {args.seq}, {torch.get_num_threads()} threads; "
          f"HF forward {hf_wall * 1e3:.1f} ms wall, {hf_cpu * 1e3:.1f} ms CPU")
    forward_flops = None
    for key, samples in times.items():
        wall = statistics.median(w for w, _ in samples)
        cpu = statistics.median(c for _, c in samples)
        stats = counters[key]
        line = (f"{key[0]:>8} {key[1]:>10}: {wall:.3f} s wall ({wall / hf_wall:.1f} HF forwards), "
                f"{cpu:.3f} s CPU ({cpu / hf_cpu:.1f}); {len(stats)} runs")
        if stats and hasattr(stats[0], "flops"):
            from causal_hypotheses.engine.flops import forward_flops as count_forward

            forward_flops = forward_flops or count_forward(sweeps[key][0].adapter, args.batch, args.seq)
            flops = sum(s.flops for s in stats)
            floor = sum(s.floor_flops for s in stats)
            rows: dict = {}
            for s in stats:
                for kind, n in s.rows.items():
                    rows[kind] = rows.get(kind, 0) + n
            line += (f"; {flops / 1e9:.2f} GFLOP = {flops / forward_flops:.1f} forwards, floor {floor / 1e9:.2f} GFLOP"
                     f" = {floor / forward_flops:.1f} forwards; rows {rows}")
        print(line)
    for kind in ("path", "activation"):
        values = [tables[(label, kind)] for label, _ in packages]
        for other in values[1:]:
            diff = (values[0] - other).abs().max().max()
            print(f"{kind}: max |difference| against another package {diff:.2e}")


if __name__ == "__main__":
    main()
