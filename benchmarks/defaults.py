"""Calls as a user writes them (defaults, a fresh engine each) against the same work tuned by hand
(``logit_positions=-1``), on a GPT-2-small-shaped random model.

    PYTHONPATH=. python benchmarks/defaults.py [--batch 8] [--seq 16] [--sender-layers 10] [--repeats 3] [--threads N]

Three experiments, each timed alternately default / tuned, ``--repeats`` times, medians of wall
and CPU time printed with the ratios default / tuned (``--threads 1`` makes CPU time steady on a
shared machine).  Run it with ``PYTHONPATH`` at the checkout to measure (an installed copy
elsewhere would be imported otherwise; the first line names the one measured):

* ``path_patch_sweep``: every head of layers 0..sender-layers-1 into the queries of two
  layer-10 heads, metric a lambda reading the logit difference at the last position; default
  call (no ``logit_positions``: the metric's indexing picks the last position and the answer and
  distractor ids) against ``logit_positions=-1`` (every id at the last position);
* ``patch_effect``: a claim-style path patch measured with the built-in ``logit_diff`` (which
  computes its positions and ids alone); against its own runs made by hand with ``logit_positions=-1``;
* ``scrub``: a claim-style scrub with ``logit_diff``; against its own runs made by hand with
  ``logit_positions=-1``.

Each line also gives the largest difference between the two variants' numbers: the default
must see what the tuned call sees.  Not part of the test run (a few minutes on 2 cores).
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

import causal_hypotheses

from causal_hypotheses import Engine, Hypothesis, path_patch, path_patch_sweep, random_gpt2, scrub
from causal_hypotheses.interventions.effects import patch_effect
from causal_hypotheses.interventions.scrubbing import draw_setups
from causal_hypotheses.metrics import logit_diff
from causal_hypotheses.tasks.base import Task

RECEIVERS = ["a10.h7.q", "a10.h10.q"]
PATCH_SENDERS = ["a9.h9", "a8.h6", "a5.h5"]
HYPOTHESIS = Hypothesis({("a11",): None, ("a10.h7",): None, ("a10.h10.q", "a9"): None}, name="benchmark")


def timed(call) -> tuple[float, float, object]:
    """(wall seconds, CPU seconds of this process, value): on a shared machine the CPU time, with
    one thread, is the steadier of the two."""
    wall, cpu = time.perf_counter(), time.process_time()
    value = call()
    return time.perf_counter() - wall, time.process_time() - cpu, value


def compare(label: str, default, tuned, repeats: int, difference) -> None:
    """Alternate the two variants ``repeats`` times; print medians, the ratios and how far apart their numbers are."""
    times = {"default": ([], []), "tuned": ([], [])}
    values = {}
    for _ in range(repeats):
        for name, call in (("default", default), ("tuned", tuned)):
            wall, cpu, values[name] = timed(call)
            times[name][0].append(wall)
            times[name][1].append(cpu)
    (dw, dc), (tw, tc) = ([statistics.median(t) for t in times[name]] for name in ("default", "tuned"))
    print(f"{label}:\n  wall default {dw:.2f} s, tuned {tw:.2f} s, default/tuned {dw / tw:.2f}; "
          f"CPU default {dc:.2f} s, tuned {tc:.2f} s, default/tuned {dc / tc:.2f}\n"
          f"  max relative difference of the numbers {difference(values['default'], values['tuned']):.1e}; "
          f"wall default {[round(x, 2) for x in times['default'][0]]}, tuned {[round(x, 2) for x in times['tuned'][0]]}",
          flush=True)


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest difference, relative to the largest value (values near zero make elementwise ratios meaningless)."""
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-12))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=16)
    parser.add_argument("--sender-layers", type=int, default=10, help="senders: every head of layers 0..N-1")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--only", choices=["sweep", "effect", "scrub"], nargs="+", default=["sweep", "effect", "scrub"])
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model = random_gpt2("small", seed=0)
    generator = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    clean = torch.randint(0, vocab, (args.batch, args.seq), generator=generator)
    corrupt = torch.randint(0, vocab, (args.batch, args.seq), generator=generator)
    answer = torch.randint(0, vocab, (args.batch,), generator=generator)
    distractor = torch.randint(0, vocab, (args.batch,), generator=generator)
    task = Task("ioi-like", clean, corrupt, answer=answer, distractor=distractor, position=-1)
    rows = torch.arange(args.batch)
    print(f"GPT-2-small shape (random weights), batch {args.batch} x {args.seq}, {torch.get_num_threads()} threads, "
          f"causal_hypotheses from {os.path.dirname(causal_hypotheses.__file__)}", flush=True)

    if "sweep" in args.only:
        senders = [f"a{layer}.h{head}" for layer in range(args.sender_layers) for head in range(12)]

        def metric(logits):
            return logits[rows, -1, answer] - logits[rows, -1, distractor]

        def sweep(**options):
            return lambda: torch.tensor(path_patch_sweep(Engine.from_hf(model), clean, corrupt, RECEIVERS, metric,
                                                         senders=senders, **options).values)

        compare(f"path_patch_sweep, {len(senders)} senders -> {RECEIVERS}", sweep(), sweep(logit_positions=-1),
                args.repeats, lambda a, b: relative(a[b.isfinite()], b[b.isfinite()]))

    if "effect" in args.only:
        def effect_default():
            result = patch_effect(Engine.from_hf(model), task, "logit_diff", kind="path_patch",
                                  senders=PATCH_SENDERS, receivers=RECEIVERS)
            return torch.tensor(result.per_example[["clean", "ablated", "scrubbed"]].values)

        def effect_tuned():
            engine = Engine.from_hf(model)
            runs = [engine.run([corrupt], lambda path: 0, logit_positions=-1).logits,  # target (noising)
                    engine.run([clean], lambda path: 0, logit_positions=-1).logits,  # base
                    path_patch(engine, clean, corrupt, PATCH_SENDERS, RECEIVERS, logit_positions=-1)]
            target, base, patched = (logit_diff(logits.float(), task).double() for logits in runs)
            return torch.stack([target, base, patched], 1)

        compare(f"patch_effect(logit_diff), {PATCH_SENDERS} -> {RECEIVERS}", effect_default, effect_tuned,
                args.repeats, relative)

    if "scrub" in args.only:
        def scrub_default():
            result = scrub(Engine.from_hf(model), HYPOTHESIS, task, "logit_diff", seed=0)
            return torch.tensor(result.per_example[["clean", "ablated", "scrubbed"]].values)

        def scrub_tuned():
            engine = Engine.from_hf(model)
            clean_values = logit_diff(engine.run([clean], lambda path: 0, logit_positions=-1).logits.float(), task)
            setups = draw_setups(HYPOTHESIS, task, "resample", "independent", 0, 1, torch.Generator().manual_seed(0))
            for _, inputs, functions in setups:
                values = []
                for paths in (HYPOTHESIS.paths, {}):
                    which, branch, key = functions(paths)
                    run = engine.run(inputs, which, branch, key=key, logit_positions=-1)
                    values.append(logit_diff(run.logits.float(), task))
            return torch.stack([clean_values, values[1], values[0]], 1).double()

        compare(f"scrub(logit_diff), {HYPOTHESIS.name}", scrub_default, scrub_tuned, args.repeats, relative)


if __name__ == "__main__":
    main()
