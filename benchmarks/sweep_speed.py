"""Path-patching sweep speed: every head before the receivers, into the query inputs of
two late-layer heads, on a GPT-2-small-shaped random model.

    python benchmarks/sweep_speed.py [--batch 8] [--seq 16] [--receivers a10.h7.q a11.h10.q]

Prints the sweep's wall time against one plain HF forward of the same batch, the
engine's node evaluations and forward passes, and the process's peak memory.
"""
from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch

from causal_hypotheses import Engine, path_patch_sweep, random_gpt2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=16)
    parser.add_argument("--receivers", nargs="+", default=["a10.h7.q", "a11.h10.q"])
    parser.add_argument("--max-tokens", type=int, default=8192)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    model = random_gpt2("small", seed=0)
    engine = Engine.from_hf(model)
    generator = torch.Generator().manual_seed(0)
    clean = torch.randint(0, model.config.vocab_size, (args.batch, args.seq), generator=generator)
    corrupt = torch.randint(0, model.config.vocab_size, (args.batch, args.seq), generator=generator)
    answer, distractor = 100, 200

    def metric(logits):
        return logits[:, -1, answer] - logits[:, -1, distractor]

    def hf():
        with torch.no_grad():
            model(clean)

    hf()
    hf_times = []
    for _ in range(5):
        started = time.perf_counter()
        hf()
        hf_times.append(time.perf_counter() - started)

    evaluations = []
    original_run = engine.run

    def counting_run(*a, **k):
        result = original_run(*a, **k)
        evaluations.append((result.stats.node_evaluations, result.stats.forward_passes))
        return result

    engine.run = counting_run
    sweep_times = []
    for _ in range(args.repeats):
        engine.cache.clear()
        evaluations.clear()
        started = time.perf_counter()
        table = path_patch_sweep(engine, clean, corrupt, args.receivers, metric, logit_positions=-1, max_tokens=args.max_tokens)
        sweep_times.append(time.perf_counter() - started)
    hf_s, sweep_s = statistics.median(hf_times), statistics.median(sweep_times)
    senders = int(table.notna().sum().sum())
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"GPT-2-small shape, batch {args.batch} x {args.seq}, {torch.get_num_threads()} threads, receivers {args.receivers}")
    print(f"HF forward: {hf_s:.3f} s; sweep of {senders} senders: {sweep_s:.3f} s = {sweep_s / hf_s:.1f} HF forwards "
          f"({sweep_s / hf_s / senders:.3f} per sender; two forwards per sender would be {2 * senders})")
    print(f"engine runs: {len(evaluations)}, node evaluations: {sum(e for e, _ in evaluations)}, "
          f"forward passes: {sum(f for _, f in evaluations)}, peak RSS: {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
