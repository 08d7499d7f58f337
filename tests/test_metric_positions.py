"""Defaults compute only the logits a metric reads, and the metric sees what it saw when every
position was unembedded.  The reference for each built-in metric is the same call with the metric
behind a function of one's own, which the library cannot see into: every position is unembedded."""
from __future__ import annotations

import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from causal_hypotheses import Engine, Hypothesis, activation_patch_sweep, path_patch_sweep, scrub
from causal_hypotheses.engine.lazy import PARTIAL_RUNS, Deferred
from causal_hypotheses.interventions.effects import patch_effect
from causal_hypotheses.metrics import METRICS, logit_diff, metric_positions
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


def test_sweep_with_a_metric_of_ones_own_computes_the_positions_it_indexes(tiny_model):
    task = PREDICTION
    rows = torch.arange(len(task))

    def reading(position: int):
        return lambda logits: logits[rows, position, task.answer] - logits[:, position][rows, task.distractor]

    metric = reading(5)
    engine, widths = spied(tiny_model)
    fast = path_patch_sweep(engine, task.clean, task.corrupt, ["a1.h0.q"], metric, chunk_size=3)
    assert widths == [1, 1]  # 4 senders in runs of 3: each run unembedded position 5 alone
    reference, every = spied(tiny_model)
    with pytest.warns(UserWarning, match="logit_positions=-1"):  # .clone() is no indexing: every position
        slow = path_patch_sweep(reference, task.clean, task.corrupt, ["a1.h0.q"], lambda logits: metric(logits.clone()),
                                chunk_size=3)
    assert every == [SEQ, SEQ]
    tuned = path_patch_sweep(Engine.from_hf(tiny_model), task.clean, task.corrupt, ["a1.h0.q"], reading(0),
                             chunk_size=3, logit_positions=5)  # the logits (B, 1, V) at position 5
    torch.testing.assert_close(torch.tensor(fast.values), torch.tensor(slow.values), rtol=1e-6, atol=1e-6, equal_nan=True)
    torch.testing.assert_close(torch.tensor(fast.values), torch.tensor(tuned.values), rtol=1e-6, atol=1e-6, equal_nan=True)
    assert int(fast.notna().sum().sum()) == 4


