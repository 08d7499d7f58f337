"""Reports of a claims run: one DataFrame (one row per claim) -> CSV, a self-contained HTML page,
the terminal table, and comparisons with a saved baseline.

The HTML page has no external resources and no scripts: each claim's hypothesis is drawn as
inline SVG (graphviz, through ``causal_hypotheses.engine.drawing.to_svg``; the DOT text when no
``dot`` program exists) and its per-example distribution as a hand-written SVG plot.
pandas and graphviz are imported inside the functions, so importing this module is cheap.
"""
from __future__ import annotations

import hashlib
import html
import importlib.metadata
import math
import os
import platform
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

COLUMNS = (
    "claim", "model", "task", "hypothesis", "n", "seed", "draws", "metric", "ablation", "resampling",
    "clean", "ablated", "scrubbed", "recovered", "ci_low", "ci_high", "level", "effect_low", "effect_high",
    "at_least", "at_most",
    "verdict", "node_evaluations", "forward_passes", "cache_hits", "seconds", "message",
    "baseline_recovered", "change", "drift",
)
# Filled in at the end of a run compared with a baseline (--claims-compare); empty otherwise.
COMPARISON = ("baseline_recovered", "change", "drift")
# What must agree between a claim and its baseline row for the comparison to mean something.
IDENTITY = ("model", "task", "n", "seed")
# Columns that depend on scheduling and machine load rather than on the claim: they differ
# between a serial and a pytest-xdist run (cache sharing) and between any two runs (time).
RUN_DEPENDENT = ("forward_passes", "cache_hits", "seconds")
COMPARABLE = ("recovered", "ci_low", "ci_high", "clean", "ablated", "scrubbed", "seconds")
_VERDICT_COLOURS = {"pass": "#d8f0d8", "fail": "#f8d0d0", "inconclusive": "#fbe7c0", "no-effect": "#d8e4f4",
                    "xfailed": "#ece8c8", "xpassed": "#f8dcb8", "skipped": "#e4e4e4", "error": "#f0c0e0"}
VERDICTS = tuple(_VERDICT_COLOURS)  # the order in which counts are listed


# ---------------------------------------------------------------------------------------------
# Table and CSV


def to_frame(records: Iterable[Mapping]):
    """The run's DataFrame: one row per claim record, columns in COLUMNS order."""
    import pandas as pd

    rows = [{column: record.get(column) for column in COLUMNS} for record in records]
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    for column in ("n", "seed", "draws", "node_evaluations", "forward_passes", "cache_hits"):
        frame[column] = frame[column].astype("int64")
    return frame


def csv_text(frame) -> str:
    """The CSV text of a frame (full float precision)."""
    return frame.to_csv(index=False)


def write_csv(frame, path: Path) -> Path:
    """Write atomically (see :func:`write_atomic`), full float precision."""
    return write_atomic(path, csv_text(frame))


def read_csv(path: Path):
    import pandas as pd

    return pd.read_csv(path, keep_default_na=True, encoding="utf-8-sig")  # a spreadsheet may add a BOM


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


def baseline_problem(path: Path, fields: Sequence[str] = ()) -> str | None:
    """What makes ``path`` unusable as a baseline (None when it is fine): not a readable CSV, no
    ``claim`` or ``recovered`` column (or no column for a ``fields`` limit), no rows, a repeated
    or empty claim id, a value that is not a number."""
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
    shown = ", ".join(str(c) for c in list(frame.columns)[:8]) + (", ..." if len(frame.columns) > 8 else "")
    missing = [column for column in ("claim", "recovered") if column not in frame.columns]
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
    for column in dict.fromkeys(["recovered", *fields]):
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = frame[column][values.isna() & frame[column].notna()]
        if len(bad):
            return (f"column {column!r} holds {bad.iloc[0]!r} (line {int(bad.index[0]) + 2}), which is not a number")
    return None


# ---------------------------------------------------------------------------------------------
# Numbers in words


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


