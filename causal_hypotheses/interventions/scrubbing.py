"""Causal scrubbing (Chan et al. 2022): test a hypothesis by resampling what it says is irrelevant.

A :class:`Hypothesis` lists the paths that matter, each as a *pattern* of component names
read from the output toward the input, with the feature of the example that the path
carries (``None``: everything about the example).  A tree path matches a pattern when its
first names lie inside the pattern's names (``a1.h1.k`` lies inside ``a1.h1``); the whole
subtree below the pattern's last name belongs to it.

Patterns that share a prefix form a tree (Chan et al.'s correspondence), and a pattern may
end where a longer one continues, so features nest: ``{("a9.h9",): "io", ("a9.h9.q",
"a8.h6"): "s"}`` says head 9.9's output carries the indirect object's identity and, relative
to the example head 9.9 reads, head 8.6 enters its query with the subject's.

``resampling="independent"`` (the default) is Chan et al.'s algorithm, see
:mod:`causal_hypotheses.interventions.treeify`: scrubbing a node on reference x, every input
the hypothesis names reads a sample agreeing with x on its feature and is scrubbed
recursively on that sample; every input it does not name reads its own independent random
sample of the dataset (``ablation="resample"``), the dataset mean of what that input carries
(``"mean"``) or zero (``"zero"``).  The baseline ("ablated") follows the same rule with
nothing named: every writer to the output reads its own sample.

``resampling="shared"`` is the cheaper approximation this project used before: one random
other example per example feeds *every* path the hypothesis leaves out, and every named path
agrees with the original example (when several patterns match, the longest decides).  Its
bias: the unimportant paths all compute on one consistent wrong example, so the ablated
model makes confident wrong predictions, which understates true hypotheses and narrows the
gap to false ones.

The fraction recovered is (scrubbed - ablated) / (clean - ablated) on the chosen metric.
Every draw is seeded: the same seed gives the same numbers.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd
import torch

from ..engine.core import MeanInput, ZeroInput
from ..errors import InputError
from ..graph import ANY_MODEL, within
from ..metrics import finite, fraction_recovered, get_metric, metric_reads, whole_number
from ..stats import mean_interval, ratio_interval
from .measurement import FractionOfChange
from .treeify import Sampler, correspondence, rotations, scrub_functions

ABLATIONS = ("resample", "mean", "zero")
RESAMPLING = ("independent", "shared")


@dataclass(frozen=True)
class Hypothesis:
    """Paths that matter (patterns from the output toward the input) -> feature they carry."""

    paths: Mapping[tuple, str | None]
    name: str = "hypothesis"

    def __post_init__(self) -> None:
        if not isinstance(self.paths, Mapping):
            raise InputError(
                f"hypothesis {self.name!r}: paths must be a mapping from pattern to feature, got a "
                f"{type(self.paths).__name__}; for patterns that read the example itself write "
                "Hypothesis({pattern: None for pattern in patterns})"
            )
        if not isinstance(self.name, str):
            raise InputError(f"hypothesis name {self.name!r}: expected a string")
        normalised = {}
        for pattern, feature in self.paths.items():
            if not isinstance(pattern, (str, tuple, list)):
                raise InputError(
                    f"hypothesis {self.name!r}: pattern {pattern!r} is a {type(pattern).__name__}; write a pattern "
                    "as a tuple of component names from the output toward the input, e.g. ('a1.h0.k', 'a0.h3')"
                )
            pattern = (pattern,) if isinstance(pattern, str) else tuple(pattern)
            if not pattern:
                raise InputError(f"hypothesis {self.name!r} has an empty path; name at least one component, e.g. ('a1.h1',)")
            if feature is not None and not isinstance(feature, str):
                raise InputError(
                    f"hypothesis {self.name!r}: pattern {pattern} carries feature {feature!r}; expected the name of a "
                    "task feature (a string) or None for the example itself"
                )
            ANY_MODEL.check_pattern(pattern)  # spelling and order; layer ranges once the model is known
            if pattern in normalised and normalised[pattern] != feature:
                raise InputError(f"hypothesis {self.name!r} gives pattern {pattern} two features")
            normalised[pattern] = feature
        object.__setattr__(self, "paths", normalised)

    def components(self) -> set[str]:
        return {name for pattern in self.paths for name in pattern}

    def visualise(self, *, depth="auto", merge="auto", ablation: str = "resample"):
        """The hypothesis drawn as a ``graphviz.Digraph`` (render it with ``causal_hypotheses.render``
        or show it in a notebook): its patterns as the tree they are, from the output toward the
        input, laid out by layer.  ``depth=k`` collapses everything more than k steps from the
        output into one summary node per cut subtree (how many paths and nodes it hides);
        ``merge=True`` draws identical subtrees once.  By default a hypothesis of at most 150 tree
        nodes is drawn whole, a larger one merged and, if still larger, cut at the deepest depth
        that keeps 150 nodes (causal_hypotheses/drawing.py); ``depth=None, merge=False``: the whole
        tree.  ``ablation``: what the note on an empty hypothesis says the inputs read."""
        from ..drawing import hypothesis_digraph

        return hypothesis_digraph(list(self.paths.items()), self.name, ablation, depth=depth, merge=merge)


@dataclass(frozen=True)
class ScrubResult(FractionOfChange):
    hypothesis: str
    task: str
    metric: str
    ablation: str
    resampling: str
    n: int
    seed: int
    draws: int
    clean: float
    ablated: float
    scrubbed: float
    fraction_recovered: float
    ci: tuple[float, float]
    level: float
    per_example: pd.DataFrame = field(repr=False)
    effect_ci: tuple[float, float] = (float("nan"), float("nan"))  # interval of clean - ablated: the effect to explain
    units: int = 0  # independent units the intervals rest on (examples, or clusters such as templates)
    unit: str = "example"
    node_evaluations: int = 0
    forward_passes: int = 0
    cache_hits: int = 0
    paths: tuple = field(default=(), repr=False)  # the hypothesis's (pattern, feature) pairs, for drawing it

    # The measurement interface a claim's record reads (causal_hypotheses/claims/record.py).
    @property
    def kind(self) -> str:
        return "scrub"

    @property
    def statistic(self) -> str:
        return "fraction recovered"

    @property
    def description(self) -> str:
        return self.hypothesis


def _status(path, pattern) -> tuple[str, int]:
    """("match" | "open" | "apart", depth) of a tree path against a pattern."""
    for i, element in enumerate(path):
        if i >= len(pattern):
            return "match", 0
        if within(pattern[i], element):
            continue
        if within(element, pattern[i]):  # a coarser name: the engine must split it to see
            return "open", len(path)
        return "apart", 0
    return ("match", 0) if len(path) >= len(pattern) else ("open", len(path))


def hypothesis_functions(patterns: list[tuple], inputs: list[int], fallback: int):
    """which/branch/key: paths matching pattern k read ``inputs[k]``, all others ``fallback``."""
    longest_first = sorted(range(len(patterns)), key=lambda k: -len(patterns[k]))

    def key(path):
        return tuple(_status(path, pattern) for pattern in patterns)

    def which(path):
        statuses = key(path)
        for k in longest_first:
            if statuses[k][0] == "match":
                return inputs[k]
        return fallback

    def branch(path):
        return any(status == "open" for status, _ in key(path))

    return which, branch, key


def _draw_others(n: int, generator: torch.Generator) -> torch.Tensor:
    """A random other example for each example (itself only when n == 1)."""
    if n == 1:
        return torch.zeros(1, dtype=torch.long)
    offsets = torch.randint(1, n, (n,), generator=generator)
    return (torch.arange(n) + offsets) % n


def _draw_agreeing(values: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """For each example, a random example with the same feature value (possibly itself)."""
    chosen = torch.empty(len(values), dtype=torch.long)
    for value in values.unique():
        members = (values == value).nonzero().flatten()
        picks = torch.randint(0, len(members), (len(members),), generator=generator)
        chosen[members] = members[picks]
    return chosen


def scrub(
    engine,
    hypothesis: Hypothesis,
    task,
    metric="loss",
    n: int | None = None,
    seed: int = 0,
    *,
    draws: int = 1,
    ablation: str = "resample",
    resampling: str = "independent",
    level: float = 0.95,
) -> ScrubResult:
    """Scrub ``task`` (its clean prompts) under ``hypothesis``; see the module docstring."""
    if isinstance(hypothesis, Mapping):
        hypothesis = Hypothesis(hypothesis)
    if not isinstance(hypothesis, Hypothesis):
        raise InputError(f"hypothesis is a {type(hypothesis).__name__}; pass a Hypothesis({{pattern: feature}}) or a dict")
    if ablation not in ABLATIONS:
        raise InputError(f"ablation={ablation!r}: expected one of {ABLATIONS}")
    if resampling not in RESAMPLING:
        raise InputError(f"resampling={resampling!r}: expected 'independent' (Chan et al.: a sample per unimportant "
                         "input, the default) or 'shared' (one random example for every unimportant path; cheaper, biased)")
    draws = whole_number(draws, "draws", 1, "2")
    for pattern in hypothesis.paths:
        engine.graph.check_pattern(pattern)
    for pattern, feature in hypothesis.paths.items():
        if feature is not None and feature not in task.features:
            raise InputError(
                f"hypothesis {hypothesis.name!r} asks path {pattern} to agree on feature {feature!r}, which task "
                f"{task.name!r} lacks; its features are {sorted(task.features)} (or None for the example itself)"
            )
    total = len(task)
    n = total if n is None else whole_number(n, "n", 1, "64")
    if not 1 <= n <= total:
        raise InputError(f"n={n}: task {task.name!r} has {total} examples; choose 1..{total}")
    if n == 1 and ablation == "resample":
        raise InputError(
            "n=1 with resample ablation: there is no other example to resample from, so nothing would be "
            "ablated; use at least 2 examples (16 or more for a useful interval), or ablation='mean'/'zero'"
        )
    generator = torch.Generator().manual_seed(seed)
    if n < total:
        task = task.subset(torch.randperm(total, generator=generator)[:n].sort().values)
    measure = get_metric(metric)
    read, measured_task = metric_reads(metric, task, engine.adapter.vocab_size)  # a built-in metric's: compute only those
    tokens = task.clean

    def measured(run, clean_logits, label: str) -> torch.Tensor:
        # Metrics compare with the task's tensors, which stay on the CPU whatever the device.
        return finite(measure(run.logits.float().cpu(), measured_task, clean_logits), metric, f"the {label} run")

    clean_run = engine.run([tokens], lambda path: 0, **read)
    clean_logits = clean_run.logits.float().cpu()
    clean_values = measured(clean_run, clean_logits, "clean")
    rows, counters = [], [0, 0, 0]
    ablated_all, scrubbed_all = [], []
    for draw, inputs, functions in draw_setups(hypothesis, task, ablation, resampling, seed, draws, generator):
        which, branch, key = functions(hypothesis.paths)
        scrubbed_run = engine.run(inputs, which, branch, key=key, **read)
        which, branch, key = functions({})  # the baseline: nothing named
        ablated_run = engine.run(inputs, which, branch, key=key, **read)
        scrubbed = measured(scrubbed_run, clean_logits, "scrubbed")
        ablated = measured(ablated_run, clean_logits, "ablated")
        for run in (scrubbed_run, ablated_run):
            counters[0] += run.stats.node_evaluations
            counters[1] += run.stats.forward_passes
            counters[2] += run.stats.cache_hits
        ablated_all.append(ablated)
        scrubbed_all.append(scrubbed)
        rows.append(pd.DataFrame({"draw": draw, "example": range(n), "clean": clean_values.numpy(),
                                  "ablated": ablated.numpy(), "scrubbed": scrubbed.numpy()}))
    ablated_t, scrubbed_t = torch.stack(ablated_all), torch.stack(scrubbed_all)  # (D, N)
    clean_t = clean_values.expand_as(ablated_t)
    means = [float(t.mean()) for t in (clean_t, ablated_t, scrubbed_t)]
    clusters = task.features[task.cluster] if task.cluster is not None else None
    unit = task.cluster or "example"
    recovered = ratio_interval(scrubbed_t - ablated_t, clean_t - ablated_t, level=level, clusters=clusters, unit=unit)
    effect = mean_interval(clean_t - ablated_t, level=level, clusters=clusters, unit=unit)
    return ScrubResult(
        hypothesis=hypothesis.name, task=task.name, metric=metric if isinstance(metric, str) else getattr(metric, "__name__", "metric"),
        ablation=ablation, resampling=resampling, n=n, seed=seed, draws=draws, clean=means[0], ablated=means[1],
        scrubbed=means[2], fraction_recovered=fraction_recovered(means[2], means[1], means[0]),
        ci=(recovered.low, recovered.high), level=level, effect_ci=(effect.low, effect.high), units=recovered.units,
        unit=unit, per_example=pd.concat(rows, ignore_index=True), node_evaluations=counters[0],
        forward_passes=counters[1], cache_hits=counters[2], paths=tuple(hypothesis.paths.items()),
    )


def _fixed(ablation: str, tokens: torch.Tensor):
    return MeanInput(tokens) if ablation == "mean" else ZeroInput()


def draw_setups(hypothesis: Hypothesis, task, ablation: str, resampling: str, seed: int, draws: int,
                generator: torch.Generator):
    """Per draw: ``(draw, inputs, functions)``, ``functions(paths) -> (which, branch, key)`` for one
    hypothesis's paths (``{}``: the baseline) on those inputs.  Independent resampling draws per
    place in the tree (treeify.py); shared resampling draws one other example and one agreeing
    example per feature from ``generator``, in a fixed order, so hints.py can rebuild a scrub's
    draws exactly."""
    tokens = task.clean
    n = tokens.shape[0]
    features = sorted({f for f in hypothesis.paths.values() if f is not None})
    for draw in range(draws):
        if resampling == "independent":
            inputs = rotations(tokens)
            fixed = None
            if ablation != "resample":
                inputs.append(_fixed(ablation, tokens))
                fixed = n

            def functions(paths, draw=draw, fixed=fixed):
                return (*scrub_functions(correspondence(paths), Sampler(n, task.features, seed, draw), fixed), None)
        else:
            unimportant = tokens[_draw_others(n, generator)] if ablation == "resample" else _fixed(ablation, tokens)
            agreeing = [tokens[_draw_agreeing(task.features[f], generator)] for f in features]
            inputs = [tokens, unimportant, *agreeing]

            def functions(paths):
                input_of = [0 if f is None else 2 + features.index(f) for f in paths.values()]
                return hypothesis_functions(list(paths), input_of, fallback=1)
        yield draw, inputs, functions
