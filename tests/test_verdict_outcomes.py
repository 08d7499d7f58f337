"""The row is the outcome: a claim's CSV row, HTML section and JUnit properties agree with what
pytest reports for the test, whatever happens after the experiment; markers behave as documented."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pandas as pd
import pytest

from test_plugin import HEADER, PLUGIN, latest, run  # noqa: F401  (also loads what claims import)

pytest_plugins = ["pytester"]


def junit(pytester) -> dict[str, dict[str, str]]:
    """Per test name: its claim_* properties from the JUnit XML."""
    tree = ET.parse(pytester.path / "junit.xml")
    found = {}
    for case in tree.iter("testcase"):
        found[case.get("name")] = {p.get("name"): p.get("value") for p in case.iter("property")}
    return found


def rows(pytester) -> dict[str, dict]:
    return {row["claim"].split("::")[-1]: row for row in latest(pytester).to_dict("records")}


def test_what_happens_after_the_experiment_is_what_the_row_says(pytester):
    result = run(pytester, """
@pytest.mark.claim(**TINY, at_least=0.9)
def test_assert_after(claim):
    claim.scrub(everything(claim))
    assert 1 == 2, "the author's own check"

@pytest.mark.claim(**TINY, at_least=0.9)
def test_exception_after(claim):
    claim.scrub(everything(claim))
    raise RuntimeError("boom after the experiment")

@pytest.mark.claim(**TINY, at_least=0.9)
def test_second_scrub(claim):
    claim.scrub(everything(claim))
    claim.scrub(NOTHING)

@pytest.mark.claim(**TINY, at_least=0.9)
def test_skip_after(claim):
    claim.scrub(everything(claim))
    pytest.skip("decided to skip")

@pytest.mark.claim(**TINY, at_least=0.9)
def test_skip_before(claim):
    pytest.skip("nothing to do")

@pytest.mark.xfail(reason="known to fall short")
@pytest.mark.claim(**TINY, at_least=0.9)
def test_xfail_that_fails(claim):
    claim.scrub(NOTHING)

@pytest.mark.xfail(reason="thought to fall short")
@pytest.mark.claim(**TINY, at_least=0.9)
def test_xfail_that_passes(claim):
    claim.scrub(everything(claim))

@pytest.mark.claim(**TINY, at_least=0.9)
def test_caught(claim):
    from causal_hypotheses.claims import ClaimNotMet
    try:
        claim.scrub(NOTHING)
    except ClaimNotMet:
        pass

@pytest.mark.claim(**TINY, at_least=0.9)
def test_passes(claim):
    claim.scrub(everything(claim))

@pytest.mark.claim(**TINY, at_least=0.9)
def test_fails(claim):
    claim.scrub(NOTHING)
""", "--junitxml=junit.xml")
    result.assert_outcomes(passed=1, failed=5, skipped=2, xfailed=1, xpassed=1)
    row = rows(pytester)
    expected = {
        "test_assert_after": ("error", "AssertionError: the author's own check"),
        "test_exception_after": ("error", "RuntimeError: boom after the experiment"),
        "test_second_scrub": ("error", "already ran an experiment"),
        "test_skip_after": ("skipped", "decided to skip"),
        "test_skip_before": ("skipped", "nothing to do"),
        "test_xfail_that_fails": ("xfailed", "known to fall short"),
        "test_xfail_that_passes": ("xpassed", "thought to fall short"),
        "test_caught": ("error", "but the test passed"),
        "test_passes": ("pass", "claim holds"),
        "test_fails": ("fail", "claim not met"),
    }
    properties = junit(pytester)
    for name, (verdict, fragment) in expected.items():
        assert row[name]["verdict"] == verdict, (name, row[name]["message"])
        assert fragment in row[name]["message"], (name, row[name]["message"])
        assert properties[name]["claim_verdict"] == verdict, name
    # The measured numbers stay in the row when a later failure decides the verdict.
    assert row["test_assert_after"]["value"] == pytest.approx(1.0)
    page = (pytester.path / "reports" / "latest.html").read_text()
    assert page.count(">error</span>") == 4 and ">xpassed</span>" in page
    result.stdout.fnmatch_lines(["*test_assert_after*error*", "*test_passes*pass*"])


def test_a_teardown_error_turns_the_row_into_an_error(pytester):
    result = run(pytester, """
@pytest.fixture
def broken_teardown():
    yield
    raise RuntimeError("teardown broke")

@pytest.mark.claim(**TINY, at_least=0.9)
def test_then_teardown_fails(claim, broken_teardown):
    claim.scrub(everything(claim))
""", "--junitxml=junit.xml")
    result.assert_outcomes(passed=1, errors=1)
    row = rows(pytester)["test_then_teardown_fails"]
    assert row["verdict"] == "error" and "error in teardown after the test: RuntimeError: teardown broke" in row["message"]
    assert junit(pytester)["test_then_teardown_fails"]["claim_verdict"] == "error"


def test_every_bad_marker_of_the_run_is_listed_in_one_collection_error_with_file_and_line(pytester):
    pytester.makepyfile(test_other=HEADER + """
