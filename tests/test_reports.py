"""Reports: the CSV schema, the self-contained HTML page, baselines, interrupted and parallel runs."""
from __future__ import annotations

import math
import os
import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd
import pytest

from causal_hypotheses import reports

pytest_plugins = ["pytester"]

import causal_hypotheses.engine.drawing  # noqa: E402
from plugin_support import PLUGIN, TWO_CLAIMS  # noqa: E402,F401  (also loads what claims import)
CLAIMS = TWO_CLAIMS + """

@pytest.mark.claim(at_least=-1000, ablation="mean", draws=2)
def test_key_composition(claim):
    claim.scrub(Hypothesis({("a1.h2.k", "a0.h3"): "seq", ("a1.h2.v",): None}, name="composition"))
"""


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest(*PLUGIN, *args)


def only(pattern: str, directory: Path) -> Path:
    found = sorted(directory.glob(pattern))
    assert len(found) == 1, found
    return found[0]


def inline_svgs(page: str) -> list[str]:
    return re.findall(r"<svg\b.*?</svg>", page, flags=re.S)


# ---------------------------------------------------------------------------------------------
# Through pytester


def test_csv_round_trips_through_pandas(pytester):
    pytester.makepyfile(test_claims=CLAIMS)
    run(pytester).assert_outcomes(passed=3)
    directory = pytester.path / "reports"
    path = only("claims-*.csv", directory)
    frame = pd.read_csv(path)
    assert tuple(frame.columns) == reports.COLUMNS
    assert frame["claim"].tolist() == [f"test_claims.py::test_{name}" for name in ("every_writer", "nothing", "key_composition")]
    assert frame["verdict"].tolist() == ["pass"] * 3
    assert frame["value"].tolist()[:2] == [pytest.approx(1.0), 0.0]
    assert frame["kind"].tolist() == ["scrub"] * 3 and frame["statistic"].tolist() == ["fraction recovered"] * 3
    assert frame[["n", "seed"]].values.tolist() == [[8, 5]] * 3
    assert frame["ablation"].tolist() == ["resample", "resample", "mean"] and frame["draws"].tolist() == [1, 1, 2]
    assert math.isnan(frame.loc[0, "at_most"]) and frame.loc[1, "at_most"] == 0.1
    assert (frame["ci_low"] <= frame["value"]).all() and (frame["value"] <= frame["ci_high"]).all()
    assert (frame["node_evaluations"] > 0).all() and (frame["seconds"] > 0).all()
    # Written with full precision: the numbers read back equal the ones the claims computed.
    assert (frame["target"] == frame.loc[0, "target"]).all()
    assert (path.parent / "latest.csv").read_bytes() == path.read_bytes()


def test_html_page_is_self_contained_with_graphs_and_plots(pytester):
    pytester.makepyfile(test_claims=CLAIMS)
    run(pytester).assert_outcomes(passed=3)
    directory = pytester.path / "reports"
    page = only("claims-*.html", directory).read_text()
    assert (directory / "latest.html").read_text() == page
    assert page.startswith("<!DOCTYPE html>")
    for external in ("<script", "<link", "src=", "url(", "@import"):
        assert external not in page
    assert not re.search(r"""(href|xlink:href)=["']https?:""", page)
    for name in ("every_writer", "nothing", "key_composition"):
        assert f"test_claims.py::test_{name}" in page
    for version in ("python", "torch", "transformers", "pandas"):
        assert f"<th>{version}</th>" in page
    svgs = inline_svgs(page)
    for svg in svgs:
        ET.fromstring(svg)  # well-formed
    plots = [svg for svg in svgs if "per-example distribution" in svg]
    assert len(plots) == 3
    # Every (draw, example) is a dot in the upper strip and one per run below: 3 * values in all.
    assert plots[2].count("<circle") == 4 * 8 * 2
    if causal_hypotheses.engine.drawing.dot_program():
        graphs = [svg for svg in svgs if "per-example distribution" not in svg]
        assert len(graphs) == 3 and "a1.h2.k" in graphs[2] and "an example with the same seq" in graphs[2]
    else:
        assert page.count("No <code>dot</code> program is installed") == 3


