"""causal_hypotheses on the peer benchmark's experiments (same fixture, metric and JSON).

    python benchmarks/peers/ours_bench.py MODEL_DIR --experiment act_patch_heads|path_patch_q|scrub [--method default|tuned]

Every timed call starts from an empty activation cache, as the peers start from nothing.
``--method default`` makes the call exactly as a user writes it (no ``logit_positions``: the
sweep's logits are computed when the metric indexes them); ``tuned`` adds ``logit_positions=-1``
(only the last position is unembedded). The scrub has one call: its built-in metric already
unembeds only the positions it reads.
"""
from __future__ import annotations

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

from causal_hypotheses import Engine, Hypothesis, activation_patch_sweep, path_patch_sweep, scrub  # noqa: E402
from causal_hypotheses.tasks import Task  # noqa: E402

TOOL = "causal_hypotheses"
_METHODS = {"default": "the call as a user writes it, without logit_positions",
            "tuned": "with logit_positions=-1, the positions the metric reads"}
METHODS = {"act_patch_heads": _METHODS, "path_patch_q": _METHODS}

# The scrubbing experiment: a multi-head hypothesis (the two receivers' direct paths, with
# their query inputs only through four earlier heads) on the fixture's clean prompts.
SCRUB_HYPOTHESIS = Hypothesis(
    {("a10.h7.k",): None, ("a10.h7.v",): None, ("a11.h10.k",): None, ("a11.h10.v",): None,
     **{(f"{receiver}.q", sender): None for receiver in ("a10.h7", "a11.h10") for sender in ("a5.h1", "a7.h3", "a8.h6", "a9.h9")}},
    name="two heads, queries via four",
)


def main() -> None:
    args, method = common.start(__doc__, TOOL, METHODS)
    tuning = {"logit_positions": -1} if method == "tuned" else {}
    batch = common.load_batch(args.model_dir)
    clean, corrupt, answer, distractor = batch["clean"], batch["corrupt"], batch["answer"], batch["distractor"]
    engine = Engine.from_hf(common.load_hf(args.model_dir))

    def metric(logits):
        return common.logit_diff(logits, answer, distractor)

    if args.experiment == "act_patch_heads":
        def experiment():
            engine.cache.clear()
            return activation_patch_sweep(engine, clean, corrupt, metric, positions=-1, **tuning)
    elif args.experiment == "path_patch_q":
        senders = [f"a{l}.h{h}" for l in common.SENDER_LAYERS for h in range(12)]
        receivers = [f"a{l}.h{h}.q" for l, h in common.RECEIVERS]

        def experiment():
            engine.cache.clear()
            return path_patch_sweep(engine, clean, corrupt, receivers, metric, senders=senders, **tuning)
    else:
        task = Task("fixture", clean, corrupt, answer=answer, distractor=distractor, features={"example": torch.arange(len(clean))})

        def experiment():
            engine.cache.clear()
            return scrub(engine, SCRUB_HYPOTHESIS, task, "logit_diff", seed=0)

    result, seconds, times, memory = common.measure(experiment, args.repeats)
    if args.experiment == "scrub":
        values = [result.clean, result.ablated, result.scrubbed, result.fraction_recovered]
    else:
        values = torch.tensor(result.to_numpy()).reshape(-1, 12)
        if args.experiment == "path_patch_q":
            values = values[: len(common.SENDER_LAYERS)]
    common.emit(TOOL, args.experiment, values, seconds, times, memory, args.repeats, method=method or "-")


if __name__ == "__main__":
    main()