@pytest.mark.claim(**TINY, at_least="high")
def test_bad_threshold(claim):
    claim.scrub(NOTHING)
""")
    result = run(pytester, """
@pytest.mark.claim(**TINY, at_least=0.5, colour="red")
def test_bad_colour(claim):
    claim.scrub(NOTHING)

@pytest.mark.claim(**TINY, at_least=0.5)
def test_fine(claim):
    claim.scrub(NOTHING)

@pytest.mark.claim(**{**TINY, "metric": "los"}, at_least=0.5)
def test_bad_metric(claim):
    claim.scrub(NOTHING)
""")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([
        "*ERROR collecting claim markers in 2 files*",
        "3 bad claim markers (fix each, then run again):",
        "test_claims.py:??: test_claims.py::test_bad_colour: bad claim marker:",
        "*unknown argument colour*",
        "test_claims.py:??: test_claims.py::test_bad_metric: bad claim marker:",
        "*metric='los': expected one of*",
        "test_other.py:??: test_other.py::test_bad_threshold: bad claim marker:",
        "*at_least='high': expected a finite number*",
    ])
    # Each location points at the test's marker, the line just above its def.
    # (the ERRORS section and, on a wide terminal, the short summary both print them)
    found = sorted(set(re.findall(r"^(test_\w+\.py):(\d+): \S+::(\w+): bad claim marker", result.stdout.str(), re.M)))
    assert [name for _, _, name in found] == ["test_bad_colour", "test_bad_metric", "test_bad_threshold"]
    for path, line, name in found:
        lines = (pytester.path / path).read_text().splitlines()
        assert lines[int(line) - 1].startswith("@pytest.mark.claim(") and lines[int(line)].startswith(f"def {name}(")


def test_a_module_level_marker_leaves_plain_tests_plain(pytester):
    result = run(pytester, """
pytestmark = pytest.mark.claim(**TINY, at_least=0.9)

def test_plain_helper_check():
    assert 2 + 2 == 4

def test_the_claim(claim):
    claim.scrub(everything(claim))
""")
    result.assert_outcomes(passed=2)
    assert latest(pytester)["claim"].tolist() == ["test_claims.py::test_the_claim"]


def test_the_nearer_marker_decides_the_threshold(pytester):
    result = run(pytester, """
pytestmark = pytest.mark.claim(**TINY, at_most=0.1)

@pytest.mark.claim(at_least=0.9)
def test_positive_claim_in_a_module_of_controls(claim):
    claim.scrub(everything(claim))
""")
    result.assert_outcomes(passed=1)
    row = latest(pytester).loc[0]
    assert row["at_least"] == 0.9 and pd.isna(row["at_most"])


def test_a_model_that_fails_to_load_is_tried_once(pytester):
    pytester.makeconftest("""
from causal_hypotheses.claims import register_model

@register_model("broken")
def load():
    with open("loads.txt", "a") as counter:
        counter.write("tried\\n")
    raise RuntimeError("weights are corrupt")
""")
    result = run(pytester, """
@pytest.mark.claim(model="broken", task="induction", metric="loss", at_least=0.5)
def test_one(claim):
    pass

@pytest.mark.claim(model="broken", task="induction", metric="loss", at_least=0.5)
def test_two(claim):
    pass
""")
    result.assert_outcomes(errors=2)
    assert (pytester.path / "loads.txt").read_text() == "tried\n"
    result.stdout.fnmatch_lines(["*model 'broken' failed to load: RuntimeError: weights are corrupt*"])
    assert latest(pytester)["verdict"].tolist() == ["error", "error"]


def test_family_wise_levels_and_the_chance_of_failures(pytester):
    body = """
@pytest.mark.claim(**TINY, at_least=0.9)
def test_one(claim):
    claim.scrub(everything(claim))

@pytest.mark.claim(**TINY, at_most=0.1)
def test_two(claim):
    claim.scrub(NOTHING)

@pytest.mark.claim(**TINY, at_most=0.1)
def test_three(claim):
    claim.scrub(NOTHING)
"""
    plain = run(pytester, body)
    plain.assert_outcomes(passed=3)
    plain.stdout.fnmatch_lines([f"3 claims judged: if each held exactly at its threshold, about {3 * 0.05 / 2:.2f} would fail by chance; "
                                "--claims-level-family=bonferroni keeps the chance of any wrong verdict at 1 - level"])
    assert (latest(pytester)["level"] == 0.95).all()
    family = run(pytester, body, "--claims-level-family=bonferroni")
    family.assert_outcomes(passed=3)
    frame = latest(pytester)
    assert frame["level"].tolist() == pytest.approx([1 - 0.05 / 3] * 3)
    assert "adjusted to 0.9833 for 3 claims (--claims-level-family=bonferroni)" in frame.loc[0, "message"]
    family.stdout.fnmatch_lines([f"*about {3 * (0.05 / 3) / 2:.2f} would fail by chance (levels adjusted with --claims-level-family=bonferroni)"])
    assert "would fail by chance" in (pytester.path / "reports" / "latest.html").read_text()
    bad = run(pytester, body, "--claims-level-family=holm")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["*--claims-level-family='holm': expected one of none, bonferroni*"])
