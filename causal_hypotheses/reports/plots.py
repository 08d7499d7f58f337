"""Self-contained SVG plots (no plotting library): a claim's per-example values, heatmaps of
layer x head tables, attention patterns."""
from __future__ import annotations

import html
import math
from typing import Mapping, Union

from ..claims.record import ClaimRecord, as_record
from ..errors import InputError

Record = Union[ClaimRecord, Mapping]

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


def _scale(values, left: float, right: float):
    """(low, high, x): the finite values' range padded by 5%, and the map from value to pixel."""
    finite = [v for v in values if math.isfinite(v)]
    low, high = min(finite), max(finite)
    pad = (high - low) * 0.05 or 0.5
    low, high = low - pad, high + pad

    def x(v: float) -> float:
        return left + (v - low) / (high - low) * (right - left)

    return low, high, x


# Kinds whose value is not a mean share of target - base per example (a largest or smallest gap
# over subsets): a per-example share plot would show a different number.
NOT_SHARES = ("completeness", "minimality")


def distribution_svg(record: Record, width: int = 640) -> str:
    """Per-example distribution of a claim, as inline SVG.

    Top: each (draw, example)'s share of the value, (intervened_i - base_i) / (mean target -
    mean base), whose mean is the value (a scrub's fraction recovered, a patch's fraction moved):
    a histogram with the values as a strip below it, the interval shaded, 0, 1, the mean and the
    threshold marked.  Cancellation (some examples far above 1, others below 0) shows as a wide
    spread.  Bottom: the metric per example in each run (a scrub's clean, ablated and scrubbed).

    A kind whose value is not normalised against target and base means (NaN: interchange
    accuracy, say, whose per-example values are hits) and a kind whose value is a largest or
    smallest gap over subsets (completeness, minimality: their Details table has the gaps) get
    :func:`value_svg` instead: their per-example values are not shares of the value.
    """
    record = as_record(record)
    per = record.per_example
    target, base, intervened = (per.get(k, []) for k in ("target", "base", "intervened"))
    if not intervened:
        return '<p class="note">No per-example values (the claim ran no experiment).</p>'
    if math.isnan(record.target) or math.isnan(record.base) or record.kind in NOT_SHARES:
        return value_svg(record, width)
    denominator = record.target - record.base
    statistic = record.statistic or "value"
    names = record.run_names
    label = html.escape(f"per-example distribution of {record.claim}")
    left, right = 64, width - 20
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="330" viewBox="0 0 {width} 330" '
             f'role="img" aria-label="{label}" font-family="Helvetica, Arial, sans-serif" font-size="10">']

    # Share of the value per example.
    if denominator == 0 or math.isnan(denominator):
        parts.append(f'<text x="{left}" y="30">{html.escape(f"The {statistic} is undefined: the {names[0]} and {names[1]} means are equal.")}</text>')
    else:
        shares = [(s - a) / denominator for s, a in zip(intervened, base)]
        marks = [0.0, 1.0, record.value, record.ci_low, record.ci_high]
        marks += [t for t in (record.at_least, record.at_most) if t is not None and not math.isnan(t)]
        low, high, x = _scale(shares + marks, left, right)
        top, bottom = 22, 150

        parts.append(f'<text x="{left}" y="12" font-weight="bold">{html.escape(f"share of the {statistic} per example")} '
                     f'(mean = {html.escape(statistic)}; {len(shares)} values)</text>')
        parts += _interval_band(record, x, top, bottom)
        bins = 24
        counts = [0] * bins
        for v in shares:
            if math.isfinite(v):
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
            if math.isfinite(v):
                parts.append(f'<circle cx="{x(v):.1f}" cy="{bottom - 17 + 10 * _jitter(i):.1f}" r="2" fill="#1f3b5a" fill-opacity="0.6"/>')
        parts += _marks(record, x, top, bottom)
        parts += _axis(x, low, high, top, bottom, left, right)

    # The metric per example in each run.
    values = [v for v in target + base + intervened if math.isfinite(v)]
    if values:
        low, high, x = _scale(values, left, right)
        top, bottom = 200, 300

        parts.append(f'<text x="{left}" y="{top - 12}" font-weight="bold">{html.escape(str(record.metric))} per example</text>')
        for row, (name, series, colour) in enumerate(zip(names, (target, base, intervened), ("#2e7d32", "#c62828", "#1565c0"))):
            y = top + 15 + row * 30
            parts.append(f'<text x="{left - 4}" y="{y + 3}" text-anchor="end">{html.escape(name)}</text>')
            for i, v in enumerate(series):
                if math.isfinite(v):
                    parts.append(f'<circle cx="{x(v):.1f}" cy="{y + 12 * _jitter(i):.1f}" r="2" fill="{colour}" fill-opacity="0.55"/>')
        parts += _axis(x, low, high, top, bottom, left, right)
    parts.append("</svg>")
    return "".join(parts)


