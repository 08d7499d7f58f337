"""Reports survive anything: start-up checks of the report directory and of the settings (each
message names the bad value, where it came from and the fix), failures while writing (a warning,
the claims run on), and concurrent runs writing into one directory (never a partial file)."""
from __future__ import annotations

import errno
import io
import os
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from causal_hypotheses import reports
from causal_hypotheses import session as claims_session
from causal_hypotheses.claims import empty_record
from causal_hypotheses.session import ClaimSession, ClaimsReportWarning, Settings

pytest_plugins = ["pytester"]

import torch  # noqa: E402
from plugin_support import PLUGIN, TWO_CLAIMS as CLAIMS  # noqa: E402,F401  (also loads what claims import)
ROOT = os.geteuid() == 0


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest(*PLUGIN, *args)


def usage_error(result: pytest.RunResult, *patterns: str) -> str:
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str() + result.stderr.str()
    result.stderr.fnmatch_lines(list(patterns))
    return result.stderr.str()


# ---------------------------------------------------------------------------------------------
# The report directory, checked at start-up


def test_report_dir_that_is_a_file_is_a_usage_error(pytester):
    pytester.makepyfile(test_claims=CLAIMS)
    (pytester.path / "out").write_text("not a directory")
    result = run(pytester, "--claims-report-dir=out")
    usage_error(result, f"ERROR: the claims report directory {pytester.path / 'out'} cannot be used: "
                        f"{pytester.path / 'out'} exists and is not a directory; fix --claims-report-dir or choose a "
                        "writable directory with --claims-report-dir=DIR or the ini key claims_report_dir")
    assert (pytester.path / "out").read_text() == "not a directory"


def test_report_dir_under_a_file_cannot_be_created(pytester):
    pytester.makepyfile(test_claims=CLAIMS)
    (pytester.path / "afile").write_text("x")
    pytester.makeini("[pytest]\nclaims_report_dir = afile/reports\n")
    result = run(pytester)
    usage_error(result, f"*{pytester.path / 'afile' / 'reports'} cannot be used: it cannot be created: "
                        f"{pytester.path / 'afile'} is a file, not a directory; fix claims_report_dir or choose*"
                        "--claims-report-dir=DIR or the ini key claims_report_dir")


@pytest.mark.skipif(ROOT, reason="root writes into a mode 0o555 directory; the read-only case is tested with a fake probe")
def test_read_only_report_dir_is_a_usage_error(pytester):
    pytester.makepyfile(test_claims=CLAIMS)
    locked = pytester.mkdir("locked")
    locked.chmod(0o555)
    try:
        usage_error(run(pytester, "--claims-report-dir=locked"), "*locked cannot be used: files cannot be written in it (Permission denied)*")
        usage_error(run(pytester, "--claims-report-dir=locked/sub"),
                    "*sub cannot be used: it cannot be created in *locked (Permission denied)*--claims-report-dir=DIR*")
    finally:
        locked.chmod(0o755)


def test_read_only_filesystem_is_a_usage_error(pytester, monkeypatch):
    def read_only(directory, exists):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(directory))

    monkeypatch.setattr(claims_session, "_probe", read_only)
    pytester.makepyfile(test_claims=CLAIMS)
    usage_error(run(pytester, "--claims-report-dir=ro"),
                f"*{pytester.path / 'ro'} cannot be used: it cannot be created in {pytester.path} (Read-only file system); "
                "fix --claims-report-dir or choose a writable directory with --claims-report-dir=DIR*")


def test_the_probe_leaves_nothing_behind(tmp_path):
    assert claims_session.report_dir_problem(tmp_path / "new" / "deeper") is None
    assert claims_session.report_dir_problem(tmp_path) is None
    assert list(tmp_path.iterdir()) == []  # neither the directory nor a probe file was left


def test_unusable_default_report_dir_stops_only_runs_with_claims(pytester):
    (pytester.path / "reports").write_text("a file where reports/ would go")
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    run(pytester, "test_plain.py").assert_outcomes(passed=1)  # no claims: the plugin stays out of the way
    pytester.makepyfile(test_claims=CLAIMS)
    result = run(pytester)
    usage_error(result, f"*the claims report directory {pytester.path / 'reports'} cannot be used: *exists and is not a "
                        "directory; choose a writable directory with --claims-report-dir=DIR or the ini key claims_report_dir")
    assert "passed" not in result.stdout.str()


