"""One claims run: its settings, the models and tasks it shares between claims, and its results.

The plugin keeps one :class:`ClaimSession` per pytest session.  It loads each model once
(one Engine, so claims on the same model share its activation cache), builds each task once
per (task, model, n, seed), collects one record per claim, and, on the process that writes
(the only process, or the pytest-xdist controller), rewrites the run's CSV and HTML after
every claim so that an interrupted run keeps what finished.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Mapping, Sequence

from . import claims as _claims
from .claims import ClaimSpec, LoadedModel, ModelUnavailable, Profile
from .errors import CausalHypothesesError

DEVICE_PATTERN = re.compile(r"^(cpu|mps|cuda(:\d+)?)$")
DTYPES = ("float32", "float16", "bfloat16")
INCONCLUSIVE = ("fail", "skip")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class SettingsError(CausalHypothesesError, ValueError):
    """A ``--claims-*`` option or ``claims_*`` ini value is not allowed."""


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

    @classmethod
    def from_values(cls, values: Mapping[str, tuple[str | None, Path]]) -> "Settings":
        """Build from ``{key: (raw string or None, directory relative paths start from)}``.

        Keys are the option names without the ``claims_`` prefix.  Every bad value is
        collected and reported at once, each with what is allowed.
        """
        from .reports import COMPARABLE, Limit

        raw = {key: value for key, (value, _) in values.items() if value not in (None, "")}
        base = {key: where for key, (_, where) in values.items()}
        problems: list[str] = []
        settings: dict = {}

        def integer(key: str, low: int):
            text = raw[key]
            try:
                value = int(text)
            except ValueError:
                value = None
            if value is None or value < low:
                problems.append(f"--claims-{key}={text!r}: expected an integer >= {low}")
            return value

        if "model" in raw:
            settings["model"] = raw["model"].strip()
        if "device" in raw:
            if not DEVICE_PATTERN.match(raw["device"]):
                problems.append(f"--claims-device={raw['device']!r}: expected cpu, cuda, cuda:N or mps")
            settings["device"] = raw["device"]
        if "dtype" in raw:
            if raw["dtype"] not in DTYPES:
                problems.append(f"--claims-dtype={raw['dtype']!r}: expected one of {', '.join(DTYPES)}")
            settings["dtype"] = raw["dtype"]
        if "n" in raw:
            settings["n"] = integer("n", 1)
        if "seed" in raw:
            settings["seed"] = integer("seed", 0)
        directory = Path(raw.get("report_dir", "reports")).expanduser()
        settings["report_dir"] = directory if directory.is_absolute() else (base.get("report_dir", Path.cwd()) / directory)
        if "profile" in raw:
            if raw["profile"] not in _claims.PROFILES:
                problems.append(f"--claims-profile={raw['profile']!r}: expected one of {', '.join(_claims.PROFILES)} "
                                "(dev: few examples, quick; ci: the defaults; thorough: more examples and draws)")
            else:
                settings["profile"] = _claims.PROFILES[raw["profile"]]
        if "inconclusive" in raw:
            if raw["inconclusive"] not in INCONCLUSIVE:
                problems.append(f"--claims-inconclusive={raw['inconclusive']!r}: expected one of {', '.join(INCONCLUSIVE)}")
            settings["inconclusive"] = raw["inconclusive"]
        if "save" in raw:
            if not _NAME.match(raw["save"]):
                problems.append(f"--claims-save={raw['save']!r}: expected a name of letters, digits, '.', '_' or '-' "
                                f"(it becomes {settings['report_dir'] / 'baselines'}/NAME.csv)")
            settings["save"] = raw["save"]
        if "compare" in raw:
            found = resolve_baseline(raw["compare"], base.get("compare", Path.cwd()), settings["report_dir"])
            if found is None:
                known = sorted(p.stem for p in (settings["report_dir"] / "baselines").glob("*.csv"))
                problems.append(f"--claims-compare={raw['compare']!r}: no such CSV file and no baseline of that name in "
                                f"{settings['report_dir'] / 'baselines'} (saved baselines: {', '.join(known) or 'none'}); "
                                "save one with --claims-save=NAME")
            settings["compare"] = found
        if "compare_fail" in raw:
            limits = []
            for part in raw["compare_fail"].split(","):
                match = re.match(r"^\s*([a-z_]+):([0-9.eE+-]+)(%?)\s*$", part)
                value = None
                if match:
                    try:
                        value = float(match.group(2))
                    except ValueError:
                        value = None
                if not match or match.group(1) not in COMPARABLE or value is None or not math.isfinite(value) or value < 0:
                    problems.append(f"--claims-compare-fail={part.strip()!r}: expected FIELD:LIMIT (absolute) or FIELD:LIMIT% "
                                    f"(relative to the baseline), FIELD one of {', '.join(COMPARABLE)}, LIMIT >= 0; "
                                    "e.g. recovered:0.05")
                    continue
                relative = match.group(3) == "%"
                limits.append(Limit(match.group(1), value / 100 if relative else value, relative))
            settings["compare_fail"] = tuple(limits)
            if "compare" not in raw:
                problems.append("--claims-compare-fail needs a baseline to compare with: add --claims-compare=NAME_OR_PATH")
        if problems:
            raise SettingsError("bad claims settings:\n  " + "\n  ".join(problems))
        return cls(**settings)


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
    records: dict[str, dict] = field(default_factory=dict)
    csv_path: Path | None = None
    html_path: Path | None = None
    comparison: tuple[list, list, list] | None = None
    _models: dict = field(default_factory=dict)
    _tasks: dict = field(default_factory=dict)
    _sections: dict = field(default_factory=dict)

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
            except ModelUnavailable as error:
                self._models[key] = error
        loaded = self._models[key]
        if isinstance(loaded, ModelUnavailable):
            raise loaded
        return loaded

    def task(self, spec: ClaimSpec, model: LoadedModel):
        """The task, built once per (task, model, n, seed)."""
        key = (spec.task, model.name, self.settings.device, self.settings.dtype, spec.n, spec.seed)
        if key not in self._tasks:
            self._tasks[key] = _claims.build_task(spec.task, model, spec.n, spec.seed)
        return self._tasks[key]

    # -- results --------------------------------------------------------------------------

    def add(self, record: dict) -> None:
        """Keep a claim's record and, on the writing process, rewrite the reports."""
        self.records[record["claim"]] = record
        if self.writer:
            self.write()

    def ordered(self) -> list[dict]:
        """Records in collection order (the same on every xdist worker), then by claim id."""
        return sorted(self.records.values(), key=lambda r: (r.get("order", 0), r["claim"]))

    def frame(self):
        from .reports import to_frame

        return to_frame(self.ordered())

    def _paths(self) -> tuple[Path, Path]:
        if self.csv_path is None:
            directory = self.settings.report_dir
            directory.mkdir(parents=True, exist_ok=True)
            stamp = self.started.strftime("%Y%m%d-%H%M%S")
            stem, k = f"claims-{stamp}", 1
            while (directory / f"{stem}.csv").exists() or (directory / f"{stem}.html").exists():
                k += 1
                stem = f"claims-{stamp}-{k}"
            self.csv_path, self.html_path = directory / f"{stem}.csv", directory / f"{stem}.html"
        return self.csv_path, self.html_path

    def write(self) -> None:
        """Rewrite the run's CSV and HTML (and latest.csv / latest.html) from every record so far."""
        from . import reports

        csv_path, html_path = self._paths()
        frame = self.frame()
        reports.write_csv(frame, csv_path)
        sections = []
        for record in self.ordered():
            if record["claim"] not in self._sections:
                self._sections[record["claim"]] = reports.claim_section(record)
            sections.append(self._sections[record["claim"]])
        env = reports.environment({**self.environment, "started": self.started.isoformat(timespec="seconds")})
        title = f"Claims run {self.started:%Y-%m-%d %H:%M:%S}"
        reports.write_html(reports.render_html(frame, sections, env, title), html_path)
        reports.copy(csv_path, csv_path.with_name("latest.csv"))
        reports.copy(html_path, html_path.with_name("latest.html"))

    def finish(self) -> list:
        """At the end of the run: compare with the baseline, then save one. Returns the drifts
        beyond ``--claims-compare-fail`` (the run fails when there are any)."""
        from . import reports

        if not self.writer or not self.records:
            return []
        drifts: list = []
        frame = self.frame()
        if self.settings.compare is not None:
            table, drifts, notes = reports.compare(frame, reports.read_csv(self.settings.compare), self.settings.compare_fail)
            self.comparison = (table, drifts, notes)
        if self.settings.save is not None:
            target = self.settings.report_dir / "baselines" / f"{self.settings.save}.csv"
            reports.write_csv(frame, target)
        return drifts

    def summary_lines(self) -> list[tuple[str, dict]]:
        """Lines for the terminal summary, each with terminal markup (e.g. ``{"red": True}``)."""
        from . import reports

        frame = self.frame()
        lines = [(line, {}) for line in reports.text_table(reports.summary_rows(frame))]
        colours = {"pass": {"green": True}, "fail": {"red": True}, "inconclusive": {"yellow": True}, "error": {"red": True}}
        for k, verdict in enumerate(frame["verdict"], start=2):
            lines[k] = (lines[k][0], colours.get(verdict, {}))
        lines.append((f"reports: {self.csv_path} and {self.html_path} (also latest.csv, latest.html)", {}))
        if self.settings.save is not None:
            lines.append((f"baseline saved: {self.settings.report_dir / 'baselines' / (self.settings.save + '.csv')}", {}))
        if self.comparison is not None:
            table, drifts, notes = self.comparison
            lines.append((f"compared with {self.settings.compare}:", {"bold": True}))
            lines += [(line, {}) for line in reports.text_table(table)]
            lines += [(note, {}) for note in notes]
            lines += [(drift.message(), {"red": True}) for drift in drifts]
        return lines
