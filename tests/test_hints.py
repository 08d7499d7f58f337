"""hints(): the path a scrubbing hypothesis leaves out that would recover the most.

Checked on the trained 2-layer induction model, whose circuit is known (circuits/test_induction.py):
with one composition left out of the true hypothesis, the top hint is the missing path; with
nothing left out, no hint adds more than noise.  Scores must be the numbers scrub() gives for
the refined hypothesis (same seed, same draws), whatever the batching.
"""
from __future__ import annotations

import pytest
import torch

from causal_hypotheses import Engine, InputError
from causal_hypotheses.errors import UnknownComponentError
from causal_hypotheses.graph import ModelGraph
from causal_hypotheses.interventions import Hypothesis, scrub
from causal_hypotheses.interventions.hints import Hint, candidate_paths, hints
from causal_hypotheses.metrics import loss
from causal_hypotheses.tasks import induction
from causal_hypotheses.trained import (
    BOS, HALF_LEN, INDUCTION_HEADS, VOCAB_SIZE, induction_hypothesis, induction_model,
)

GRAPH = ModelGraph(n_layers=2, n_heads=4)


def circuit(leave_out=()):
    """The true induction circuit (circuits/test_induction.py) without the patterns in ``leave_out``."""
    return induction_hypothesis(name="induction", leave_out=leave_out)


K_COMPOSITION_A03 = [(f"{head}.k", "a0.h3") for head in INDUCTION_HEADS]  # every head's key read of a0.h3


@pytest.fixture(scope="module")
def engine():
    # On a busy 2-core machine torch's 2-thread index_add_/index_select stall (tens of ms per
    # call), which makes these runs ~30x slower (40 s instead of 1.4 s for one hints() call);
    # one thread keeps the module at seconds.  Restored afterwards.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield Engine.from_hf(induction_model())
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def task():
    return induction(16, half_len=HALF_LEN, vocab_size=VOCAB_SIZE, seed=0, bos=BOS)


# ----------------------------------------------------------------------------- candidates (no model run)


def test_candidates_are_one_level_below_what_the_hypothesis_names():
    hypothesis = circuit(leave_out=K_COMPOSITION_A03)
    found = candidate_paths(GRAPH, hypothesis)
    assert len(found) == len(set(found))
    for pattern in found:
        GRAPH.check_pattern(pattern)
    # direct paths of the writers it leaves out, layer-level and each head of an unsplit layer
    assert {("embed",), ("a0",), ("m0",), ("m1",), ("a0.h3",)} <= set(found)
    # layer 1 is split (its heads are named), and each of its heads is named: no coarsening
    assert not {("a1",), ("a1.h0",), ("a1.h0.k",)} & set(found)
    # the left-out composition, through the key, where a0 is split (a0.h0 is named there) ...
    assert set(K_COMPOSITION_A03) <= set(found)
    assert ("a1.h0.k", "a0") not in found and ("a1.h0.q", "a0") not in found
    # ... and the other inputs of named heads; nothing already named
    assert {("a1.h0.k", "embed"), ("a1.h0.v", "a0"), ("a1.h0.v", "a0.h1"), ("a1.h2.q", "a0.h2")} <= set(found)
    assert not set(hypothesis.paths) & set(found)
    # direct paths come first, heads inside whole layers last
    assert found[:4] == [("embed",), ("a0",), ("m0",), ("m1",)]
    assert found.index(("a1.h0.v", "a0")) < found.index(("a0.h3",)) < found.index(("a1.h0.v", "a0.h1"))


def test_candidates_skip_what_a_pattern_already_covers():
    hypothesis = Hypothesis({("a1.h0.k",): None, ("a1.h2",): None, ("m1", "a1.h3"): None})
    found = set(candidate_paths(GRAPH, hypothesis))
    assert ("a1.h0.q", "a0.h3") in found and ("a1.h0.v", "embed") in found  # the other inputs of a named head
    assert not any(pattern[:1] in {("a1.h0.k",), ("a1.h2",)} for pattern in found)  # covered: inside a pattern
    assert not any(pattern[0].startswith("a1.h2") for pattern in found)
    assert ("m1", "a1.h1") in found and ("m1", "embed") in found  # inputs of a named MLP
    assert ("m1",) not in found and ("a1.h3",) in found  # m1 would swallow ("m1", "a1.h3")


# ----------------------------------------------------------------------------- the induction circuit


def test_the_top_hints_are_the_left_out_key_composition(engine, task):
    """Every head's key read of a0.h3 left out: the four top hints are those four paths."""
    found = hints(engine, circuit(leave_out=K_COMPOSITION_A03), task, "loss", top=5, seed=0)
    assert all(isinstance(hint, Hint) for hint in found) and len(found) == 5
    assert [hint.adds for hint in found] == sorted((hint.adds for hint in found), reverse=True)
    assert {hint.pattern for hint in found[:4]} == set(K_COMPOSITION_A03)
    assert found[0].adds > 0.05 and found[3].adds > 0.02 > found[4].adds
    base = scrub(engine, circuit(leave_out=K_COMPOSITION_A03), task, "loss", seed=0)
    for hint in found:
        assert hint.recovered == pytest.approx(base.fraction_recovered + hint.adds, abs=1e-12)


