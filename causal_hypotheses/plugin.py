"""The pytest plugin: interpretability claims as tests (the ``pytest11`` entry point).

Only hooks and the ``claim`` fixture live here.  A claim is a test marked
``@pytest.mark.claim(model=..., task=..., metric=..., at_least=...)`` that calls
``claim.scrub(hypothesis)``; :mod:`causal_hypotheses.session` collects the results and
:mod:`causal_hypotheses.reports` renders them.  Importing this module is cheap: torch and
transformers load when the first claim runs.
"""
from __future__ import annotations

import pytest

from .claims import Claim, ClaimNotMet, ClaimSpec, ClaimSpecError, ModelUnavailable, empty_record
from .session import ClaimSession, Settings, SettingsError

SESSION = pytest.StashKey[ClaimSession]()
SPEC = pytest.StashKey[ClaimSpec]()
ORDER = pytest.StashKey[int]()
CLAIM = pytest.StashKey[Claim]()
RECORDER = "causal-hypotheses-recorder"

# (name, metavar, help); each is --claims-NAME on the command line and claims_NAME in the ini file.
OPTIONS = (
    ("model", "NAME", "run every claim on this registered model instead of the one its marker names"),
    ("device", "DEVICE", "device the models run on: cpu (default), cuda, cuda:N or mps"),
    ("dtype", "DTYPE", "model dtype: float32 (default), float16 or bfloat16"),
    ("n", "N", "number of examples for every claim (overrides markers and profile)"),
    ("seed", "SEED", "seed for every claim (overrides markers)"),
    ("report-dir", "DIR", "where the CSV and HTML reports go (default: reports/ under the rootdir)"),
    ("profile", "NAME", "dev (few examples, quick), ci (default) or thorough (more examples and draws)"),
    ("inconclusive", "WHAT", "what an inconclusive claim does: fail (default) or skip"),
    ("save", "NAME", "save this run's CSV as the baseline <report-dir>/baselines/NAME.csv"),
    ("compare", "NAME_OR_PATH", "compare with a saved baseline (a name under <report-dir>/baselines or a CSV path)"),
    ("compare-fail", "FIELD:LIMIT", "fail the run when a claim's FIELD moves more than LIMIT from the baseline "
                                    "(e.g. recovered:0.05, or recovered:10%% relative; comma-separate several)"),
)

MARKER_HELP = (
    "claim(model, task, metric, at_least=None, at_most=None, n=None, seed=0, draws=None, ablation='resample', "
    "level=0.95): an interpretability claim checked by causal scrubbing; pass when the whole confidence interval "
    "of the fraction recovered clears at_least (and/or lies under at_most). Use the `claim` fixture to run it."
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
    for name, _, _ in OPTIONS:
        dest = "claims_" + name.replace("-", "_")
        given = config.getoption(dest)
        if given is not None:
            values[dest[len("claims_"):]] = (given, config.invocation_params.dir)
        else:
            values[dest[len("claims_"):]] = (config.getini(dest) or None, ini_base)
    if values["report_dir"][0] is None:
        values["report_dir"] = (None, config.rootpath)
    return Settings.from_values(values)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_HELP)
    try:
        settings = _settings(config)
    except SettingsError as error:
        raise pytest.UsageError(str(error)) from None
    workers = getattr(config.option, "numprocesses", None)
    environment = {"device": settings.device, "dtype": settings.dtype, "profile": settings.profile.name,
                   "seed": "per claim (see the table)" if settings.seed is None else settings.seed,
                   "n": "per claim (see the table)" if settings.n is None else settings.n,
                   "xdist workers": workers or "none"}
    config.stash[SESSION] = session = ClaimSession(settings, writer=not hasattr(config, "workerinput"), environment=environment)
    config.pluginmanager.register(_Recorder(session), RECORDER)


@pytest.hookimpl(wrapper=True)
def pytest_pycollect_makeitem(collector, name, obj):
    """Check each claim marker when its test is collected: a bad one is a collection error."""
    result = yield
    items = result if isinstance(result, list) else [result] if result is not None else []
    session = collector.config.stash[SESSION]
    for item in items:
        if isinstance(item, pytest.Function) and item.get_closest_marker("claim") is not None:
            markers = [(mark.args, mark.kwargs) for mark in item.iter_markers("claim")]
            try:
                item.stash[SPEC] = session.spec_for(markers, where=item.nodeid)
            except ClaimSpecError as error:
                raise collector.CollectError(str(error)) from None
    return result


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items) -> None:
    for index, item in enumerate(items):  # every xdist worker collects the same list
        item.stash[ORDER] = index


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
    try:
        model = session.model(spec.model)
    except ModelUnavailable as error:
        pytest.skip(f"model {spec.model!r} is unavailable: {error}")
    task = session.task(spec, model)
    skip = (lambda message: pytest.skip(message)) if session.settings.inconclusive == "skip" else None
    item.stash[CLAIM] = made = Claim(item.nodeid, spec, model, task, properties=item.user_properties, inconclusive=skip)
    return made


def _short(excinfo) -> str:
    return f"{excinfo.type.__name__}: {excinfo.value}" if excinfo is not None else ""


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Attach the claim's record to its report (it travels to the xdist controller with it)."""
    report = yield
    spec = item.stash.get(SPEC, None)
    if spec is None:
        return report
    made = item.stash.get(CLAIM, None)
    record = None
    if call.when == "setup" and not report.passed:
        verdict = "skipped" if report.skipped else "error"
        message = report.longrepr[2] if report.skipped and isinstance(report.longrepr, tuple) else _short(call.excinfo)
        record = empty_record(item.nodeid, spec, verdict, message)
    elif call.when == "call":
        if made is not None and made.record is not None:
            record = made.record
            if call.excinfo is not None and isinstance(call.excinfo.value, ClaimNotMet):
                report.longrepr = str(call.excinfo.value)
        else:
            message = _short(call.excinfo) or (
                "the claim ran no experiment: use the claim fixture, e.g. "
                "`def test_heads(claim): claim.scrub(Hypothesis(...))`")
            record = empty_record(item.nodeid, spec, "error", message)
            if report.passed:
                report.outcome = "failed"
                report.longrepr = message
    if record is not None:
        record = {**record, "order": item.stash.get(ORDER, 0)}
        report.claim_record = record
    return report


class _Recorder:
    """Per-run hooks bound to the run's ClaimSession (``pytest_runtest_logreport`` gets no config)."""

    def __init__(self, session: ClaimSession) -> None:
        self.session = session

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        record = getattr(report, "claim_record", None)
        if record is not None:
            self.session.add(record)

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
