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
import platform
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

COLUMNS = (
    "claim", "model", "task", "hypothesis", "n", "seed", "draws", "metric", "ablation",
    "clean", "ablated", "scrubbed", "recovered", "ci_low", "ci_high", "level", "at_least", "at_most",
    "verdict", "node_evaluations", "forward_passes", "cache_hits", "seconds",
)
# Columns that depend on scheduling and machine load rather than on the claim: they differ
# between a serial and a pytest-xdist run (cache sharing) and between any two runs (time).
RUN_DEPENDENT = ("forward_passes", "cache_hits", "seconds")
COMPARABLE = ("recovered", "ci_low", "ci_high", "clean", "ablated", "scrubbed", "seconds")
_VERDICT_COLOURS = {"pass": "#d8f0d8", "fail": "#f8d0d0", "inconclusive": "#fbe7c0", "skipped": "#e4e4e4", "error": "#f0c0e0"}


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


def write_csv(frame, path: Path) -> Path:
    """Write atomically (a temporary file renamed into place), full float precision."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    frame.to_csv(temporary, index=False)
    temporary.replace(path)
    return path


def read_csv(path: Path):
    import pandas as pd

    return pd.read_csv(path, keep_default_na=True)


def _write_text(path: Path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)
    return path


def copy(source: Path, target: Path) -> None:
    temporary = Path(target).with_name(Path(target).name + ".tmp")
    shutil.copyfile(source, temporary)
    temporary.replace(target)


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


def compare(frame, baseline, limits: Sequence[Limit]) -> tuple[list[list[str]], list[Drift], list[str]]:
    """Compare this run with a baseline by claim id.

    Returns the comparison table (header first: claim, recovered then and now, change), the
    drifts beyond ``limits``, and notes about claims present in only one of the two runs.
    """
    old = {row["claim"]: row for row in baseline.to_dict("records")}
    new = {row["claim"]: row for row in frame.to_dict("records")}
    table = [["claim", "baseline recovered", "recovered", "change"]]
    drifts: list[Drift] = []
    notes = [f"{claim}: not in the baseline" for claim in new if claim not in old]
    notes += [f"{claim}: in the baseline but not in this run" for claim in old if claim not in new]
    for claim, row in new.items():
        if claim not in old:
            continue
        before = old[claim]
        table.append([claim, _num(before["recovered"]), _num(row["recovered"]),
                      _num(row["recovered"] - before["recovered"]) if not math.isnan(row["recovered"] - before["recovered"]) else "—"])
        for limit in limits:
            then, now = float(before[limit.field]), float(row[limit.field])
            if math.isnan(then) and math.isnan(now):
                continue
            allowed = abs(then) * limit.value if limit.relative else limit.value
            if math.isnan(then) != math.isnan(now) or abs(now - then) > allowed:
                drifts.append(Drift(claim, limit.field, then, now, limit))
    return table, drifts, notes


# ---------------------------------------------------------------------------------------------
# Drawings


_OTHER = {"resample": "a random other example", "mean": "the mean over the examples", "zero": "zero activations"}


def hypothesis_note(ablation: str) -> str:
    """What the drawing of a hypothesis means, in words."""
    return (f"The drawn paths, and everything below the last component of each, read what their notes say; "
            f"every other path reads {_OTHER.get(ablation, ablation)} ({ablation} ablation). Arrows point toward the output.")


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
    ids: dict[str, str] = {}
    edges: set[tuple[str, str]] = set()
    for k, (pattern, feature) in enumerate(paths):
        above = "output"
        for component in pattern:
            if component not in ids:
                ids[component] = f"c{len(ids)}"
                dot.node(ids[component], component)
            if (ids[component], above) not in edges:
                edges.add((ids[component], above))
                dot.edge(ids[component], above)
            above = ids[component]
        reads = "the example itself" if feature is None else f"an example with the same {feature}"
        dot.node(f"note{k}", f"reads {reads}", shape="note", fillcolor="#fff8dc", fontsize="9")
        dot.edge(f"note{k}", above, style="dashed", arrowhead="none")
    if not paths:
        dot.node("empty", f"empty hypothesis: every path reads {other}", shape="note", fillcolor="#fff8dc")
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


def claim_section(record: Mapping) -> str:
    """One claim's part of the HTML page: facts, verdict message, hypothesis graph, distribution."""
    verdict = record["verdict"]
    facts = [("model", record["model"]), ("task", record["task"]), ("hypothesis", record.get("hypothesis", "")),
             ("metric", record["metric"]), ("ablation", record["ablation"]), ("n", record["n"]),
             ("seed", record["seed"]), ("draws", record["draws"]),
             ("clean / ablated / scrubbed", " / ".join(_num(record[k], 4) for k in ("clean", "ablated", "scrubbed"))),
             ("recovered", recovered_text(record)), ("threshold", threshold_text(record["at_least"], record["at_most"])),
             ("node evaluations / forward passes / cache hits",
              f'{record["node_evaluations"]} / {record["forward_passes"]} / {record["cache_hits"]}')]
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in facts)
    parts = [f'<section id="{anchor(record["claim"])}"><h2>{html.escape(record["claim"])} '
             f'<span class="verdict" style="background:{_VERDICT_COLOURS.get(verdict, "#fff")}">{html.escape(verdict)}</span></h2>',
             f'<table class="facts">{rows}</table>']
    if record.get("message"):
        parts.append(f'<pre class="message">{html.escape(record["message"])}</pre>')
    if record.get("per_example"):
        parts.append("<h3>Hypothesis</h3>")
        parts.append(f'<p class="note">{html.escape(hypothesis_note(record["ablation"]))}</p>')
        parts.append(graph_html(hypothesis_digraph(record.get("paths", []), record.get("hypothesis", ""), record["ablation"])))
        parts.append("<h3>Per-example distribution</h3>")
        parts.append(distribution_svg(record))
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
"""


def render_html(frame, sections: Sequence[str], env: Mapping[str, str], title: str) -> str:
    """The whole page: summary table, each claim's section, and the environment."""
    table = summary_rows(frame)
    counts = frame["verdict"].value_counts().to_dict()
    summary = ", ".join(f"{counts[v]} {v}" for v in ("pass", "fail", "inconclusive", "skipped", "error") if v in counts)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table[0])
    body = []
    for row in table[1:]:
        verdict = row[5]
        cells = [f'<td><a href="#{anchor(row[0])}">{html.escape(row[0])}</a></td>']
        cells += [f"<td>{html.escape(cell)}</td>" for cell in row[1:5]]
        cells.append(f'<td style="background:{_VERDICT_COLOURS.get(verdict, "#fff")}">{html.escape(verdict)}</td>')
        cells.append(f'<td class="num">{html.escape(row[6])}</td>')
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
        f'<table class="summary"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>',
        *sections,
        '<section id="environment"><h2>Environment</h2>',
        f"<table>{env_rows}</table></section>",
        "</body></html>",
    ])


def write_html(text: str, path: Path) -> Path:
    return _write_text(path, text)
