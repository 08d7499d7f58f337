"""One claims run: its settings, the models and tasks it shares between claims, and its results.

The plugin keeps one :class:`ClaimSession` per pytest session.  It loads each model once
(one Engine, so claims on the same model share its activation cache), builds each task once
per (task, model, n, seed), collects one record per claim, and, on the process that writes
(the only process, or the pytest-xdist controller), rewrites the run's CSV and HTML after
every claim so that an interrupted run keeps what finished.
"""
from __future__ import annotations

import json
import math
import os
import re
import tempfile
import warnings
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Mapping, Sequence

from . import claims as _claims
from .claims import ClaimRecord, ClaimSpec, LoadedModel, ModelUnavailable, Profile, as_record
from .claims.spec import HEAVY_PROFILE
from .errors import CausalHypothesesError

DEVICE_PATTERN = re.compile(r"^(cpu|mps|cuda(:\d+)?)$")
DTYPES = ("float32", "float16", "bfloat16")
INCONCLUSIVE = ("fail", "skip")
# Holm's method would need every claim's p-value before judging any; each test's outcome is
# decided when it runs, so the family-wise option is Bonferroni's, with m known at collection.
LEVEL_FAMILY = ("none", "bonferroni")
HEAVY = ("auto", "run", "skip")  # --claims-heavy: when claims marked heavy=True run
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class SettingsError(CausalHypothesesError, ValueError):
    """A ``--claims-*`` option or ``claims_*`` ini value is not allowed."""


class ClaimsReportWarning(UserWarning):
    """A claims report (CSV, HTML or baseline) could not be written; the claims still ran."""


@dataclass(frozen=True)
class Source:
    """Where a setting's value came from: the command line (``option``), the ini file (``ini``,
    with its path) or ``-o claims_KEY=VALUE`` (``override``)."""

    kind: str = "option"
    path: Path | None = None

    def show(self, key: str, value: str) -> str:
        """The value as the user wrote it: ``--claims-n='abc'`` or ``claims_n = 'abc' in pytest.ini``."""
        if self.kind == "ini":
            where = f" in {self.path}" if self.path is not None else " in the ini file"
            return f"claims_{key} = {value!r}{where}"
        if self.kind == "override":
            return f"-o claims_{key}={value!r}"
        return f"--claims-{key.replace('_', '-')}={value!r}"

    def name(self, key: str) -> str:
        """The setting's name as given: ``--claims-n``, ``claims_n`` (ini) or ``-o claims_n``."""
        if self.kind == "ini":
            return f"claims_{key}"
        if self.kind == "override":
            return f"-o claims_{key}"
        return f"--claims-{key.replace('_', '-')}"


