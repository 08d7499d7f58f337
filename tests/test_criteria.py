"""Wang et al.'s circuit criteria against a hand-computed knockout on the unmodified HF GPT-2:
heads' outputs (z before c_proj) and MLP outputs replaced by their per-position mean over the
reference prompts (per cluster), with forward hooks."""
from __future__ import annotations

import math

import pytest
import torch

from causal_hypotheses.errors import InputError, UnknownComponentError
from causal_hypotheses.interventions.criteria import completeness, faithfulness, minimality
from causal_hypotheses.metrics import logit_diff, loss
from causal_hypotheses.stats import ratio_interval
from causal_hypotheses.tasks import Task

import hf_reference as ref


def toy_task(model, n=12, seed=5, clustered=False) -> Task:
    generator = torch.Generator().manual_seed(seed)
    vocab = model.config.vocab_size
    clean = torch.randint(0, vocab, (n, 7), generator=generator)
    corrupt = clean.clone()
    corrupt[:, 2:5] = torch.randint(0, vocab, (n, 3), generator=generator)
    answer = clean[:, 3]  # a token the prompt holds: attention can move it
    features = {"group": torch.arange(n) % 3} if clustered else {}
    return Task("toy", clean, corrupt, answer=answer, distractor=(answer + 1) % vocab, features=features,
                cluster="group" if clustered else None)


def knocked_out_logits(model, task, heads=(), mlps=(), reference=None):
    """Logits with ``heads`` ((layer, head)) and ``mlps`` (layers) replaced by their mean over the
    reference prompts of the example's cluster, at every position."""
    reference = task.corrupt if reference is None else reference
    n = task.clean.shape[0]
    clusters = task.features[task.cluster] if task.cluster else torch.zeros(n, dtype=torch.long)
    registrations = []
    for layer in sorted({l for l, _ in heads}):
        attn = model.transformer.h[layer].attn
        z_ref = ref.head_z(model, reference, layer)  # (N, T, H, d)
        means = torch.stack([z_ref[clusters == clusters[i]].mean(0) for i in range(n)])
        chosen = [h for l, h in heads if l == layer]

        def swap(_, args, means=means, chosen=chosen, attn=attn):
            z = args[0].view(*args[0].shape[:2], attn.num_heads, attn.head_dim).clone()
            z[:, :, chosen] = means[:, :, chosen]
            return (z.view(*args[0].shape),)

        registrations.append((attn.c_proj, "pre", swap))
    for layer in mlps:
        mlp = model.transformer.h[layer].mlp
        out = ref.record(model, reference, mlp)
        means = torch.stack([out[clusters == clusters[i]].mean(0) for i in range(n)])
        registrations.append((mlp, "post", lambda _, __, ___, means=means: means))
    with torch.no_grad(), ref.hooks(*registrations):
        return model(task.clean).logits


def all_heads(model):
    return [(l, h) for l in range(model.config.n_layer) for h in range(model.config.n_head)]


def outside(model, circuit):
    return [(l, h) for l, h in all_heads(model) if f"a{l}.h{h}" not in circuit]


def F(model, task, knocked, metric=logit_diff):
    return metric(knocked_out_logits(model, task, heads=knocked), task).double()


CIRCUIT = ["a0.h1", "a1.h0", "a1.h2"]


@pytest.mark.parametrize("clustered", [False, True])
def test_faithfulness_equals_hook_knockout(tiny_model, tiny_engine, clustered):
    task = toy_task(tiny_model, clustered=clustered)
    result = faithfulness(tiny_engine, CIRCUIT, task, "logit_diff")
    f_c = F(tiny_model, task, outside(tiny_model, CIRCUIT))
    f_m = logit_diff(ref.logits(tiny_model, task.clean), task).double()
    assert result.intervened == pytest.approx(float(f_c.mean()), abs=1e-5)
    assert result.target == pytest.approx(float(f_m.mean()), abs=1e-5)
    assert result.value == pytest.approx(float(f_c.mean() / f_m.mean()), rel=1e-4)
    clusters = task.features["group"] if clustered else None
    interval = ratio_interval(f_c, f_m, clusters=clusters)
    assert result.ci == pytest.approx((interval.low, interval.high), abs=1e-4)
    assert result.outside == 8 - 3 and result.units == (3 if clustered else 12)
    assert abs(result.value - 1) > 0.05, "the fixture must make the knockout matter, or the test proves nothing"


