"""Defaults compute only the logits a metric reads, and the metric sees what it saw when every
position was unembedded.  The reference for each built-in metric is the same call with the metric
behind a function of one's own, which the library cannot see into: every position is unembedded."""
from __future__ import annotations

import pytest
import torch

from causal_hypotheses import Engine, Hypothesis, scrub
from causal_hypotheses.interventions.effects import patch_effect
from causal_hypotheses.metrics import METRICS, metric_positions
from causal_hypotheses.tasks import Task, induction

INDUCTION = induction(16, half_len=6, vocab_size=512, seed=0)  # T = 12; loss reads positions 6..10
SEQ = 9


def prediction_task() -> Task:
    """IOI-like: answer and distractor at position 5 of 9 (not the last, so re-indexing shows)."""
    generator = torch.Generator().manual_seed(7)
    clean, corrupt = torch.randint(0, 512, (2, 16, SEQ), generator=generator)
    answer, distractor = torch.randint(0, 512, (2, 16), generator=generator)
    return Task("prediction", clean, corrupt, answer=answer, distractor=distractor, position=5)


PREDICTION = prediction_task()
CASES = [  # metric, task, positions it reads
    ("loss", INDUCTION, list(range(6, 11))),
    ("logit_diff", PREDICTION, [5]),
    ("kl", PREDICTION, [5]),
    ("accuracy", PREDICTION, [5]),
    ("loss", PREDICTION, [5]),  # no targets: the answer at the position
]
IDS = [f"{metric}-{task.name}" for metric, task, _ in CASES]


def spied(model):
    """A fresh engine and the list of the positions each of its runs unembedded."""
    engine = Engine.from_hf(model)
    widths: list[int] = []
    run = engine.run

    def recording(*args, **kwargs):
        result = run(*args, **kwargs)
        widths.append(result.hidden_states.shape[1])
        return result

    engine.run = recording
    return engine, widths


def opaque(name: str):
    builtin = METRICS[name]
    return lambda logits, task, clean_logits=None: builtin(logits, task, clean_logits)


def assert_same_values(fast, slow) -> None:
    for column in ("clean", "ablated", "scrubbed"):
        torch.testing.assert_close(torch.tensor(fast.per_example[column].values), torch.tensor(slow.per_example[column].values),
                                   rtol=1e-6, atol=1e-6)
    for mean in ("clean", "ablated", "scrubbed"):  # (the fraction divides by their difference: it may amplify 1e-7)
        assert getattr(fast, mean) == pytest.approx(getattr(slow, mean), rel=1e-6, abs=1e-6)


@pytest.mark.parametrize("metric,task,read", CASES, ids=IDS)
def test_metric_positions_name_what_the_metric_reads(metric, task, read):
    positions, reindexed = metric_positions(metric, task)
    assert positions == read
    assert metric_positions(METRICS[metric], task)[0] == read  # the function itself, not only its name
    assert metric_positions(opaque(metric), task) == (None, task)


@pytest.mark.parametrize("metric,task,read", CASES, ids=IDS)
def test_scrub_unembeds_what_the_metric_reads_and_sees_the_same_values(tiny_model, metric, task, read):
    hypothesis = Hypothesis({("a1.h0",): None, ("a1.h2.k", "a0.h1"): None}, name="some paths")
    engine, widths = spied(tiny_model)
    fast = scrub(engine, hypothesis, task, metric, seed=0, draws=2)
    reference, every = spied(tiny_model)
    slow = scrub(reference, hypothesis, task, opaque(metric), seed=0, draws=2)
    assert set(widths) == {len(read)} and set(every) == {task.clean.shape[1]}
    assert_same_values(fast, slow)


@pytest.mark.parametrize("metric,task,read", CASES, ids=IDS)
def test_patch_effect_unembeds_what_the_metric_reads_and_sees_the_same_values(tiny_model, metric, task, read):
    for options in (dict(kind="path_patch", senders=["a0.h1", "a0.h3"], receivers=["a1.h0.q", "a1.h2.v"]),
                    dict(kind="activation_patch", nodes=["a1.h2", "m0"], direction="denoising")):
        engine, widths = spied(tiny_model)
        fast = patch_effect(engine, task, metric, **options)
        reference, every = spied(tiny_model)
        slow = patch_effect(reference, task, opaque(metric), **options)
        assert set(widths) == {len(read)} and set(every) == {task.clean.shape[1]}
        assert_same_values(fast, slow)
