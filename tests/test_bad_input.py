"""A catalogue of bad input to names, hypotheses, scrubbing and claim markers.

Each case asserts the error class and that the message names the bad value and the fix.
The engine's and the interventions' own inputs are in test_bad_input_engine.py; settings,
report directories and baselines in test_report_safety.py and test_baselines.py.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from causal_hypotheses import Hypothesis, ModelGraph, UnknownComponentError, activation_patch, path_patch, scrub
from causal_hypotheses.claims import PROFILES, ClaimSpecError, decide, make_spec
from causal_hypotheses.errors import InputError
from causal_hypotheses.metrics import bootstrap_recovery
from causal_hypotheses.tasks import induction

GRAPH = ModelGraph(n_layers=12, n_heads=12)


# ---------------------------------------------------------------------------------------------
# Names: one spelling each


@pytest.mark.parametrize("name,canonical", [
    ("a01", "a1"), ("a1.h00", "a1.h0"), ("m01", "m1"), ("a00.h0", "a0.h0"), ("a1.h01.q", "a1.h1.q"),
    ("A1", "a1"), (" a1", "a1"), ("a1.h0.Q", "a1.h0.q"), ("EMBED", "embed"), ("a 1 . h 2", "a1.h2"),
])
def test_non_canonical_names_are_rejected_with_the_canonical_one(name, canonical):
    with pytest.raises(UnknownComponentError) as error:
        GRAPH.parse(name)
    assert repr(name) in str(error.value) and f"did you mean {canonical!r}?" in str(error.value)


@pytest.mark.parametrize("name", [1, None, ("a1",), b"a1"])
def test_names_that_are_not_strings(name):
    with pytest.raises(UnknownComponentError, match="is not a component name"):
        GRAPH.parse(name)


def test_a_non_canonical_name_cannot_patch_nothing(tiny_engine, tiny_tokens):
    """Today's bug: 'a1.h00' validated, matched no path and returned the clean logits."""
    clean, corrupt = tiny_tokens
    with pytest.raises(UnknownComponentError, match="did you mean 'a1.h0'"):
        activation_patch(tiny_engine, clean, corrupt, ["a1.h00"])
    with pytest.raises(UnknownComponentError, match="did you mean 'a0.h1'"):
        path_patch(tiny_engine, clean, corrupt, ["a00.h1"], ["a1.h0.q"])
    with pytest.raises(UnknownComponentError, match="did you mean 'a1'"):
        "a01" in __import__("causal_hypotheses").Path(("a1",), GRAPH)


# ---------------------------------------------------------------------------------------------
# Hypotheses: patterns some path can match


@pytest.mark.parametrize("pattern,fragment", [
    (("embed", "a1.h0.q"), "continues past 'embed'"),
    (("a0.h3", "a1.h0.k"), "'a1.h0.k' after 'a0.h3'"),
    (("a1.h0", "a1.h1"), "'a1.h1' after 'a1.h0'"),
    (("a1", "a1.h0"), "'a1.h0' after 'a1'"),
    (("m1", "m1"), "'m1' after 'm1'"),
    (("a1.h0.q", "a1.h1"), "'a1.h1' after 'a1.h0.q'"),
])
def test_patterns_no_path_can_match_are_rejected(pattern, fragment):
    with pytest.raises(UnknownComponentError) as error:
        Hypothesis({pattern: None}, name="backwards")
    message = str(error.value)
    assert fragment in message and str(pattern) in message and "from the output toward the input" in message


@pytest.mark.parametrize("pattern", [("a1.h0.k", "a0.h3"), ("m1", "a1.h0.q", "m0", "embed"), ("m0", "a0"), ("a1",)])
def test_patterns_in_residual_order_are_accepted(pattern):
    assert list(Hypothesis({pattern: None}).paths) == [pattern]


@pytest.mark.parametrize("paths,fragment", [
    ([("a1.h0",), ("a0.h0",)], "must be a mapping from pattern to feature"),
    ({("a1.h0",): 3}, "expected the name of a task feature"),
    ({5: None}, "write a pattern as a tuple of component names"),
    ({(): None}, "empty path"),
    ({("a01",): None}, "did you mean 'a1'"),
])
def test_malformed_hypotheses(paths, fragment):
    with pytest.raises((InputError, UnknownComponentError), match=fragment):
        Hypothesis(paths)


@pytest.fixture(scope="module")
def trained():
    from causal_hypotheses import Engine
    from causal_hypotheses.trained import BOS, HALF_LEN, VOCAB_SIZE, induction_model

    engine = Engine.from_hf(induction_model())
    return engine, induction(16, half_len=HALF_LEN, vocab_size=VOCAB_SIZE, seed=0, bos=BOS)


def test_a_layer_the_model_lacks_is_named_when_scrubbing_starts(trained):
    engine, task = trained
    with pytest.raises(UnknownComponentError, match="'a2.h0' names layer 2"):
        scrub(engine, Hypothesis({("a2.h0",): None}), task)


def test_scrub_takes_a_plain_dict(trained):
    engine, task = trained
    result = scrub(engine, {(w,): None for w in engine.graph.writers()}, task)
    assert result.fraction_recovered == pytest.approx(1.0)