def value_svg(record: Record, width: int = 640) -> str:
    """A claim's value with its interval on an axis from 0 to 1 (wider when the numbers are), with
    the thresholds marked, as inline SVG; empty when the claim has no value.  For the kinds whose
    per-example values are not shares of the value (see :func:`distribution_svg`)."""
    record = as_record(record)
    if math.isnan(record.value) and math.isnan(record.ci_low):
        return ""
    statistic = record.statistic or "value"
    left, right, top, bottom = 64, width - 20, 22, 80
    marks = [0.0, 1.0, record.value, record.ci_low, record.ci_high]
    marks += [t for t in (record.at_least, record.at_most) if t is not None and not math.isnan(t)]
    low, high, x = _scale(marks, left, right)
    level = f"{record.level:.0%} " if math.isfinite(record.level) else ""
    label = html.escape(f"{statistic} of {record.claim}")
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="110" viewBox="0 0 {width} 110" '
             f'role="img" aria-label="{label}" font-family="Helvetica, Arial, sans-serif" font-size="10">',
             f'<text x="{left}" y="12" font-weight="bold">{html.escape(f"{statistic} with its {level}interval")} '
             f'({html.escape(record.unit or "—")})</text>']
    parts += _interval_band(record, x, top, bottom)
    parts += _marks(record, x, top, bottom)
    parts += _axis(x, low, high, top, bottom, left, right)
    parts.append("</svg>")
    return "".join(parts)


def _interval_band(record: ClaimRecord, x, top: float, bottom: float) -> list[str]:
    """The interval shaded from top to bottom (nothing when it is undefined)."""
    if not (math.isfinite(record.ci_low) and math.isfinite(record.ci_high)):
        return []
    level = f"{record.level:.0%} interval" if math.isfinite(record.level) else "interval"
    return [f'<rect x="{x(record.ci_low):.1f}" y="{top}" width="{max(1.0, x(record.ci_high) - x(record.ci_low)):.1f}" '
            f'height="{bottom - top}" fill="#cfe3f7"><title>{level}</title></rect>']


def _marks(record: ClaimRecord, x, top: float, bottom: float) -> list[str]:
    """Vertical lines at 0, 1, the value (its mean) and the thresholds, labels staggered."""
    parts = []
    row = 0
    for value, colour, dash, text in ((0.0, "#888", "", "0"), (1.0, "#888", "", "1"), (record.value, "#000", "", "mean"),
                                      (record.at_least, "#c0392b", "4 3", "at_least"),
                                      (record.at_most, "#c0392b", "4 3", "at_most")):
        if value is None or not math.isfinite(value):
            continue
        dashes = f' stroke-dasharray="{dash}"' if dash else ""
        parts.append(f'<line x1="{x(value):.1f}" y1="{top}" x2="{x(value):.1f}" y2="{bottom}" stroke="{colour}"{dashes}/>')
        parts.append(f'<text x="{x(value) + 2:.1f}" y="{top + 8 + 10 * row}" fill="{colour}">{text}</text>')
        row += 1  # stagger the labels so that close lines stay readable
    return parts