def test_sweep_with_a_builtin_metric_in_a_lambda_reads_its_position(tiny_model):
    task = PREDICTION
    engine, widths = spied(tiny_model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # reading one position is no reason to warn
        fast = activation_patch_sweep(engine, task.clean, task.corrupt, lambda logits: logit_diff(logits, task),
                                      ["a0.h1", "a1.h3", "m1"])
    assert widths == [1]
    reference, every = spied(tiny_model)
    with pytest.warns(UserWarning):
        slow = activation_patch_sweep(reference, task.clean, task.corrupt, lambda logits: logit_diff(logits * 1, task),
                                      ["a0.h1", "a1.h3", "m1"])
    assert every == [SEQ]
    torch.testing.assert_close(torch.tensor(fast.values), torch.tensor(slow.values), rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------- LazyLogits itself

N, T, V = 6, 5, 7
FULL = torch.randn(N, T, V, generator=torch.Generator().manual_seed(0))


def cut(positions, columns) -> torch.Tensor:
    """FULL at ``positions`` and ``columns`` (None: all)."""
    values = FULL if positions is None else FULL[:, list(positions)]
    return (values if columns is None else values[:, :, list(columns)]).clone()


def deferred(columns_asked: list | None = None):
    """A Deferred over FULL and the positions each of its runs was asked for; ``columns_asked``,
    when given, receives the columns of each run and of each later unembedding of more columns
    (("run", columns) and ("more", columns))."""
    asked = []
    columns_asked = [] if columns_asked is None else columns_asked

    def run(positions, columns):
        asked.append(positions)
        columns_asked.append(("run", columns))
        return SimpleNamespace(logits=cut(positions, columns), positions=positions)

    def more_columns(result, columns):
        columns_asked.append(("more", columns))
        return cut(result.positions, columns)

    return Deferred(run, more_columns, (N, T, V), FULL.dtype, FULL.device), asked


A3 = torch.arange(3)
INDICES = [  # index, positions run (None: all)
    ((slice(None), -1), (4,)),
    ((slice(None), -1, 3), (4,)),
    ((Ellipsis, -1, slice(None)), (4,)),
    ((slice(None), torch.tensor(2)), (2,)),
    ((A3, -1, torch.tensor([1, 2, 3])), (4,)),
    ((slice(None), np.int64(-2)), (3,)),
    ((slice(None), slice(1, 3)), (1, 2)),
    ((slice(None), slice(None, None, 2), 4), (0, 2, 4)),
    ((slice(None), slice(-2, None)), (3, 4)),
    ((slice(1, 3), 3, slice(2, 5)), (3,)),
    ((torch.tensor([0, 1]), slice(1, 4), torch.tensor([0, 1])), (1, 2, 3)),
    ((slice(None), [4, 1, 4]), (1, 4)),
    ((A3, [0, 4, 0], torch.tensor([1, 2, 3])), (0, 4)),
    ((slice(None), torch.tensor([[4], [1]]), torch.tensor([0, 2])), (1, 4)),
    ((0,), None),
    (0, None),
    ((slice(None), slice(None)), None),
    ((Ellipsis, 2), None),
    ((Ellipsis, 1, Ellipsis), None),
    ((None, slice(None), -1), None),
    ((slice(None), True), None),
    ((slice(None), torch.tensor([True, False, True, False, True])), None),
    pytest.param((slice(None), torch.tensor([1, 0, 1, 0, 1], dtype=torch.uint8)), None,  # torch reads uint8 as a mask
                 marks=pytest.mark.filterwarnings("ignore:indexing with dtype torch.uint8")),
    ((slice(None), np.array([1, 3])), None),
]


@pytest.mark.parametrize("index,runs", INDICES, ids=[str(i) for i in range(len(INDICES))])
def test_lazy_logits_index_as_torch_does_running_only_the_positions_read(index, runs):
    source, asked = deferred()
    block = source.blocks(2)[1]  # rows 3..5
    torch.testing.assert_close(block[index], FULL[3:][index], rtol=0, atol=0)
    assert asked == [runs]


COLUMN_INDICES = [  # index, (positions, columns) of the one run (None: all)
    ((slice(None), -1, 3), ((4,), (3,))),
    ((A3, -1, torch.tensor([1, 2, 3])), ((4,), (1, 2, 3))),
    ((A3, torch.tensor(-1), torch.tensor([[6], [-1]])), ((4,), (6,))),
    ((Ellipsis, 2), (None, (2,))),
    ((slice(1, 3), 3, slice(2, 5)), ((3,), (2, 3, 4))),
    ((slice(None), slice(None), [6, 0, 6]), (None, (0, 6))),
    ((slice(None), -1, slice(None)), ((4,), None)),
    ((slice(None), np.array([1, 3]), 2), (None, (2,))),  # positions this does not follow: every one
    ((torch.tensor([0, 1]), slice(1, 4), torch.tensor([0, 1])), ((1, 2, 3), (0, 1))),
    ((slice(None), -1, torch.tensor([V])), ((4,), None)),  # out of range: torch raises, below
]


@pytest.mark.parametrize("index,run", COLUMN_INDICES, ids=[str(i) for i in range(len(COLUMN_INDICES))])
def test_lazy_logits_compute_only_the_vocabulary_ids_indexed(index, run):
    columns = []
    source, asked = deferred(columns)
    block = source.blocks(2)[1]
    if run[1] is None and isinstance(index[2], torch.Tensor):
        with pytest.raises(IndexError):
            block[index]
    else:
        torch.testing.assert_close(block[index], FULL[3:][index], rtol=0, atol=0)
    assert list(zip(asked, [c for kind, c in columns if kind == "run"])) == [run]


def test_lazy_logits_unembed_ids_read_later_from_the_run_made():
    columns = []
    source, asked = deferred(columns)
    first, second = source.blocks(2)
    torch.testing.assert_close(first[:, -1, 3], FULL[:3, -1, 3], rtol=0, atol=0)
    torch.testing.assert_close(first[:, -1, [5, 3]], FULL[:3, -1, [5, 3]], rtol=0, atol=0)  # 5 from the same run
    torch.testing.assert_close(second[A3, -1, torch.tensor([3, 5, 3])], FULL[3:][A3, -1, torch.tensor([3, 5, 3])], rtol=0, atol=0)
    assert asked == [(4,)] and columns == [("run", (3,)), ("more", (5,))]
    torch.testing.assert_close(second[:, -1], FULL[3:, -1], rtol=0, atol=0)  # every id: from the same run again
    assert asked == [(4,)] and columns[-1] == ("more", None)
    torch.testing.assert_close(first[:, 1:3, 0], FULL[:3, 1:3, 0], rtol=0, atol=0)  # other positions: a new run
    assert asked == [(4,), (1, 2)] and columns[-1] == ("run", (0,))


def test_lazy_logits_know_their_shape_without_running_and_compute_all_on_other_uses():
    source, asked = deferred()
    lazy = source.blocks(1)[0]
    assert isinstance(lazy, torch.Tensor)
    assert (lazy.shape, lazy.dtype, lazy.ndim, lazy.dim(), lazy.size(1), len(lazy), lazy.numel()) == \
           (FULL.shape, FULL.dtype, 3, 3, T, N, N * T * V)
    assert asked == []
    torch.testing.assert_close(torch.log_softmax(lazy, -1), torch.log_softmax(FULL, -1), rtol=0, atol=0)
    torch.testing.assert_close(lazy.float()[:, -1] * 2, FULL[:, -1] * 2, rtol=0, atol=0)
    torch.testing.assert_close(torch.cat([lazy, lazy[:, :2]], 1), torch.cat([FULL, FULL[:, :2]], 1), rtol=0, atol=0)
    assert type(lazy[:, -1]) is torch.Tensor and asked == [None]  # once computed, every read is served from it


def test_lazy_logits_bound_the_runs_and_raise_as_torch_does():
    source, asked = deferred()
    lazy = source.blocks(1)[0]
    values = [lazy[:, t, 0] for t in range(T)]  # position after position: PARTIAL_RUNS runs, then one of all
    torch.testing.assert_close(torch.stack(values, 1), FULL[:, :, 0], rtol=0, atol=0)
    assert asked == [(0,), (1,)][:PARTIAL_RUNS] + [None]
    source, asked = deferred()
    lazy = source.blocks(1)[0]
    lazy[:, 1:4]
    lazy[:, 2, 3]  # inside positions already run
    assert asked == [(1, 2, 3)]
    with pytest.raises(IndexError):
        lazy[:, T]
    with pytest.raises(ValueError):
        lazy[:, ::0]
