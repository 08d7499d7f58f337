"""The pytest plugin: interpretability claims as tests (the ``pytest11`` entry point).

Only hooks and the ``claim`` fixture live here.  A claim is a test marked
``@pytest.mark.claim(model=..., task=..., metric=..., at_least=...)`` that calls
``claim.scrub(hypothesis)``; :mod:`causal_hypotheses.session` collects the results and
:mod:`causal_hypotheses.reports` renders them.  Importing this module is cheap: torch and
transformers load when the first claim runs.
"""
from __future__ import annotations

from dataclasses import replace

import pytest

from .claims import Claim, ClaimNotMet, ClaimRecord, ClaimSpec, ClaimSpecError, ModelUnavailable, empty_record
from .claims.spec import HEAVY_PROFILE
from .session import ClaimSession, Settings, SettingsError, Source, report_dir_problem

SESSION = pytest.StashKey[ClaimSession]()
SPEC = pytest.StashKey[ClaimSpec]()
ORDER = pytest.StashKey[int]()
CLAIM = pytest.StashKey[Claim]()
RECORD = pytest.StashKey[ClaimRecord]()
PROBLEMS = pytest.StashKey[list]()
# Columns of a claim's row that go into JUnit XML as claim_<name> properties.
PROPERTIES = ("value", "statistic", "ci_low", "ci_high", "level", "verdict", "model", "task", "metric", "n", "seed")
RECORDER = "causal-hypotheses-recorder"
REPORT_DIR_PROBLEM = pytest.StashKey[str]()

# (name, metavar, help); each is --claims-NAME on the command line and claims_NAME in the ini file.
OPTIONS = (
    ("model", "NAME", "run every claim on this registered model instead of the one its marker names"),
    ("device", "DEVICE", "device the models run on: cpu (default), cuda, cuda:N or mps"),
    ("dtype", "DTYPE", "model dtype: float32 (default), float16 or bfloat16"),
    ("n", "N", "number of examples for every claim (overrides markers and profile)"),
    ("seed", "SEED", "seed for every claim (overrides markers)"),
    ("report-dir", "DIR", "where the CSV and HTML reports go (default: reports/ under the rootdir)"),
    ("profile", "NAME", "dev (few examples, quick), ci (default) or thorough (more examples and draws)"),
    ("heavy", "WHEN", "when claims marked heavy=True run: auto (default: under --claims-profile thorough only), "
                      "run (under any profile, with the examples the claim states) or skip"),
    ("inconclusive", "WHAT", "what an inconclusive claim does: fail (default) or skip"),
    ("level-family", "METHOD", "none (default: each claim at its own level) or bonferroni (each of m claims at "
                               "1 - (1 - level) / m, so the chance of any wrong verdict stays at 1 - level)"),
    ("save", "NAME", "save this run's CSV as the baseline <report-dir>/baselines/NAME.csv"),
    ("compare", "NAME_OR_PATH", "compare with a saved baseline (a name under <report-dir>/baselines or a CSV path)"),
    ("compare-fail", "FIELD:LIMIT", "fail the run when a claim's FIELD moves more than LIMIT from the baseline "
                                    "(e.g. value:0.05, or value:10%% relative; comma-separate several)"),
)