def test_faithfulness_normalised_by_the_ablated_model(tiny_model, tiny_engine):
    task = toy_task(tiny_model)
    result = faithfulness(tiny_engine, CIRCUIT, task, "logit_diff", normalise="ablated")
    f_c = F(tiny_model, task, outside(tiny_model, CIRCUIT))
    f_none = F(tiny_model, task, all_heads(tiny_model))
    f_m = logit_diff(ref.logits(tiny_model, task.clean), task).double()
    expected = float((f_c - f_none).mean() / (f_m - f_none).mean())
    assert result.value == pytest.approx(expected, rel=1e-4)
    assert result.base == pytest.approx(float(f_none.mean()), abs=1e-5)


def test_an_mlp_in_the_circuit_brings_mlps_into_scope(tiny_model, tiny_engine):
    task = toy_task(tiny_model)
    result = faithfulness(tiny_engine, ["a1.h0", "m1"], task, "logit_diff")
    heads = outside(tiny_model, ["a1.h0"])
    expected = logit_diff(knocked_out_logits(tiny_model, task, heads=heads, mlps=[0]), task).double()
    assert result.intervened == pytest.approx(float(expected.mean()), abs=1e-5)
    assert result.outside == 8 + 2 - 2


def test_completeness_gaps_equal_hook_knockouts(tiny_model, tiny_engine):
    task = toy_task(tiny_model)
    K = ["a1.h0"]
    result = completeness(tiny_engine, CIRCUIT, task, "logit_diff", k=0, subsets=[K])
    f_m = logit_diff(ref.logits(tiny_model, task.clean), task).double()
    gaps = {}
    for name, knocked in (("∅", []), ("{a1.h0}", [(1, 0)])):
        f_c_k = F(tiny_model, task, outside(tiny_model, CIRCUIT) + knocked)
        f_m_k = F(tiny_model, task, knocked) if knocked else f_m
        gaps[name] = abs(float((f_c_k - f_m_k).mean() / f_m.mean()))
    rows = {row["K"]: row for row in result.details}
    assert set(rows) == set(gaps)
    for name, gap in gaps.items():
        assert rows[name]["gap"] == pytest.approx(gap, rel=1e-4, abs=1e-6)
        assert rows[name]["low"] <= rows[name]["gap"] <= rows[name]["high"]
    assert result.value == pytest.approx(max(gaps.values()), rel=1e-4)
    assert result.ci[0] <= result.value <= result.ci[1]


def hook_minimality_gaps(model, task, tested) -> dict:
    """|F(C) - F(C∖{v})| / F(M) for each v in ``tested``, by hook knockouts (K = ∅)."""
    f_m = logit_diff(ref.logits(model, task.clean), task).double()
    base = outside(model, CIRCUIT)
    f_c = F(model, task, base)
    expected = {}
    for name in tested:
        layer, head = int(name[1]), int(name.split(".h")[1])
        expected[name] = abs(float((f_c - F(model, task, base + [(layer, head)])).mean() / f_m.mean()))
    return expected


def test_minimality_gaps_equal_hook_knockouts(tiny_model, tiny_engine):
    task = toy_task(tiny_model)
    result = minimality(tiny_engine, CIRCUIT, task, "logit_diff", k=0)  # K = ∅ only
    expected = hook_minimality_gaps(tiny_model, task, CIRCUIT)
    rows = {row["component"]: row for row in result.details}
    for name, gap in expected.items():
        assert rows[name]["gap"] == pytest.approx(gap, rel=1e-4, abs=1e-6)
    assert result.value == pytest.approx(min(expected.values()), rel=1e-4, abs=1e-6)
    assert result.ci[0] <= result.value <= result.ci[1]


