"""The self-contained HTML page of a run: summary, notes, each claim's section with its
hypothesis drawn (inline SVG through graphviz, or the DOT text without a ``dot`` program) and its
plots, and the environment.  No external resources and no scripts."""
from __future__ import annotations

import functools
import hashlib
import html
import importlib.metadata
import math
import platform
import re
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from ..claims.record import as_record
from ..drawing import OTHER as _OTHER, hypothesis_digraph  # noqa: F401  (hypothesis_digraph lived here)
from .table import Record, _VERDICT_COLOURS, _write_text, _num, threshold_text, value_text, _effect_text, summary_rows, verdict_counts
from .plots import controls_svg, distribution_svg, value_svg



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


def _inline_svg(svg: str) -> str:
    """SVG text fit for embedding in HTML (the XML prolog and doctype removed)."""
    start = svg.find("<svg")
    return svg[start:] if start >= 0 else svg


def graph_html(digraph) -> str:
    """The drawing as inline SVG, or its DOT text with a note when no dot program exists."""
    from ..engine.drawing import to_svg

    svg = to_svg(digraph)
    if svg:
        return f'<div class="graph">{_inline_svg(svg)}</div>'
    return ('<p class="note">No <code>dot</code> program is installed, so the graph is shown as DOT text; '
            "install Debian's <code>graphviz</code> or <code>pip install graphviz-pure</code> to draw it.</p>"
            f"<pre>{html.escape(digraph.source)}</pre>")


def environment(extra: Mapping[str, object] | None = None) -> dict[str, str]:
    """Versions of what the numbers depend on (read from package metadata; nothing is imported)."""
    info = {"python": platform.python_version(), "platform": platform.platform(), "git commit": _git_commit()}
    for package in ("causal_hypotheses", "torch", "transformers", "pandas", "pytest", "pytest-xdist"):
        try:
            info[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            info[package] = "not installed"
    for key, value in (extra or {}).items():
        info[key] = str(value)
    return info


@functools.lru_cache(maxsize=1)
def _git_commit() -> str:
    """The commit of the checkout this package runs from, when it is one (else "none")."""
    import subprocess

    here = Path(__file__).resolve().parent
    try:
        done = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return "none"
    if done.returncode != 0:
        return "none"
    dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, timeout=5).stdout.strip()
    return done.stdout.strip() + (" (with uncommitted changes)" if dirty else "")


def anchor(claim_id: str) -> str:
    """A stable HTML id for a claim (letters, digits and dashes, plus a hash to keep ids distinct)."""
    readable = re.sub(r"[^A-Za-z0-9]+", "-", claim_id).strip("-")[-60:]
    return f"claim-{readable}-{hashlib.sha1(claim_id.encode()).hexdigest()[:8]}"


def claim_figures(record: Record) -> str:
    """The costly part of a claim's section (hypothesis graph and plots), rendered once: a scrub's
    hypothesis drawn, the per-example distribution (or, for a kind whose value is not a share of
    target - base, the value with its interval), the random controls."""
    record = as_record(record)
    if not record.measured:
        return ""
    drawing = [  # a patching claim (or any other kind) has no hypothesis to draw: its facts say what was tested
        "<h3>Hypothesis</h3>",
        f'<p class="note">{html.escape(hypothesis_note(record.ablation, record.resampling or "independent"))}</p>',
        graph_html(hypothesis_digraph(record.paths, record.hypothesis, record.ablation)),
    ] if record.base_kind == "scrub" else []
    if record.per_example and not (math.isnan(record.target) and math.isnan(record.base)):
        plot = ["<h3>Per-example distribution</h3>", distribution_svg(record)]
    else:
        plot = [f"<h3>{html.escape(_capital(record.statistic or 'value'))}</h3>", value_svg(record)]
    return "\n".join([
        *drawing,
        *plot,
        *(["<h3>Random controls</h3>", controls_svg(record)] if record.controls else []),
    ])


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _notes_html(notes: Iterable[tuple[str, str]]) -> str:
    items = "".join(f'<li class="{html.escape(kind)}">{html.escape(text)}</li>' for kind, text in notes)
    return f'<ul class="notes">{items}</ul>' if items else ""


def _baseline_text(record: Record) -> str | None:
    record = as_record(record)
    then = record.baseline_value
    if then is None or (isinstance(then, float) and math.isnan(then) and record.drift is None):
        return None
    change = record.change
    change = "—" if change is None or math.isnan(change) else f"{change:+.3f}"
    drift = " — drifted beyond --claims-compare-fail" if record.drift is True else ""
    return f"{_num(then)} (change {change}){drift}"