def test_reports_are_rewritten_after_each_claim_so_an_interrupted_run_keeps_them(pytester):
    pytester.makepyfile(test_claims=CLAIMS, test_then="""
import pytest


def test_reports_so_far():
    import pandas
    assert len(pandas.read_csv("reports/latest.csv")) == 3


def test_interrupt():
    pytest.exit("interrupted by the test")


def test_never_runs():
    pass
""")
    result = run(pytester)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.assert_outcomes(passed=4)
    assert len(pd.read_csv(pytester.path / "reports" / "latest.csv")) == 3
    assert only("claims-*.html", pytester.path / "reports").read_text().count("<section id=\"claim-") == 3


def test_report_dir_option_and_ini(pytester):
    pytester.makepyfile(test_claims=CLAIMS)
    run(pytester, "-k", "nothing", "--claims-report-dir=out/here").assert_outcomes(passed=1)
    assert (pytester.path / "out" / "here" / "latest.csv").is_file()
    pytester.makeini("[pytest]\nclaims_report_dir = from-ini\n")
    run(pytester, "-k", "nothing").assert_outcomes(passed=1)
    assert (pytester.path / "from-ini" / "latest.csv").is_file()


def test_baseline_save_compare_and_fail(pytester):
    pytester.makepyfile(test_claims=CLAIMS)
    run(pytester, "-k", "not composition", "--claims-save=main").assert_outcomes(passed=2)
    saved = pytester.path / "reports" / "baselines" / "main.csv"
    assert saved.read_bytes() == (pytester.path / "reports" / "latest.csv").read_bytes()

    same = run(pytester, "-k", "not composition", "--claims-compare=main", "--claims-compare-fail=value:0.05")
    assert same.ret == pytest.ExitCode.OK
    same.stdout.fnmatch_lines([f"compared with {saved}:", "claim*baseline value*value*change",
                               "test_claims.py::test_every_writer*1.000*1.000*0.000"])

    edited = pd.read_csv(saved)
    edited.loc[0, "value"] = 0.5
    edited.drop(index=1).to_csv(pytester.path / "old.csv", index=False)
    drifted = run(pytester, "-k", "not composition", "--claims-compare=old.csv", "--claims-compare-fail=value:0.05")
    drifted.assert_outcomes(passed=2)
    assert drifted.ret == pytest.ExitCode.TESTS_FAILED
    drifted.stdout.fnmatch_lines([
        "test_claims.py::test_nothing: not in the baseline",
        "test_claims.py::test_every_writer: value moved from 0.5 (baseline) to 1 (change +0.5), more than the "
        "limit 0.05 set by --claims-compare-fail=value:0.05",
    ])
    relative = run(pytester, "-k", "not composition", "--claims-compare=old.csv", "--claims-compare-fail=value:150%")
    assert relative.ret == pytest.ExitCode.OK


@pytest.mark.slow
def test_xdist_merges_into_the_same_report_as_a_serial_run(pytester):
    pytest.importorskip("xdist")
    pytester.makepyfile(test_claims=CLAIMS)
    pytester.makepyfile(test_more=CLAIMS.replace("seed=5", "seed=6"))
    serial = pytester.runpytest_subprocess(*PLUGIN, "--claims-report-dir=serial", timeout=600)
    serial.assert_outcomes(passed=6)
    parallel = pytester.runpytest_subprocess(*PLUGIN, "-n", "2", "--claims-report-dir=parallel", timeout=600)
    parallel.assert_outcomes(passed=6)
    parallel.stdout.fnmatch_lines(["*= claims =*", "reports: *parallel*claims-*.csv and *"])
    one, two = (pd.read_csv(only("claims-*.csv", pytester.path / name)) for name in ("serial", "parallel"))
    assert len(list((pytester.path / "parallel").glob("claims-*"))) == 2  # one CSV, one HTML
    stable = [c for c in reports.COLUMNS if c not in reports.RUN_DEPENDENT]
    pd.testing.assert_frame_equal(one[stable], two[stable], check_exact=False, rtol=1e-9)
    html_one, html_two = (only("claims-*.html", pytester.path / name).read_text() for name in ("serial", "parallel"))
    assert html_one.count("<section id=\"claim-") == html_two.count("<section id=\"claim-") == 6