def recovered_text(row: Mapping) -> str:
    if isinstance(row["recovered"], float) and math.isnan(row["recovered"]) and math.isnan(row["ci_low"]):
        return "—"
    level = row["level"]
    level = f"{level:.0%} " if isinstance(level, float) and not math.isnan(level) else ""
    return f"{_num(row['recovered'])} [{_num(row['ci_low'])}, {_num(row['ci_high'])}] {level}".rstrip()


def _effect_text(row: Mapping) -> str:
    low, high = row.get("effect_low"), row.get("effect_high")
    if low is None or (isinstance(low, float) and math.isnan(low)):
        return "—"
    return f"{_num(row['clean'] - row['ablated'], 4)} [{_num(low, 4)}, {_num(high, 4)}]"


def summary_rows(frame) -> list[list[str]]:
    """Header and rows of the summary table (terminal and HTML)."""
    header = ["claim", "model", "metric", "recovered [CI]", "threshold", "verdict", "time"]
    rows = [header]
    for row in frame.to_dict("records"):
        seconds = row["seconds"]
        rows.append([
            row["claim"], row["model"], row["metric"], recovered_text(row),
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


# ---------------------------------------------------------------------------------------------
# Baselines


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

    Returns the comparison table (header first: claim, recovered then and now, change), the
    drifts beyond ``limits``, and notes: claims present in only one of the two runs, and claims
    whose model, task, n or seed differ from their baseline row (their numbers are not comparable).
    A baseline claim missing from this run is noted only when it is in ``selected`` (the claims
    this run selected; None: every claim counts as selected), so claims deselected with -k or -m
    are not reported missing.
    """
    old = {row["claim"]: row for row in baseline.to_dict("records")}
    new = {row["claim"]: row for row in frame.to_dict("records")}
    wanted = None if selected is None else set(selected)
    table = [["claim", "baseline recovered", "recovered", "change"]]
    drifts: list[Drift] = []
    notes = [f"{claim}: not in the baseline" for claim in new if claim not in old]
    notes += [f"{claim}: in the baseline but not in this run" for claim in old
              if claim not in new and (wanted is None or claim in wanted)]
    for claim, row in new.items():
        if claim not in old:
            continue
        before = old[claim]
        then, now = float(before["recovered"]), float(row["recovered"])
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
        then, now = float(before["recovered"]), float(row["recovered"])
        drifted = [d for d in drifts if d.claim == row["claim"]]
        differ = mismatches(row, before)
        notes = [("drift", d.message()) for d in drifted]
        if differ:
            notes.append(("warning", f"Not the same measurement as the baseline: {'; '.join(differ)}."))
        fields[row["claim"]] = {"baseline_recovered": then, "change": now - then, "drift": bool(drifted),
                                "baseline_notes": notes}
    return fields


def verdict_counts(frame) -> str:
    """``"2 pass, 1 fail"``: how many claims got each verdict, known verdicts first."""
    counts = frame["verdict"].value_counts().to_dict() if len(frame) else {}
    order = [v for v in VERDICTS if v in counts] + sorted(v for v in counts if v not in VERDICTS)
    return ", ".join(f"{counts[v]} {v}" for v in order)


# ---------------------------------------------------------------------------------------------
# Drawings


_OTHER = {"resample": "its own random example", "mean": "the dataset mean of what it carries", "zero": "zero"}


def hypothesis_note(ablation: str, resampling: str = "independent") -> str:
    """What the drawing of a hypothesis means, in words."""
    if resampling == "shared":
        other = "one random other example shared by all of them" if ablation == "resample" else _OTHER.get(ablation, ablation)
        return (f"The drawn paths, and everything below the last component of each, read what their notes say "
                f"(relative to the example itself); every other path reads {other} ({ablation} ablation, shared "
                "resampling). Arrows point toward the output.")
    return (f"The hypothesis as a tree (Chan et al.): each drawn component reads the example its parent reads (the "
            f"output reads the example itself), or, with a note, one that agrees with it on the feature noted; below "
            f"the last component of a pattern the whole subtree reads that example. Every input not drawn reads "
            f"{_OTHER.get(ablation, ablation)} "
            f"({ablation} ablation, independent resampling). Arrows point toward the output.")


def hypothesis_digraph(paths: Sequence, name: str, ablation: str):
    """A ``graphviz.Digraph`` of a hypothesis: each pattern drawn from its input-side component
    up to the output, with a note saying what the pattern's paths read."""
    import graphviz

    other = _OTHER.get(ablation, ablation)
    dot = graphviz.Digraph(
        "hypothesis",
        graph_attr={"rankdir": "BT", "fontname": "Helvetica", "fontsize": "10", "labelloc": "t",
                    "label": f"hypothesis {name!r}"},
        node_attr={"shape": "box", "style": "filled", "fillcolor": "#dbe9f6", "fontname": "Helvetica", "fontsize": "11"},
        edge_attr={"fontname": "Helvetica", "fontsize": "9"},
    )
    dot.node("output", "output (logits)", shape="ellipse", fillcolor="white")
    ids: dict[tuple, str] = {}  # one node per pattern prefix: the hypothesis is drawn as the tree it is
    for k, (pattern, feature) in enumerate(paths):
        above = "output"
        for depth, component in enumerate(pattern):
            prefix = tuple(pattern[: depth + 1])
            if prefix not in ids:
                ids[prefix] = f"c{len(ids)}"
                dot.node(ids[prefix], component)
                dot.edge(ids[prefix], above)
            above = ids[prefix]
        if feature is not None:  # without a note a pattern reads its parent's example
            dot.node(f"note{k}", f"reads an example with the same {feature}", shape="note", fillcolor="#fff8dc", fontsize="9")
            dot.edge(f"note{k}", above, style="dashed", arrowhead="none")
    if not paths:
        dot.node("empty", f"empty hypothesis: every input reads {other}", shape="note", fillcolor="#fff8dc")
        dot.edge("empty", "output", style="dashed", arrowhead="none")
    return dot


def _inline_svg(svg: str) -> str:
    """SVG text fit for embedding in HTML (the XML prolog and doctype removed)."""
    start = svg.find("<svg")
    return svg[start:] if start >= 0 else svg


def graph_html(digraph) -> str:
    """The drawing as inline SVG, or its DOT text with a note when no dot program exists."""
    from .engine.drawing import to_svg

    svg = to_svg(digraph)
    if svg:
        return f'<div class="graph">{_inline_svg(svg)}</div>'
    return ('<p class="note">No <code>dot</code> program is installed, so the graph is shown as DOT text; '
            "install Debian's <code>graphviz</code> or <code>pip install graphviz-pure</code> to draw it.</p>"
            f"<pre>{html.escape(digraph.source)}</pre>")


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    span = high - low
    raw = span / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = min((m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw), default=raw)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def _jitter(i: int) -> float:
    """A deterministic offset in [-0.5, 0.5) for strip plots (a multiplicative hash of i)."""
    return ((i * 2654435761) % 1000) / 1000 - 0.5


def _axis(x, low: float, high: float, top: float, bottom: float, left: float, right: float) -> list[str]:
    parts = [f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#333"/>']
    for tick in _ticks(low, high):
        px = x(tick)
        parts.append(f'<line x1="{px:.1f}" y1="{bottom}" x2="{px:.1f}" y2="{bottom + 4}" stroke="#333"/>')
        parts.append(f'<text x="{px:.1f}" y="{bottom + 15}" text-anchor="middle">{tick:g}</text>')
    return parts


def distribution_svg(record: Mapping, width: int = 640) -> str:
    """Per-example distribution of a claim, as inline SVG.

    Top: each (draw, example)'s share of the recovery, (scrubbed_i - ablated_i) /
    (mean clean - mean ablated), whose mean is the fraction recovered: a histogram with the
    values as a strip below it, the interval shaded, 0, 1, the mean and the threshold marked.
    Cancellation (some examples far above 1, others below 0) shows as a wide spread.
    Bottom: the metric per example for clean, ablated and scrubbed runs.
    """
    per = record.get("per_example") or {}
    clean, ablated, scrubbed = (per.get(k, []) for k in ("clean", "ablated", "scrubbed"))
    if not scrubbed:
        return '<p class="note">No per-example values (the claim ran no experiment).</p>'
    denominator = record["clean"] - record["ablated"]
    label = html.escape(f"per-example distribution of {record['claim']}")
    left, right = 64, width - 20
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="330" viewBox="0 0 {width} 330" '
             f'role="img" aria-label="{label}" font-family="Helvetica, Arial, sans-serif" font-size="10">']

    # Share of the recovery per example.
    if denominator == 0 or math.isnan(denominator):
        parts.append(f'<text x="{left}" y="30">The fraction recovered is undefined: clean and ablated means are equal.</text>')
    else:
        shares = [(s - a) / denominator for s, a in zip(scrubbed, ablated)]
        marks = [0.0, 1.0, record["recovered"], record["ci_low"], record["ci_high"]]
        marks += [t for t in (record.get("at_least"), record.get("at_most")) if t is not None and not math.isnan(t)]
        finite = [v for v in shares + marks if math.isfinite(v)]
        low, high = min(finite), max(finite)
        pad = (high - low) * 0.05 or 0.5
        low, high = low - pad, high + pad
        top, bottom = 22, 150

        def x(v: float) -> float:
            return left + (v - low) / (high - low) * (right - left)

        parts.append(f'<text x="{left}" y="12" font-weight="bold">share of the recovery per example '
                     f'(mean = fraction recovered; {len(shares)} values)</text>')
        if math.isfinite(record["ci_low"]) and math.isfinite(record["ci_high"]):
            parts.append(f'<rect x="{x(record["ci_low"]):.1f}" y="{top}" width="{max(1.0, x(record["ci_high"]) - x(record["ci_low"])):.1f}" '
                         f'height="{bottom - top}" fill="#cfe3f7"><title>{record["level"]:.0%} interval</title></rect>')
        bins = 24
        counts = [0] * bins
        for v in shares:
            counts[min(bins - 1, max(0, int((v - low) / (high - low) * bins)))] += 1
        tallest = max(counts) or 1
        bar_bottom, bar_top = bottom - 34, top + 4
        for b, count in enumerate(counts):
            if count:
                height = (bar_bottom - bar_top) * count / tallest
                x0 = left + b * (right - left) / bins
                parts.append(f'<rect x="{x0 + 1:.1f}" y="{bar_bottom - height:.1f}" width="{(right - left) / bins - 2:.1f}" '
                             f'height="{height:.1f}" fill="#6b8fb5"><title>{count}</title></rect>')
        for i, v in enumerate(shares):
            parts.append(f'<circle cx="{x(v):.1f}" cy="{bottom - 17 + 10 * _jitter(i):.1f}" r="2" fill="#1f3b5a" fill-opacity="0.6"/>')
        row = 0
        for value, colour, dash, text in ((0.0, "#888", "", "0"), (1.0, "#888", "", "1"),
                                          (record["recovered"], "#000", "", "mean"),
                                          (record.get("at_least"), "#c0392b", "4 3", "at_least"),
                                          (record.get("at_most"), "#c0392b", "4 3", "at_most")):
            if value is None or not math.isfinite(value):
                continue
            dashes = f' stroke-dasharray="{dash}"' if dash else ""
            parts.append(f'<line x1="{x(value):.1f}" y1="{top}" x2="{x(value):.1f}" y2="{bottom}" stroke="{colour}"{dashes}/>')
            parts.append(f'<text x="{x(value) + 2:.1f}" y="{top + 8 + 10 * row}" fill="{colour}">{text}</text>')
            row += 1  # stagger the labels so that close lines stay readable
        parts += _axis(x, low, high, top, bottom, left, right)

    # The metric per example in each run.
    values = [v for v in clean + ablated + scrubbed if math.isfinite(v)]
    if values:
        low, high = min(values), max(values)
        pad = (high - low) * 0.05 or 0.5
        low, high = low - pad, high + pad
        top, bottom = 200, 300

        def x(v: float) -> float:
            return left + (v - low) / (high - low) * (right - left)

        parts.append(f'<text x="{left}" y="{top - 12}" font-weight="bold">{html.escape(str(record["metric"]))} per example</text>')
        for row, (name, series, colour) in enumerate((("clean", clean, "#2e7d32"), ("ablated", ablated, "#c62828"),
                                                      ("scrubbed", scrubbed, "#1565c0"))):
            y = top + 15 + row * 30
            parts.append(f'<text x="{left - 4}" y="{y + 3}" text-anchor="end">{name}</text>')
            for i, v in enumerate(series):
                if math.isfinite(v):
                    parts.append(f'<circle cx="{x(v):.1f}" cy="{y + 12 * _jitter(i):.1f}" r="2" fill="{colour}" fill-opacity="0.55"/>')
        parts += _axis(x, low, high, top, bottom, left, right)
    parts.append("</svg>")
    return "".join(parts)


# ---------------------------------------------------------------------------------------------
# HTML


def environment(extra: Mapping[str, object] | None = None) -> dict[str, str]:
    """Versions of what the numbers depend on (read from package metadata; nothing is imported)."""
    info = {"python": platform.python_version(), "platform": platform.platform()}
    for package in ("torch", "transformers", "pandas", "pytest", "pytest-xdist"):
        try:
            info[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            info[package] = "not installed"
    for key, value in (extra or {}).items():
        info[key] = str(value)
    return info


def anchor(claim_id: str) -> str:
    """A stable HTML id for a claim (letters, digits and dashes, plus a hash to keep ids distinct)."""
    readable = re.sub(r"[^A-Za-z0-9]+", "-", claim_id).strip("-")[-60:]
    return f"claim-{readable}-{hashlib.sha1(claim_id.encode()).hexdigest()[:8]}"


def claim_figures(record: Mapping) -> str:
    """The costly part of a claim's section (hypothesis graph and distribution plot), rendered once."""
    if not record.get("per_example"):
        return ""
    return "\n".join([
        "<h3>Hypothesis</h3>",
        f'<p class="note">{html.escape(hypothesis_note(record["ablation"], record.get("resampling", "independent")))}</p>',
        graph_html(hypothesis_digraph(record.get("paths", []), record.get("hypothesis", ""), record["ablation"])),
        "<h3>Per-example distribution</h3>",
        distribution_svg(record),
    ])


def _notes_html(notes: Iterable[tuple[str, str]]) -> str:
    items = "".join(f'<li class="{html.escape(kind)}">{html.escape(text)}</li>' for kind, text in notes)
    return f'<ul class="notes">{items}</ul>' if items else ""


def _baseline_text(record: Mapping) -> str | None:
    then = record.get("baseline_recovered")
    if then is None or (isinstance(then, float) and math.isnan(then) and record.get("drift") is None):
        return None
    change = record.get("change")
    change = "—" if change is None or math.isnan(change) else f"{change:+.3f}"
    drift = " — drifted beyond --claims-compare-fail" if record.get("drift") is True else ""
    return f"{_num(then)} (change {change}){drift}"


def claim_section(record: Mapping, figures: str | None = None) -> str:
    """One claim's part of the HTML page: facts, verdict message, comparison with the baseline,
    hypothesis graph, distribution (``figures``, from :func:`claim_figures`; rendered when None)."""
    verdict = record["verdict"]
    facts = [("model", record["model"]), ("task", record["task"]), ("hypothesis", record.get("hypothesis", "")),
             ("metric", record["metric"]), ("ablation", f'{record["ablation"]} ({record.get("resampling", "")} resampling)'),
             ("n", record["n"]), ("seed", record["seed"]), ("draws", record["draws"]),
             ("clean / ablated / scrubbed", " / ".join(_num(record[k], 4) for k in ("clean", "ablated", "scrubbed"))),
             ("effect to explain: clean − ablated", _effect_text(record)),
             ("recovered", recovered_text(record)), ("threshold", threshold_text(record["at_least"], record["at_most"])),
             ("node evaluations / forward passes / cache hits",
              f'{record["node_evaluations"]} / {record["forward_passes"]} / {record["cache_hits"]}')]
    baseline = _baseline_text(record)
    if baseline is not None:
        facts.append(("baseline recovered", baseline))
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in facts)
    parts = [f'<section id="{anchor(record["claim"])}"><h2>{html.escape(record["claim"])} '
             f'<span class="verdict" style="background:{_VERDICT_COLOURS.get(verdict, "#fff")}">{html.escape(verdict)}</span></h2>']
    notes = _notes_html(record.get("baseline_notes") or ())
    if notes:
        parts.append(notes)
    parts.append(f'<table class="facts">{rows}</table>')
    if record.get("message"):
        parts.append(f'<pre class="message">{html.escape(record["message"])}</pre>')
    figures = claim_figures(record) if figures is None else figures
    if figures:
        parts.append(figures)
    parts.append("</section>")
    return "\n".join(parts)


_CSS = """
body { font-family: Helvetica, Arial, sans-serif; margin: 2em; color: #222; max-width: 1100px; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; font-size: 13px; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.verdict { padding: 1px 8px; border-radius: 3px; font-size: 0.8em; }
pre { background: #f7f7f7; padding: 0.6em; overflow-x: auto; font-size: 12px; }
section { border-top: 1px solid #ddd; margin-top: 2em; }
.graph svg { max-width: 100%; height: auto; }
.note { color: #666; font-size: 13px; }
ul.notes { padding-left: 1.2em; }
ul.notes li { margin: 0.2em 0; font-size: 13px; }
li.drift, p.drift { color: #a00000; font-weight: bold; }
li.warning { color: #8a5300; }
"""


def render_html(frame, sections: Sequence[str], env: Mapping[str, str], title: str,
                notes: Sequence[tuple[str, str]] = ()) -> str:
    """The whole page: summary, notes (``(kind, text)``, kind ``drift``, ``warning`` or ``info``),
    summary table, each claim's section, and the environment."""
    table = summary_rows(frame)
    summary = verdict_counts(frame)
    compared = "baseline_recovered" in frame and frame["drift"].notna().any()
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table[0] + (["vs baseline"] if compared else []))
    records = frame.to_dict("records")
    body = []
    for row, record in zip(table[1:], records):
        verdict = row[5]
        cells = [f'<td><a href="#{anchor(row[0])}">{html.escape(row[0])}</a></td>']
        cells += [f"<td>{html.escape(cell)}</td>" for cell in row[1:5]]
        cells.append(f'<td style="background:{_VERDICT_COLOURS.get(verdict, "#fff")}">{html.escape(verdict)}</td>')
        cells.append(f'<td class="num">{html.escape(row[6])}</td>')
        if compared:
            text = _baseline_text(record) or "not in the baseline"
            style = ' style="background:#f8d0d0"' if record.get("drift") is True else ""
            cells.append(f"<td{style}>{html.escape(text)}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    env_rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in env.items())
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{len(frame)} claims: {html.escape(summary)}. The interval is a bootstrap confidence interval of the "
        "fraction recovered, (scrubbed − ablated) / (clean − ablated); a claim passes when the whole interval "
        "clears its threshold.</p>",
        _notes_html(notes),
        f'<table class="summary"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>',
        *sections,
        '<section id="environment"><h2>Environment</h2>',
        f"<table>{env_rows}</table></section>",
        "</body></html>",
    ])


def write_html(text: str, path: Path) -> Path:
    return _write_text(path, text)
