"""The activation cache: any budget gives the numbers of no cache; cache_bytes is validated."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from causal_hypotheses import Engine
from causal_hypotheses.engine.cache import ActivationCache
from causal_hypotheses.engine.core import MeanInput, ZeroInput
from causal_hypotheses.errors import InputError
from causal_hypotheses.graph import within

B, T = 4, 9


def tokens(seed: int) -> torch.Tensor:
    return torch.randint(0, 512, (B, T), generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def batch_bytes(tiny_model) -> int:
    """Bytes of one (4, 9) batch's captured activations, measured on a real capture."""
    engine = Engine.from_hf(tiny_model, cache_bytes=2**30)
    engine.run([tokens(0)], lambda p: 0)
    return engine.cache.nbytes


def patched(name: str, reads):
    """which/branch: ``name`` reads ``reads`` (the components containing it are split), the rest input 0."""
    return (lambda p: reads if name in p else 0), (lambda p: p[-1] != name and within(p[-1], name))


def experiments():
    """(inputs, which, branch, logit_positions): rows cached, partly cached, new, resampled, mean."""
    a, b, c, d, e = (tokens(seed) for seed in range(1, 6))
    half = torch.cat([a[:2], c[:2]])  # two rows cached after the first run, two new
    shuffled = a[[3, 1, 0, 2]]  # the same rows as a, in another order
    mixed = torch.cat([b[2:], e[:2]])
    resample = torch.tensor([1, 0, 2, 1])
    per_position = torch.randint(0, 3, (B, T), generator=torch.Generator().manual_seed(9))
    return [
        ([a], lambda p: 0, None, None),  # clean run
        ([a, b], *patched("a0.h1", 1), None),  # rows of a cached, b new
        ([half, a], *patched("a1", 1), None),  # partly cached, overlapping
        ([shuffled, d], *patched("m0", 1), -1),
        ([a, b, c], *patched("a0.h2", resample), None),  # resampled rows
        ([a, mixed, d], *patched("a1.h3.q", per_position), [0, -1]),  # per-position resampling
        ([half, MeanInput(torch.cat([b, e]))], *patched("m1", 1), None),  # mean over partly cached rows
        ([d, MeanInput(a), ZeroInput()], lambda p: 1 if "a0" in p else 2 if "m1" in p else 0, lambda p: p[-1] in ("a0", "m1"), None),
        ([e, c], *patched("a1.h0", 1), None),  # new rows again
        ([a], lambda p: 0, None, None),  # the first rows, perhaps evicted by now
        ([b, a], *patched("embed", 1), -2),
    ]


@pytest.fixture(scope="module")
def uncached(tiny_model):
    engine = Engine.from_hf(tiny_model, cache_bytes=0)
    return [engine.run(inputs, which, branch, logit_positions=lp).logits for inputs, which, branch, lp in experiments()]


@pytest.mark.parametrize("batches", [0.5, 0.9, 1, 1.5, 2, 2.5, 3, 4.5, 8, 60])
def test_any_budget_gives_the_numbers_of_no_cache(tiny_model, batch_bytes, uncached, batches, caplog):
    budget = int(batch_bytes * batches)
    engine = Engine.from_hf(tiny_model, cache_bytes=budget)
    with caplog.at_level(logging.INFO, logger="causal_hypotheses.cache"):
        for (inputs, which, branch, lp), expected in zip(experiments(), uncached):
            got = engine.run(inputs, which, branch, logit_positions=lp).logits
            torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
            assert engine.cache.nbytes <= budget
    if batches < 1:
        assert "exceed the cache budget" in caplog.text and "used once, not kept" in caplog.text
    if batches >= 60:
        assert engine.cache.stats.evictions == 0
    if batches < 3:  # three batches of rows in one run
        assert "more than the whole cache budget" in caplog.text


def test_rows_cached_then_evicted_by_the_same_request_are_not_lost():
    """The old failure: rows a0 a1 cached, b new; storing b evicts the entry holding a0 a1."""
    captured = []

    def capture(rows):
        captured.append(rows.clone())
        return {"x": rows.double() * 2, "y": [rows.double() + 1]}

    row = 2 * 8 * 2  # bytes per row: x and y, two float64 each
    cache = ActivationCache(4 * row)
    a, b = torch.tensor([[1, 2], [3, 4], [5, 6], [7, 8]]), torch.tensor([[9, 9], [8, 8], [7, 7], [6, 6]])
    cache.activations(a, capture)
    request = torch.cat([b[:1], a[:2], b[1:]])  # new, cached, cached, new
    acts, forwards = cache.activations(request, capture)
    assert forwards == 1 and torch.equal(captured[-1], b)
    assert torch.equal(acts["x"], request.double() * 2) and torch.equal(acts["y"][0], request.double() + 1)
    assert cache.stats.evictions == 1 and cache.nbytes <= 4 * row and len(cache) == 4
    again, forwards = cache.activations(b, capture)  # b stayed
    assert forwards == 0 and torch.equal(again["x"], b.double() * 2)