def controls_svg(record: Record, width: int = 640) -> str:
    """The values (fractions recovered) of a claim's random controls (dots) with the hypothesis's
    own (a red line), as inline SVG; empty when the claim ran no controls."""
    record = as_record(record)
    controls = [v for v in record.controls if math.isfinite(v)]
    own = record.value
    if not controls or own is None or not math.isfinite(own):
        return ""
    left, right, top, bottom = 64, width - 20, 28, 70
    low, high, x = _scale(controls + [own, 0.0, 1.0], left, right)

    label = html.escape(f"random controls of {record.claim}")
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="100" viewBox="0 0 {width} 100" role="img" '
             f'aria-label="{label}" font-family="Helvetica, Arial, sans-serif" font-size="10">',
             f'<text x="{left}" y="12" font-weight="bold">{html.escape(record.statistic or "value")} of {len(controls)} random '
             f'{"hypotheses" if record.kind == "scrub" else "circuits"} of the same shape (dots) and of the '
             f'{"hypothesis" if record.kind == "scrub" else "circuit"} (red); p = {record.control_p:.3g}</text>']
    for i, v in enumerate(controls):
        parts.append(f'<circle cx="{x(v):.1f}" cy="{(top + bottom) / 2 + 12 * _jitter(i):.1f}" r="3" fill="#555" fill-opacity="0.6"/>')
    parts.append(f'<line x1="{x(own):.1f}" y1="{top - 6}" x2="{x(own):.1f}" y2="{bottom}" stroke="#c0392b" stroke-width="2"/>')
    parts += _axis(x, low, high, top, bottom, left, right)
    parts.append("</svg>")
    return "".join(parts)


# ---------------------------------------------------------------------- tables as pictures
_FONT = 'font-family="Helvetica, Arial, sans-serif" font-size="10"'
_NEGATIVE, _POSITIVE, _MISSING = (33, 102, 172), (178, 24, 43), "#e6e6e6"


def _mix(colour: tuple[int, int, int], t: float) -> str:
    """White (t = 0) to ``colour`` (t = 1), as #rrggbb."""
    t = max(0.0, min(1.0, t))
    return "#" + "".join(f"{round(255 + (c - 255) * t):02x}" for c in colour)


def _ink(t: float) -> str:
    """Text colour readable on a cell of strength t."""
    return "#fff" if t > 0.6 else "#222"


def _label(value, limit: int = 14) -> str:
    text = str(value).replace("\n", "\\n")
    return html.escape(text if len(text) <= limit else text[: limit - 1] + "…")


def _rows(values) -> list[list[float]]:
    """A 2-D table of numbers as lists: from lists, a numpy array or a tensor (``.tolist()``)."""
    rows = values.tolist() if hasattr(values, "tolist") else [list(row) for row in values]
    if not rows or not isinstance(rows[0], list):
        raise InputError(f"expected a 2-D table of numbers (rows x columns), got {type(values).__name__} of {len(rows)} items")
    return [[float("nan") if v is None else float(v) for v in row] for row in rows]