@dataclass(frozen=True)
class Settings:
    """The run's settings (command line over ini over defaults), validated once at start-up."""

    model: str | None = None
    device: str = "cpu"
    dtype: str = "float32"
    n: int | None = None
    seed: int | None = None
    report_dir: Path = Path("reports")
    profile: Profile = _claims.PROFILES["ci"]
    compare: Path | None = None
    compare_fail: tuple = ()
    save: str | None = None
    inconclusive: str = "fail"
    level_family: str = "none"  # "bonferroni": each claim's level adjusted for the number of claims
    heavy: str = "auto"  # heavy claims: "auto" under the thorough profile only, "run" always, "skip" never
    # Where report_dir came from (None: the default, reports/ under the rootdir).
    report_dir_source: Source | None = None

    @classmethod
    def from_values(cls, values: Mapping[str, tuple]) -> "Settings":
        """Build from ``{key: (raw string or None, directory relative paths start from[, Source])}``.

        Keys are the option names without the ``claims_`` prefix; the optional third item says
        where the value came from (the command line when absent), so that a message names the
        ini key for a value from the ini file.  Every bad value is collected and reported at
        once, each with what is allowed.
        """
        from .reports import COMPARABLE, LEGACY_COLUMNS, Limit, baseline_problem

        raw = {key: value[0] for key, value in values.items() if value[0] not in (None, "")}
        base = {key: value[1] for key, value in values.items()}
        source = {key: value[2] if len(value) > 2 and value[2] is not None else Source() for key, value in values.items()}
        problems: list[str] = []
        settings: dict = {}

        def shown(key: str) -> str:
            return source.get(key, Source()).show(key, raw[key])

        def name(key: str) -> str:
            return source.get(key, Source()).name(key)

        def integer(key: str, low: int):
            text = raw[key]
            try:
                value = int(text)
            except ValueError:
                value = None
            if value is None or value < low:
                problems.append(f"{shown(key)}: expected an integer >= {low}")
            return value

        if "model" in raw:
            settings["model"] = raw["model"].strip()
        if "device" in raw:
            if not DEVICE_PATTERN.match(raw["device"]):
                problems.append(f"{shown('device')}: expected cpu, cuda, cuda:N or mps")
            elif raw["device"] != "cpu":
                missing = device_problem(raw["device"])
                if missing:
                    problems.append(f"{shown('device')}: {missing}; run on the cpu ({name('device')}=cpu, or leave it "
                                    "out) or where that device exists")
            settings["device"] = raw["device"]
        if "dtype" in raw:
            if raw["dtype"] not in DTYPES:
                problems.append(f"{shown('dtype')}: expected one of {', '.join(DTYPES)}")
            settings["dtype"] = raw["dtype"]
        if "n" in raw:
            settings["n"] = integer("n", 1)
        if "seed" in raw:
            settings["seed"] = integer("seed", 0)
        directory = Path(raw.get("report_dir", "reports")).expanduser()
        settings["report_dir"] = directory if directory.is_absolute() else (base.get("report_dir", Path.cwd()) / directory)
        if "report_dir" in raw:
            settings["report_dir_source"] = source.get("report_dir", Source())
        if "profile" in raw:
            if raw["profile"] not in _claims.PROFILES:
                problems.append(f"{shown('profile')}: expected one of {', '.join(_claims.PROFILES)} "
                                "(dev: few examples, quick; ci: the defaults; thorough: more examples and draws)")
            else:
                settings["profile"] = _claims.PROFILES[raw["profile"]]
        if "level_family" in raw:
            if raw["level_family"] not in LEVEL_FAMILY:
                problems.append(f"{shown('level_family')}: expected one of {', '.join(LEVEL_FAMILY)} (bonferroni: each of "
                                "m claims is judged at level 1 - (1 - level) / m, so the chance that any verdict is wrong "
                                "stays at 1 - level)")
            settings["level_family"] = raw["level_family"]
        if "heavy" in raw:
            if raw["heavy"] not in HEAVY:
                problems.append(f"{shown('heavy')}: expected one of {', '.join(HEAVY)} (auto: heavy claims run under "
                                f"--claims-profile {HEAVY_PROFILE} only; run: under any profile, at its "
                                "examples; skip: never)")
            settings["heavy"] = raw["heavy"]
        if "inconclusive" in raw:
            if raw["inconclusive"] not in INCONCLUSIVE:
                problems.append(f"{shown('inconclusive')}: expected one of {', '.join(INCONCLUSIVE)}")
            settings["inconclusive"] = raw["inconclusive"]
        if "save" in raw:
            # --claims-save=x.csv and --claims-compare=x.csv name the same file, baselines/x.csv.
            stem = raw["save"][:-4] if raw["save"].endswith(".csv") else raw["save"]
            if not _NAME.match(stem):
                problems.append(f"{shown('save')}: expected a name of letters, digits, '.', '_' or '-' "
                                f"(it becomes {settings['report_dir'] / 'baselines'}/NAME.csv)")
            settings["save"] = stem
        limits = []
        if "compare_fail" in raw:
            for part in raw["compare_fail"].split(","):
                match = re.match(r"^\s*([a-z_]+):([0-9.eE+-]+)(%?)\s*$", part)
                value = None
                if match:
                    try:
                        value = float(match.group(2))
                    except ValueError:
                        value = None
                if not match or match.group(1) not in COMPARABLE or value is None or not math.isfinite(value) or value < 0:
                    renamed = LEGACY_COLUMNS.get(match.group(1)) if match else None
                    problems.append(f"{source.get('compare_fail', Source()).show('compare_fail', part.strip())}: "
                                    "expected FIELD:LIMIT (absolute) or FIELD:LIMIT% "
                                    f"(relative to the baseline), FIELD one of {', '.join(COMPARABLE)}, LIMIT >= 0; "
                                    "e.g. value:0.05"
                                    + (f" ({match.group(1)} is now called {renamed})" if renamed else ""))
                    continue
                relative = match.group(3) == "%"
                limits.append(Limit(match.group(1), value / 100 if relative else value, relative))
            settings["compare_fail"] = tuple(limits)
            if "compare" not in raw:
                fix = ("claims_compare = NAME_OR_PATH to the ini file" if source.get("compare_fail", Source()).kind == "ini"
                       else "--claims-compare=NAME_OR_PATH")
                problems.append(f"{name('compare_fail')} needs a baseline to compare with: add {fix}")
        if "compare" in raw:
            found = resolve_baseline(raw["compare"], base.get("compare", Path.cwd()), settings["report_dir"])
            if found is None:
                known = sorted(p.stem for p in (settings["report_dir"] / "baselines").glob("*.csv"))
                given = Path(raw["compare"]).expanduser()
                given = given if given.is_absolute() else base.get("compare", Path.cwd()) / given
                what = f"{given} is a directory, not a CSV file" if given.is_dir() else "no such CSV file"
                problems.append(f"{shown('compare')}: {what} and no baseline of that name in "
                                f"{settings['report_dir'] / 'baselines'} (saved baselines: {', '.join(known) or 'none'}); "
                                "save one with --claims-save=NAME")
            else:
                wrong = baseline_problem(found, [limit.field for limit in limits])
                if wrong:
                    problems.append(f"{shown('compare')}: the baseline {found} cannot be used: {wrong}; give a CSV "
                                    "written by a claims run (reports/claims-*.csv) or save one with --claims-save=NAME")
            settings["compare"] = found
        if problems:
            raise SettingsError("bad claims settings:\n  " + "\n  ".join(problems))
        return cls(**settings)


