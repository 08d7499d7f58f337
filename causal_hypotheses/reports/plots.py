"""Self-contained SVG plots of a claim's per-example values (no plotting library)."""
from __future__ import annotations

import html
import math
from typing import Mapping, Union

from ..claims.record import ClaimRecord, as_record

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
