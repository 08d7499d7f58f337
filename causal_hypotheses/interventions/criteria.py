"""Wang et al.'s (2022) criteria for a circuit given as components: faithfulness, completeness
and minimality.

A circuit C is a set of heads (``a9.h9``; a whole layer ``a9`` stands for its heads) and MLPs
(``m3``).  ``F(S)`` is the task's metric, averaged over its examples, when every component *in
scope* outside ``S`` is knocked out; the model M is the whole scope.  The scope is every head,
plus every MLP when the circuit names one (Wang et al. knock out heads only; embeddings and,
for a heads-only circuit, MLPs always run).  Knocking out replaces a component's output, at
every position, by

* ``ablation="mean"`` (the paper's): its mean over the reference prompts, per cluster when the
  task declares one (IOI: per template, as the paper averages over pABC of the same template);
* ``ablation="resample"``: its output on another reference prompt (same cluster when there is
  one), drawn with ``seed``.

The reference prompts are the task's corrupt ones (IOI: the ABC distribution) unless
``reference="clean"``.  Downstream components are recomputed on the knocked-out inputs.

Each criterion is a number with an interval over examples (clusters as units where the task
declares them).  Numbers are fractions of one denominator ``D``:

* ``normalise="model"`` (the paper's ratio, for metrics where 0 means no behaviour, e.g. logit
  difference): ``D = F(M)``;
* ``normalise="ablated"`` (any metric, e.g. loss): ``D = F(M) - F(∅)``, the change from knocking
  out the whole scope; faithfulness is then the fraction of that change the circuit keeps.

**faithfulness** = ``F(C) / F(M)`` (or ``(F(C) - F(∅)) / D``), Fieller interval.

**completeness**: for subsets K of C (∅, ``k`` random ones drawn with ``seed`` taking each
component with probability 1/2, and any given as ``subsets=``), the gap ``|F(C∖K) - F(M∖K)| / D``;
the value is the largest gap.  Its interval holds the largest gap whenever every K's interval
holds its own, each at a Bonferroni-corrected level, so it is simultaneous over the K's tried.

**minimality**: for each component v of C and subsets K of C∖{v} (∅ and ``k`` random ones),
the gap ``|F(C∖K) - F(C∖(K∪{v}))| / D``; each component's best K gives its gap, and the value is
the smallest of those (the least necessary component), with a simultaneous interval as above.
A claim ``at_least=x`` then says every component matters by at least x.

All knockouts of one criterion run as blocks of a few engine runs; the same set is never run
twice.  ``details`` lists each K (completeness) or component (minimality) with its gap.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import pandas as pd
import torch

from ..engine.core import MeanInput
from ..errors import InputError, UnknownComponentError
from ..graph import Component, ModelGraph, component
from ..metrics import finite, get_metric, metric_reads, whole_number
from ..stats import Interval, mean_interval, ratio_interval
from .compile import activation_patch_functions

CRITERIA = ("faithfulness", "completeness", "minimality")
CRITERION_ABLATIONS = ("mean", "resample")
REFERENCES = ("corrupt", "clean")
NORMALISATIONS = ("model", "ablated")
# Metrics for which F(C) / F(M) reads as a share of the behaviour (0 = none of it).
RATIO_METRICS = ("logit_diff", "accuracy")


@dataclass(frozen=True)
class CriterionResult:
    """One criterion measured; attributes follow the measurement interface of claims/record.py."""

    kind: str  # "faithfulness", "completeness" or "minimality"
    statistic: str
    value: float
    ci: tuple[float, float]
    level: float
    target: float  # F(M)
    base: float  # 0 (normalise="model") or F(∅) (normalise="ablated")
    intervened: float  # F(C) (faithfulness) or F(C∖K) of the deciding K
    effect_ci: tuple[float, float]  # interval of F(M) - F(∅): what knocking out the whole scope changes
    n: int
    seed: int
    units: int
    unit: str
    ablation: str
    description: str
    circuit: tuple[str, ...]
    outside: int  # components knocked out to leave the circuit
    normalise: str
    reference: str
    per_example: pd.DataFrame = field(repr=False)
    details: list = field(default_factory=list)
    knockouts: int = 0  # distinct knocked-out sets run
    node_evaluations: int = 0
    forward_passes: int = 0
    cache_hits: int = 0
    draws: int = 1
    resampling: str = ""
    metric: str = ""

    @property
    def fraction_recovered(self) -> float:  # the name the verdict's advice reads
        return self.value


def circuit_components(graph: ModelGraph, circuit) -> tuple[list[str], list[str]]:
    """The circuit's components (layers expanded to heads, sorted) and the scope they live in."""
    if isinstance(circuit, str):
        circuit = [circuit]
    if circuit is None or not isinstance(circuit, Iterable) or isinstance(circuit, (bytes, dict)):
        raise InputError(f"circuit={circuit!r}: expected a list of heads and MLPs, e.g. ['a9.h6', 'a9.h9', 'm10']")
    names = list(circuit)
    if not names:
        raise InputError("circuit is empty; name its heads (and MLPs), e.g. ['a9.h6', 'a9.h9']")
    chosen: list[Component] = []
    for name in names:
        parsed = graph.parse(name)
        if parsed.kind == "embed":
            raise UnknownComponentError(
                "'embed' cannot be in a circuit here: the criteria knock out heads (and MLPs) outside the circuit, "
                "and the embedding always runs; leave it out")
        if parsed.channel is not None:
            raise UnknownComponentError(
                f"{name!r} is a head's input; the criteria treat components as nodes: name the head "
                f"{parsed.without_channel().name!r}")
        if parsed.kind == "attn" and parsed.head is None:
            chosen += [Component("attn", parsed.layer, h) for h in range(graph.n_heads)]
        else:
            chosen.append(parsed)
    unique = sorted(set(chosen), key=lambda c: (c.order, c.head or 0))
    if len(unique) != len(chosen):
        repeated = sorted({c.name for c in chosen if chosen.count(c) > 1})
        raise InputError(f"circuit names {repeated} more than once (a layer counts as all its heads); name each once")
    scope = graph.heads() + ([f"m{layer}" for layer in range(graph.n_layers)] if any(c.kind == "mlp" for c in unique) else [])
    members = [c.name for c in unique]
    if set(scope) <= set(members):
        raise InputError(
            f"the circuit holds every component in scope ({len(scope)}: every head"
            f"{' and MLP' if len(scope) > len(graph.heads()) else ''}), so nothing outside it is knocked out and every "
            "criterion is trivially met; name the circuit's components only")
    return members, scope