def heatmap_svg(table, title: str | None = None, width: int = 760) -> str:
    """A DataFrame of numbers (rows x columns: a layer x head sweep, say) as a self-contained SVG
    heatmap: diverging colours centred at 0 (red positive, blue negative, white 0; the scale runs to
    the largest absolute value), grey for NaN, each value in its cell's tooltip (and written in the
    cell when the table is small), the index and column names as axis labels, and a colour bar."""
    if not (hasattr(table, "index") and hasattr(table, "columns") and hasattr(table, "to_numpy")):
        raise InputError(f"heatmap_svg draws a DataFrame (rows x columns), got {type(table).__name__}; "
                         "for a Series s, draw s.to_frame()")
    values = _rows(table.to_numpy(dtype=float))
    rows, columns = [str(r) for r in table.index], [str(c) for c in table.columns]
    if not rows or not columns:
        raise InputError(f"heatmap_svg: the table has {len(rows)} rows and {len(columns)} columns; there is nothing to draw")
    row_name, column_name = table.index.name or "", table.columns.name or ""
    finite = [abs(v) for row in values for v in row if math.isfinite(v)]
    limit = max(finite, default=0.0) or 1.0
    label_width = 12 + 6 * max(len(r) for r in rows)
    left = 24 + label_width
    cell = max(8.0, min(30.0, (width - left - 110) / len(columns)))
    top = 54
    bottom = top + cell * len(rows)
    right = left + cell * len(columns)
    height = int(bottom + 40)
    show_text = cell >= 26 and len(columns) <= 24
    decimals = max(0, 2 - math.ceil(math.log10(limit)))  # two significant digits of the largest value

    def written(v: float) -> str:
        text = f"{v:.{decimals}f}"
        return text[1:] if text.startswith("-") and float(text) == 0 else text
    heading = title if title is not None else f"{row_name or 'row'} x {column_name or 'column'}"
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{int(right + 100)}" height="{height}" '
             f'viewBox="0 0 {int(right + 100)} {height}" role="img" aria-label="{html.escape(heading)}" {_FONT}>',
             f'<text x="{left}" y="14" font-weight="bold">{html.escape(heading)}</text>']
    if column_name:
        parts.append(f'<text x="{(left + right) / 2:.1f}" y="{top - 22}" text-anchor="middle">{html.escape(column_name)}</text>')
    if row_name:
        middle = (top + bottom) / 2
        parts.append(f'<text x="12" y="{middle:.1f}" text-anchor="middle" transform="rotate(-90 12 {middle:.1f})">'
                     f'{html.escape(row_name)}</text>')
    step = max(1, math.ceil(9 / cell))  # label every column when there is room, else every step-th
    for j, name in enumerate(columns):
        if j % step == 0:
            parts.append(f'<text x="{left + (j + 0.5) * cell:.1f}" y="{top - 6}" text-anchor="middle">{_label(name, 6)}</text>')
    for i, name in enumerate(rows):
        y = top + i * cell
        if i % max(1, math.ceil(9 / cell)) == 0:
            parts.append(f'<text x="{left - 4}" y="{y + cell / 2 + 3:.1f}" text-anchor="end">{_label(name)}</text>')
        for j, v in enumerate(values[i]):
            x = left + j * cell
            where = f"{row_name or 'row'} {rows[i]}, {column_name or 'column'} {columns[j]}"
            if math.isfinite(v):
                t = abs(v) / limit
                fill, tip = _mix(_POSITIVE if v > 0 else _NEGATIVE, t), f"{where}: {v:.4g}"
            else:
                t, fill, tip = 0.0, _MISSING, f"{where}: no value"
            parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{cell:.1f}" height="{cell:.1f}" fill="{fill}" '
                         f'stroke="#fff" stroke-width="0.5"><title>{html.escape(tip)}</title></rect>')
            if show_text and math.isfinite(v):
                parts.append(f'<text x="{x + cell / 2:.1f}" y="{y + cell / 2 + 3:.1f}" text-anchor="middle" font-size="8" '
                             f'fill="{_ink(t)}" pointer-events="none">{written(v)}</text>')
    parts += _colour_bar(right + 24, top, max(bottom, top + 90), limit)
    parts.append("</svg>")
    return "".join(parts)


def _colour_bar(x: float, top: float, bottom: float, limit: float) -> list[str]:
    """A vertical bar from +limit (top, red) through 0 (white) to -limit (bottom, blue), with ticks."""
    steps = 20
    height = (bottom - top) / steps
    parts = []
    for k in range(steps):
        value = limit * (1 - 2 * (k + 0.5) / steps)
        fill = _mix(_POSITIVE if value > 0 else _NEGATIVE, abs(value) / limit)
        parts.append(f'<rect x="{x}" y="{top + k * height:.1f}" width="12" height="{height + 0.3:.1f}" fill="{fill}"/>')
    parts.append(f'<rect x="{x}" y="{top}" width="12" height="{bottom - top:.1f}" fill="none" stroke="#999"/>')
    for value, y in ((limit, top), (0.0, (top + bottom) / 2), (-limit, bottom)):
        parts.append(f'<text x="{x + 16}" y="{y + 3:.1f}">{value:.3g}</text>')
    return parts


