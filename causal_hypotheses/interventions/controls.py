"""Negative controls: does a hypothesis beat random hypotheses of its own shape?

A fraction recovered of 0.95 means little on its own: on some models and metrics almost any
hypothesis of that size recovers most of the effect.  :func:`control` scrubs the hypothesis
and ``count`` random hypotheses *like it* (:func:`random_like`) with the same settings and
seed, and reports where the hypothesis falls among them, with the one-sided Monte Carlo
p-value of "the hypothesis beats random ones":

    p = (1 + #{controls recovering at least as much as the hypothesis}) / (count + 1)

whose smallest value, 1 / (count + 1), means the hypothesis beat every control.

**Random hypotheses like a given one.**  A control is the hypothesis with its components
relabelled: one random map replaces each component the hypothesis names (a head's inputs
``a1.h0.q``/``.k``/``.v`` count as the head ``a1.h0``) by a component of the same kind, and is
applied to every pattern, so that

- ``embed`` stays ``embed``; a head becomes a head, an attention layer an attention layer, an
  MLP an MLP; a head's input keeps its channel (``a1.h0.q`` -> ``a1.h2.q``);
- the replacement lies in the same *layer band*: the component's layer +- ``band`` (default
  1), clipped to the model's layers (``band=0`` keeps every component in its layer);
- distinct components get distinct replacements, and a component named in several patterns
  gets the same one in each, so the control has as many patterns, of the same lengths, sharing
  the same prefixes (the same correspondence tree) and naming as many components as the
  hypothesis; a head of a layer the hypothesis also names whole stays inside that layer's
  replacement, and a head outside stays outside;
- every pattern stays valid on the model (``ModelGraph.check_pattern``: each name writes into
  the one before it);
- each pattern keeps its feature;
- the set of patterns differs from the hypothesis's (a relabelling that only permutes
  interchangeable components, e.g. heads that play the same role, is not a control).

Small models and small bands may offer fewer distinct such hypotheses than ``count``; then
the controls are drawn with replacement among all of them, and the returned list's ``note``
(and a warning) says so: with k distinct controls the p-value cannot honestly be read below
1 / (k + 1).  When none exists (a hypothesis naming every writer, or every head of its band)
:func:`random_like` raises an :class:`~causal_hypotheses.errors.InputError`.

How they are drawn: when the search over relabellings is small (it finishes within
``ENUMERATION_STEPS`` steps) every distinct control is listed and ``count`` of them are
sampled uniformly (without replacement when there are enough); otherwise each control is a
randomised depth-first search that gives each component in turn a random valid replacement,
which is close to, but not exactly, uniform over the valid relabellings.  Either way the
draws come from ``random.Random(seed)``: the same seed gives the same list.
"""
from __future__ import annotations

import math
import random
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd

from ..errors import InputError
from ..graph import Component, ModelGraph
from ..metrics import whole_number
from .scrubbing import ABLATIONS, RESAMPLING, Hypothesis, ScrubResult, scrub

DEFAULT_BAND = 1
# Steps (partial relabellings tried) of the exhaustive search before falling back to random draws.
ENUMERATION_STEPS = 20_000
# Steps of all the randomised searches together (one per control drawn), when the space is too large to list.
RANDOM_STEPS = 200_000


class Controls(list):
    """The control hypotheses :func:`random_like` returns (a list of Hypothesis), with
    ``distinct`` (how many different ones there are among them) and ``note`` (None, or why
    some of them repeat)."""

    def __init__(self, hypotheses, distinct: int, note: str | None = None) -> None:
        super().__init__(hypotheses)
        self.distinct = distinct
        self.note = note


@dataclass(frozen=True)
class _Shape:
    """A hypothesis as a relabelling problem."""

    units: list[Component]  # the distinct components named (head inputs as their head), first-appearance order
    patterns: list[tuple[tuple[int, str | None], ...]]  # each pattern as (unit, channel) elements
    features: list[str | None]
    candidates: list[list[Component]]  # replacements allowed for each unit
    edges: list[list[tuple[int, bool]]]  # for each unit: (other unit, True when the other lies above it)
    nested: list[list[tuple[int, bool]]]  # attention layer <-> head pairs: (other unit, head inside the layer?)
    original: frozenset  # the hypothesis's pattern set


def _check_graph(graph) -> ModelGraph:
    if isinstance(graph, ModelGraph):
        return graph
    inner = getattr(graph, "graph", None)
    hint = " (an Engine: pass engine.graph)" if isinstance(inner, ModelGraph) else ""
    raise InputError(
        f"graph is a {type(graph).__name__}{hint}; pass the model's ModelGraph, e.g. engine.graph or "
        "ModelGraph(n_layers=12, n_heads=12)"
    )


