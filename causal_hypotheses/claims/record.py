"""One claim's record: its row of the run's CSV plus what the HTML page draws, and
:func:`make_record`, which reads a record off the measurement the claim judged.

The measurement interface.  Every experiment result a claim judges (a scrub's ScrubResult, a
patch's EffectResult, and any kind to come) exposes these attributes: make_record reads no
others, and the claim (experiment.py) judges ``ci`` and ``effect_ci``.  ``value``, ``ci``,
``effect_ci`` (which may be None) and ``n`` are required; the rest fall back as noted
(``getattr`` with a default) when a result lacks them:

- ``kind``: the kind's name ("scrub", "activation_patch", "iia", ...; "scrub" when absent); a
  result with a ``direction`` (patching: "noising" or "denoising") is recorded as
  "activation_patch (noising)";
- ``statistic``: what ``value`` is, in words ("fraction recovered", "interchange accuracy");
  optional, "value" when absent;
- ``value``, ``ci`` (low, high) and ``level``: the estimate the verdict judges, its interval and
  the interval's level (the spec's when absent);
- ``target``, ``base``, ``intervened``: the metric means ``value`` is normalised against (a
  scrub's clean, ablated and scrubbed runs; patching's target, base and patched runs); NaN or
  absent where the kind has none;
- ``effect_ci``: the interval of target - base, the effect there is to explain, or None (NaN
  columns) where the kind has none;
- ``n`` (examples), ``draws`` (resampling draws per example; the spec's when absent); ``seed``
  (the record's seed column is the claim's, from its spec: the seed that built the task and
  identifies the claim in a baseline);
- ``units`` and ``unit``: what the interval is over ("24 examples", "6 templates");
- ``ablation`` and ``resampling``: strings, "" where they do not apply; when absent, the claim's
  spec gives them;
- ``description``: what was tested, in words (the record's hypothesis when the claim names none);
- ``per_example``: a pandas DataFrame with columns draw, example and target, base, intervened
  (or a scrub's legacy clean, ablated, scrubbed); a missing run is NaN; optional;
- ``details``: a list of JSON-able dicts, a kind-specific table (one row per component, say);
  optional, [] when absent;
- ``node_evaluations``, ``forward_passes``, ``cache_hits``: what the measurement cost (0 when absent).

The verdict's message (verdict.explain) is written per kind: a new kind adds its own there.

A record holds plain JSON-able values only, so that its :meth:`ClaimRecord.to_dict` travels from a
pytest-xdist worker to the controller.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Mapping, Union

_NAN = float("nan")


def _extra(default=None, factory=None):
    """A field the page draws that is not a CSV column."""
    if factory is not None:
        return field(default_factory=factory, metadata={"column": False})
    return field(default=default, metadata={"column": False})


@dataclass(frozen=True)
class ClaimRecord:
    """One claim's result: the CSV columns (every field not marked otherwise, in order), then what
    the HTML page draws besides.  A claim that ran no experiment keeps the defaults (NaN, 0, "")."""

    claim: str
    kind: str = ""  # "scrub", "activation_patch (noising)", "iia", ...
    model: str = ""
    task: str = ""
    hypothesis: str = ""  # the hypothesis's name, or what was tested in words
    n: int = 0
    seed: int = 0
    draws: int = 0
    metric: str = ""
    ablation: str = ""
    resampling: str = ""
    statistic: str = ""  # what value is, in words
    value: float = _NAN
    ci_low: float = _NAN
    ci_high: float = _NAN
    level: float = _NAN
    unit: str = ""  # what the interval is over: "24 examples"
    target: float = _NAN  # the metric means value is normalised against (RUN_NAMES says what each is)
    base: float = _NAN
    intervened: float = _NAN
    effect_low: float = _NAN  # interval of target - base
    effect_high: float = _NAN
    at_least: float = _NAN
    at_most: float = _NAN
    control_p: float = _NAN
    control_percentile: float = _NAN
    verdict: str = ""
    node_evaluations: int = 0
    forward_passes: int = 0
    cache_hits: int = 0
    seconds: float = _NAN
    message: str = ""
    # Filled in at the end of a run compared with a baseline (--claims-compare); empty otherwise.
    baseline_value: float | None = None
    change: float | None = None
    drift: bool | None = None
    # Not columns: what the page draws, and the run's bookkeeping.
    paths: list = _extra(factory=list)  # a hypothesis's [pattern, feature] pairs
    controls: list = _extra(factory=list)  # the random controls' values
    per_example: dict = _extra(factory=dict)  # column -> list: draw, example, target, base, intervened
    details: list = _extra(factory=list)  # a kind-specific table: one dict per row
    order: int = _extra(0)  # the claim's place in the collected tests
    baseline_notes: list = _extra(factory=list)  # (kind, text) pairs from the comparison with a baseline

    def to_dict(self) -> dict:
        """Every field as a plain dict (the values are JSON-able already)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, values: Mapping) -> "ClaimRecord":
        """The record of :meth:`to_dict`'s dict (or a CSV row); missing fields keep their defaults."""
        unknown = sorted(set(values) - _NAMES)
        if unknown:
            raise ValueError(f"not fields of a claim record: {', '.join(map(repr, unknown))}; expected some of "
                             f"{', '.join(f.name for f in fields(cls))}")
        return cls(**values)

    def _repr_html_(self) -> str:
        """In notebooks: the claim's section of the run's page (reports/notebook.py, imported only
        when a notebook asks for the drawing)."""
        from ..reports.notebook import record_html

        return record_html(self)

    @property
    def base_kind(self) -> str:
        """The kind without its direction: "activation_patch" for "activation_patch (noising)"."""
        return (self.kind or "scrub").split(" ")[0]

    @property
    def run_names(self) -> tuple[str, str, str]:
        """What the kind calls its target, base and intervened runs."""
        return RUN_NAMES.get(self.base_kind, DEFAULT_RUN_NAMES)

    @property
    def measured(self) -> bool:
        """Whether the claim ran its experiment (a skipped or broken one did not)."""
        return bool(self.per_example) or not all(_missing(x) for x in (self.value, self.ci_low, self.ci_high))