def device_problem(device: str) -> str | None:
    """Why torch cannot run on ``device`` here (None when it can). Imports torch: call it only
    for a device other than the cpu."""
    import torch

    if device.startswith("cuda"):
        build = f"torch {torch.__version__}" + ("" if torch.version.cuda else ", built without CUDA")
        if not torch.cuda.is_available():
            return f"no CUDA device is available ({build}; torch.cuda.is_available() is False)"
        count = torch.cuda.device_count()
        index = int(device.partition(":")[2] or 0)
        if index >= count:
            return f"there is no CUDA device {index}: {count} available (cuda:0 to cuda:{count - 1})"
        return None
    if device == "mps":
        backend = getattr(torch.backends, "mps", None)
        if backend is None or not backend.is_available():
            return f"the mps (Apple GPU) device is not available (torch {torch.__version__}; torch.backends.mps.is_available() is False)"
    return None


def _probe(directory: Path, exists: bool) -> None:
    """Create and remove a file in ``directory`` (a directory, when ``exists`` is False: its
    child is to be created), raising OSError when that is not allowed."""
    if exists:
        fd, name = tempfile.mkstemp(dir=directory, prefix=".claims-probe-")
        os.close(fd)
        os.unlink(name)
    else:
        os.rmdir(tempfile.mkdtemp(dir=directory, prefix=".claims-probe-"))