def _as_hypothesis(hypothesis) -> Hypothesis:
    if isinstance(hypothesis, Mapping):
        hypothesis = Hypothesis(hypothesis)
    if not isinstance(hypothesis, Hypothesis):
        raise InputError(
            f"hypothesis is a {type(hypothesis).__name__}; pass a Hypothesis({{pattern: feature}}) or a dict"
        )
    return hypothesis


def _band_layers(layer: int, graph: ModelGraph, band: int) -> range:
    return range(max(0, layer - band), min(graph.n_layers - 1, layer + band) + 1)


def _shape(hypothesis: Hypothesis, graph: ModelGraph, band: int) -> _Shape:
    parsed = [graph.check_pattern(pattern) for pattern in hypothesis.paths]
    units: list[Component] = []
    index: dict[Component, int] = {}
    for components in parsed:
        for c in components:
            base = c.without_channel()
            if base not in index:
                index[base] = len(units)
                units.append(base)
    patterns = [tuple((index[c.without_channel()], c.channel) for c in components) for components in parsed]
    candidates = []
    for unit in units:
        if unit.kind == "embed":
            candidates.append([unit])
            continue
        layers = _band_layers(unit.layer, graph, band)
        if unit.kind == "mlp":
            candidates.append([Component("mlp", layer) for layer in layers])
        elif unit.head is None:
            candidates.append([Component("attn", layer) for layer in layers])
        else:
            candidates.append([Component("attn", layer, head) for layer in layers for head in range(graph.n_heads)])
    edges: list[list[tuple[int, bool]]] = [[] for _ in units]
    for pattern in patterns:
        for (upper, _), (lower, _) in zip(pattern, pattern[1:]):
            edges[upper].append((lower, False))
            edges[lower].append((upper, True))
    nested: list[list[tuple[int, bool]]] = [[] for _ in units]
    for i, a in enumerate(units):
        for j, b in enumerate(units):
            if i != j and a.kind == b.kind == "attn" and (a.head is None) != (b.head is None):
                nested[i].append((j, a.layer == b.layer))
    return _Shape(units, patterns, list(hypothesis.paths.values()), candidates,
                  [sorted(set(e)) for e in edges], nested, frozenset(hypothesis.paths))


def _fits(shape: _Shape, graph: ModelGraph, assigned: dict[int, Component], unit: int, value: Component) -> bool:
    """Whether giving ``unit`` the replacement ``value`` keeps the assigned ones consistent."""
    if value in assigned.values():
        return False
    for other, other_above in shape.edges[unit]:
        if other in assigned:
            upper, lower = (assigned[other], value) if other_above else (value, assigned[other])
            if not graph.writes_into(lower, upper):
                return False
    for other, inside in shape.nested[unit]:
        if other in assigned and (assigned[other].layer == value.layer) != inside:
            return False
    return True


def _search(shape: _Shape, graph: ModelGraph, rng: random.Random | None, budget: list[int]):
    """Depth-first search over relabellings, yielding each complete one (unit -> replacement);
    candidates in random order when ``rng`` is given.  The generator's return value (its
    StopIteration's) is True when it searched the whole space before spending ``budget[0]``
    steps (each candidate tried is a step; the count is shared by the searches given it)."""
    order = sorted(range(len(shape.units)), key=lambda u: (len(shape.candidates[u]), u))
    assigned: dict[int, Component] = {}

    def visit(depth: int):
        if depth == len(order):
            yield dict(assigned)
            return
        unit = order[depth]
        values = list(shape.candidates[unit])
        if rng is not None:
            rng.shuffle(values)
        for value in values:
            if budget[0] <= 0:
                return
            budget[0] -= 1
            if _fits(shape, graph, assigned, unit, value):
                assigned[unit] = value
                yield from visit(depth + 1)
                del assigned[unit]

    yield from visit(0)
    return budget[0] > 0


def _relabelled(shape: _Shape, mapping: dict[int, Component]) -> dict[tuple[str, ...], str | None]:
    paths = {}
    for pattern, feature in zip(shape.patterns, shape.features):
        names = []
        for unit, channel in pattern:
            new = mapping[unit]
            names.append(Component(new.kind, new.layer, new.head, channel).name)
        paths[tuple(names)] = feature
    return paths


def _enumerate(shape: _Shape, graph: ModelGraph, steps: int):
    """Every distinct relabelled hypothesis (paths) differing from the original, and whether the
    search finished within ``steps``."""
    found: dict[frozenset, dict] = {}
    search = _search(shape, graph, None, [steps])
    finished = False
    while True:
        try:
            mapping = next(search)
        except StopIteration as stop:
            finished = bool(stop.value)
            break
        paths = _relabelled(shape, mapping)
        if frozenset(paths) != shape.original:
            found.setdefault(frozenset(paths.items()), paths)
    return list(found.values()), finished