# ---------------------------------------------------------------------------------------------
# Failures while writing: a warning; the claims run on


def test_report_dir_replaced_by_a_file_mid_run_is_a_warning_and_the_claims_run_on(pytester):
    pytester.makepyfile(test_claims=CLAIMS + """

def test_zz_break_the_report_dir():
    import shutil
    shutil.rmtree("reports")
    open("reports", "w").write("in the way")


@pytest.mark.claim(at_most=0.1)
def test_zzz_after(claim):
    claim.scrub(Hypothesis({}, name="nothing"))
""")
    result = run(pytester)
    result.assert_outcomes(passed=4)
    output = result.stdout.str()
    assert "ClaimsReportWarning: could not write the claims report " in output
    result.stdout.fnmatch_lines([f"*could not write the claims report {pytester.path / 'reports'}/claims-*.csv: "
                                 "*Error: *; the claims still run",
                                 "*= claims =*", "test_claims.py::test_zzz_after*pass*",
                                 f"the claims report could not be written: the claims report {pytester.path / 'reports'}/*"])
    assert "reports: " not in output.split("= claims =")[1]  # no claim to files that are not there
    assert output.count("ClaimsReportWarning") == 1  # said once, not once per claim


@pytest.mark.parametrize("warnings_are_errors", [False, True])
def test_disk_full_is_a_warning_and_the_summary_says_so(pytester, monkeypatch, warnings_are_errors):
    def full(path, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(reports, "write_atomic", full)
    pytester.makepyfile(test_claims=CLAIMS)
    result = run(pytester, *(["-W", "error"] if warnings_are_errors else []))
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*= claims =*", "2 claims: 2 pass",
                                 f"the claims report could not be written: the claims report {pytester.path / 'reports'}"
                                 "/claims-*.csv: OSError: [[]Errno 28[]] No space left on device*"])
    if not warnings_are_errors:
        result.stdout.fnmatch_lines(["*ClaimsReportWarning: could not write the claims report *No space left on device*"])
    assert not (pytester.path / "reports" / "latest.csv").exists()
    assert list((pytester.path / "reports").iterdir()) == []  # not even the empty file that reserved the name


def test_a_baseline_that_cannot_be_saved_is_a_warning(pytester):
    pytester.makepyfile(test_claims=CLAIMS)
    pytester.mkdir("reports")
    (pytester.path / "reports" / "baselines").write_text("in the way")
    result = run(pytester, "--claims-save=main")
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines([f"the baseline could not be saved: the baseline {pytester.path / 'reports/baselines/main.csv'}: *Error*"])
    assert "baseline saved:" not in result.stdout.str()
    assert len(pd.read_csv(pytester.path / "reports" / "latest.csv")) == 2  # the run's reports are fine


def test_failed_atomic_write_leaves_no_temporary_file_and_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "latest.csv"
    reports.write_atomic(target, "old\n")
    first = target.stat().st_ino
    reports.write_atomic(target, "new\n")
    assert target.read_text() == "new\n" and target.stat().st_ino != first  # replaced, not rewritten in place

    def broken(source, destination):
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError):
        reports.write_atomic(target, "newer\n")
    assert target.read_text() == "new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.csv"]


def test_session_write_never_raises(tmp_path, monkeypatch):
    claims = ClaimSession(Settings(report_dir=tmp_path / "r"))
    monkeypatch.setattr(reports, "render_html", lambda *a, **k: 1 / 0)  # a bug in rendering
    with pytest.warns(ClaimsReportWarning, match=r"could not write the claims report .*ZeroDivisionError"):
        claims.add(empty_record("t.py::test_a", None, "skipped", "m"))
    assert claims.write_error is not None and "ZeroDivisionError" in claims.write_error
    monkeypatch.undo()
    claims.add(empty_record("t.py::test_b", None, "skipped", "m"))
    assert claims.write_error is None
    assert len(pd.read_csv(tmp_path / "r" / "latest.csv")) == 2


# ---------------------------------------------------------------------------------------------
# Concurrent runs into one directory


