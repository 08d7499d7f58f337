"""Negative controls: random hypotheses of a hypothesis's shape, and where the hypothesis falls among them."""
from __future__ import annotations

import itertools

import pytest
import torch

from causal_hypotheses import InputError, ModelGraph
from causal_hypotheses.graph import component
from causal_hypotheses.interventions import Hypothesis
from causal_hypotheses.interventions.controls import ControlResult, Controls, control, random_like
from causal_hypotheses.trained import INDUCTION_KEY_READS, INDUCTION_QUERY_READS, induction_hypothesis

GPT2_SMALL = ModelGraph(n_layers=12, n_heads=12)
TWO_LAYERS = ModelGraph(n_layers=2, n_heads=4)  # the trained induction model's shape

# Features, shared components (a8.h6 in two patterns), head inputs, an attention layer, an MLP,
# embed, and a head of a layer that is also named whole (a5.h2 inside a5).
MIXED = Hypothesis({
    ("a9.h9",): "io",
    ("a9.h9.q", "a8.h6"): "s",
    ("a9.h9.k", "a7.h3", "m2"): None,
    ("a10", "a8.h6"): None,
    ("a10", "a5.h2"): None,
    ("a9.h1.v", "a5"): None,
    ("m11", "embed"): None,
    ("a0.h3",): None,
}, name="mixed")


TRUE = induction_hypothesis()
OTHER_LAYER0 = [f"a0.h{h}" for h in range(4) if f"a0.h{h}" not in set(INDUCTION_KEY_READS) | set(INDUCTION_QUERY_READS)]
WRONG = induction_hypothesis(["embed"] + OTHER_LAYER0[:1], OTHER_LAYER0, ["embed"], name="other layer-0 heads")


def senders(hypothesis):
    """(what feeds the induction heads' queries besides embed, what feeds their keys) as sets."""
    query = {p[1] for p in hypothesis.paths if component(p[0]).channel == "q"} - {"embed"}
    key = {p[1] for p in hypothesis.paths if component(p[0]).channel == "k"}
    return frozenset(query), frozenset(key)


def replacements(original: Hypothesis, other: Hypothesis) -> dict:
    """The component map (head inputs as their heads) that turns ``original`` into ``other``,
    checking on the way that it is one map: a component named twice is replaced the same way."""
    mapping = {}
    for old_pattern, new_pattern in zip(original.paths, other.paths):
        for old, new in zip(old_pattern, new_pattern):
            old_base, new_base = component(old).without_channel(), component(new).without_channel()
            assert mapping.setdefault(old_base, new_base) == new_base, (old, new, mapping[old_base])
    return mapping


# ---------------------------------------------------------------- shape, seeding, band

def test_same_seed_same_controls_other_seed_others():
    first = random_like(MIXED, GPT2_SMALL, count=8, seed=0)
    again = random_like(MIXED, GPT2_SMALL, count=8, seed=0)
    other = random_like(MIXED, GPT2_SMALL, count=8, seed=1)
    assert [h.paths for h in first] == [h.paths for h in again]
    assert [h.name for h in first] == [h.name for h in again]
    assert [h.paths for h in first] != [h.paths for h in other]
    # Small spaces are listed and sampled: seeding holds there too.
    assert [h.paths for h in random_like(TRUE, TWO_LAYERS, count=5, seed=3)] == \
           [h.paths for h in random_like(TRUE, TWO_LAYERS, count=5, seed=3)]
    assert [h.paths for h in random_like(TRUE, TWO_LAYERS, count=5, seed=3)] != \
           [h.paths for h in random_like(TRUE, TWO_LAYERS, count=5, seed=4)]