def random_like(hypothesis, graph: ModelGraph, *, count: int, seed: int, band: int = DEFAULT_BAND) -> Controls:
    """``count`` random hypotheses shaped like ``hypothesis`` on ``graph`` (see the module docstring).

    Returns a :class:`Controls` (a list of Hypothesis) with ``.note`` set, and a warning issued,
    when there are fewer than ``count`` distinct ones and some repeat.  Raises InputError when
    not a single valid different one exists.
    """
    hypothesis = _as_hypothesis(hypothesis)
    graph = _check_graph(graph)
    count = whole_number(count, "count", 1, "20")
    seed = whole_number(seed, "seed", 0, "0")
    band = whole_number(band, "band", 0, "1")
    if not hypothesis.paths:
        raise InputError(
            f"hypothesis {hypothesis.name!r} names no path, so every hypothesis of its shape is itself; "
            "controls need a hypothesis that names at least one component"
        )
    shape = _shape(hypothesis, graph, band)
    rng = random.Random(seed)
    pool, finished = _enumerate(shape, graph, ENUMERATION_STEPS)
    how = "exist (all of them listed"
    if not finished:
        # Too many relabellings to list: draw each control by a randomised search.
        seen: dict[frozenset, dict] = {}
        attempts, budget = 0, [RANDOM_STEPS]
        while len(seen) < count and attempts < max(200, 50 * count) and budget[0] > 0:
            attempts += 1
            mapping = next(_search(shape, graph, rng, budget), None)
            if mapping is None:
                continue
            paths = _relabelled(shape, mapping)
            if frozenset(paths) != shape.original:
                seen.setdefault(frozenset(paths.items()), paths)
        pool, how = list(seen.values()), f"were found ({attempts} randomised searches"
        if len(pool) >= count:
            chosen = pool[:count]
            return Controls(_named(hypothesis, chosen), distinct=len(chosen))
    if not pool:
        searched = ("an exhaustive search found none" if finished else
                    f"none found in a search of {ENUMERATION_STEPS} steps and {attempts} random draws")
        raise InputError(
            f"no random hypothesis like {hypothesis.name!r} differs from it ({searched}; layer band +-{band} on "
            f"{graph.n_layers} layers x {graph.n_heads} heads): every relabelling of its components that keeps its "
            "patterns valid names the same paths, as when it names every writer, or every head within its band. "
            "Name fewer components, widen the band (band=2 or more) if it names every head within reach, or compare "
            "it with hand-written alternative hypotheses instead of random controls"
        )
    if len(pool) >= count:
        chosen = rng.sample(pool, count)
        return Controls(_named(hypothesis, chosen), distinct=count)
    chosen = [rng.choice(pool) for _ in range(count)]
    distinct = len({frozenset(paths.items()) for paths in chosen})
    note = (
        f"only {len(pool)} distinct random hypotheses like {hypothesis.name!r} {how}; layer band +-{band} on "
        f"{graph.n_layers} layers x {graph.n_heads} heads), fewer than count={count}, so the {count} controls were "
        f"drawn with replacement ({distinct} distinct); a p-value below 1/{len(pool) + 1} = {1 / (len(pool) + 1):.3g} "
        "overstates the evidence. Widen the band or use a larger model for more controls"
    )
    warnings.warn(note, stacklevel=2)
    return Controls(_named(hypothesis, chosen), distinct=distinct, note=note)


def _named(hypothesis: Hypothesis, chosen: list[dict]) -> list[Hypothesis]:
    total = len(chosen)
    return [Hypothesis(paths, name=f"random like {hypothesis.name} #{i + 1}/{total}") for i, paths in enumerate(chosen)]


