"""Baselines: checking a saved run, comparing this run with it, drift beyond the limits.

A baseline is a claims report CSV; one written before the columns were generic (``recovered``
where ``value`` is now) reads the same (see :func:`~causal_hypotheses.reports.table.read_csv`)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from .table import IDENTITY, read_csv, _num

# The header of the comparison table (terminal and notes).
TABLE_HEADER = ("claim", "baseline value", "value", "change")


def baseline_problem(path: Path, fields: Sequence[str] = ()) -> str | None:
    """What makes ``path`` unusable as a baseline (None when it is fine): not a readable CSV, no
    ``claim`` or ``value`` column (``recovered`` in an older report; or no column for a ``fields``
    limit), no rows, a repeated or empty claim id, a value that is not a number."""
    import pandas as pd

    path = Path(path)
    try:
        if path.stat().st_size == 0:
            return "the file is empty"
        frame = read_csv(path)
    except pd.errors.EmptyDataError:
        return "the file has no CSV header or rows"
    except UnicodeDecodeError:
        return "the file is not text (not a CSV file)"
    except (pd.errors.ParserError, ValueError) as error:
        return f"the file is not a readable CSV ({' '.join(str(error).split())})"
    except OSError as error:
        return f"the file cannot be read ({error.strerror or error})"
    written = frame.attrs.get("renamed", {})  # a column's name in the file, where read_csv renamed it
    shown = ", ".join(str(written.get(c, c)) for c in list(frame.columns)[:8]) + (", ..." if len(frame.columns) > 8 else "")
    missing = [column for column in ("claim", "value") if column not in frame.columns]
    if missing:
        return (f"it has no {', '.join(repr(c) for c in missing)} column{'s' if len(missing) > 1 else ''} "
                f"(its columns: {shown}), so it is not a claims report CSV")
    missing = [column for column in dict.fromkeys(fields) if column not in frame.columns]
    if missing:
        return (f"it has no {', '.join(repr(c) for c in missing)} column{'s' if len(missing) > 1 else ''}, which "
                f"--claims-compare-fail compares (its columns: {shown})")
    if frame.empty:
        return "it has a header but no claims"
    claims = frame["claim"]
    blank = (claims.isna() | (claims.astype(str).str.strip() == "")).to_numpy()
    if blank.any():
        return f"line {int(blank.argmax()) + 2} has no claim id"
    repeated = sorted(set(claims[claims.duplicated()].astype(str)))
    if repeated:
        return f"claim ids repeat: {', '.join(repeated[:3])}{', ...' if len(repeated) > 3 else ''}"
    for column in dict.fromkeys(["value", *fields]):
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = frame[column][values.isna() & frame[column].notna()]
        if len(bad):
            return (f"column {written.get(column, column)!r} holds {bad.iloc[0]!r} (line {int(bad.index[0]) + 2}), which is not a number")
    return None


@dataclass(frozen=True)
class Limit:
    """How far ``field`` may move from the baseline: ``value`` absolute, or relative when ``relative``."""

    field: str
    value: float
    relative: bool = False

    def __str__(self) -> str:
        return f"{self.field}:{self.value * 100:g}%" if self.relative else f"{self.field}:{self.value:g}"


@dataclass(frozen=True)
class Drift:
    claim: str
    field: str
    baseline: float
    now: float
    limit: Limit

    def message(self) -> str:
        change = self.now - self.baseline
        allowed = (f"{self.limit.value:.0%} of the baseline ({abs(self.baseline) * self.limit.value:.4g})"
                   if self.limit.relative else f"{self.limit.value:g}")
        return (f"{self.claim}: {self.field} moved from {self.baseline:.4g} (baseline) to {self.now:.4g} "
                f"(change {change:+.4g}), more than the limit {allowed} set by --claims-compare-fail={self.limit}")


def _identity(value) -> str:
    """A model/task/n/seed value as text, so that 8, 8.0 and "8" (as CSV files give them) agree."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def mismatches(row: Mapping, before: Mapping) -> list[str]:
    """How a claim's row differs from its baseline row in what the claim is (model, task, n, seed)."""
    found = []
    for key in IDENTITY:
        if key in before and key in row and _identity(before[key]) != _identity(row[key]):
            found.append(f"{key} {_identity(row[key]) or '(none)'} here, {_identity(before[key]) or '(none)'} in the baseline")
    return found


def compare(frame, baseline, limits: Sequence[Limit], selected: Iterable[str] | None = None
            ) -> tuple[list[list[str]], list[Drift], list[str]]:
    """Compare this run with a baseline by claim id.

    Returns the comparison table (header first: claim, value then and now, change), the
    drifts beyond ``limits``, and notes: claims present in only one of the two runs, and claims
    whose model, task, n or seed differ from their baseline row (their numbers are not comparable).
    A baseline claim missing from this run is noted only when it is in ``selected`` (the claims
    this run selected; None: every claim counts as selected), so claims deselected with -k or -m
    are not reported missing.
    """
    old = {row["claim"]: row for row in baseline.to_dict("records")}
    new = {row["claim"]: row for row in frame.to_dict("records")}
    wanted = None if selected is None else set(selected)
    table = [list(TABLE_HEADER)]
    drifts: list[Drift] = []
    notes = [f"{claim}: not in the baseline" for claim in new if claim not in old]
    notes += [f"{claim}: in the baseline but not in this run" for claim in old
              if claim not in new and (wanted is None or claim in wanted)]
    for claim, row in new.items():
        if claim not in old:
            continue
        before = old[claim]
        then, now = float(before["value"]), float(row["value"])
        table.append([claim, _num(then), _num(now), _num(now - then) if not math.isnan(now - then) else "—"])
        differ = mismatches(row, before)
        if differ:
            notes.append(f"{claim}: note: {'; '.join(differ)}, so the two are not the same measurement")
        for limit in limits:
            then, now = float(before[limit.field]), float(row[limit.field])
            if math.isnan(then) and math.isnan(now):
                continue
            allowed = abs(then) * limit.value if limit.relative else limit.value
            if math.isnan(then) != math.isnan(now) or abs(now - then) > allowed:
                drifts.append(Drift(claim, limit.field, then, now, limit))
    return table, drifts, notes


def comparison_fields(frame, baseline, drifts: Sequence[Drift]) -> dict[str, dict]:
    """Per claim of this run found in the baseline: the COMPARISON columns, plus ``baseline_notes``
    (the drift messages and the model/task/n/seed differences) for its part of the HTML page."""
    old = {row["claim"]: row for row in baseline.to_dict("records")}
    fields = {}
    for row in frame.to_dict("records"):
        before = old.get(row["claim"])
        if before is None:
            continue
        then, now = float(before["value"]), float(row["value"])
        drifted = [d for d in drifts if d.claim == row["claim"]]
        differ = mismatches(row, before)
        notes = [("drift", d.message()) for d in drifted]
        if differ:
            notes.append(("warning", f"Not the same measurement as the baseline: {'; '.join(differ)}."))
        fields[row["claim"]] = {"baseline_value": then, "change": now - then, "drift": bool(drifted),
                                "baseline_notes": notes}
    return fields