MARKER_HELP = (
    "claim(model, task, metric, at_least=None, at_most=None, n=None, seed=0, draws=None, ablation='resample', "
    "resampling='independent', level=0.95, beats_random=None, heavy=False): an interpretability claim checked by causal "
    "scrubbing or patching; pass when the whole confidence interval of the fraction recovered (or moved) clears "
    "at_least (and/or lies under at_most). Use the `claim` fixture: claim.scrub(...), claim.activation_patch(...), "
    "claim.path_patch(...)."
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("claims", "interpretability claims (causal_hypotheses)")
    for name, metavar, text in OPTIONS:
        dest = "claims_" + name.replace("-", "_")
        group.addoption(f"--claims-{name}", dest=dest, metavar=metavar, default=None, help=text)
        parser.addini(dest, text.replace("%%", "%"), default="")


def _settings(config: pytest.Config) -> Settings:
    values = {}
    ini_base = config.inipath.parent if config.inipath else config.rootpath
    overridden = {entry.partition("=")[0].strip() for entry in (getattr(config.option, "override_ini", None) or [])}
    for name, _, _ in OPTIONS:
        dest = "claims_" + name.replace("-", "_")
        given = config.getoption(dest)
        if given is not None:
            values[dest[len("claims_"):]] = (given, config.invocation_params.dir, Source("option"))
        else:
            source = Source("override") if dest in overridden else Source("ini", config.inipath)
            base = config.invocation_params.dir if dest in overridden else ini_base
            values[dest[len("claims_"):]] = (config.getini(dest) or None, base, source)
    if values["report_dir"][0] is None:
        values["report_dir"] = (None, config.rootpath, None)
    return Settings.from_values(values)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_HELP)
    config.addinivalue_line("markers", f"heavy: a claim marked claim(heavy=True); it runs under --claims-profile "
                                       f"{HEAVY_PROFILE} or with --claims-heavy=run (-m heavy selects them)")
    try:
        settings = _settings(config)
    except SettingsError as error:
        raise pytest.UsageError(str(error)) from None
    workers = getattr(config.option, "numprocesses", None)
    environment = {"device": settings.device, "dtype": settings.dtype, "profile": settings.profile.name,
                   "seed": "per claim (see the table)" if settings.seed is None else settings.seed,
                   "n": "per claim (see the table)" if settings.n is None else settings.n,
                   "xdist workers": workers or "none"}
    writer = not hasattr(config, "workerinput")
    config.stash[SESSION] = session = ClaimSession(settings, writer=writer, environment=environment)
    if writer:
        problem = report_dir_problem(settings.report_dir)
        if problem is not None:
            given = settings.report_dir_source
            message = (f"the claims report directory {settings.report_dir} cannot be used: {problem}; "
                       + (f"fix {given.name('report_dir')} or " if given is not None else "")
                       + "choose a writable directory with --claims-report-dir=DIR or the ini key claims_report_dir")
            if given is not None:
                raise pytest.UsageError(message)
            # The default, reports/ under the rootdir: only a run with claims needs it.
            config.stash[REPORT_DIR_PROBLEM] = message
    config.pluginmanager.register(_Recorder(session), RECORDER)


def _is_claim(item) -> bool:
    """A test is a claim when it uses the ``claim`` fixture or carries the marker itself; a
    module- or class-level marker alone leaves plain tests in that module plain."""
    return isinstance(item, pytest.Function) and item.get_closest_marker("claim") is not None and (
        "claim" in item.fixturenames or any(mark.name == "claim" for mark in item.own_markers))


def _where(item) -> str:
    path, line, _ = item.location
    return f"{path}:{line + 1 if line is not None else '?'}"


@pytest.hookimpl(wrapper=True)
def pytest_pycollect_makeitem(collector, name, obj):
    """Check each claim marker when its test is collected.  Bad ones are gathered, and the
    whole run's list becomes one collection error once collection ends."""
    result = yield
    items = result if isinstance(result, list) else [result] if result is not None else []
    session = collector.config.stash[SESSION]
    problems = collector.config.stash.setdefault(PROBLEMS, [])
    kept = []
    for item in items:
        if _is_claim(item):
            markers = [(mark.args, mark.kwargs) for mark in item.iter_markers("claim")]
            try:
                item.stash[SPEC] = spec = session.spec_for(markers, where=item.nodeid)
                if spec.heavy:
                    item.add_marker("heavy")  # so that -m heavy selects them
            except ClaimSpecError as error:
                problems.append((item.location[0], f"{_where(item)}: {error}"))
                continue
        kept.append(item)
    return kept if isinstance(result, list) else (kept[0] if kept else None)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items) -> None:
    for index, item in enumerate(items):  # every xdist worker collects the same list
        item.stash[ORDER] = index
    problems = config.stash.get(PROBLEMS, [])
    if problems:
        files = sorted({path for path, _ in problems})
        text = (f"{len(problems)} bad claim marker{'s' if len(problems) > 1 else ''} "
                "(fix each, then run again):\n" + "\n".join(line for _, line in problems))
        report = pytest.CollectReport(files[0] if len(files) == 1 else f"claim markers in {len(files)} files", "failed", text, [])
        config.hook.pytest_collectreport(report=report)


