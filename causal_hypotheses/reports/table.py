"""The run's table: the record's columns, the DataFrame, CSV written atomically, the terminal table.

The columns are the fields of :class:`~causal_hypotheses.claims.record.ClaimRecord`.  Every
function here takes records as ClaimRecord objects or as mappings of their fields.  pandas is
imported inside the functions, so importing this module is cheap.
"""
from __future__ import annotations

import math
import os
import secrets
from pathlib import Path
from typing import Iterable, Mapping, Sequence, Union

from ..claims.record import COLUMNS, PER_EXAMPLE, ClaimRecord, as_record

Record = Union[ClaimRecord, Mapping]


# Filled in at the end of a run compared with a baseline (--claims-compare); empty otherwise.
COMPARISON = ("baseline_value", "change", "drift")


# What must agree between a claim and its baseline row for the comparison to mean something.
IDENTITY = ("model", "task", "n", "seed")


# Columns that depend on scheduling and machine load rather than on the claim: they differ
# between a serial and a pytest-xdist run (cache sharing) and between any two runs (time).
RUN_DEPENDENT = ("forward_passes", "cache_hits", "seconds")


COMPARABLE = ("value", "ci_low", "ci_high", "target", "base", "intervened", "seconds")


# Columns of CSV files written before the columns were generic, and their names now.
LEGACY_COLUMNS = {"recovered": "value", "clean": "target", "ablated": "base", "scrubbed": "intervened",
                  "baseline_recovered": "baseline_value"}


_VERDICT_COLOURS = {"pass": "#d8f0d8", "fail": "#f8d0d0", "inconclusive": "#fbe7c0", "no-effect": "#d8e4f4",
                    "xfailed": "#ece8c8", "xpassed": "#f8dcb8", "skipped": "#e4e4e4", "error": "#f0c0e0"}


VERDICTS = tuple(_VERDICT_COLOURS)  # the order in which counts are listed


def to_frame(records: Iterable[Record]):
    """The run's DataFrame: one row per claim record, columns in COLUMNS order."""
    import pandas as pd

    rows = [{column: getattr(record, column) for column in COLUMNS} for record in map(as_record, records)]
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    for column in ("n", "seed", "draws", "node_evaluations", "forward_passes", "cache_hits"):
        frame[column] = frame[column].astype("int64")
    return frame


def csv_text(frame) -> str:
    """The CSV text of a frame (full float precision)."""
    return frame.to_csv(index=False)


EXAMPLE_COLUMNS = ("claim", "kind", *PER_EXAMPLE)


def examples_text(records: Iterable[Record]) -> str:
    """Every claim's per-example values in long form (one row per claim, draw and example)."""
    import pandas as pd

    rows = []
    for record in map(as_record, records):
        per = record.per_example
        for i in range(len(per.get("example", []))):
            rows.append({"claim": record.claim, "kind": record.kind, **{k: per[k][i] for k in PER_EXAMPLE}})
    return pd.DataFrame(rows, columns=list(EXAMPLE_COLUMNS)).to_csv(index=False)


def write_csv(frame, path: Path) -> Path:
    """Write atomically (see :func:`write_atomic`), full float precision."""
    return write_atomic(path, csv_text(frame))


def read_csv(path: Path):
    """A claims report CSV as a DataFrame.  One written before the columns were generic has its
    ``recovered``, ``clean``, ``ablated``, ``scrubbed`` and ``baseline_recovered`` columns read as
    ``value``, ``target``, ``base``, ``intervened`` and ``baseline_value``."""
    import pandas as pd

    frame = pd.read_csv(path, keep_default_na=True, encoding="utf-8-sig")  # a spreadsheet may add a BOM
    renamed = {old: new for old, new in LEGACY_COLUMNS.items() if old in frame.columns and new not in frame.columns}
    frame = frame.rename(columns=renamed)
    frame.attrs["renamed"] = {new: old for old, new in renamed.items()}  # what the file calls them
    return frame


def write_atomic(path: Path, data: str | bytes) -> Path:
    """Write ``data`` to ``path`` so that a reader sees the old file or the new one, never a part.

    The data goes to a temporary file unique to this call (process id and random letters, created
    exclusively) in the same directory, which is then renamed over ``path`` with ``os.replace``.
    Concurrent writers to one path never share a temporary file; the last rename wins.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    return path


def _write_text(path: Path, text: str) -> Path:
    return write_atomic(path, text)


def _num(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    text = f"{x:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def threshold_text(at_least, at_most) -> str:
    parts = []
    if at_least is not None and not (isinstance(at_least, float) and math.isnan(at_least)):
        parts.append(f">= {at_least:g}")
    if at_most is not None and not (isinstance(at_most, float) and math.isnan(at_most)):
        parts.append(f"<= {at_most:g}")
    return " and ".join(parts) or "—"


def value_text(row: Record) -> str:
    """The value with its interval and level: ``0.912 [0.850, 0.970] 95%``."""
    row = as_record(row)
    if _missing(row.value) and _missing(row.ci_low):
        return "—"
    level = f"{row.level:.0%} " if not _missing(row.level) else ""
    return f"{_num(row.value)} [{_num(row.ci_low)}, {_num(row.ci_high)}] {level}".rstrip()


def _effect_text(row: Record) -> str:
    """target - base with the interval of the effect, or "—" where the kind has none."""
    row = as_record(row)
    if _missing(row.effect_low):
        return "—"
    return f"{_num(row.target - row.base, 4)} [{_num(row.effect_low, 4)}, {_num(row.effect_high, 4)}]"


def _missing(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def summary_rows(frame) -> list[list[str]]:
    """Header and rows of the summary table (terminal and HTML)."""
    header = ["claim", "model", "metric", "value [CI]", "threshold", "verdict", "time"]
    rows = [header]
    for row in frame.to_dict("records"):
        seconds = row["seconds"]
        rows.append([
            row["claim"], row["model"], row["metric"], value_text(row),
            threshold_text(row["at_least"], row["at_most"]), row["verdict"],
            "—" if math.isnan(seconds) else f"{seconds:.2f}s",
        ])
    return rows


def text_table(rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows of strings as aligned text lines, the first row a header underlined with dashes."""
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return lines


def verdict_counts(frame) -> str:
    """``"2 pass, 1 fail"``: how many claims got each verdict, known verdicts first."""
    counts = frame["verdict"].value_counts().to_dict() if len(frame) else {}
    order = [v for v in VERDICTS if v in counts] + sorted(v for v in counts if v not in VERDICTS)
    return ", ".join(f"{counts[v]} {v}" for v in order)