CHROMIUM = "/usr/bin/chromium"
needs_chromium = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                    reason="headless check needs /usr/bin/chromium (apt-get install chromium)")


def dump_dom(page: Path, tmp_path: Path) -> str:
    """The DOM headless chromium builds from ``page``; no script errors on its console."""
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
               "--enable-logging=stderr", "--v=0", "--dump-dom", page.as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Uncaught" not in done.stderr and "CONSOLE" not in done.stderr
    return done.stdout


@pytest.mark.slow
@needs_chromium
def test_html_page_renders_in_headless_chromium(pytester, tmp_path):
    pytester.makepyfile(test_claims=CLAIMS)
    run(pytester).assert_outcomes(passed=3)
    page = pytester.path / "reports" / "latest.html"
    dom = dump_dom(page, tmp_path)
    assert "<h1>Claims run" in dom and dom.count("<svg") == len(inline_svgs(page.read_text()))
    assert "test_claims.py::test_key_composition" in dom


# What each kind's section must say: the label of its three means (None: no such row, the kind
# has none), its statistic's name, and whether it has a Details table.
EVERY_KIND = {
    "t.py::test_scrub": ("clean / ablated / scrubbed", "fraction recovered", False),
    "t.py::test_activation_patch": ("target / base / patched", "fraction moved", False),
    "t.py::test_path_patch": ("target / base / patched", "fraction moved", False),
    "t.py::test_iia": (None, "interchange accuracy", False),
    "t.py::test_faithfulness": ("F(M) / base / F(C)", "faithfulness F(C)/F(M)", False),
    "t.py::test_completeness": (None, "completeness: largest |F(C\\K) - F(M\\K)|", True),
    "t.py::test_minimality": (None, "minimality: smallest relative drop", True),
}


def sections_of(dom: str) -> dict[str, str]:
    """Each claim's section of a page (or DOM), by claim id."""
    found = {}
    for part in dom.split('<section id="claim-')[1:]:
        claim = re.search(r"<h2>(.*?) <span", part).group(1)
        found[claim] = "claim-" + part.split("</section>")[0]
    return found


def check_every_kind(dom: str) -> None:
    sections = sections_of(dom)
    assert list(sections)[:len(EVERY_KIND)] == list(EVERY_KIND)
    for claim, (means, statistic, details) in EVERY_KIND.items():
        section = sections[claim]
        assert section.startswith(f'{reports.anchor(claim)}"'), claim
        assert f"<th>{statistic}</th><td>" in section, claim
        assert ("<th>recovered</th>" in section) is False
        if means is None:
            assert " / base / " not in section and "/ ablated /" not in section and "effect to explain" not in section, claim
        else:
            assert f"<th>{means}</th>" in section, claim
        assert ("<h3>Details</h3>" in section) is details, claim
        assert "nan" not in re.sub(r"<[^>]*>", "", section).lower(), claim  # no NaN shown as text
    completeness = sections["t.py::test_completeness"]
    assert '<table class="details"><thead><tr><th>removed</th><th>F(C\\K)</th><th>F(M\\K)</th><th>gap</th>' in completeness
    assert "<td>a0.h3 &lt;- embed</td>" in completeness and '<td class="num">0.05</td>' in completeness
    assert "<td>True</td>" in sections["t.py::test_minimality"]
    # A kind whose value is not a share of target - base: its value and interval, no dots per example.
    iia = sections["t.py::test_iia"]
    assert "<h3>Interchange accuracy</h3>" in iia and 'aria-label="interchange accuracy of t.py::test_iia"' in iia
    assert "<circle" not in iia and "per-example distribution" not in iia
    assert "per-example distribution of t.py::test_faithfulness" in sections["t.py::test_faithfulness"]
    assert ">patched</text>" in sections["t.py::test_path_patch"] and ">scrubbed</text>" in sections["t.py::test_scrub"]