_NAMES = frozenset(f.name for f in fields(ClaimRecord))

# The CSV columns, in order: every field of the record that is not marked otherwise.
COLUMNS = tuple(f.name for f in fields(ClaimRecord) if f.metadata.get("column", True))

# What each kind calls the runs behind target, base and intervened (by the kind's first word).
RUN_NAMES = {
    "scrub": ("clean", "ablated", "scrubbed"),
    "activation_patch": ("target", "base", "patched"),
    "path_patch": ("target", "base", "patched"),
    "iia": ("—", "unpatched hits", "hits"),
    "faithfulness": ("F(M)", "base", "F(C)"),
    "completeness": ("F(M∖K)", "base", "F(C∖K)"),
    "minimality": ("F(C∖K)", "base", "F(C∖(K∪{v}))"),
}
DEFAULT_RUN_NAMES = ("target", "base", "intervened")

# The per-example columns of a record, and the legacy names a scrub's per-example frame uses.
PER_EXAMPLE = ("draw", "example", "target", "base", "intervened")
_LEGACY_RUNS = {"clean": "target", "ablated": "base", "scrubbed": "intervened"}


def as_record(record: Union[ClaimRecord, Mapping]) -> ClaimRecord:
    """A ClaimRecord from a record or a mapping of its fields (a dict, a CSV row)."""
    return record if isinstance(record, ClaimRecord) else ClaimRecord.from_dict(record)