def attention_svg(pattern, tokens=None, title: str = "attention pattern") -> str:
    """One head's attention pattern on one prompt, (T, T) query x key probabilities (lists, a numpy
    array or a tensor: ``acts["a1.h4.pattern"][0]``), as a self-contained SVG table: the prompt's
    tokens label the rows (queries) and columns (keys), white (0) to blue (1), each probability in
    its cell's tooltip.  ``tokens``: T strings (``tokenizer.convert_ids_to_tokens(ids)``), or None
    for the positions."""
    values = _rows(pattern)
    T = len(values)
    if any(len(row) != T for row in values):
        raise InputError(f"attention_svg draws a square pattern (queries x keys, T x T), got {T} rows of lengths "
                         f"{sorted({len(row) for row in values})}; pass one head and one prompt, e.g. acts['a1.h4.pattern'][0]")
    labels = [str(i) for i in range(T)] if tokens is None else [str(t) for t in tokens]
    if len(labels) != T:
        raise InputError(f"attention_svg: {len(labels)} token labels for a pattern over {T} positions; give one label per position")
    shown = [f"{i} {_label(t, 12)}" for i, t in enumerate(labels)]
    cell = max(8.0, min(28.0, 640 / T))
    left = 16 + 6 * max(len(html.unescape(s)) for s in shown)
    top = 30 + 6 * max(len(html.unescape(s)) for s in shown) * 0.75
    right, bottom = left + cell * T, top + cell * T
    width, height = int(right + 90), int(bottom + 24)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
             f'role="img" aria-label="{html.escape(title)}" {_FONT}>',
             f'<text x="4" y="14" font-weight="bold">{html.escape(title)}</text>',
             f'<text x="4" y="{bottom + 16:.1f}" fill="#555">rows: queries (the position attending); columns: keys (attended to)</text>']
    for i, text in enumerate(shown):
        y = top + (i + 0.5) * cell + 3
        parts.append(f'<text x="{left - 4}" y="{y:.1f}" text-anchor="end">{text}</text>')
        x = left + (i + 0.5) * cell + 3
        parts.append(f'<text x="{x:.1f}" y="{top - 4}" transform="rotate(-45 {x:.1f} {top - 4})">{text}</text>')
    for i, row in enumerate(values):
        for j, v in enumerate(row):
            finite = math.isfinite(v)
            fill = _mix(_NEGATIVE, v) if finite else _MISSING
            tip = f"query {i} {labels[i]!r} -> key {j} {labels[j]!r}: " + (f"{v:.3f}" if finite else "no value")
            parts.append(f'<rect x="{left + j * cell:.1f}" y="{top + i * cell:.1f}" width="{cell:.1f}" height="{cell:.1f}" '
                         f'fill="{fill}" stroke="#f4f4f4" stroke-width="0.5"><title>{html.escape(tip)}</title></rect>')
    steps, bar = 10, right + 24
    for k in range(steps):
        parts.append(f'<rect x="{bar}" y="{top + k * (bottom - top) / steps:.1f}" width="12" height="{(bottom - top) / steps + 0.3:.1f}" '
                     f'fill="{_mix(_NEGATIVE, 1 - (k + 0.5) / steps)}"/>')
    parts += [f'<rect x="{bar}" y="{top:.1f}" width="12" height="{bottom - top:.1f}" fill="none" stroke="#999"/>',
              f'<text x="{bar + 16}" y="{top + 3:.1f}">1</text>', f'<text x="{bar + 16}" y="{bottom + 3:.1f}">0</text>']
    parts.append("</svg>")
    return "".join(parts)