WRITER = """
import sys
from pathlib import Path
from causal_hypotheses.claims import empty_record
from causal_hypotheses.session import ClaimSession, Settings

directory, tag, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
claims = ClaimSession(Settings(report_dir=directory))
for i in range(count):
    claims.add(empty_record(f"{tag}.py::test_{i}", None, "skipped", "x" * (i * 50)))
assert claims.write_error is None, claims.write_error
"""


class Reader(threading.Thread):
    """Reads latest.csv and latest.html over and over; keeps every partial file it sees."""

    def __init__(self, directory: Path) -> None:
        super().__init__(daemon=True)
        self.directory, self.stop, self.seen, self.bad = directory, threading.Event(), 0, []

    def run(self) -> None:
        while not self.stop.is_set():
            for name in ("latest.csv", "latest.html"):
                try:
                    text = (self.directory / name).read_text()
                except FileNotFoundError:
                    continue
                self.seen += 1
                if name.endswith(".html"):
                    if not (text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")):
                        self.bad.append((name, text[-200:]))
                    continue
                try:
                    frame = pd.read_csv(io.StringIO(text))
                    if tuple(frame.columns) != reports.COLUMNS or frame.empty:
                        self.bad.append((name, text[:200]))
                except Exception as error:  # noqa: BLE001
                    self.bad.append((name, repr(error)))


def test_three_processes_writing_one_report_dir_never_crash_or_leave_partial_files(tmp_path):
    directory = tmp_path / "reports"
    reader = Reader(directory)
    reader.start()
    try:  # three runs started together, each rewriting its reports and latest.* 20 times
        writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(directory), tag, "20"],
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for tag in "abc"]
        for writer in writers:
            output, _ = writer.communicate(timeout=120)
            assert writer.returncode == 0, output
    finally:
        reader.stop.set()
        reader.join()
    assert reader.bad == [] and reader.seen > 0
    # Each run kept its own timestamped pair, even when they started in the same second.
    assert len(list(directory.glob("claims-*.csv"))) == len(list(directory.glob("claims-*.html"))) == 3
    for path in directory.glob("claims-*.csv"):
        assert len(pd.read_csv(path)) == 20
    assert len(pd.read_csv(directory / "latest.csv")) == 20
    assert not [p for p in directory.iterdir() if p.name.endswith(".tmp") or p.name.startswith(".")]