def _sources(task, reference: str, ablation: str, seed: int):
    """The inputs knocked-out components read, and per example which input that is."""
    tokens = task.corrupt if reference == "corrupt" else task.clean
    n = tokens.shape[0]
    clusters = task.features[task.cluster] if task.cluster is not None else torch.zeros(n, dtype=torch.long)
    if ablation == "mean":
        values, inverse = clusters.unique(return_inverse=True)
        return [MeanInput(tokens[clusters == value]) for value in values], 1 + inverse
    generator = torch.Generator().manual_seed(seed)
    chosen = torch.arange(n)
    for value in clusters.unique():
        members = (clusters == value).nonzero().flatten()
        pool = members if len(members) > 1 else torch.arange(n)
        for i in members.tolist():
            others = pool[pool != i]
            if len(others) == 0:
                raise InputError("resample ablation needs at least 2 examples; use ablation='mean' or a larger n")
            chosen[i] = others[torch.randint(0, len(others), (1,), generator=generator)]
    return [tokens[chosen]], torch.ones(n, dtype=torch.long)


class _Knockouts:
    """Per-example metric values of knocked-out sets, each set run once, many per engine run."""

    def __init__(self, engine, task, metric, scope, *, ablation, reference, seed, max_tokens=8192):
        self.engine, self.task, self.metric_name = engine, task, metric
        self.metric = get_metric(metric)
        self.scope = scope
        self.inputs, self.source = _sources(task, reference, ablation, seed)
        self.max_tokens = max_tokens
        self.values: dict[frozenset, torch.Tensor] = {}
        self.counters = [0, 0, 0]
        self.read, self.measured_task = metric_reads(metric, task, engine.adapter.vocab_size)  # built-in metrics: compute only those
        clean = engine.run([task.clean], lambda path: 0, **self.read)
        self._count(clean)
        self.clean_logits = clean.logits.float().cpu()
        self.values[frozenset()] = self._measure(self.clean_logits, "the unablated model")

    def _count(self, run) -> None:
        self.counters[0] += run.stats.node_evaluations
        self.counters[1] += run.stats.forward_passes
        self.counters[2] += run.stats.cache_hits

    def _measure(self, logits, where: str) -> torch.Tensor:
        return finite(self.metric(logits, self.measured_task, self.clean_logits), self.metric_name, where)

    def knocked_out(self, kept: Iterable[str]) -> frozenset:
        """The set knocked out when only ``kept`` of the scope runs."""
        kept = set(kept)
        return frozenset(name for name in self.scope if name not in kept)

    def run(self, sets: Sequence[frozenset]) -> None:
        todo = list(dict.fromkeys(s for s in sets if s not in self.values))
        batch, seq = self.task.clean.shape
        per_run = max(1, self.max_tokens // (batch * seq))
        for start in range(0, len(todo), per_run):
            group = todo[start:start + per_run]
            which, branch, key = activation_patch_functions(group, batch, None, self.source)
            k = len(group)
            result = self.engine.run([self.task.clean.repeat(k, 1), *self.inputs], which, branch, key=key, **self.read)
            self._count(result)
            logits = result.logits.float().cpu()
            for block, knocked in enumerate(group):
                rows = logits[block * batch:(block + 1) * batch]
                self.values[knocked] = self._measure(rows, f"the run with {len(knocked)} components knocked out")

    def __getitem__(self, knocked: frozenset) -> torch.Tensor:
        return self.values[knocked]


def _abs_interval(interval: Interval) -> tuple[float, float]:
    """Bounds of |g| from an interval [low, high] of g."""
    low, high = interval.low, interval.high
    if math.isnan(low) or math.isnan(high):
        return (math.nan, math.nan)
    if low <= 0 <= high:
        return (0.0, max(-low, high))
    return (min(abs(low), abs(high)), max(abs(low), abs(high)))


def _check(task, metric, ablation, reference, normalise, level, seed):
    if ablation not in CRITERION_ABLATIONS:
        raise InputError(f"ablation={ablation!r}: expected 'mean' (Wang et al.: the mean over the reference prompts) "
                         "or 'resample' (another reference prompt's output)")
    if reference not in REFERENCES:
        raise InputError(f"reference={reference!r}: expected 'corrupt' (the task's corrupt prompts, e.g. IOI's ABC "
                         "distribution) or 'clean'")
    if normalise not in NORMALISATIONS:
        raise InputError(f"normalise={normalise!r}: expected 'model' (divide by F(M), the paper's ratio) or 'ablated' "
                         "(divide by F(M) - F(∅), for any metric)")
    if normalise == "model" and metric not in RATIO_METRICS:
        raise InputError(
            f"normalise='model' divides by F(M), which reads as a share of the behaviour only for metrics where 0 means "
            f"none of it ({', '.join(RATIO_METRICS)}); metric {getattr(metric, '__name__', metric)!r} is not one: use "
            "normalise='ablated' (the fraction of what knocking out every component changes)")
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
        raise InputError(f"level={level!r}: expected a confidence level between 0 and 1, e.g. 0.95")
    whole_number(seed, "seed", 0, "0")
    if task.clean.shape[0] < 2:
        raise InputError(f"task {task.name!r} has {task.clean.shape[0]} example; the criteria need at least 2 for an interval")


def _setup(engine, circuit, task, metric, ablation, reference, normalise, level, seed):
    _check(task, metric, ablation, reference, normalise, level, seed)
    members, scope = circuit_components(engine.graph, circuit)
    runs = _Knockouts(engine, task, metric, scope, ablation=ablation, reference=reference, seed=seed)
    model, nothing = frozenset(), frozenset(scope)
    runs.run([nothing])
    clusters = task.features[task.cluster] if task.cluster is not None else None
    unit = task.cluster or "example"
    zero = torch.zeros_like(runs[model])
    base = runs[nothing] if normalise == "ablated" else zero
    denominator = runs[model] - base
    effect = mean_interval(runs[model] - runs[nothing], level=level, clusters=clusters, unit=unit)
    return members, scope, runs, base, denominator, effect, clusters, unit


def _random_subsets(items: Sequence[str], k: int, rng: random.Random) -> list[frozenset]:
    """``k`` random non-empty subsets of ``items``, each item in with probability 1/2."""
    found = []
    if not items:
        return found
    for _ in range(k):
        chosen = frozenset()
        while not chosen:
            chosen = frozenset(item for item in items if rng.random() < 0.5)
        found.append(chosen)
    return found


def _name(subset: Iterable[str]) -> str:
    ordered = sorted(subset, key=lambda name: (component(name).order, component(name).head or 0))
    return "∅" if not ordered else "{" + ", ".join(ordered) + "}"


def _units(clusters, runs) -> int:
    return runs.task.clean.shape[0] if clusters is None else int(clusters.unique().numel())


def _result(kind, statistic, value, ci, level, runs, target, base, intervened, effect, members, scope, normalise,
            reference, ablation, seed, units, unit, details, description, knockouts) -> CriterionResult:
    n = runs.task.clean.shape[0]
    per_example = pd.DataFrame({"draw": 0, "example": range(n), "target": target.numpy(), "base": base.numpy(),
                                "intervened": intervened.numpy()})
    return CriterionResult(
        kind=kind, statistic=statistic, value=float(value), ci=(float(ci[0]), float(ci[1])), level=float(level),
        target=float(target.mean()), base=float(base.mean()), intervened=float(intervened.mean()),
        effect_ci=(effect.low, effect.high), n=n, seed=seed, units=units, unit=unit, ablation=ablation,
        description=description, circuit=tuple(members), outside=len(scope) - len(members), normalise=normalise,
        reference=reference, per_example=per_example, details=details, knockouts=knockouts,
        node_evaluations=runs.counters[0], forward_passes=runs.counters[1], cache_hits=runs.counters[2],
        metric=runs.metric_name if isinstance(runs.metric_name, str) else getattr(runs.metric_name, "__name__", "metric"),
    )


def _describe(members, scope, ablation, reference, normalise) -> str:
    kinds = "heads and MLPs" if any(name.startswith("m") for name in scope) else "heads"
    return (f"circuit of {len(members)} ({', '.join(members)}); the other {len(scope) - len(members)} {kinds} "
            f"{ablation}-ablated over the {reference} prompts; normalised by "
            + ("F(M)" if normalise == "model" else "F(M) - F(∅)"))


def faithfulness(engine, circuit, task, metric="logit_diff", *, ablation: str = "mean", reference: str = "corrupt",
                 normalise: str = "model", level: float = 0.95, seed: int = 0) -> CriterionResult:
    """The circuit's metric over the model's: F(C) / F(M) (see the module docstring)."""
    members, scope, runs, base, denominator, effect, clusters, unit = _setup(
        engine, circuit, task, metric, ablation, reference, normalise, level, seed)
    kept = runs.knocked_out(members)
    runs.run([kept])
    interval = ratio_interval(runs[kept] - base, denominator, level=level, clusters=clusters, unit=unit)
    statistic = "faithfulness F(C)/F(M)" if normalise == "model" else "faithfulness (F(C)-F(∅))/(F(M)-F(∅))"
    return _result("faithfulness", statistic, interval.estimate, (interval.low, interval.high), level, runs,
                   runs[frozenset()], base, runs[kept], effect, members, scope, normalise, reference, ablation, seed,
                   interval.units, unit, [], _describe(members, scope, ablation, reference, normalise), len(runs.values))


def _subsets(members, k, subsets, seed) -> list[frozenset]:
    k = whole_number(k, "k", 0, "10")
    rng = random.Random(seed)
    chosen = [frozenset()] + _random_subsets(members, k, rng)
    for given in subsets or ():
        names = [given] if isinstance(given, str) else list(given)
        outside = [name for name in names if name not in members]
        if outside:
            raise InputError(f"subset {names!r} names {outside}, which are not in the circuit {members}; "
                             "each K must be a subset of the circuit")
        chosen.append(frozenset(names))
    return list(dict.fromkeys(chosen))


def completeness(engine, circuit, task, metric="logit_diff", *, k: int = 10, subsets=None, ablation: str = "mean",
                 reference: str = "corrupt", normalise: str = "model", level: float = 0.95,
                 seed: int = 0) -> CriterionResult:
    """The largest |F(C∖K) - F(M∖K)| / D over subsets K of the circuit (see the module docstring)."""
    members, scope, runs, base, denominator, effect, clusters, unit = _setup(
        engine, circuit, task, metric, ablation, reference, normalise, level, seed)
    candidates = _subsets(members, k, subsets, seed)
    sets = {K: (runs.knocked_out(set(members) - K), frozenset(K)) for K in candidates}
    runs.run([s for pair in sets.values() for s in pair])
    each = 1 - (1 - level) / len(candidates)
    rows, worst = [], None
    for K, (circuit_less, model_less) in sets.items():
        gap = ratio_interval(runs[circuit_less] - runs[model_less], denominator, level=each, clusters=clusters, unit=unit)
        low, high = _abs_interval(gap)
        rows.append({"K": _name(K), "F(C∖K)": float(runs[circuit_less].mean()), "F(M∖K)": float(runs[model_less].mean()),
                     "gap": abs(gap.estimate), "low": low, "high": high})
        if worst is None or abs(gap.estimate) > rows[worst]["gap"]:
            worst = len(rows) - 1
    value = max(row["gap"] for row in rows)
    ci = (max(row["low"] for row in rows), max(row["high"] for row in rows))
    K = candidates[worst]
    circuit_less, model_less = sets[K]
    details = sorted(rows, key=lambda row: -row["gap"])
    statistic = "completeness: largest |F(C∖K)-F(M∖K)|/" + ("F(M)" if normalise == "model" else "(F(M)-F(∅))")
    description = (_describe(members, scope, ablation, reference, normalise)
                   + f"; {len(candidates)} subsets K, intervals at {each:.4g} each (simultaneous); largest gap at K = {_name(K)}")
    return _result("completeness", statistic, value, ci, level, runs, runs[model_less], base, runs[circuit_less], effect,
                   members, scope, normalise, reference, ablation, seed, _units(clusters, runs), unit, details, description, len(runs.values))


def minimality(engine, circuit, task, metric="logit_diff", *, k: int = 4, components=None, ablation: str = "mean",
               reference: str = "corrupt", normalise: str = "model", level: float = 0.95,
               seed: int = 0) -> CriterionResult:
    """The smallest, over the circuit's components v, of v's best |F(C∖K) - F(C∖(K∪{v}))| / D
    over subsets K of C∖{v} (see the module docstring).  ``components`` (a subset of the circuit)
    tests only those v, each exactly as in the whole test: "each of these is necessary in the
    circuit" (or, with ``at_most``, "these can be dropped")."""
    members, scope, runs, base, denominator, effect, clusters, unit = _setup(
        engine, circuit, task, metric, ablation, reference, normalise, level, seed)
    tested = _tested(members, components)
    if len(members) < 2 and k:
        k = 0  # no other component to put in K
    plans = {}
    for i, v in enumerate(members):
        if v not in tested:
            continue  # the seed of each v's subsets stays its index in the circuit: the same K's as in the whole test
        others = [m for m in members if m != v]
        candidates = _subsets(others, k, None, seed * 1_000_003 + i)
        plans[v] = [(K, runs.knocked_out(set(members) - K), runs.knocked_out(set(members) - K - {v})) for K in candidates]
    runs.run([s for plan in plans.values() for _, with_v, without_v in plan for s in (with_v, without_v)])
    tests = sum(len(plan) for plan in plans.values())
    each = 1 - (1 - level) / tests
    details, choices = [], {}
    for v, plan in plans.items():
        rows = []
        for K, with_v, without_v in plan:
            gap = ratio_interval(runs[with_v] - runs[without_v], denominator, level=each, clusters=clusters, unit=unit)
            rows.append((abs(gap.estimate), *_abs_interval(gap), K, with_v, without_v))
        best = max(rows, key=lambda row: row[0])
        # v's best gap is the largest over its K's; its interval holds that maximum when each K's holds its own.
        details.append({"component": v, "best K": _name(best[3]), "gap": best[0], "low": max(row[1] for row in rows),
                        "high": max(row[2] for row in rows), "subsets tried": len(plan)})
        choices[v] = best
    weakest = min(details, key=lambda row: (row["gap"], row["low"]))
    value = weakest["gap"]
    ci = (min(row["low"] for row in details), min(row["high"] for row in details))
    *_, with_v, without_v = choices[weakest["component"]]
    statistic = "minimality: smallest best |F(C∖K)-F(C∖(K∪{v}))|/" + ("F(M)" if normalise == "model" else "(F(M)-F(∅))")
    tested_text = "" if len(tested) == len(members) else f"; components tested: {', '.join(tested)}"
    description = (_describe(members, scope, ablation, reference, normalise) + tested_text
                   + f"; {tests} (v, K) pairs, intervals at {each:.4g} each (simultaneous); least necessary: "
                   f"{weakest['component']}")
    return _result("minimality", statistic, value, ci, level, runs, runs[with_v], base, runs[without_v], effect, members,
                   scope, normalise, reference, ablation, seed, _units(clusters, runs), unit, sorted(details, key=lambda row: row["gap"]), description,
                   len(runs.values))


def _tested(members, components) -> list[str]:
    """The components minimality tests: all of the circuit's, or the given subset of them."""
    if components is None:
        return list(members)
    names = [components] if isinstance(components, str) else list(components)
    if not names:
        raise InputError("components=[] tests nothing; name some of the circuit's components, or leave "
                         "components out to test every one")
    outside = [name for name in names if name not in members]
    if outside:
        raise InputError(f"components {outside} are not in the circuit {members}; minimality tests components "
                         "of the circuit: add them to the circuit, or leave them out of components")
    if len(set(names)) < len(names):
        raise InputError(f"components={names!r} names a component more than once")
    return names


# Which way a criterion's value is better: the circuit should beat random circuits in that direction.
BETTER = {"faithfulness": "higher", "completeness": "lower", "minimality": "higher"}
_FUNCTIONS = {"faithfulness": faithfulness, "completeness": completeness, "minimality": minimality}


def control_circuits(engine, kind: str, circuit, task, metric="logit_diff", *, count: int = 20, seed: int = 0,
                     band: int = 1, **options):
    """Measure criterion ``kind`` on ``circuit`` and on ``count`` random circuits like it: each
    component replaced by a distinct one of its kind within +-``band`` layers (drawn with
    ``seed`` by ``controls.random_like``, so the same seed gives the same circuits), and say where
    the circuit stands among them, with the one-sided Monte Carlo p-value of "it beats random
    circuits" (higher faithfulness and minimality, lower completeness are better).  Returns a
    ``controls.ControlResult`` whose ``result`` is the circuit's CriterionResult."""
    import time

    from .controls import ControlResult, random_like
    from .scrubbing import Hypothesis

    if kind not in _FUNCTIONS:
        raise InputError(f"kind={kind!r}: expected one of {', '.join(CRITERIA)}")
    started = time.perf_counter()
    count = whole_number(count, "count", 1, "20")
    members, _ = circuit_components(engine.graph, circuit)
    shape = Hypothesis({(name,): None for name in members}, name="circuit")
    drawn = random_like(shape, engine.graph, count=count, seed=seed, band=band)
    measure = _FUNCTIONS[kind]
    own = measure(engine, members, task, metric, seed=seed, **options)
    done: dict[frozenset, CriterionResult] = {}
    results = []
    for other in drawn:
        names = frozenset(pattern[0] for pattern in other.paths)
        if names not in done:
            done[names] = measure(engine, sorted(names), task, metric, seed=seed, **options)
        results.append(done[names])
    values = tuple(r.value for r in results)
    value, note = own.value, drawn.note
    if math.isnan(value):
        percentile = p_value = math.nan
        note = f"the circuit's {kind} is NaN, so it cannot be compared with the controls" + (f"; {note}" if note else "")
    else:
        lower = BETTER[kind] == "lower"
        beaten = sum(1 for v in values if (v > value if lower else v < value))
        percentile = 100 * beaten / count
        p_value = (1 + count - beaten) / (count + 1)  # NaN controls count against the circuit
    return ControlResult(
        hypothesis=f"circuit of {len(members)}", recovered=value, ci=own.ci, patterns=tuple((m,) for m in members),
        controls=values, control_names=tuple(f"random circuit #{i + 1}/{count}" for i in range(count)),
        control_patterns=tuple(tuple(other.paths) for other in drawn), percentile=percentile, p_value=p_value,
        count=count, distinct=drawn.distinct, band=band, seed=seed, draws=1, n=own.n, metric=own.metric,
        ablation=own.ablation, resampling="", level=own.level, seconds=time.perf_counter() - started,
        scrubs=1 + len(done), note=note, result=own, control_results=tuple(results),
    )