@pytest.mark.parametrize("graph", [GPT2_SMALL, ModelGraph(12, 12, parallel_attn_mlp=True)], ids=["gpt2", "parallel"])
def test_controls_keep_the_shape(graph):
    controls = random_like(MIXED, graph, count=20, seed=0)
    assert isinstance(controls, Controls) and len(controls) == 20 and controls.distinct == 20 and controls.note is None
    assert len({frozenset(h.paths.items()) for h in controls}) == 20
    for other in controls:
        assert isinstance(other, Hypothesis)
        assert len(other.paths) == len(MIXED.paths)
        assert frozenset(other.paths) != frozenset(MIXED.paths)
        assert list(other.paths.values()) == list(MIXED.paths.values())  # features carried over, in order
        for old_pattern, new_pattern in zip(MIXED.paths, other.paths):
            assert len(new_pattern) == len(old_pattern)
            graph.check_pattern(new_pattern)  # valid on the model: raises otherwise
            for old, new in zip(old_pattern, new_pattern):
                old_c, new_c = component(old), component(new)
                assert new_c.kind == old_c.kind
                assert new_c.channel == old_c.channel
                assert (new_c.head is None) == (old_c.head is None)
        mapping = replacements(MIXED, other)
        assert len(set(mapping.values())) == len(mapping)  # distinct components stay distinct
        assert mapping[component("embed")] == component("embed")
        assert mapping[component("a5.h2")].layer == mapping[component("a5")].layer  # a head inside a5 stays inside it
        assert mapping[component("a0.h3")].layer != mapping[component("a5")].layer


@pytest.mark.parametrize("band", [0, 1, 2])
def test_replacements_stay_in_the_layer_band(band):
    controls = random_like(MIXED, GPT2_SMALL, count=30, seed=5, band=band)
    shifts = set()
    for other in controls:
        for old, new in replacements(MIXED, other).items():
            if old.kind != "embed":
                assert abs(new.layer - old.layer) <= band, (old.name, new.name, band)
                assert 0 <= new.layer < GPT2_SMALL.n_layers  # clipped to the model
                shifts.add(abs(new.layer - old.layer))
    assert max(shifts) == band  # the whole band is used


def test_small_model_lists_every_control_and_draws_with_replacement_past_them():
    """On the induction model's 2 x 4 graph the receivers must stay the four layer-1 heads, so a
    control is a choice of two distinct layer-0 heads for the roles of a0.h0 and a0.h3: 12 - 1."""
    expected = {(frozenset({x}), frozenset({x, y})) for x, y in itertools.permutations(
        [f"a0.h{h}" for h in range(4)], 2)} - {senders(TRUE)}
    controls = random_like(TRUE, TWO_LAYERS, count=11, seed=0)
    assert controls.note is None and controls.distinct == 11
    assert {senders(h) for h in controls} == expected
    assert all(len(h.paths) == len(TRUE.paths) for h in controls)
    with pytest.warns(UserWarning, match="only 11 distinct random hypotheses.*drawn with replacement"):
        more = random_like(TRUE, TWO_LAYERS, count=20, seed=0)
    assert len(more) == 20 and more.distinct <= 11 and "1/12" in more.note
    assert {senders(h) for h in more} <= expected
    # The wrong hypothesis's controls include the true circuit.
    assert senders(TRUE) in {senders(h) for h in random_like(WRONG, TWO_LAYERS, count=11, seed=0)}


@pytest.mark.parametrize("graph, hypothesis", [
    (TWO_LAYERS, Hypothesis({(name,): None for name in TWO_LAYERS.writers()}, name="every writer")),
    (TWO_LAYERS, Hypothesis({("embed",): None}, name="embed")),
    (ModelGraph(1, 1), Hypothesis({("a0.h0",): None}, name="the only head")),
    (GPT2_SMALL, Hypothesis({(name,): None for name in GPT2_SMALL.writers()}, name="every writer")),
], ids=["every-writer-2l", "embed", "one-head", "every-writer-12l"])
def test_no_different_hypothesis_is_an_error(graph, hypothesis):
    with pytest.raises(InputError, match=rf"no random hypothesis like '{hypothesis.name}' differs from it.*Name fewer"):
        random_like(hypothesis, graph, count=3, seed=0)