def test_random_subsets_are_seeded_and_each_set_runs_once(tiny_engine, tiny_model):
    task = toy_task(tiny_model)
    first = completeness(tiny_engine, CIRCUIT, task, "logit_diff", k=5, seed=3)
    again = completeness(tiny_engine, CIRCUIT, task, "logit_diff", k=5, seed=3)
    assert first.details == again.details and first.value == again.value
    # ∅ plus at most 5 distinct K's, two knockouts each, plus the model and the empty circuit: no set twice.
    assert first.knockouts <= 2 + 2 * 6
    result = minimality(tiny_engine, CIRCUIT, task, "logit_diff", k=2, seed=1)
    assert {row["component"] for row in result.details} == set(CIRCUIT)
    assert all(row["subsets tried"] <= 3 for row in result.details)


def test_loss_needs_the_ablated_normalisation(tiny_model, tiny_engine):
    task = toy_task(tiny_model)
    with pytest.raises(InputError, match="normalise='ablated'"):
        faithfulness(tiny_engine, CIRCUIT, task, "loss")
    result = faithfulness(tiny_engine, CIRCUIT, task, "loss", normalise="ablated")
    f_c = F(tiny_model, task, outside(tiny_model, CIRCUIT), metric=loss)
    f_none = F(tiny_model, task, all_heads(tiny_model), metric=loss)
    f_m = loss(ref.logits(tiny_model, task.clean), task).double()
    assert result.value == pytest.approx(float((f_c - f_none).mean() / (f_m - f_none).mean()), rel=1e-4)


@pytest.mark.parametrize("circuit, error, match", [
    ([], InputError, "circuit is empty"),
    (["embed"], UnknownComponentError, "embedding always runs"),
    (["a1.h0.q"], UnknownComponentError, "name the head 'a1.h0'"),
    (["a0", "a1"], InputError, "every component in scope"),
    (["a1", "a1.h2"], InputError, "more than once"),
    (["a7.h0"], UnknownComponentError, "layer 7"),
    ("a1.h9", UnknownComponentError, "head 9"),
])
def test_bad_circuits_are_errors(tiny_model, tiny_engine, circuit, error, match):
    with pytest.raises(error, match=match):
        faithfulness(tiny_engine, circuit, toy_task(tiny_model), "logit_diff")


@pytest.mark.parametrize("options, match", [
    (dict(ablation="zero"), "ablation='zero'"),
    (dict(reference="abc"), "reference='abc'"),
    (dict(normalise="none"), "normalise='none'"),
    (dict(level=1.5), "level=1.5"),
])
def test_bad_options_are_errors(tiny_model, tiny_engine, options, match):
    with pytest.raises(InputError, match=match):
        faithfulness(tiny_engine, CIRCUIT, toy_task(tiny_model), "logit_diff", **options)


def test_a_subset_outside_the_circuit_is_an_error(tiny_model, tiny_engine):
    with pytest.raises(InputError, match="not in the circuit"):
        completeness(tiny_engine, CIRCUIT, toy_task(tiny_model), "logit_diff", subsets=[["a0.h0"]])


def test_resample_ablation_reads_other_reference_prompts(tiny_model, tiny_engine):
    task = toy_task(tiny_model)
    mean = faithfulness(tiny_engine, CIRCUIT, task, "logit_diff")
    resampled = faithfulness(tiny_engine, CIRCUIT, task, "logit_diff", ablation="resample", seed=1)
    assert resampled.ablation == "resample" and not math.isclose(mean.value, resampled.value, rel_tol=1e-6)
    assert resampled.target == pytest.approx(mean.target, abs=1e-6)