def _cell(value) -> str:
    """A Details table cell: numbers right-aligned (floats to 4 significant digits), all else as text."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"<td>{html.escape('' if value is None else str(value))}</td>"
    if isinstance(value, float):
        text = "—" if math.isnan(value) else f"{value:.4g}"
    else:
        text = str(value)
    return f'<td class="num">{html.escape(text)}</td>'


def details_html(details: Sequence[Mapping]) -> str:
    """A kind's details (one dict per row) as an HTML table under the heading "Details", its
    columns the rows' keys in the order they first appear; empty when there are none."""
    if not details:
        return ""
    columns = list(dict.fromkeys(key for row in details for key in row))
    head = "".join(f"<th>{html.escape(str(column))}</th>" for column in columns)
    body = "".join("<tr>" + "".join(_cell(row.get(column)) for column in columns) + "</tr>" for row in details)
    return f'<h3>Details</h3>\n<table class="details"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


# What the facts table calls what a kind tested (by the kind's first word); "hypothesis" otherwise.
_TESTED = {"activation_patch": "patched", "path_patch": "patched"}


def claim_section(record: Record, figures: str | None = None) -> str:
    """One claim's part of the HTML page: facts, verdict message, comparison with the baseline,
    the kind's details, hypothesis graph and plots (``figures``, from :func:`claim_figures`;
    rendered when None)."""
    record = as_record(record)
    verdict = record.verdict
    names = record.run_names
    means = (record.target, record.base, record.intervened)
    ablation = f"{record.ablation} ({record.resampling} resampling)" if record.resampling else record.ablation or "—"
    facts = [("kind", record.kind or "scrub"), ("model", record.model), ("task", record.task),
             (_TESTED.get(record.base_kind, "hypothesis"), record.hypothesis),
             ("metric", record.metric), ("ablation", ablation),
             ("n", record.n), ("seed", record.seed), ("draws", record.draws)]
    if not all(math.isnan(x) for x in means):
        facts += [(" / ".join(names), " / ".join(_num(x, 4) for x in means)),
                  (f"effect to explain: {names[0]} − {names[1]}", _effect_text(record))]
    facts += [(record.statistic or "value", value_text(record)), ("interval over", record.unit or "—"),
              ("threshold", threshold_text(record.at_least, record.at_most)),
              ("node evaluations / forward passes / cache hits",
               f"{record.node_evaluations} / {record.forward_passes} / {record.cache_hits}")]
    baseline = _baseline_text(record)
    if baseline is not None:
        facts.append((f"baseline {record.statistic or 'value'}", baseline))
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in facts)
    parts = [f'<section id="{anchor(record.claim)}"><h2>{html.escape(record.claim)} '
             f'<span class="verdict" style="background:{_VERDICT_COLOURS.get(verdict, "#fff")}">{html.escape(verdict)}</span></h2>']
    notes = _notes_html(record.baseline_notes)
    if notes:
        parts.append(notes)
    parts.append(f'<table class="facts">{rows}</table>')
    if record.message:
        parts.append(f'<pre class="message">{html.escape(record.message)}</pre>')
    details = details_html(record.details)
    if details:
        parts.append(details)
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
    compared = "baseline_value" in frame and frame["drift"].notna().any()
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table[0] + (["vs baseline"] if compared else []))
    records = [as_record(row) for row in frame.to_dict("records")]
    body = []
    for row, record in zip(table[1:], records):
        verdict = row[5]
        cells = [f'<td><a href="#{anchor(row[0])}">{html.escape(row[0])}</a></td>']
        cells += [f"<td>{html.escape(cell)}</td>" for cell in row[1:5]]
        cells.append(f'<td style="background:{_VERDICT_COLOURS.get(verdict, "#fff")}">{html.escape(verdict)}</td>')
        cells.append(f'<td class="num">{html.escape(row[6])}</td>')
        if compared:
            text = _baseline_text(record) or "not in the baseline"
            style = ' style="background:#f8d0d0"' if record.drift is True else ""
            cells.append(f"<td{style}>{html.escape(text)}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    env_rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in env.items())
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{len(frame)} claims: {html.escape(summary)}. Each claim's value is the statistic its kind names, with "
        "its confidence interval over the unit the claim names: for scrubs Fieller's interval of the fraction "
        "recovered, (scrubbed − ablated) / (clean − ablated); for patching claims the fraction of the "
        "clean-to-corrupt change moved, (patched − base) / (target − base). A claim passes when the whole "
        "interval clears its threshold.</p>",
        _notes_html(notes),
        f'<table class="summary"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>',
        *sections,
        '<section id="environment"><h2>Environment</h2>',
        f"<table>{env_rows}</table></section>",
        "</body></html>",
    ])


def write_html(text: str, path: Path) -> Path:
    return _write_text(path, text)
