"""Baselines that cannot mislead: an unusable baseline stops the run at start-up; drift shows in
the CSV and the HTML, not only the terminal; claims measured differently from their baseline row
are pointed out; deselected claims are not reported missing; --claims-save and --claims-compare
name the same file."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from causal_hypotheses import reports

pytest_plugins = ["pytester"]

from plugin_support import PLUGIN, TWO_CLAIMS as CLAIMS  # noqa: E402,F401  (also loads what claims import)
WRITER, NOTHING = "test_claims.py::test_every_writer", "test_claims.py::test_nothing"


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest(*PLUGIN, *args)


def saved_baseline(pytester: pytest.Pytester, name: str = "main") -> pd.DataFrame:
    pytester.makepyfile(test_claims=CLAIMS)
    run(pytester, f"--claims-save={name}").assert_outcomes(passed=2)
    return pd.read_csv(pytester.path / "reports" / "baselines" / f"{name}.csv")


# ---------------------------------------------------------------------------------------------
# Unusable baselines: a usage error at start-up naming the file, what is wrong and the fix


BAD = {
    "empty": (b"", "the file is empty"),
    "blank-lines": (b"\n\n\n", "the file has no CSV header or rows"),
    "header-only": (",".join(reports.COLUMNS).encode() + b"\n", "it has a header but no claims"),
    "unrelated": (b"name,score\nalice,3\n", "it has no 'claim', 'value' columns (its columns: name, score), "
                                            "so it is not a claims report CSV"),
    "no-value": (b"claim,score\nt.py::test_a,0.5\n", "it has no 'value' column (its columns: claim, score)*"),
    "binary": (bytes(range(256)) * 8, "the file is not *"),
    "unterminated-quote": (b'claim,recovered\n"t.py::test_a,0.5\n', "the file is not a readable CSV (*EOF inside string*)"),
    "ragged": (b"claim,recovered\nt.py::test_a,0.5\nt.py::test_b,0.5,7,8\n", "the file is not a readable CSV (*Expected 2 fields*)"),
    "words-for-numbers": (b"claim,value\nt.py::test_a,0.5\nt.py::test_b,high\n",
                          "column 'value' holds 'high' (line 3), which is not a number"),
    # A report written before the columns were generic names its value "recovered".
    "old-words-for-numbers": (b"claim,recovered\nt.py::test_a,0.5\nt.py::test_b,high\n",
                              "column 'recovered' holds 'high' (line 3), which is not a number"),
    "repeated-ids": (b"claim,recovered\nt.py::test_a,0.5\nt.py::test_a,0.6\n", "claim ids repeat: t.py::test_a"),
    "missing-id": (b"claim,recovered\nt.py::test_a,0.5\n,0.6\n", "line 3 has no claim id"),
    "blank-id": (b"claim,recovered\nt.py::test_a,0.5\nt.py::test_b,0.5\n  ,0.6\n", "line 4 has no claim id"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_an_unusable_baseline_is_a_usage_error_at_start_up(pytester, case):
    content, problem = BAD[case]
    path = pytester.path / f"{case}.csv"
    path.write_bytes(content)
    pytester.makepyfile(test_claims=CLAIMS)
    result = run(pytester, f"--claims-compare={case}.csv")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: bad claims settings:",
                                 f"  --claims-compare='{case}.csv': the baseline {path} cannot be used: {problem}; give a CSV "
                                 "written by a claims run (reports/claims-*.csv) or save one with --claims-save=NAME"])
    assert "passed" not in result.stdout.str()  # no claim ran


def test_a_baseline_without_the_field_a_limit_needs_is_a_usage_error(pytester):
    (pytester.path / "old.csv").write_text("claim,recovered\nt.py::test_a,0.5\n")
    result = run(pytester, "--claims-compare=old.csv", "--claims-compare-fail=value:0.1,ci_low:0.1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"  --claims-compare='old.csv': the baseline {pytester.path / 'old.csv'} cannot be used: "
                                 "it has no 'ci_low' column, which --claims-compare-fail compares (its columns: claim, recovered)*"])


def test_a_directory_is_not_a_baseline(pytester):
    pytester.mkdir("old")
    pytester.makeini("[pytest]\nclaims_compare = old\n")
    result = run(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"  claims_compare = 'old' in {pytester.path / 'tox.ini'}: {pytester.path / 'old'} is a "
                                 "directory, not a CSV file and no baseline of that name in *; save one with --claims-save=NAME"])


def test_a_baseline_that_disappears_during_the_run_is_said_not_raised(pytester):
    saved_baseline(pytester)
    pytester.makepyfile(test_zz_remove="""
import os