def test_bad_inputs_name_the_value_and_the_fix():
    with pytest.raises(InputError, match=r"count=0: expected a whole number >= 1, e.g. count=20"):
        random_like(TRUE, TWO_LAYERS, count=0, seed=0)
    with pytest.raises(InputError, match=r"count=2.5"):
        random_like(TRUE, TWO_LAYERS, count=2.5, seed=0)
    with pytest.raises(InputError, match=r"seed=-1"):
        random_like(TRUE, TWO_LAYERS, count=2, seed=-1)
    with pytest.raises(InputError, match=r"band=-1"):
        random_like(TRUE, TWO_LAYERS, count=2, seed=0, band=-1)
    with pytest.raises(InputError, match=r"names no path"):
        random_like(Hypothesis({}, name="nothing"), TWO_LAYERS, count=2, seed=0)
    with pytest.raises(InputError, match=r"pass the model's ModelGraph"):
        random_like(TRUE, "gpt2", count=2, seed=0)
    with pytest.raises(InputError, match=r"hypothesis is a list"):
        random_like([("a1.h0",)], TWO_LAYERS, count=2, seed=0)
    with pytest.raises(Exception, match=r"'a2.h0' names layer 2"):  # a pattern the model lacks
        random_like(Hypothesis({("a2.h0",): None}), TWO_LAYERS, count=2, seed=0)
    # control checks its settings before anything runs (no engine needed to see the errors).
    for kwargs, message in [({"count": 0}, r"count=0"), ({"draws": 0}, r"draws=0"), ({"seed": "x"}, r"seed='x'"),
                            ({"level": 1.5}, r"level=1.5"), ({"ablation": "random"}, r"ablation='random'"),
                            ({"resampling": "joint"}, r"resampling='joint'"), ({"band": -2}, r"band=-2")]:
        with pytest.raises(InputError, match=message):
            control(object(), TRUE, task=None, **kwargs)
    with pytest.raises(InputError, match=r"without a model graph; pass an Engine"):
        control(object(), TRUE, task=None)


# ---------------------------------------------------------------- the trained induction model

@pytest.fixture(scope="module")
def induction_setup():
    from causal_hypotheses import Engine, trained
    from causal_hypotheses.tasks import induction

    # On a busy 2-core machine, torch's 2-thread index_add_ stalls (80 ms instead of 30 us per
    # call), which makes each scrub 100x slower; one thread keeps these tests at seconds.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        engine = Engine.from_hf(trained.induction_model())
        task = induction(16, half_len=trained.HALF_LEN, vocab_size=trained.VOCAB_SIZE, seed=0, bos=trained.BOS)
        yield engine, task
    finally:
        torch.set_num_threads(threads)


def test_true_induction_circuit_beats_every_random_control(induction_setup):
    engine, task = induction_setup
    result = control(engine, TRUE, task, "loss", count=10, seed=0, draws=1)
    assert isinstance(result, ControlResult)
    assert result.count == len(result.controls) == len(result.control_names) == len(result.control_patterns) == 10
    assert result.distinct == 10 and result.note is None and result.scrubs == 11
    assert result.recovered > 0.9 and result.ci[0] > max(result.controls)
    assert max(result.controls) < 0.75  # measured 0.558..0.650 (n=16, seed 0)
    assert result.percentile == 100
    assert result.p_value == pytest.approx(1 / 11) == pytest.approx(result.min_p_value)
    assert result.seconds > 0 and result.n == 16 and result.metric == "loss"
    assert result.control_range == (min(result.controls), max(result.controls))
    for patterns, name in zip(result.control_patterns, result.control_names):
        assert len(patterns) == len(TRUE.paths) and frozenset(patterns) != frozenset(TRUE.paths)
        assert name.startswith("random like induction")
    table = result.table()
    assert len(table) == 11 and list(table["control"]) == [False] + [True] * 10
    assert table["recovered"].iloc[0] == result.recovered
    assert "p = 0.0909" in result.summary()
    # The same seed gives the same numbers (each control is the same hypothesis, scrubbed the same way).
    again = control(engine, TRUE, task, "loss", count=10, seed=0, draws=1)
    assert again.controls == result.controls and again.control_patterns == result.control_patterns


def test_wrong_hypothesis_does_not_beat_the_controls(induction_setup):
    engine, task = induction_setup
    result = control(engine, WRONG, task, "loss", count=10, seed=0, draws=1)
    assert result.recovered < 0.75
    assert result.p_value > 0.25 and result.percentile < 75  # measured p = 0.909, percentile 10
    assert max(result.controls) > 0.9  # one control relabels it into the true circuit


def test_controls_drawn_with_replacement_are_scrubbed_once(induction_setup):
    engine, task = induction_setup
    with pytest.warns(UserWarning, match="drawn with replacement"):
        result = control(engine, TRUE, task, "loss", count=20, seed=0)
    assert result.count == 20 and result.distinct < 20 and result.scrubs == 1 + result.distinct
    assert "with replacement" in result.note and result.p_value == pytest.approx(1 / 21)