def test_a_working_set_larger_than_the_budget_is_used_and_logged(caplog):
    cache = ActivationCache(3 * 8)
    rows = torch.arange(8).reshape(4, 2)
    with caplog.at_level(logging.INFO, logger="causal_hypotheses.cache"):
        acts, forwards = cache.activations(rows, lambda r: {"x": r.double()})
    assert forwards == 1 and torch.equal(acts["x"], rows.double())
    assert len(cache) == 0 and cache.nbytes == 0
    assert "more than the whole cache budget" in caplog.text and "used once, not kept" in caplog.text
    records = [r for r in caplog.records if "whole cache budget" in r.getMessage()]
    assert records and all(r.levelno == logging.WARNING for r in records)


def test_the_result_is_a_copy_the_run_may_not_alias_the_cache():
    cache = ActivationCache(1024)
    rows = torch.arange(4).reshape(2, 2)
    first, _ = cache.activations(rows, lambda r: {"x": r.double()})
    first["x"].add_(100)
    second, forwards = cache.activations(rows, lambda r: {"x": r.double()})
    assert forwards == 0 and torch.equal(second["x"], rows.double())


def test_without_copy_a_whole_entry_in_order_is_handed_back_as_is():
    """copy=False (the engine's runs, which only read): an entry's rows asked whole and in order
    come back as the entry's own tensors; anything else is assembled as before."""
    cache = ActivationCache(1024)
    rows = torch.arange(6).reshape(3, 2)
    first, _ = cache.activations(rows, lambda r: {"x": r.double()}, copy=False)
    again, forwards = cache.activations(rows, lambda r: {"x": r.double()}, copy=False)
    assert forwards == 0 and again["x"] is first["x"] and torch.equal(again["x"], rows.double())
    reordered, forwards = cache.activations(rows[[2, 0]], lambda r: {"x": r.double()}, copy=False)
    assert forwards == 0 and reordered["x"] is not first["x"] and torch.equal(reordered["x"], rows[[2, 0]].double())


def test_engine_runs_leave_the_cached_activations_as_captured(tiny_model):
    """The engine reads cache entries without copying them: after every experiment, each entry
    still holds what a fresh capture of its rows gives."""
    engine = Engine.from_hf(tiny_model, cache_bytes=2**30)
    for inputs, which, branch, lp in experiments():
        engine.run(inputs, which, branch, logit_positions=lp)
    assert engine.cache._entries
    for entry in engine.cache._entries.values():
        rows = torch.tensor(np.stack([np.frombuffer(key, dtype=np.int64) for key in entry.row_keys]))
        fresh = engine.adapter.capture(rows)
        for name, value in entry.acts.items():
            for kept, captured in zip(value if isinstance(value, list) else [value], fresh[name] if isinstance(value, list) else [fresh[name]]):
                assert torch.equal(kept, captured), name


def test_zero_budget_disables_caching_quietly(tiny_model, caplog):
    engine = Engine.from_hf(tiny_model, cache_bytes=0)
    with caplog.at_level(logging.INFO, logger="causal_hypotheses.cache"):
        first = engine.run([tokens(1)], lambda p: 0)
        second = engine.run([tokens(1)], lambda p: 0)
    assert first.forward_passes == second.forward_passes == 1 and len(engine.cache) == 0
    assert caplog.text == ""


@pytest.mark.parametrize("value", [0, 1, 2 * 1024**3, np.int64(1 << 20), np.int32(4096)])
def test_cache_bytes_accepts_ints(tiny_model, value):
    engine = Engine.from_hf(tiny_model, cache_bytes=value)
    assert engine.cache.budget_bytes == int(value) and type(engine.cache.budget_bytes) is int
    assert ActivationCache(value).budget_bytes == int(value)


@pytest.mark.parametrize(
    "value,shown",
    [
        ("1GB", "cache_bytes='1GB'"),
        (1.5e9, "cache_bytes=1500000000.0"),
        (2.0**30, "cache_bytes=1073741824.0"),
        (True, "cache_bytes=True"),
        (False, "cache_bytes=False"),
        (-1, "cache_bytes=-1"),
        (np.int64(-5), "cache_bytes=np.int64(-5)"),
        (None, "cache_bytes=None"),
        (torch.tensor(1024), "cache_bytes=tensor(1024)"),
    ],
)
def test_cache_bytes_rejects_what_is_not_a_byte_count(tiny_model, value, shown):
    for make in (lambda: Engine.from_hf(tiny_model, cache_bytes=value), lambda: ActivationCache(value)):
        with pytest.raises(InputError) as error:
            make()
        message = str(error.value)
        assert shown in message and "expected a number of bytes" in message
        assert "as an int, e.g. 2 * 1024**3 (0 disables caching)" in message