@pytest.mark.slow
def test_two_pytest_runs_at_once_into_one_report_dir(pytester):
    """Twice, two pytest runs started together write into one directory (about 40 s on 2 cores)."""
    pytester.makepyfile(test_claims=CLAIMS)
    directory = pytester.path / "shared"
    reader = Reader(directory)
    reader.start()
    command = [sys.executable, "-m", "pytest", *PLUGIN, "-q", "--claims-report-dir=shared", "test_claims.py"]
    try:
        for _ in range(2):
            runs = [subprocess.Popen(command, cwd=pytester.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                    for _ in range(2)]
            for process in runs:
                output, _ = process.communicate(timeout=300)
                assert process.returncode == 0, output
                assert "2 passed" in output and "ClaimsReportWarning" not in output and "Traceback" not in output, output
    finally:
        reader.stop.set()
        reader.join()
    assert reader.bad == [] and reader.seen > 0
    assert len(list(directory.glob("claims-*.csv"))) == len(list(directory.glob("claims-*.html"))) == 4
    assert len(pd.read_csv(directory / "latest.csv")) == 2
    assert (directory / "latest.html").read_text().rstrip().endswith("</html>")
    assert not [p for p in directory.iterdir() if p.name.startswith(".")]  # no temporary or probe files left


# ---------------------------------------------------------------------------------------------
# Verdicts the plugin may write


def test_new_verdicts_have_colours_and_counts():
    verdicts = ["pass", "no-effect", "xfailed", "xpassed", "xfailed", "error"]
    frame = reports.to_frame([empty_record(f"t.py::test_{i}", None, v, "") for i, v in enumerate(verdicts)])
    page = reports.render_html(frame, [], {}, "t")
    assert "6 claims: 1 pass, 1 no-effect, 2 xfailed, 1 xpassed, 1 error." in page
    colours = {v: reports._VERDICT_COLOURS[v] for v in ("no-effect", "xfailed", "xpassed")}
    assert len(set(reports._VERDICT_COLOURS.values())) == len(reports._VERDICT_COLOURS)  # each its own colour
    for verdict, colour in colours.items():
        assert f'<td style="background:{colour}">{verdict}</td>' in page
    assert reports.verdict_counts(frame.assign(verdict=["odd", "pass", "pass", "fail", "odd", "odd"])) == "2 pass, 1 fail, 3 odd"
    claims = ClaimSession(Settings(), writer=False)
    for i, verdict in enumerate(verdicts):
        claims.records[f"t.py::test_{i}"] = replace(empty_record(f"t.py::test_{i}", None, verdict, ""), order=i)
    lines = claims.summary_lines()
    markup = {line.split()[0]: mark for line, mark in lines[2:8]}
    assert markup["t.py::test_1"] == markup["t.py::test_2"] == markup["t.py::test_3"] == {"yellow": True}
    assert ("6 claims: 1 pass, 1 no-effect, 2 xfailed, 1 xpassed, 1 error", {}) in lines


# ---------------------------------------------------------------------------------------------
# Settings: messages name where a bad value came from, and the device is checked


@pytest.mark.parametrize("ini", ["tox.ini", "pyproject.toml"])
def test_bad_ini_values_name_the_ini_key_and_file(pytester, ini):
    values = {"n": "abc", "seed": "-2", "dtype": "float8", "compare_fail": "speed:1"}
    if ini == "tox.ini":
        path = pytester.makeini("[pytest]\n" + "".join(f"claims_{k} = {v}\n" for k, v in values.items()))
    else:
        path = pytester.makepyprojecttoml("[tool.pytest.ini_options]\n" + "".join(f'claims_{k} = "{v}"\n' for k, v in values.items()))
    result = run(pytester)
    text = usage_error(result, "ERROR: bad claims settings:",
                       f"  claims_dtype = 'float8' in {path}: expected one of float32, float16, bfloat16",
                       f"  claims_n = 'abc' in {path}: expected an integer >= 1",
                       f"  claims_seed = '-2' in {path}: expected an integer >= 0",
                       f"  claims_compare_fail = 'speed:1' in {path}: expected FIELD:LIMIT*",
                       "  claims_compare_fail needs a baseline to compare with: add claims_compare = NAME_OR_PATH to the ini file")
    assert "--claims-n" not in text and "--claims-seed" not in text


def test_override_ini_and_command_line_are_named_as_given(pytester):
    pytester.makeini("[pytest]\nclaims_n = 12\n")
    usage_error(run(pytester, "-o", "claims_n=abc"), "  -o claims_n='abc': expected an integer >= 1")
    usage_error(run(pytester, "--claims-n=abc"), "  --claims-n='abc': expected an integer >= 1")
    usage_error(run(pytester, "--claims-report-dir=x", "--claims-save=.csv"), "  --claims-save='.csv': expected a name of*")


def test_from_values_still_takes_pairs():
    settings = Settings.from_values({"n": ("4", Path.cwd()), "save": ("main.csv", Path.cwd())})
    assert settings.n == 4 and settings.save == "main"
    with pytest.raises(claims_session.SettingsError, match=r"--claims-seed='x': expected an integer >= 0"):
        Settings.from_values({"seed": ("x", Path.cwd())})


@pytest.mark.parametrize("device", ["cuda", "cuda:7", "mps"])
def test_an_unavailable_device_is_a_usage_error(pytester, device):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("a CUDA device is available here")
    if device == "cuda:7" and torch.cuda.device_count() > 7:
        pytest.skip("eight CUDA devices are available here")
    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("mps is available here")
    pytester.makepyfile(test_claims=CLAIMS)
    result = run(pytester, f"--claims-device={device}")
    usage_error(result, "ERROR: bad claims settings:",
                f"  --claims-device='{device}': *available*; run on the cpu (--claims-device=cpu, or leave it out) "
                "or where that device exists")
    pytester.makeini(f"[pytest]\nclaims_device = {device}\n")
    usage_error(run(pytester), f"  claims_device = '{device}' in *tox.ini: *; run on the cpu (claims_device=cpu, *")


def test_cpu_runs_do_not_import_torch_at_start_up(pytester):
    pytester.makepyfile(test_plain="""
import sys

def test_no_torch_yet():
    assert "torch" not in sys.modules
""")
    result = pytester.runpytest_subprocess(*PLUGIN, "--claims-device=cpu", "--claims-report-dir=r", timeout=120)
    result.assert_outcomes(passed=1)