def test_the_top_hint_is_the_one_key_read_left_out(engine, task):
    missing = ("a1.h2.k", "a0.h3")
    hypothesis = circuit(leave_out=[missing])
    found = hints(engine, hypothesis, task, top=3, seed=0)
    assert found[0].pattern == missing
    assert found[0].adds > 0.1 and found[1].adds < 0.03
    # the score is scrub's own number for the refined hypothesis (same seed, same samples)
    refined = scrub(engine, Hypothesis({**hypothesis.paths, missing: None}), task, seed=0)
    assert found[0].recovered == pytest.approx(refined.fraction_recovered, abs=1e-6)
    assert refined.fraction_recovered == pytest.approx(scrub(engine, circuit(), task, seed=0).fraction_recovered, abs=1e-12)


def test_nothing_adds_much_to_the_true_circuit(engine, task):
    found = hints(engine, circuit(), task, top=5, seed=0)
    assert len(found) == 5
    assert max(hint.adds for hint in found) < 0.02


def test_a_hypothesis_that_recovers_everything_gets_no_hint(engine, task):
    everything = Hypothesis({(writer,): None for writer in engine.graph.writers()})
    assert hints(engine, everything, task) == []


# ----------------------------------------------------------------------------- seeding and modes


SOME = [("a1.h2.k", "a0.h3"), ("a0",), ("a1.h0.k", "a0.h3"), ("a1.h1.v", "a0.h1")]


def test_same_seed_same_hints_and_other_seeds_other_draws(engine, task):
    hypothesis = circuit(leave_out=K_COMPOSITION_A03)
    first = hints(engine, hypothesis, task, candidates=SOME, top=4, seed=3)
    assert hints(engine, hypothesis, task, candidates=SOME, top=4, seed=3) == first
    assert hints(engine, hypothesis, task, candidates=SOME, top=4, seed=4) != first
    assert {hint.pattern for hint in first} == set(SOME)


def own_loss(logits, task, clean_logits=None):
    """A metric of one's own (gets every position): the built-in loss."""
    return loss(logits, task, clean_logits)


@pytest.mark.parametrize("ablation, resampling, draws, metric", [
    ("resample", "independent", 2, "loss"), ("mean", "independent", 1, "loss"), ("resample", "shared", 2, "loss"),
    ("zero", "shared", 1, "loss"), ("resample", "independent", 1, "kl"), ("resample", "independent", 1, own_loss),
])
def test_scores_are_scrubs_numbers_in_every_mode(engine, task, ablation, resampling, draws, metric):
    hypothesis = circuit(leave_out=K_COMPOSITION_A03)
    options = dict(metric=metric, seed=1, draws=draws, ablation=ablation, resampling=resampling)
    base = scrub(engine, hypothesis, task, **options)
    found = hints(engine, hypothesis, task, candidates=SOME, top=4, max_tokens=2 * 16 * 49, **options)  # 2 runs
    for hint in found:
        refined = scrub(engine, Hypothesis({**hypothesis.paths, hint.pattern: None}), task, **options)
        assert hint.recovered == pytest.approx(refined.fraction_recovered, abs=1e-6)
        assert hint.adds == pytest.approx(refined.fraction_recovered - base.fraction_recovered, abs=1e-6)


def test_progress_goes_to_stderr_and_a_cap_warns(engine, task, capsys):
    with pytest.warns(UserWarning, match="max_candidates"):
        found = hints(engine, circuit(leave_out=K_COMPOSITION_A03), task, top=2, max_candidates=3, progress=True)
    captured = capsys.readouterr()
    assert "3/3 candidates scored" in captured.err and captured.out == ""
    assert len(found) == 2
    first_three = {("embed",), ("a0",), ("m0",)}  # then, in a second round, the heads inside a0 if it leads
    assert {hint.pattern for hint in found} <= first_three | {(f"a0.h{h}",) for h in range(4)}


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("options, error, words", [
    (dict(top=0), InputError, "top=0"),
    (dict(top=2.5), InputError, "top=2.5"),
    (dict(candidates=[("a1.h0.k", "a2")]), UnknownComponentError, "candidates[0]"),
    (dict(candidates=[("a0.h3", "a1.h0.k")]), UnknownComponentError, "patterns run from the output toward the input"),
    (dict(candidates=[("a0",), 7]), InputError, "candidates[1] = 7"),
    (dict(candidates="a0"), InputError, "list of patterns"),
    (dict(candidates=[]), InputError, "candidates is empty"),
    (dict(candidates=[("a1.h0.k", "a0.h0")]), InputError, "already covered"),
    (dict(max_tokens=0), InputError, "max_tokens=0"),
    (dict(max_candidates=0), InputError, "max_candidates=0"),
])
def test_bad_input_is_an_error_naming_the_value(engine, task, options, error, words):
    with pytest.raises(error) as raised:
        hints(engine, circuit(), task, **options)
    assert words in str(raised.value)


def test_a_hypothesis_that_is_not_one_is_an_error(engine, task):
    with pytest.raises(InputError, match="pass a Hypothesis"):
        hints(engine, [("a1.h0",)], task)