def test_every_kind_renders_its_section(tmp_path):
    from causal_hypotheses.session import ClaimSession, Settings
    from record_support import every_kind

    session = ClaimSession(Settings(report_dir=tmp_path))
    for record in every_kind():
        session.add(record.to_dict())  # as a record arrives from a pytest-xdist worker
    page = (tmp_path / "latest.html").read_text()
    check_every_kind(page)
    for svg in inline_svgs(page):
        ET.fromstring(svg)
    frame = pd.read_csv(tmp_path / "latest.csv")
    assert frame["kind"].tolist() == ["scrub", "activation_patch (noising)", "path_patch (denoising)", "iia", "faithfulness",
                                      "completeness", "minimality"]
    assert frame["target"].isna().tolist() == [False, False, False, True, False, True, True]


@pytest.mark.slow
@needs_chromium
def test_a_page_of_every_kind_renders_in_headless_chromium(tmp_path):
    from causal_hypotheses.session import ClaimSession, Settings
    from record_support import every_kind

    session = ClaimSession(Settings(report_dir=tmp_path / "reports"))
    for record in every_kind():
        session.add(record)
    page = tmp_path / "reports" / "latest.html"
    dom = dump_dom(page, tmp_path)
    assert dom.count("<svg") == len(inline_svgs(page.read_text()))
    check_every_kind(dom)


# ---------------------------------------------------------------------------------------------
# The rendering functions on hand-made inputs


def record(**changes) -> dict:
    base = {"claim": "t.py::test_x", "kind": "scrub", "model": "m", "task": "induction", "hypothesis": "h", "n": 4, "seed": 0,
            "draws": 1, "metric": "loss", "ablation": "resample", "statistic": "fraction recovered", "target": 1.0, "base": 3.0,
            "intervened": 2.0, "value": 0.5, "ci_low": 0.2, "ci_high": 0.8, "level": 0.95, "at_least": 0.4,
            "at_most": float("nan"), "verdict": "inconclusive", "node_evaluations": 3, "forward_passes": 1, "cache_hits": 2,
            "seconds": 0.5, "message": "m", "paths": [[["a1.h2.k", "a0.h3"], "seq"], [["a1.h2.v"], None]],
            "per_example": {"draw": [0, 0, 0, 0], "example": [0, 1, 2, 3], "target": [1.0, 1.0, 1.0, 1.0],
                            "base": [3.0, 3.0, 3.0, 3.0], "intervened": [1.0, 3.0, 1.0, 3.0]}}
    return {**base, **changes}


def test_distribution_plot_marks_each_example_and_the_mean():
    svg = reports.distribution_svg(record())
    root = ET.fromstring(svg)
    circles = root.findall("{http://www.w3.org/2000/svg}circle")
    assert len(circles) == 4 + 3 * 4
    # Shares of the recovery are (intervened - base) / (target - base) = 1, 0, 1, 0: two columns of dots.
    assert len({c.get("cx") for c in circles[:4]}) == 2
    assert ">mean<" in svg and ">at_least<" in svg and ">at_most<" not in svg
    undefined = reports.distribution_svg(record(target=3.0))
    assert "undefined" in undefined
    assert "no per-example values" in reports.distribution_svg(record(per_example={})).lower()


def test_hypothesis_graph_draws_each_pattern_to_the_output():
    dot = reports.hypothesis_digraph(record()["paths"], "composition", "resample").source
    assert re.search(r'c1 \[label="a0\.h3"\]', dot) and re.search(r'c0 \[label="a1\.h2\.k"\]', dot)
    assert "c1 -> c0" in dot and "c0 -> output" in dot and "c2 -> output" in dot
    assert "reads an example with the same seq" in dot and dot.count("shape=note") == 1  # only features get a note
    assert "Every input not drawn reads its own random example (resample ablation, independent resampling)" in reports.hypothesis_note("resample")
    assert "one random other example shared by all of them" in reports.hypothesis_note("resample", "shared")
    # Patterns sharing a component below different parents are drawn as a tree, not merged.
    tree = reports.hypothesis_digraph([[["a1.h0.k", "a0.h3"], None], [["a1.h1.k", "a0.h3"], None]], "t", "resample").source
    assert tree.count('label="a0.h3"') == 2
    assert "empty hypothesis" in reports.hypothesis_digraph([], "nothing", "zero").source


