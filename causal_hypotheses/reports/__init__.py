"""Reports of a claims run: one DataFrame (one row per claim record) -> CSV, a self-contained HTML
page, the terminal table, and comparisons with a saved baseline.  Records are
:class:`~causal_hypotheses.claims.record.ClaimRecord` objects or mappings of their fields.

table.py (columns, CSV, terminal table), baselines.py (checking and comparing a saved run),
plots.py (SVG plots), page.py (the HTML page).  Importing this package is cheap: pandas and
graphviz load inside the functions that need them.
"""
from __future__ import annotations

from .table import EXAMPLE_COLUMNS, examples_text, COLUMNS, COMPARISON, IDENTITY, RUN_DEPENDENT, COMPARABLE, LEGACY_COLUMNS, Record, _VERDICT_COLOURS, VERDICTS, to_frame, csv_text, write_csv, read_csv, write_atomic, _write_text, _num, threshold_text, value_text, _effect_text, summary_rows, text_table, verdict_counts  # noqa: F401
from .baselines import TABLE_HEADER, baseline_problem, Limit, Drift, _identity, mismatches, compare, comparison_fields  # noqa: F401
from .plots import controls_svg, _ticks, _jitter, _axis, distribution_svg, value_svg  # noqa: F401
from .page import _OTHER, hypothesis_note, hypothesis_digraph, _inline_svg, graph_html, environment, anchor, claim_figures, _notes_html, _baseline_text, details_html, claim_section, _CSS, render_html, write_html  # noqa: F401
