"""Claim kinds beyond scrubbing: activation and path patching as claims, against independent
computations on the unmodified HF model (hooks), through the plugin."""
from __future__ import annotations

import math

import pytest
import torch

from causal_hypotheses import Engine, activation_patch
from causal_hypotheses.interventions.effects import patch_effect
from causal_hypotheses.metrics import logit_diff
from causal_hypotheses.stats import ratio_interval
from causal_hypotheses.tasks import Task

import hf_reference as ref
from test_plugin import HEADER, latest, run  # noqa: F401

pytest_plugins = ["pytester"]


def toy_task(model, n=12, seed=5) -> Task:
    generator = torch.Generator().manual_seed(seed)
    clean = torch.randint(0, model.config.vocab_size, (n, 7), generator=generator)
    corrupt = clean.clone()
    corrupt[:, 2] = torch.randint(0, model.config.vocab_size, (n,), generator=generator)  # one token changed
    answer = torch.randint(0, model.config.vocab_size, (n,), generator=generator)
    return Task("toy", clean, corrupt, answer=answer, distractor=(answer + 1) % model.config.vocab_size)


@pytest.mark.parametrize("direction", ["noising", "denoising"])
def test_activation_patch_effect_equals_hook_patching(tiny_model, tiny_engine, direction):
    task = toy_task(tiny_model)
    base, source = (task.clean, task.corrupt) if direction == "noising" else (task.corrupt, task.clean)
    result = patch_effect(tiny_engine, task, "logit_diff", kind="activation_patch", direction=direction, nodes=["a1.h2"])
    z = ref.head_z(tiny_model, source, 1)
    patched = logit_diff(ref.patch_head_z(tiny_model, base, 1, 2, z), task).double()
    b, t = logit_diff(ref.logits(tiny_model, base), task).double(), logit_diff(ref.logits(tiny_model, source), task).double()
    assert result.scrubbed == pytest.approx(float(patched.mean()), abs=1e-5)
    assert result.ablated == pytest.approx(float(b.mean()), abs=1e-5) and result.clean == pytest.approx(float(t.mean()), abs=1e-5)
    expected = float((patched - b).mean() / (t - b).mean())
    assert result.fraction_recovered == pytest.approx(expected, abs=1e-5)
    interval = ratio_interval(patched - b, t - b)
    assert result.ci == pytest.approx((interval.low, interval.high), abs=1e-4)
    assert result.kind == "activation_patch" and result.direction == direction and result.units == len(task)


def test_path_patch_effect_equals_hand_built_reference(tiny_model, tiny_engine):
    task = toy_task(tiny_model)
    result = patch_effect(tiny_engine, task, "logit_diff", kind="path_patch", senders=["a0.h1"], receivers=["a1.h0.q"])
    delta = ref.head_output(tiny_model, task.corrupt, 0, 1) - ref.head_output(tiny_model, task.clean, 0, 1)
    patched = logit_diff(ref.path_patch_channel(tiny_model, task.clean, delta, 1, 0, 0), task).double()
    assert result.scrubbed == pytest.approx(float(patched.mean()), abs=1e-5)


def test_a_task_without_a_corruption_is_an_error(tiny_model, tiny_engine):
    task = toy_task(tiny_model)
    same = Task("same", task.clean, task.clean, answer=task.answer, distractor=task.distractor)
    with pytest.raises(Exception, match="identical clean and corrupt prompts"):
        patch_effect(tiny_engine, same, "logit_diff", kind="activation_patch", nodes=["a1"])
    with pytest.raises(Exception, match="direction='sideways'"):
        patch_effect(tiny_engine, task, "logit_diff", kind="activation_patch", nodes=["a1"], direction="sideways")


def test_patching_claims_through_the_plugin(pytester):
    """On the trained induction model (the corrupt prompts break the repetition): every writer
    moves all of the change, nothing none; a head's share is measured and reported."""
    result = run(pytester, """
@pytest.mark.claim(**TINY, at_least=0.99)
def test_everything_carries_the_change(claim):
    claim.activation_patch(claim.engine.graph.writers())

@pytest.mark.claim(**TINY, at_least=0.99)
def test_everything_restores_it(claim):
    claim.activation_patch(claim.engine.graph.writers(), direction="denoising")

@pytest.mark.claim(**TINY, at_least=-10)
def test_the_embedding_paths_into_layer_1(claim):
    claim.path_patch(["embed"], ["a1.h0.q", "a1.h1.q"])
""", "--junitxml=junit.xml")
    result.assert_outcomes(passed=3)
    frame = latest(pytester)
    assert frame["kind"].tolist() == ["activation_patch (noising)", "activation_patch (denoising)", "path_patch (noising)"]
    assert frame.loc[0, "value"] == pytest.approx(1.0, abs=1e-6) and frame.loc[1, "value"] == pytest.approx(1.0, abs=1e-6)
    assert frame["statistic"].tolist() == ["fraction moved"] * 3
    assert "moved 1.000 of the change" in frame.loc[0, "message"] and "the clean run with" in frame.loc[0, "message"]
    page = (pytester.path / "reports" / "latest.html").read_text()
    assert "target / base / patched" in page and "path_patch (noising)" in page
    assert "<h3>Hypothesis</h3>" not in page and "empty hypothesis" not in page  # nothing drawn that was not tested
    assert ">patched</text>" in page and ">target</text>" in page  # the per-example rows name the runs