@pytest.fixture
def claim(request: pytest.FixtureRequest) -> Claim:
    """The claim this test states: ``claim.scrub(hypothesis)`` runs and judges it.

    The model is loaded once per session and the task built once per (task, model, n,
    seed); ``claim.engine`` and ``claim.task`` are there for building hypotheses.
    """
    item = request.node
    spec = item.stash.get(SPEC, None)
    if spec is None:
        pytest.fail(f"{item.nodeid} uses the claim fixture without @pytest.mark.claim(model=..., task=..., metric=..., "
                    "at_least=...)", pytrace=False)
    session = request.config.stash[SESSION]
    heavy = session.settings.heavy
    if spec.heavy and (heavy == "skip" or (heavy == "auto" and session.settings.profile.name != HEAVY_PROFILE)):
        pytest.skip(f"heavy claim: runs under --claims-profile {HEAVY_PROFILE} or with --claims-heavy=run (this run's "
                    f"profile is {session.settings.profile.name!r}, --claims-heavy={heavy})")
    try:
        model = session.model(spec.model)
    except ModelUnavailable as error:
        pytest.skip(f"model {spec.model!r} is unavailable: {error}")
    except Exception as error:  # the session remembers it: the loader is not tried again
        pytest.fail(f"model {spec.model!r} failed to load: {type(error).__name__}: {error}", pytrace=False)
    task = session.task(spec, model)
    spec = session.family_adjusted(spec)
    skip = (lambda message: pytest.skip(message)) if session.settings.inconclusive == "skip" else None
    item.stash[CLAIM] = made = Claim(item.nodeid, spec, model, task, inconclusive=skip)
    return made


def _short(excinfo) -> str:
    return f"{excinfo.type.__name__}: {excinfo.value}" if excinfo is not None else ""


def _skip_reason(report) -> str:
    if isinstance(report.longrepr, tuple):
        return str(report.longrepr[2])
    return str(getattr(report, "wasxfail", "") or report.longrepr or "")