@dataclass(frozen=True)
class ControlResult:
    """A hypothesis's fraction recovered among those of random hypotheses like it."""

    hypothesis: str
    recovered: float  # the hypothesis's fraction recovered
    ci: tuple[float, float]  # its interval (Fieller, at ``level``)
    patterns: tuple[tuple[str, ...], ...]  # its patterns
    controls: tuple[float, ...]  # each control's fraction recovered, in draw order
    control_names: tuple[str, ...]
    control_patterns: tuple[tuple[tuple[str, ...], ...], ...]  # each control's patterns, in the hypothesis's order
    percentile: float  # 0-100: the share of controls recovering strictly less than the hypothesis
    p_value: float  # (1 + #controls >= hypothesis) / (count + 1), one-sided: "the hypothesis beats random ones"
    count: int
    distinct: int  # distinct controls among the count (fewer when drawn with replacement)
    band: int
    seed: int
    draws: int
    n: int
    metric: str
    ablation: str
    resampling: str
    level: float
    seconds: float  # wall time of the whole comparison
    scrubs: int  # scrub runs made (the hypothesis and each distinct control once)
    note: str | None = None
    result: ScrubResult | None = field(default=None, repr=False)  # the hypothesis's scrub
    control_results: tuple[ScrubResult, ...] = field(default=(), repr=False)  # one per control, in draw order

    @property
    def min_p_value(self) -> float:
        """The smallest p-value ``count`` controls allow: the hypothesis beat them all."""
        return 1 / (self.count + 1)

    @property
    def control_range(self) -> tuple[float, float]:
        return (min(self.controls), max(self.controls))

    def table(self) -> pd.DataFrame:
        """One row for the hypothesis and one per control: name, control?, fraction recovered, patterns."""
        rows = [{"name": name, "control": is_control, "recovered": value,
                 "patterns": "; ".join(" <- ".join(pattern) for pattern in patterns)}
                for name, is_control, value, patterns in
                [(self.hypothesis, False, self.recovered, self.patterns)]
                + list(zip(self.control_names, [True] * self.count, self.controls, self.control_patterns))]
        return pd.DataFrame(rows)

    def summary(self) -> str:
        low, high = self.control_range
        text = (
            f"{self.hypothesis}: recovered {self.recovered:.3f} [{self.ci[0]:.3f}, {self.ci[1]:.3f}]; {self.count} random "
            f"controls (layer band +-{self.band}) {low:.3f}..{high:.3f}; percentile {self.percentile:.0f}; "
            f"p = {self.p_value:.3g} (min {self.min_p_value:.3g}); {self.seconds:.1f} s"
        )
        return text + (f"; {self.note}" if self.note else "")


def control(
    engine,
    hypothesis,
    task,
    metric="loss",
    *,
    count: int = 20,
    seed: int = 0,
    draws: int = 1,
    ablation: str = "resample",
    resampling: str = "independent",
    level: float = 0.95,
    band: int = DEFAULT_BAND,
) -> ControlResult:
    """Scrub ``hypothesis`` and ``count`` random hypotheses like it (:func:`random_like`, drawn
    with ``seed`` in the layer band +-``band``) on ``task``, each with the same ``seed``,
    ``draws``, ``ablation`` and ``resampling``; see the module docstring.

    Each distinct control is scrubbed once (repeats, when drawn with replacement, reuse the
    result), and all runs share the engine's activation cache, so after the first run the
    task's rows are gathers.
    """
    start = time.perf_counter()
    hypothesis = _as_hypothesis(hypothesis)
    count = whole_number(count, "count", 1, "20")
    seed = whole_number(seed, "seed", 0, "0")
    draws = whole_number(draws, "draws", 1, "1")
    band = whole_number(band, "band", 0, "1")
    if ablation not in ABLATIONS:
        raise InputError(f"ablation={ablation!r}: expected one of {ABLATIONS}")
    if resampling not in RESAMPLING:
        raise InputError(f"resampling={resampling!r}: expected one of {RESAMPLING}")
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
        raise InputError(f"level={level!r}: expected a confidence level between 0 and 1, e.g. level=0.95")
    graph = getattr(engine, "graph", None)
    if not isinstance(graph, ModelGraph):
        raise InputError(f"engine is a {type(engine).__name__} without a model graph; pass an Engine, e.g. Engine.from_hf(model)")
    # Draw the controls first: a hypothesis without any is an error before any model runs.
    controls = random_like(hypothesis, graph, count=count, seed=seed, band=band)

    settings = dict(seed=seed, draws=draws, ablation=ablation, resampling=resampling, level=level)
    own = scrub(engine, hypothesis, task, metric, **settings)
    done: dict[frozenset, ScrubResult] = {}
    results = []
    for other in controls:
        key = frozenset(other.paths.items())
        if key not in done:
            done[key] = scrub(engine, other, task, metric, **settings)
        results.append(done[key])
    values = tuple(r.fraction_recovered for r in results)
    value = own.fraction_recovered
    note = controls.note
    if math.isnan(value):
        percentile = p_value = math.nan
        note = ("the hypothesis's fraction recovered is NaN (the ablation does not change the metric), so it "
                "cannot be compared with the controls" + (f"; {note}" if note else ""))
    else:
        below = sum(1 for v in values if v < value)
        at_least = sum(1 for v in values if not v < value)  # NaN counts against the hypothesis
        percentile = 100 * below / count
        p_value = (1 + at_least) / (count + 1)
    return ControlResult(
        hypothesis=hypothesis.name, recovered=value, ci=own.ci, patterns=tuple(hypothesis.paths), controls=values,
        control_names=tuple(h.name for h in controls),
        control_patterns=tuple(tuple(h.paths) for h in controls),
        percentile=percentile, p_value=p_value, count=count, distinct=controls.distinct, band=band, seed=seed,
        draws=draws, n=own.n, metric=own.metric, ablation=ablation, resampling=resampling, level=level,
        seconds=time.perf_counter() - start, scrubs=1 + len(done), note=note, result=own,
        control_results=tuple(results),
    )
    return result