def test_graph_falls_back_to_dot_text_without_a_dot_program(monkeypatch):
    monkeypatch.setattr(causal_hypotheses.engine.drawing, "to_svg", lambda digraph: None)
    fallback = reports.graph_html(reports.hypothesis_digraph(record()["paths"], "h", "resample"))
    assert fallback.startswith('<p class="note">No <code>dot</code> program') and "<pre>digraph hypothesis" in fallback
    monkeypatch.setattr(causal_hypotheses.engine.drawing, "to_svg", lambda digraph: '<?xml version="1.0"?>\n<!DOCTYPE svg>\n<svg></svg>')
    assert reports.graph_html(reports.hypothesis_digraph([], "h", "resample")) == '<div class="graph"><svg></svg></div>'


def test_compare_finds_absolute_and_relative_drifts():
    now = reports.to_frame([record(claim="a", value=0.9), record(claim="b", value=0.5), record(claim="new")])
    then = reports.to_frame([record(claim="a", value=0.8), record(claim="b", value=0.5), record(claim="gone")])
    table, drifts, notes = reports.compare(now, then, [reports.Limit("value", 0.05)])
    assert [(d.claim, d.field, d.baseline, d.now) for d in drifts] == [("a", "value", 0.8, 0.9)]
    assert "a: value moved from 0.8 (baseline) to 0.9 (change +0.1), more than the limit 0.05" in drifts[0].message()
    assert notes == ["new: not in the baseline", "gone: in the baseline but not in this run"]
    assert table[0] == ["claim", "baseline value", "value", "change"] and table[1] == ["a", "0.800", "0.900", "0.100"]
    _, relative, _ = reports.compare(now, then, [reports.Limit("value", 0.2, relative=True)])
    assert relative == []
    assert str(reports.Limit("value", 0.1, relative=True)) == "value:10%"


def test_verdicts_on_intervals():
    from causal_hypotheses.claims import decide

    assert decide(0.81, 0.9, 0.8, None) == "pass"
    assert decide(0.5, 0.79, 0.8, None) == "fail"
    assert decide(0.7, 0.9, 0.8, None) == "inconclusive"
    assert decide(0.0, 0.05, None, 0.1) == "pass" and decide(0.2, 0.3, None, 0.1) == "fail"
    assert decide(0.05, 0.2, None, 0.1) == "inconclusive"
    assert decide(0.3, 0.6, 0.2, 0.7) == "pass" and decide(0.3, 0.8, 0.2, 0.7) == "inconclusive"
    assert decide(0.1, 0.3, 0.2, 0.25) == "inconclusive" and decide(0.3, 0.4, 0.5, 0.9) == "fail"
    assert decide(float("nan"), float("nan"), 0.8, None) == "inconclusive"


def test_schema_constants_match_the_interventions():
    from causal_hypotheses import claims
    from causal_hypotheses.interventions.scrubbing import ABLATIONS, RESAMPLING
    from causal_hypotheses.metrics import METRICS

    assert claims.ABLATIONS == ABLATIONS and set(claims.METRICS) == set(METRICS)
    assert claims.RESAMPLING == RESAMPLING


def test_the_page_says_visibly_when_no_renderer_exists(monkeypatch, tmp_path):
    from causal_hypotheses.session import ClaimSession, Settings

    session = ClaimSession(Settings(report_dir=tmp_path))
    monkeypatch.setattr(causal_hypotheses.engine.drawing, "dot_program", lambda: None)
    assert any("No dot program was found" in text for kind, text in session.notes())
    monkeypatch.setattr(causal_hypotheses.engine.drawing, "dot_program", lambda: "/usr/bin/dot")
    assert not any("No dot program" in text for kind, text in session.notes())
    page = reports.render_html(reports.to_frame([]), [], {}, "t", [("warning", "No dot program was found ...")])
    assert "No dot program was found" in page
