"""Interchange accuracy and Wang et al.'s circuit criteria as claims, through the plugin, on the
trained induction model (whose circuit is known: tests/test_criteria.py checks the numbers
against hook knockouts, tests/test_scrubbing.py the interchange)."""
from __future__ import annotations

import pytest

from test_plugin import latest, run  # noqa: F401

pytest_plugins = ["pytester"]

KINDS = """
from causal_hypotheses import CausalModel

COPY = CausalModel({"first": lambda f: f["first"]}, output=lambda v: v["first"], name="copy r[0]")
CIRCUIT = ["a0.h0", "a0.h3", "a1.h0", "a1.h1", "a1.h2", "a1.h3"]
SETTINGS = {**TINY, "n": 24}

@pytest.mark.claim(**SETTINGS, at_least=0.8)
def test_induction_heads_carry_the_copied_token(claim):
    claim.iia(COPY, "first", ["a1.h0", "a1.h1", "a1.h2", "a1.h3"], positions=[-1])

@pytest.mark.claim(**SETTINGS, at_most=0.1)
def test_heads_that_change_nothing_are_no_evidence(claim):
    claim.iia(COPY, "first", ["a0.h1", "a0.h2"], positions=[-1])

@pytest.mark.claim(**SETTINGS, at_least=0.9)
def test_faithful(claim):
    claim.faithfulness(CIRCUIT, control=5)

@pytest.mark.claim(**SETTINGS, at_most=0.1)
def test_complete(claim):
    claim.completeness(CIRCUIT, k=3)

@pytest.mark.claim(**SETTINGS, at_least=0.05)
def test_minimal(claim):
    claim.minimality(CIRCUIT, k=1)

@pytest.mark.claim(**SETTINGS, at_most=0.1)
def test_induction_heads_alone_keep_nothing(claim):
    claim.faithfulness(["a1.h0", "a1.h1", "a1.h2", "a1.h3"])
"""


def test_interchange_and_circuit_criteria_as_claims(pytester):
    result = run(pytester, KINDS)
    result.assert_outcomes(passed=5, failed=1)
    frame = latest(pytester)
    assert frame["kind"].tolist() == ["iia", "iia", "faithfulness", "completeness", "minimality", "faithfulness"]
    assert frame["verdict"].tolist() == ["pass", "no-effect", "pass", "pass", "pass", "pass"]
    assert frame.loc[0, "value"] == 1.0 and frame.loc[0, "ci_low"] == pytest.approx(24 / (24 + 1.959964 ** 2), abs=1e-4)
    assert "the patch never changes the model's prediction on any of 24 pairs" in frame.loc[1, "message"]
    assert frame.loc[2, "statistic"] == "faithfulness (F(C)-F(∅))/(F(M)-F(∅))"  # loss: normalised by the ablated model
    assert frame.loc[2, "value"] > 0.99 and frame.loc[2, "control_p"] == pytest.approx(1 / 6)
    assert "random controls: 5 circuits of the same shape" in frame.loc[2, "message"]
    assert frame.loc[3, "value"] < 0.05 and "largest gaps: K=" in frame.loc[3, "message"]
    assert "components by their best gap: " in frame.loc[4, "message"]
    assert frame.loc[5, "value"] == pytest.approx(0, abs=0.01)
    page = (pytester.path / "reports" / "latest.html").read_text()
    assert page.count("<h3>Details</h3>") == 2  # completeness's K's and minimality's components
    assert "a1.h1" in page and "interchange accuracy" in page


def test_criteria_options_are_checked(pytester):
    result = run(pytester, """
@pytest.mark.claim(**TINY, at_least=0.9)
def test_unknown_option(claim):
    claim.faithfulness(["a1.h0"], weights=3)

@pytest.mark.claim(**TINY, at_least=0.9)
def test_head_input_in_a_circuit(claim):
    claim.minimality(["a1.h0.q"])

@pytest.mark.claim(**TINY, at_least=0.9)
def test_every_head(claim):
    claim.faithfulness(["a0", "a1"])

@pytest.mark.claim(**TINY, at_least=0.1, beats_random=0.95)
def test_components_with_controls(claim):
    claim.minimality(["a0.h0", "a1.h0"], components=["a1.h0"])
""")
    result.assert_outcomes(failed=4)
    messages = latest(pytester)["message"].tolist()
    assert "unknown option(s) weights" in messages[0]
    assert "name the head 'a1.h0'" in messages[1]
    assert "every component in scope" in messages[2]
    assert "random circuits do not hold those components" in messages[3]