def test_random_circuits_are_seeded_and_shaped_like_the_circuit(tiny_model, tiny_engine):
    from causal_hypotheses.interventions.criteria import control_circuits

    task = toy_task(tiny_model)
    first = control_circuits(tiny_engine, "faithfulness", CIRCUIT, task, "logit_diff", count=6, seed=4)
    again = control_circuits(tiny_engine, "faithfulness", CIRCUIT, task, "logit_diff", count=6, seed=4)
    other = control_circuits(tiny_engine, "faithfulness", CIRCUIT, task, "logit_diff", count=6, seed=5)
    assert first.control_patterns == again.control_patterns and first.controls == again.controls
    assert first.control_patterns != other.control_patterns
    for patterns in first.control_patterns:
        heads = sorted(pattern[0] for pattern in patterns)
        assert len(set(heads)) == 3 and set(heads) != set(CIRCUIT)  # as many distinct heads, not the circuit
        assert all(h.startswith("a") and ".h" in h for h in heads)
    # Each control's value is the criterion measured on that circuit.
    circuit = sorted(pattern[0] for pattern in first.control_patterns[0])
    assert first.controls[0] == pytest.approx(faithfulness(tiny_engine, circuit, task, "logit_diff").value, rel=1e-9)
    # p = (1 + #controls at least as good) / (count + 1); completeness counts lower as better.
    better = sum(1 for v in first.controls if not v < first.recovered)
    assert first.p_value == pytest.approx((1 + better) / 7)
    complete = control_circuits(tiny_engine, "completeness", CIRCUIT, task, "logit_diff", count=4, seed=4, k=1)
    assert complete.p_value == pytest.approx((1 + sum(1 for v in complete.controls if not v > complete.recovered)) / 5)


def test_a_mean_input_reused_by_another_engine_is_averaged_again(tiny_model):
    """A MeanInput keeps its mean for the engine that computed it, never for another model's."""
    from causal_hypotheses import Engine, random_gpt2
    from causal_hypotheses.engine import MeanInput

    tokens = torch.randint(0, 512, (3, 6), generator=torch.Generator().manual_seed(0))
    mean = MeanInput(tokens)
    other = Engine.from_hf(random_gpt2("tiny", seed=9, std=0.3))
    first = Engine.from_hf(tiny_model).run([tokens, mean], lambda path: 1).logits
    second = other.run([tokens, mean], lambda path: 1).logits
    fresh = other.run([tokens, MeanInput(tokens)], lambda path: 1).logits
    assert torch.allclose(second, fresh) and not torch.allclose(first, second)


def test_minimality_of_some_components_equals_hook_knockouts(tiny_model, tiny_engine):
    """``components=`` tests those components only, each in the whole circuit: the gaps of the
    hook knockouts, and the value is the weakest of them (not of the circuit)."""
    task = toy_task(tiny_model)
    tested = CIRCUIT[1:3]
    result = minimality(tiny_engine, CIRCUIT, task, "logit_diff", k=0, components=tested)
    expected = hook_minimality_gaps(tiny_model, task, tested)
    rows = {row["component"]: row for row in result.details}
    assert set(rows) == set(tested)
    for name, gap in expected.items():
        assert rows[name]["gap"] == pytest.approx(gap, rel=1e-4, abs=1e-6)
    assert result.value == pytest.approx(min(expected.values()), rel=1e-4, abs=1e-6)
    # With random K's, each tested component gets the K's it gets in the whole test.
    whole = {row["component"]: row for row in minimality(tiny_engine, CIRCUIT, task, "logit_diff", k=2, seed=1).details}
    some = minimality(tiny_engine, CIRCUIT, task, "logit_diff", k=2, seed=1, components=tested).details
    for row in some:
        assert row["best K"] == whole[row["component"]]["best K"]
        assert row["gap"] == pytest.approx(whole[row["component"]]["gap"], rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("components, match", [
    ([], "tests nothing"),
    (["a0.h0"], "not in the circuit"),
    ([CIRCUIT[0], CIRCUIT[0]], "more than once"),
])
def test_bad_components_are_errors(tiny_model, tiny_engine, components, match):
    with pytest.raises(InputError, match=match):
        minimality(tiny_engine, CIRCUIT, toy_task(tiny_model), "logit_diff", k=0, components=components)
