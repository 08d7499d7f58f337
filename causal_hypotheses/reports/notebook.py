"""Notebook views: a measurement (a scrub's or a patch's result) or a claim's record as the HTML
the run's page shows for a claim (facts, interval, per-example distribution), for ``_repr_html_``."""
from __future__ import annotations

import math
from types import SimpleNamespace

from ..claims.record import ClaimRecord, make_record
from .page import claim_section

_STYLE = ("<style>.causal-hypotheses-view table{border-collapse:collapse}.causal-hypotheses-view th,"
          ".causal-hypotheses-view td{border:1px solid #ccc;padding:2px 6px;text-align:left}</style>")


def record_html(record: ClaimRecord) -> str:
    """A claim's record as its section of the run's page."""
    return f'{_STYLE}<div class="causal-hypotheses-view">{claim_section(record)}</div>'


def measurement_record(result) -> ClaimRecord:
    """The record of a measurement made outside a claim (no threshold, no verdict), read through the
    measurement interface (claims/record.py)."""
    description = str(getattr(result, "description", "") or getattr(result, "kind", "measurement"))
    spec = SimpleNamespace(model="", task=str(getattr(result, "task", "")), seed=int(getattr(result, "seed", 0)),
                           draws=int(getattr(result, "draws", 1)), metric=str(getattr(result, "metric", "")),
                           ablation="", resampling="", level=float(getattr(result, "level", 0.95)),
                           at_least=None, at_most=None)
    paths = [[list(pattern), feature] for pattern, feature in getattr(result, "paths", ())]  # a scrub's hypothesis
    return make_record(description, spec, result, description, paths, verdict="no threshold", seconds=math.nan, message="")


def measurement_html(result) -> str:
    """A scrub's or a patch's result as a claim's section (facts, interval, per-example distribution)."""
    return record_html(measurement_record(result))