def test_per_example_values_and_run_metadata_are_written_beside_the_csv(pytester):
    import json

    import pandas as pd

    run(pytester, """
@pytest.mark.claim(**TINY, at_least=0.9)
def test_every_writer(claim):
    claim.scrub(everything(claim))

@pytest.mark.claim(**TINY, at_least=0.99)
def test_everything_carries_the_change(claim):
    claim.activation_patch(claim.engine.graph.writers())
""").assert_outcomes(passed=2)
    directory = pytester.path / "reports"
    examples = pd.read_csv(directory / "latest-examples.csv")
    assert list(examples.columns) == ["claim", "kind", "draw", "example", "target", "base", "intervened"]
    assert examples.groupby("claim").size().tolist() == [8, 8]  # n=8 examples, one draw each
    assert set(examples["kind"]) == {"scrub", "activation_patch (noising)"}
    summary = pd.read_csv(directory / "latest.csv")
    for claim, group in examples.groupby("claim"):  # the long form agrees with the summary's means
        row = summary[summary["claim"] == claim].iloc[0]
        for run_name in ("target", "base", "intervened"):
            assert group[run_name].mean() == pytest.approx(row[run_name], abs=1e-9)
    meta = json.loads((directory / "latest-meta.json").read_text())
    for key in ("causal_hypotheses", "torch", "transformers", "git commit", "device", "python"):
        assert key in meta
    assert len(list(directory.glob("examples-claims-*.csv"))) == 1 and len(list(directory.glob("meta-claims-*.json"))) == 1


def test_random_controls_and_beats_random(pytester):
    """The true induction circuit beats every random hypothesis of its shape; the wrong one (the
    other layer-0 heads) does not, so beats_random fails it although its interval clears its bar."""
    result = run(pytester, """
from causal_hypotheses.trained import induction_hypothesis

def circuit(query, key):
    return induction_hypothesis(query, key, name="circuit")

@pytest.mark.claim(**{**TINY, "n": 24}, at_least=0.9, beats_random=0.9)
def test_true_circuit_beats_random(claim):
    claim.scrub(circuit(["embed", "a0.h0"], ["a0.h0", "a0.h3"]), control=10)

@pytest.mark.claim(**{**TINY, "n": 24}, at_least=0.3, beats_random=0.9)
def test_wrong_circuit_does_not(claim):
    claim.scrub(circuit(["embed", "a0.h1"], ["a0.h1", "a0.h2"]), control=10)

@pytest.mark.claim(**TINY, at_least=0.9, beats_random=0.99)
def test_too_few_controls_for_the_level(claim):
    claim.scrub(circuit(["embed", "a0.h0"], ["a0.h0", "a0.h3"]), control=10)
""")
    result.assert_outcomes(passed=1, failed=2)
    frame = latest(pytester)
    assert frame["verdict"].tolist() == ["pass", "fail", "error"]
    assert frame.loc[0, "control_p"] == pytest.approx(1 / 11) and frame.loc[0, "control_percentile"] == 100
    assert frame.loc[1, "control_p"] > 0.1 and "does not beat random hypotheses of its shape" in frame.loc[1, "message"]
    assert "with control=10 the smallest possible is 1/11; use control >= 99" in frame.loc[2, "message"]
    page = (pytester.path / "reports" / "latest.html").read_text()
    assert page.count("random controls of test_claims.py::") == 2


def test_a_hypothesis_that_falls_short_is_told_what_it_misses(pytester):
    """The true induction circuit with one key composition left out: the failure message ranks
    exactly that path first (tests/test_hints.py checks the ranking itself)."""
    result = run(pytester, """
from causal_hypotheses.trained import induction_hypothesis

@pytest.mark.claim(**{**TINY, "n": 16, "seed": 0}, at_least=0.9)
def test_one_composition_missing(claim):
    claim.scrub(induction_hypothesis(leave_out=[("a1.h2.k", "a0.h3")], name="a1.h2's key misses a0.h3"))
""")
    result.assert_outcomes(failed=1)
    message = latest(pytester).loc[0, "message"]
    lines = message.split("hints (paths left out, by what adding each would recover):\n")[1].splitlines()
    assert lines[0].startswith("    adding ('a1.h2.k', 'a0.h3') would recover +")