def _missing(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _number(x) -> float:
    return float(x) if x is not None else _NAN


def _plain(value):
    """``value`` as plain JSON-able Python: numpy and torch scalars as numbers, tuples as lists."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if value is None or type(value) in (str, bool, int, float):
        return value
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def _per_example(frame) -> dict:
    """A result's per-example DataFrame as lists: draw, example, target, base, intervened (a
    scrub's clean, ablated and scrubbed are its target, base and intervened; a missing run is NaN)."""
    if frame is None or len(frame) == 0:
        return {}
    frame = frame.rename(columns={old: new for old, new in _LEGACY_RUNS.items() if new not in frame.columns})
    values = {name: [int(x) for x in frame[name]] for name in ("draw", "example")}
    for name in PER_EXAMPLE[2:]:
        values[name] = [float(x) for x in frame[name]] if name in frame.columns else [_NAN] * len(frame)
    return values


def make_record(claim_id: str, spec, result, name: str, paths: list, verdict: str, seconds: float,
                message: str, controls=None) -> ClaimRecord:
    """One claim's record, read off ``result`` through the measurement interface (module docstring).

    ``spec`` is the claim's ClaimSpec, ``name`` what the record's hypothesis column says,
    ``paths`` the hypothesis's [pattern, feature] pairs (drawn on the page), ``controls`` the
    random controls' ControlResult when the claim ran them."""
    kind = getattr(result, "kind", "scrub")
    direction = getattr(result, "direction", "")
    effect = getattr(result, "effect_ci", None)
    effect_low, effect_high = (_NAN, _NAN) if effect is None else effect
    units, unit = int(getattr(result, "units", 0)), getattr(result, "unit", "example")
    return ClaimRecord(
        claim=claim_id, kind=f"{kind} ({direction})" if direction else kind, model=spec.model, task=spec.task,
        hypothesis=name, n=int(result.n), seed=int(spec.seed), draws=int(getattr(result, "draws", spec.draws)),
        metric=spec.metric, ablation=str(getattr(result, "ablation", spec.ablation)),
        resampling=str(getattr(result, "resampling", spec.resampling)),
        statistic=str(getattr(result, "statistic", "value")), value=_number(result.value),
        ci_low=_number(result.ci[0]), ci_high=_number(result.ci[1]), level=_number(getattr(result, "level", spec.level)),
        unit=f"{units} {unit}{'s' if units != 1 else ''}",
        target=_number(getattr(result, "target", None)), base=_number(getattr(result, "base", None)),
        intervened=_number(getattr(result, "intervened", None)),
        effect_low=_number(effect_low), effect_high=_number(effect_high),
        at_least=_number(spec.at_least), at_most=_number(spec.at_most),
        control_p=_NAN if controls is None else float(controls.p_value),
        control_percentile=_NAN if controls is None else float(controls.percentile),
        verdict=verdict, node_evaluations=int(getattr(result, "node_evaluations", 0)),
        forward_passes=int(getattr(result, "forward_passes", 0)), cache_hits=int(getattr(result, "cache_hits", 0)),
        seconds=float(seconds), message=message, paths=_plain(paths),
        controls=[] if controls is None else [float(x) for x in controls.controls],
        per_example=_per_example(getattr(result, "per_example", None)),
        details=_plain(list(getattr(result, "details", None) or [])),
    )


def empty_record(claim_id: str, spec, verdict: str, message: str, seconds: float = _NAN) -> ClaimRecord:
    """The record of a claim that produced no result (skipped, or an error before its experiment
    finished); ``spec`` (its ClaimSpec, or None) fills in what the claim is."""
    if spec is None:
        return ClaimRecord(claim=claim_id, verdict=verdict, message=message, seconds=seconds)
    return ClaimRecord(claim=claim_id, model=spec.model, task=spec.task, n=spec.n, seed=spec.seed, draws=spec.draws,
                       metric=spec.metric, ablation=spec.ablation, resampling=spec.resampling, level=spec.level,
                       at_least=_number(spec.at_least), at_most=_number(spec.at_most), verdict=verdict, message=message,
                       seconds=seconds)