@pytest.mark.parametrize("keyword,value,fragment", [
    ("draws", 1.5, "draws=1.5: expected a whole number >= 1, e.g. draws=2"),
    ("draws", 0, "draws=0: expected a whole number >= 1"),
    ("draws", True, "draws=True"),
    ("n", 1, "n=1 with resample ablation: there is no other example to resample from"),
    ("n", 17, "n=17: task 'induction' has 16 examples"),
    ("n", 2.0, "n=2.0: expected a whole number"),
    ("ablation", "resampled", "ablation='resampled': expected one of"),
])
def test_bad_scrub_settings(trained, keyword, value, fragment):
    engine, task = trained
    with pytest.raises(InputError) as error:
        scrub(engine, Hypothesis({}), task, **{keyword: value})
    assert fragment in str(error.value)


def test_numpy_counts_are_accepted(trained):
    engine, task = trained
    result = scrub(engine, Hypothesis({}), task, draws=np.int64(1), n=np.int32(8))
    assert result.n == 8 and result.draws == 1


def test_scrub_rejects_something_that_is_not_a_hypothesis(trained):
    engine, task = trained
    with pytest.raises(InputError, match="hypothesis is a list; pass a Hypothesis"):
        scrub(engine, [("a1.h0",)], task)


def test_a_metric_that_is_not_finite_is_an_error_saying_how_many_examples(trained):
    engine, task = trained

    def broken(logits, task, clean_logits=None):
        values = logits[:, -1, 0].clone()
        values[:3] = float("nan")
        return values

    with pytest.raises(InputError, match=r"not finite \(NaN or inf\) on 3 of 16 examples of the clean run"):
        scrub(engine, Hypothesis({}), task, metric=broken)


def test_no_effect_has_its_own_verdict():
    """A gap between clean and ablated that is indistinguishable from 0 is 'no-effect',
    whatever the fraction recovered says; more examples cannot fix an exact 0."""
    assert decide(0.9, 1.1, 0.5, None, effect=(-0.2, 0.3)) == "no-effect"
    assert decide(0.9, 1.1, 0.5, None, effect=(0.0, 0.0)) == "no-effect"
    assert decide(0.9, 1.1, 0.5, None, effect=(0.1, 0.3)) == "pass"
    assert decide(0.9, 1.1, 0.5, None, effect=(-0.3, -0.1)) == "pass"  # loss: clean below ablated
    assert decide(math.nan, math.nan, 0.5, None) == "inconclusive"


def test_a_scrub_whose_ablation_changes_nothing_reports_no_effect(trained):
    engine, task = trained
    result = scrub(engine, Hypothesis({}), task, ablation="zero")
    assert result.effect_ci[0] > 0 or result.effect_ci[1] < 0  # zeroing everything changes the loss
    same = task.subset(torch.zeros(16, dtype=torch.long))  # sixteen copies of one example: resampling is a no-op
    flat = scrub(engine, Hypothesis({}), same)
    assert flat.clean == flat.ablated and flat.effect_ci == (0.0, 0.0)
    assert decide(*flat.ci, 0.5, None, effect=flat.effect_ci) == "no-effect"


def test_bootstrap_settings():
    values = torch.ones(8)
    with pytest.raises(InputError, match="n_boot=0"):
        bootstrap_recovery(values, values * 0, values, n_boot=0)
    with pytest.raises(InputError, match="level=1.5"):
        bootstrap_recovery(values, values * 0, values, level=1.5)


# ---------------------------------------------------------------------------------------------
# Claim markers (make_spec; the plugin's collection is tested in test_verdict_outcomes.py)

BASE = dict(model="random-gpt2-tiny", task="induction", metric="loss")


def spec(*markers, profile="ci", **overrides):
    return make_spec([((), m) for m in markers], profile=PROFILES[profile], **overrides)


def test_the_nearer_threshold_replaces_the_farther_one():
    near, far = dict(at_least=0.8), dict(**BASE, at_most=0.1)
    made = spec(near, far)
    assert (made.at_least, made.at_most) == (0.8, None)
    both = spec(dict(at_least=0.2, at_most=0.9), dict(**BASE, at_most=0.1))
    assert (both.at_least, both.at_most) == (0.2, 0.9)
    inherited = spec(dict(n=8), dict(**BASE, at_most=0.1))
    assert (inherited.at_least, inherited.at_most) == (None, 0.1)


def test_resampling_one_example_is_a_marker_error():
    with pytest.raises(ClaimSpecError, match="n=1 with resample ablation: there is no other example"):
        spec(dict(**BASE, at_least=0.5, n=1))
    with pytest.raises(ClaimSpecError, match="--claims-n=1 with resample ablation"):
        spec(dict(**BASE, at_least=0.5, n=16), n=1)
    assert spec(dict(**BASE, at_least=0.5, n=1, ablation="mean")).n == 1


def test_a_profile_never_shrinks_n_below_the_floor():
    made = spec(dict(**BASE, at_least=0.5, n=16), profile="dev")
    assert made.n == 8 and "profile 'dev' would scale n=16 to 4; using 8" in made.notes[0]
    assert spec(dict(**BASE, at_least=0.5, n=4), profile="dev").n == 4  # never more than the claim asks
    assert spec(dict(**BASE, at_least=0.5, n=64), profile="dev").notes == ()
