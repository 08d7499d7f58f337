"""Causal scrubbing: Chan et al.'s independent resampling against the shared approximation.

    python benchmarks/scrub_modes.py [--models induction-2l smollm2] [--threads 2]

For the hypotheses of ``circuits/test_induction.py`` and ``circuits/test_ioi_smollm2.py``, with the
claims' own settings (n, seed, draws), prints for each resampling mode the fraction recovered
with its interval, the ablated metric, the engine's node evaluations and the wall time.  The
first SmolLM2 load converts its weights once (about 80 s).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def claims_module(name: str):
    """Import circuits/<name>.py without pytest collecting it."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "circuits", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def hypotheses(model: str):
    from causal_hypotheses import Hypothesis

    if model == "induction-2l":
        m = claims_module("test_induction")
        from causal_hypotheses.trained import INDUCTION_KEY_READS, INDUCTION_QUERY_READS

        settings = dict(task="induction", metric="loss", n=64, seed=0, draws=2)
        return settings, [
            m.circuit(["embed", *INDUCTION_QUERY_READS], INDUCTION_KEY_READS, ["embed"], name="induction (Q- and K-composition)"),
            m.circuit(["embed"], ["embed"], ["embed"], name="no composition"),
            m.circuit(["embed", *INDUCTION_KEY_READS], ["embed", *INDUCTION_QUERY_READS], ["embed"], name="roles swapped"),
            m.circuit(["embed"] + m.OTHER_LAYER0[:1], m.OTHER_LAYER0, ["embed"], name="other layer-0 heads"),
        ]
    m = claims_module("test_ioi_smollm2")
    import random

    settings = dict(task="ioi", metric="logit_diff", n=48, seed=0, draws=2)
    refined = {}
    for head in m.NAME_MOVERS:
        refined[(f"{head}.k",)] = None
        refined[(f"{head}.v",)] = None
        for sender in m.S_INHIBITION:
            refined[(f"{head}.q", sender)] = None
    outside = [f"a{l}.h{h}" for l in range(30) for h in range(9) if l not in (19, 20, 22, 23, 29)]
    randoms = random.Random(0).sample(outside, len(m.NAME_MOVERS))
    return settings, [
        Hypothesis({(head,): None for head in m.NAME_MOVERS}, name="name movers"),
        Hypothesis(refined, name="name movers, queries via S-inhibition"),
        Hypothesis({(head,): None for head in randoms}, name="four random heads"),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["induction-2l", "smollm2"])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sys.path.insert(0, ROOT)
    from causal_hypotheses import scrub
    from causal_hypotheses.claims import build_task, load_model

    for name in args.models:
        loaded = load_model(name)
        settings, cases = hypotheses(name)
        task = build_task(settings["task"], loaded, settings["n"], settings["seed"])
        print(f"\n{name}: {settings}")
        print(f"{'hypothesis':40s} {'resampling':12s} {'recovered [95% CI]':26s} {'ablated':>8s} {'nodes':>6s} {'time':>7s}")
        for hypothesis in cases:
            for mode in ("shared", "independent"):
                started = time.perf_counter()
                result = scrub(loaded.engine, hypothesis, task, settings["metric"], seed=settings["seed"],
                               draws=settings["draws"], resampling=mode)
                seconds = time.perf_counter() - started
                interval = f"{result.fraction_recovered:.3f} [{result.ci[0]:.3f}, {result.ci[1]:.3f}]"
                print(f"{hypothesis.name:40s} {mode:12s} {interval:26s} {result.ablated:8.3f} "
                      f"{result.node_evaluations:6d} {seconds:6.2f}s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