def report_dir_problem(directory: Path) -> str | None:
    """Why the reports cannot be written to ``directory`` (None when they can): it is a file, or
    something above it is, or it (or the nearest existing directory above it) does not let us
    write. Nothing is left behind: the check creates and removes one temporary entry."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        return f"{directory} exists and is not a directory"
    existing = directory
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        return f"it cannot be created: {existing} is a file, not a directory"
    try:
        _probe(existing, existing == directory)
    except OSError as error:
        reason = error.strerror or str(error)
        if existing == directory:
            return f"files cannot be written in it ({reason})"
        return f"it cannot be created in {existing} ({reason})"
    return None


def resolve_baseline(name_or_path: str, base: Path, report_dir: Path) -> Path | None:
    """A CSV path as given (relative to ``base``), else ``<report_dir>/baselines/NAME.csv``."""
    given = Path(name_or_path).expanduser()
    given = given if given.is_absolute() else base / given
    if given.is_file():
        return given
    stem = name_or_path[:-4] if name_or_path.endswith(".csv") else name_or_path
    saved = report_dir / "baselines" / f"{stem}.csv"
    return saved if _NAME.match(stem) and saved.is_file() else None


@dataclass
class ClaimSession:
    """Shared models and tasks, and the records of one run (see the module docstring)."""

    settings: Settings
    writer: bool = True
    environment: Mapping[str, object] = field(default_factory=dict)
    started: datetime = field(default_factory=datetime.now)
    records: dict[str, ClaimRecord] = field(default_factory=dict)
    csv_path: Path | None = None
    html_path: Path | None = None
    comparison: tuple[list, list, list] | None = None
    # Claim ids this run selected (after -k/-m deselection); None: unknown (an xdist controller
    # that heard from no worker), when no baseline claim is reported missing.
    selected: set | None = None
    claim_count: int = 0  # claims collected in this process (for --claims-level-family)
    # Why the reports could not be written (the last failure, in words), or None.
    write_error: str | None = None
    save_error: str | None = None
    written: bool = False
    _models: dict = field(default_factory=dict)
    _tasks: dict = field(default_factory=dict)
    _figures: dict = field(default_factory=dict)
    _warned: set = field(default_factory=set)

    # -- claims ---------------------------------------------------------------------------

    def spec_for(self, markers: Sequence[tuple[tuple, Mapping]], where: str) -> ClaimSpec:
        s = self.settings
        return _claims.make_spec(list(markers), profile=s.profile, model=s.model, n=s.n, seed=s.seed, where=where)

    def model(self, name: str) -> LoadedModel:
        """The model, loaded once per session (a failure to load is remembered too)."""
        key = (name, self.settings.device, self.settings.dtype)
        if key not in self._models:
            try:
                self._models[key] = _claims.load_model(name, device=self.settings.device, dtype=self.settings.dtype)
            except Exception as error:  # any failure: every claim on the model reports it, none retries
                self._models[key] = error
        loaded = self._models[key]
        if isinstance(loaded, Exception):
            raise loaded
        return loaded

    def family_adjusted(self, spec: ClaimSpec) -> ClaimSpec:
        """``spec`` at the level --claims-level-family asks for, with a note saying so."""
        if self.settings.level_family == "none" or self.claim_count <= 1:
            return spec
        from .stats import family_level

        level = family_level(spec.level, self.claim_count, self.settings.level_family)
        note = (f"level {spec.level:g} adjusted to {level:.4g} for {self.claim_count} claims "
                f"(--claims-level-family={self.settings.level_family})")
        return replace(spec, level=level, notes=spec.notes + (note,))

    def task(self, spec: ClaimSpec, model: LoadedModel):
        """The task, built once per (task, model, n, seed)."""
        key = (spec.task, model.name, self.settings.device, self.settings.dtype, spec.n, spec.seed)
        if key not in self._tasks:
            self._tasks[key] = _claims.build_task(spec.task, model, spec.n, spec.seed)
        return self._tasks[key]

    # -- results --------------------------------------------------------------------------

    def add(self, record: ClaimRecord | Mapping) -> None:
        """Keep a claim's record (a ClaimRecord, or its :meth:`~ClaimRecord.to_dict` as it comes
        from a pytest-xdist worker) and, on the writing process, rewrite the reports."""
        record = as_record(record)
        self.records[record.claim] = record
        if self.writer:
            self.write()

    def ordered(self) -> list[ClaimRecord]:
        """Records in collection order (the same on every xdist worker), then by claim id."""
        return sorted(self.records.values(), key=lambda r: (r.order, r.claim))

    def frame(self):
        from .reports import to_frame

        return to_frame(self.ordered())

    def _paths(self) -> tuple[Path, Path]:
        """This run's CSV and HTML paths, the CSV created empty (exclusively) so that two runs
        started in the same second never pick the same name."""
        if self.csv_path is None:
            directory = self.settings.report_dir
            directory.mkdir(parents=True, exist_ok=True)
            stamp = self.started.strftime("%Y%m%d-%H%M%S")
            stem, k = f"claims-{stamp}", 1
            while True:
                csv_path, html_path = directory / f"{stem}.csv", directory / f"{stem}.html"
                if not html_path.exists():
                    try:
                        os.close(os.open(csv_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
                        break
                    except FileExistsError:
                        pass
                k += 1
                stem = f"claims-{stamp}-{k}"
            self.csv_path, self.html_path = csv_path, html_path
        return self.csv_path, self.html_path

    def _warn(self, what: str, error: BaseException) -> str:
        """Say once (a ClaimsReportWarning) that ``what`` could not be written, and why."""
        reason = f"{type(error).__name__}: {error}"
        message = f"could not write {what}: {reason}; the claims still run"
        if message not in self._warned:
            self._warned.add(message)
            try:
                warnings.warn(ClaimsReportWarning(message), stacklevel=2)
            except Warning:  # -W error: the terminal summary still says it
                pass
        return f"{what}: {reason}"

    def chance_note(self, frame) -> str | None:
        """How many of the judged claims would fail by chance if every one held exactly at its
        threshold: (1 - level) / 2 each, the chance an interval lies wholly on the wrong side."""
        judged = frame[frame["verdict"].isin(["pass", "fail", "inconclusive"])]
        if len(judged) < 2:
            return None
        expected = float(((1 - judged["level"]) / 2).sum())
        family = (" (levels adjusted with --claims-level-family=bonferroni)" if self.settings.level_family == "bonferroni"
                  else "; --claims-level-family=bonferroni keeps the chance of any wrong verdict at 1 - level")
        return (f"{len(judged)} claims judged: if each held exactly at its threshold, about {expected:.2f} would fail by "
                f"chance{family}")

    def notes(self) -> list[tuple[str, str]]:
        """Notes for the top of the HTML page: a missing graph renderer, the comparison with the
        baseline and its drifts."""
        from .engine.drawing import dot_program

        found: list[tuple[str, str]] = []
        chance = self.chance_note(self.frame()) if self.records else None
        if chance:
            found.append(("info", chance + "."))
        if dot_program() is None:
            found.append(("warning", "No dot program was found (on PATH or beside this Python), so each hypothesis "
                                     "graph is shown as DOT text: install Debian's graphviz or `pip install graphviz-pure`."))
        if self.comparison is None:
            return found
        table, drifts, notes = self.comparison
        limits = ",".join(str(limit) for limit in self.settings.compare_fail)
        compared = len(table) - 1
        found += [("info", f"Compared with the baseline {self.settings.compare}: {compared} claim"
                          f"{'' if compared == 1 else 's'} in both"
                          + (f"; limits --claims-compare-fail={limits}." if limits else "; no limits set (--claims-compare-fail)."))]
        found += [("warning", note) for note in notes]
        found += [("drift", drift.message()) for drift in drifts]
        if drifts:
            found.append(("drift", f"The run failed on drift: {len(drifts)} value{'' if len(drifts) == 1 else 's'} moved "
                                   f"beyond --claims-compare-fail={limits}."))
        return found

    def write(self) -> bool:
        """Rewrite the run's CSV and HTML (and latest.csv / latest.html) from every record so far.

        Every file is written to a temporary file of its own and renamed into place, so a reader
        (or another run writing to the same directory) never sees a partial file.  A failure
        (disk full, no permission, ...) is a ClaimsReportWarning, not an error: the claims run on.
        Returns whether the reports were written.
        """
        from . import reports

        target = self.settings.report_dir
        try:
            csv_path, html_path = self._paths()
            target = csv_path
            frame = self.frame()
            text = reports.csv_text(frame)
            sections = []
            for record in self.ordered():
                if record.claim not in self._figures:
                    self._figures[record.claim] = reports.claim_figures(record)
                sections.append(reports.claim_section(record, self._figures[record.claim]))
            env = reports.environment({**self.environment, "started": self.started.isoformat(timespec="seconds")})
            title = f"Claims run {self.started:%Y-%m-%d %H:%M:%S}"
            page = reports.render_html(frame, sections, env, title, self.notes())
            examples = reports.examples_text(self.ordered())
            meta = json.dumps({"title": title, **env}, indent=2)
            stem = csv_path.stem
            for path, data in ((csv_path, text), (html_path, page), (csv_path.with_name("latest.csv"), text),
                               (html_path.with_name("latest.html"), page),
                               (csv_path.with_name(f"examples-{stem}.csv"), examples),
                               (csv_path.with_name("latest-examples.csv"), examples),
                               (csv_path.with_name(f"meta-{stem}.json"), meta),
                               (csv_path.with_name("latest-meta.json"), meta)):
                target = path
                reports.write_atomic(path, data)
        except Exception as error:  # noqa: BLE001 - a report must never stop the claims
            self.write_error = self._warn(f"the claims report {target}", error)
            if not self.written and self.csv_path is not None:  # drop the empty file that reserved the name
                try:
                    if self.csv_path.stat().st_size == 0:
                        self.csv_path.unlink()
                except OSError:
                    pass
                self.csv_path = self.html_path = None
            return False
        self.write_error = None
        self.written = True
        return True

    def finish(self) -> list:
        """At the end of the run: compare with the baseline (and rewrite the reports with the
        comparison), then save one. Returns the drifts beyond ``--claims-compare-fail`` (the run
        fails when there are any)."""
        from . import reports

        if not self.writer or not self.records:
            return []
        drifts: list = []
        if self.settings.compare is not None:
            frame = self.frame()
            fields = [limit.field for limit in self.settings.compare_fail]
            problem = reports.baseline_problem(self.settings.compare, fields)
            if problem:  # it was fine at start-up: changed during the run
                self.comparison = ([list(reports.TABLE_HEADER)], [],
                                   [f"the baseline {self.settings.compare} cannot be used: {problem}"])
            else:
                baseline = reports.read_csv(self.settings.compare)
                table, drifts, notes = reports.compare(frame, baseline, self.settings.compare_fail,
                                                       selected=self.selected if self.selected is not None else ())
                self.comparison = (table, drifts, notes)
                for claim, values in reports.comparison_fields(frame, baseline, drifts).items():
                    self.records[claim] = replace(self.records[claim], **values)
            self.write()
        if self.settings.save is not None:
            target = self.settings.report_dir / "baselines" / f"{self.settings.save}.csv"
            try:
                frame = self.frame()
                for column in reports.COMPARISON:  # a baseline holds what this run measured, not its comparison
                    frame[column] = None
                reports.write_csv(frame, target)
            except Exception as error:  # noqa: BLE001
                self.save_error = self._warn(f"the baseline {target}", error)
        return drifts

    def summary_lines(self) -> list[tuple[str, dict]]:
        """Lines for the terminal summary, each with terminal markup (e.g. ``{"red": True}``)."""
        from . import reports

        frame = self.frame()
        lines = [(line, {}) for line in reports.text_table(reports.summary_rows(frame))]
        colours = {"pass": {"green": True}, "fail": {"red": True}, "inconclusive": {"yellow": True}, "error": {"red": True},
                   "no-effect": {"yellow": True}, "xfailed": {"yellow": True}, "xpassed": {"yellow": True}}
        for k, verdict in enumerate(frame["verdict"], start=2):
            lines[k] = (lines[k][0], colours.get(verdict, {}))
        lines.append((f"{len(frame)} claim{'' if len(frame) == 1 else 's'}: {reports.verdict_counts(frame)}", {}))
        chance = self.chance_note(frame)
        if chance:
            lines.append((chance, {}))
        if self.write_error is not None:
            lines.append((f"the claims report could not be written: {self.write_error}", {"red": True, "bold": True}))
        if self.written and self.write_error is None:
            lines.append((f"reports: {self.csv_path} and {self.html_path} (also latest.csv, latest.html)", {}))
        if self.settings.save is not None:
            target = self.settings.report_dir / "baselines" / (self.settings.save + ".csv")
            if self.save_error is not None:
                lines.append((f"the baseline could not be saved: {self.save_error}", {"red": True, "bold": True}))
            else:
                lines.append((f"baseline saved: {target}", {}))
        if self.comparison is not None:
            table, drifts, notes = self.comparison
            lines.append((f"compared with {self.settings.compare}:", {"bold": True}))
            lines += [(line, {}) for line in reports.text_table(table)]
            lines += [(note, {"yellow": True} if ": note: " in note else {}) for note in notes]
            lines += [(drift.message(), {"red": True}) for drift in drifts]
            if drifts:
                limits = ",".join(str(limit) for limit in self.settings.compare_fail)
                lines.append((f"the run failed on drift: {len(drifts)} value{'' if len(drifts) == 1 else 's'} moved beyond "
                              f"--claims-compare-fail={limits}", {"red": True, "bold": True}))
        return lines