def _outcome(item: pytest.Item, call: pytest.CallInfo, report: pytest.TestReport, spec: ClaimSpec) -> ClaimRecord | None:
    """The claim's row after this phase, or None when the phase changes nothing.

    The row is the test's outcome: the experiment's verdict stands only when the test ended
    the way that verdict ends it (pass: passed; fail, inconclusive, no-effect: failed by the
    claim's own ClaimNotMet, or skipped by --claims-inconclusive=skip); anything else that
    happened after the experiment (an assert, an exception, a skip, xfail, a teardown error)
    is what the row says, with its message.
    """
    made = item.stash.get(CLAIM, None)
    measured = made.record if made is not None else None
    excinfo = call.excinfo
    xfail = hasattr(report, "wasxfail")
    if call.when == "setup":
        if report.passed:
            return None
        verdict = "xfailed" if xfail else "skipped" if report.skipped else "error"
        message = _skip_reason(report) if report.skipped else _short(excinfo)
        return empty_record(item.nodeid, spec, verdict, message)
    if call.when == "teardown":
        if not report.failed:
            return None
        before = item.stash.get(RECORD, None) or empty_record(item.nodeid, spec, "error", "")
        message = f"error in teardown after the test: {_short(excinfo)}"
        return replace(before, verdict="error", message=message + (f"\n{before.message}" if before.message else ""))
    # call
    claim_failure = excinfo is not None and isinstance(excinfo.value, ClaimNotMet)
    if claim_failure and not xfail:
        report.longrepr = str(excinfo.value)
    if measured is None:
        if report.skipped:
            return empty_record(item.nodeid, spec, "xfailed" if xfail else "skipped", _skip_reason(report))
        if report.failed:
            return empty_record(item.nodeid, spec, "error", _short(excinfo) or str(report.longrepr))
        message = "the claim ran no experiment: use the claim fixture, e.g. `def test_heads(claim): claim.scrub(Hypothesis(...))`"
        report.outcome, report.longrepr = "failed", message
        return empty_record(item.nodeid, spec, "error", message)
    verdict = measured.verdict
    if xfail:
        return replace(measured, verdict="xfailed" if report.skipped else "xpassed",
                       message=f"expected to fail ({report.wasxfail}): {measured.message}")
    if report.skipped:
        if verdict == "inconclusive":
            return measured
        return replace(measured, verdict="skipped", message=f"skipped after the experiment: {_skip_reason(report)}")
    if report.failed:
        if claim_failure and excinfo.value.verdict == verdict:
            return measured
        text = _short(excinfo) or str(report.longrepr)
        return replace(measured, verdict="error",
                       message=f"the test failed after its experiment ({verdict}): {text}\n{measured.message}")
    if verdict != "pass":  # the test caught the claim's own failure
        message = f"the claim's verdict is {verdict}, but the test passed (it caught ClaimNotMet?): {measured.message}"
        report.outcome, report.longrepr = "failed", message
        return replace(measured, verdict="error", message=message)
    return measured


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Attach the claim's record to its report as a plain dict (so that it travels to the xdist
    controller with it) and keep the JUnit properties equal to the record."""
    report = yield
    spec = item.stash.get(SPEC, None)
    if spec is None:
        return report
    record = _outcome(item, call, report, spec)
    if record is not None:
        record = replace(record, order=item.stash.get(ORDER, 0))
        item.stash[RECORD] = record
        report.claim_record = record.to_dict()
    latest = item.stash.get(RECORD, None)
    if latest is not None:
        own = [(name, value) for name, value in report.user_properties if not str(name).startswith("claim_")]
        report.user_properties = own + [(f"claim_{key}", getattr(latest, key)) for key in PROPERTIES]
    return report


class _Recorder:
    """Per-run hooks bound to the run's ClaimSession (``pytest_runtest_logreport`` gets no config)."""

    def __init__(self, session: ClaimSession) -> None:
        self.session = session

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        record = getattr(report, "claim_record", None)  # a dict: what ClaimRecord.to_dict gave
        if record is not None:
            self.session.add(ClaimRecord.from_dict(record))

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus) -> None:
        drifts = self.session.finish()
        if drifts and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter, exitstatus, config: pytest.Config) -> None:
        if not self.session.writer or not self.session.records:
            return
        terminalreporter.section("claims")
        for line, markup in self.session.summary_lines():
            terminalreporter.write_line(line, **markup)


def pytest_unconfigure(config: pytest.Config) -> None:
    recorder = config.pluginmanager.get_plugin(RECORDER)
    if recorder is not None:
        config.pluginmanager.unregister(recorder, RECORDER)


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """Once the run's tests are known (after -k / -m deselection): remember the selected claims,
    so that a baseline claim deselected in this run is not reported missing; and stop a run with
    claims whose default report directory cannot be written."""
    claims = session.config.stash.get(SESSION, None)
    if claims is None:
        return
    claims.claim_count = sum(item.stash.get(SPEC, None) is not None for item in session.items)  # every xdist worker too
    if not claims.writer:
        return
    claims.selected = {item.nodeid for item in session.items}
    problem = session.config.stash.get(REPORT_DIR_PROBLEM, None)
    if problem is not None and any(item.stash.get(SPEC, None) is not None for item in session.items):
        raise pytest.UsageError(problem)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node, ids) -> None:
    """On the pytest-xdist controller (which collects nothing): each worker's selected tests."""
    claims = node.config.stash.get(SESSION, None)
    if claims is not None and claims.writer:
        claims.selected = (claims.selected or set()) | set(ids)