def test_remove_the_baseline():
    os.remove(os.path.join("reports", "baselines", "main.csv"))
""")
    result = run(pytester, "--claims-compare=main", "--claims-compare-fail=value:0.05")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines([f"the baseline {pytester.path / 'reports/baselines/main.csv'} cannot be used: the file cannot "
                                 "be read (No such file or directory)"])


# ---------------------------------------------------------------------------------------------
# Drift in the CSV and the HTML


def test_drift_is_in_the_csv_the_html_and_the_terminal(pytester):
    edited = saved_baseline(pytester)
    assert edited[list(reports.COMPARISON)].isna().all().all()  # not compared: empty
    edited.loc[0, "value"] = 0.5
    edited.to_csv(pytester.path / "old.csv", index=False)

    result = run(pytester, "--claims-compare=old.csv", "--claims-compare-fail=value:0.05")
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([
        f"{WRITER}: value moved from 0.5 (baseline) to 1 (change +0.5), more than the limit 0.05 set by "
        "--claims-compare-fail=value:0.05",
        "the run failed on drift: 1 value moved beyond --claims-compare-fail=value:0.05",
    ])
    directory = pytester.path / "reports"
    frame = pd.read_csv(directory / "latest.csv")
    assert tuple(frame.columns) == reports.COLUMNS
    assert frame["claim"].tolist() == [WRITER, NOTHING]
    assert frame["baseline_value"].tolist() == [0.5, 0.0]
    assert frame["change"].tolist() == [pytest.approx(0.5), 0.0]
    assert frame["drift"].tolist() == [True, False]
    # The run's own files were rewritten after the comparison too, not only latest.*.
    newest = max(directory.glob("claims-*.csv"), key=lambda p: p.stat().st_mtime)
    assert newest.read_bytes() == (directory / "latest.csv").read_bytes()
    page = (directory / "latest.html").read_text()
    assert newest.with_suffix(".html").read_text() == page
    summary, sections = page.split('<section id="claim-', 1)
    assert "The run failed on drift: 1 value moved beyond --claims-compare-fail=value:0.05." in summary
    assert f"Compared with the baseline {pytester.path / 'old.csv'}: 2 claims in both" in summary
    assert "<th>vs baseline</th>" in summary and "0.500 (change +0.500) — drifted beyond --claims-compare-fail" in summary
    writer_section, nothing_section = sections.split('<section id="claim-', 1)
    assert f'<li class="drift">{WRITER}: value moved from 0.5 (baseline) to 1' in writer_section
    assert "<th>baseline fraction recovered</th><td>0.500 (change +0.500) — drifted" in writer_section
    assert 'class="drift"' not in nothing_section
    assert "<th>baseline fraction recovered</th><td>0.000 (change +0.000)</td>" in nothing_section


# The columns of a report written before they were generic (scrub-shaped: clean, ablated,
# scrubbed, recovered), as that version wrote them.
OLD_COLUMNS = (
    "claim", "kind", "model", "task", "hypothesis", "n", "seed", "draws", "metric", "ablation", "resampling",
    "clean", "ablated", "scrubbed", "recovered", "ci_low", "ci_high", "level", "unit", "effect_low", "effect_high",
    "at_least", "at_most", "control_p", "control_percentile",
    "verdict", "node_evaluations", "forward_passes", "cache_hits", "seconds", "message",
    "baseline_recovered", "change", "drift",
)


def test_a_baseline_written_before_the_generic_columns_still_compares(pytester):
    """An old report has recovered (no value), clean/ablated/scrubbed (no target/base/intervened):
    it is read as the new columns, so comparisons and limits on them work unchanged."""
    saved = saved_baseline(pytester)
    old = saved.rename(columns={"value": "recovered", "target": "clean", "base": "ablated", "intervened": "scrubbed",
                                "baseline_value": "baseline_recovered"})[list(OLD_COLUMNS)]
    old.loc[0, "recovered"] = 0.5
    old.loc[1, "clean"] += 1.0
    old.to_csv(pytester.path / "old.csv", index=False)
    assert "value" not in pd.read_csv(pytester.path / "old.csv").columns
    read = reports.read_csv(pytester.path / "old.csv")
    assert read["value"].tolist() == [0.5, 0.0] and read["target"].tolist() == old["clean"].tolist()
    assert reports.baseline_problem(pytester.path / "old.csv", ["value", "target"]) is None

    result = run(pytester, "--claims-compare=old.csv", "--claims-compare-fail=value:0.05,target:0.5")
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([
        "claim*baseline value*value*change",
        f"{WRITER}*0.500*1.000*0.500",
        f"{WRITER}: value moved from 0.5 (baseline) to 1 (change +0.5), more than the limit 0.05 set by "
        "--claims-compare-fail=value:0.05",
        f"{NOTHING}: target moved from * (baseline) to * (change -1), more than the limit 0.5 set by "
        "--claims-compare-fail=target:0.5",
    ])
    frame = pd.read_csv(pytester.path / "reports" / "latest.csv")
    assert frame["baseline_value"].tolist() == [0.5, 0.0] and frame["drift"].tolist() == [True, True]


def test_a_limit_on_an_old_column_name_says_its_new_name(pytester):
    pytester.makepyfile(test_claims=CLAIMS)
    result = run(pytester, "--claims-compare-fail=recovered:0.05")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--claims-compare-fail='recovered:0.05': expected FIELD:LIMIT*FIELD one of value, *"
                                 "e.g. value:0.05 (recovered is now called value)"])


def test_compare_without_limits_fills_the_columns_and_fails_nothing(pytester):
    saved_baseline(pytester)
    result = run(pytester, "--claims-compare=main", "--claims-save=again")
    assert result.ret == pytest.ExitCode.OK
    frame = pd.read_csv(pytester.path / "reports" / "latest.csv")
    assert frame["drift"].tolist() == [False, False] and frame["change"].tolist() == [0.0, 0.0]
    page = (pytester.path / "reports" / "latest.html").read_text()
    assert "no limits set (--claims-compare-fail)" in page and "failed on drift" not in page
    # A saved baseline holds what its run measured, not that run's comparison.
    again = pd.read_csv(pytester.path / "reports" / "baselines" / "again.csv")
    assert again[list(reports.COMPARISON)].isna().all().all()


def test_claims_measured_differently_from_the_baseline_are_pointed_out(pytester):
    edited = saved_baseline(pytester)
    edited.loc[1, "n"] = 16
    edited.loc[0, ["model", "seed"]] = ["random-gpt2-tiny", 9]
    edited.to_csv(pytester.path / "old.csv", index=False)
    result = run(pytester, "--claims-compare=old.csv")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines([
        f"{WRITER}: note: model induction-2l here, random-gpt2-tiny in the baseline; seed 5 here, 9 in the baseline, "
        "so the two are not the same measurement",
        f"{NOTHING}: note: n 8 here, 16 in the baseline, so the two are not the same measurement",
    ])
    page = (pytester.path / "reports" / "latest.html").read_text()
    summary, sections = page.split('<section id="claim-', 1)
    assert f'<li class="warning">{NOTHING}: note: n 8 here, 16 in the baseline' in summary
    assert '<li class="warning">Not the same measurement as the baseline: n 8 here, 16 in the baseline.</li>' in sections


# ---------------------------------------------------------------------------------------------
# Which baseline claims are missing


def test_deselected_claims_are_not_missing_but_selected_claims_without_a_result_are(pytester):
    saved_baseline(pytester)
    result = run(pytester, "-k", "nothing", "--claims-compare=main")
    assert result.ret == pytest.ExitCode.OK
    assert "in the baseline but not in this run" not in result.stdout.str()
    result = run(pytester, "-m", "not claim", "--claims-compare=main")  # no claim selected: nothing compared
    assert "in the baseline but not in this run" not in result.stdout.str()

    # -x stops after the first failure: the second claim was selected but never ran.
    pytester.makepyfile(test_claims=CLAIMS.replace("at_least=0.9", "at_least=1.5").replace("at_most=0.1", "at_most=0.1, n=8"))
    stopped = run(pytester, "-x", "--claims-compare=main")
    stopped.assert_outcomes(failed=1)
    stopped.stdout.fnmatch_lines([f"{NOTHING}: in the baseline but not in this run"])


@pytest.mark.slow
def test_under_xdist_deselected_claims_are_not_missing_and_drift_is_written(pytester):
    pytest.importorskip("xdist")
    edited = saved_baseline(pytester)
    edited.loc[1, "value"] = 0.5
    # A selected test with a baseline row but no result (the workers' selections reach the controller).
    edited.loc[2] = edited.loc[1].copy()
    edited.loc[2, "claim"] = "test_plain.py::test_nothing_plain"
    edited.to_csv(pytester.path / "old.csv", index=False)
    pytester.makepyfile(test_more=CLAIMS.replace("seed=5", "seed=6"), test_plain="def test_nothing_plain():\n    pass\n")
    result = pytester.runpytest_subprocess(*PLUGIN, "-n", "2", "-k", "nothing", "--claims-compare=old.csv",
                                           "--claims-compare-fail=value:0.05", timeout=600)
    result.assert_outcomes(passed=3)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    output = result.stdout.str()
    assert "test_claims.py::test_every_writer: in the baseline but not in this run" not in output
    result.stdout.fnmatch_lines(["test_more.py::test_nothing: not in the baseline",
                                 "test_plain.py::test_nothing_plain: in the baseline but not in this run",
                                 "the run failed on drift: 1 value moved beyond --claims-compare-fail=value:0.05"])
    frame = pd.read_csv(pytester.path / "reports" / "latest.csv")
    drift = frame.set_index("claim")["drift"]
    assert drift[NOTHING] == True and pd.isna(drift["test_more.py::test_nothing"])  # noqa: E712 (read back as text or bool)


def test_compare_notes_missing_claims_only_among_the_selected():
    now = reports.to_frame([record("a", 0.9)])
    then = reports.to_frame([record("a", 0.8), record("deselected", 0.5), record("stopped", 0.5)])
    _, _, notes = reports.compare(now, then, [], selected={"a", "stopped", "plain-test"})
    assert notes == ["stopped: in the baseline but not in this run"]
    _, _, notes = reports.compare(now, then, [], selected=())
    assert notes == []
    _, _, notes = reports.compare(now, then, [])  # None: every claim counts as selected
    assert notes == ["deselected: in the baseline but not in this run", "stopped: in the baseline but not in this run"]


def test_comparison_fields_and_identity_mismatches():
    now = reports.to_frame([record("a", 0.9), record("b", 0.5, n=16, seed=2), record("new", 0.1)])
    then = reports.to_frame([record("a", 0.8), record("b", float("nan"))])
    then["n"] = then["n"].astype(float)  # as a CSV with an empty cell gives it
    _, drifts, notes = reports.compare(now, then, [reports.Limit("value", 0.05)])
    assert [(d.claim, d.baseline, d.now) for d in drifts][0] == ("a", 0.8, 0.9)
    assert "b: note: n 16 here, 4 in the baseline; seed 2 here, 0 in the baseline, so the two are not the same measurement" in notes
    fields = reports.comparison_fields(now, then, drifts)
    assert set(fields) == {"a", "b"}
    assert fields["a"]["drift"] is True and fields["a"]["change"] == pytest.approx(0.1)
    assert fields["b"]["drift"] is True and math.isnan(fields["b"]["baseline_value"])  # nan -> a number: drift
    assert ("warning", "Not the same measurement as the baseline: n 16 here, 4 in the baseline; seed 2 here, 0 in the baseline.") \
        in fields["b"]["baseline_notes"]
    assert reports.mismatches({"n": 8, "model": "m"}, {"n": 8.0, "model": "m"}) == []
    assert reports.mismatches({"n": 8}, {"model": "m"}) == []  # a column the baseline lacks is not compared


def record(claim: str, value: float, **changes) -> dict:
    base = {"claim": claim, "model": "m", "task": "induction", "hypothesis": "h", "n": 4, "seed": 0, "draws": 1,
            "metric": "loss", "ablation": "resample", "target": 1.0, "base": 3.0, "intervened": 2.0, "value": value,
            "ci_low": value - 0.1, "ci_high": value + 0.1, "level": 0.95, "at_least": 0.4, "at_most": float("nan"),
            "verdict": "pass", "node_evaluations": 3, "forward_passes": 1, "cache_hits": 2, "seconds": 0.5, "message": "m"}
    return {**base, **changes}


# ---------------------------------------------------------------------------------------------
# --claims-save and --claims-compare name the same file


def test_save_and_compare_agree_on_a_name_ending_in_csv(pytester):
    pytester.makepyfile(test_claims=CLAIMS)
    result = run(pytester, "-k", "nothing", "--claims-save=x.csv")
    baselines = pytester.path / "reports" / "baselines"
    result.stdout.fnmatch_lines([f"baseline saved: {baselines / 'x.csv'}"])
    assert sorted(p.name for p in baselines.iterdir()) == ["x.csv"]
    compared = run(pytester, "-k", "nothing", "--claims-compare=x.csv", "--claims-compare-fail=value:0.01")
    assert compared.ret == pytest.ExitCode.OK
    compared.stdout.fnmatch_lines([f"compared with {baselines / 'x.csv'}:", f"{NOTHING}*0.000*0.000*0.000"])
    again = run(pytester, "-k", "nothing", "--claims-compare=x")
    again.stdout.fnmatch_lines([f"compared with {baselines / 'x.csv'}:"])


def test_a_baseline_saved_by_a_spreadsheet_with_a_byte_order_mark_is_read(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbfclaim,recovered\nt.py::test_a,0.5\n")
    assert reports.baseline_problem(path) is None
    assert reports.read_csv(path)["claim"].tolist() == ["t.py::test_a"]
