"""Causal scrubbing (Chan et al. 2022): test a hypothesis by resampling what it says is irrelevant.

A :class:`Hypothesis` lists the paths that matter, each as a *pattern* of component names
read from the output toward the input, with the feature of the example that the path
carries (``None``: everything about the example).  A tree path matches a pattern when its
first names lie inside the pattern's names (``a1.h1.k`` lies inside ``a1.h1``); the whole
subtree below the pattern's last name belongs to it.  When scrubbing example i:

* a path matching a pattern reads an example that agrees with i on that pattern's
  feature (drawn at random among those, i itself included; with ``None``, i itself);
  when several patterns match, the longest decides;
* every other path reads a random other example (``ablation="resample"``), the mean
  over the examples (``"mean"``), or zero activations (``"zero"``).

The fraction recovered is (scrubbed - ablated) / (clean - ablated) on the chosen metric,
where "ablated" scrubs with the empty hypothesis.  Every draw is seeded.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import pandas as pd
import torch

from ..engine.core import MeanInput, ZeroInput
from ..errors import InputError
from ..graph import within
from ..metrics import bootstrap_recovery, fraction_recovered, get_metric

ABLATIONS = ("resample", "mean", "zero")


@dataclass(frozen=True)
class Hypothesis:
    """Paths that matter (patterns from the output toward the input) -> feature they carry."""

    paths: Mapping[tuple, str | None]
    name: str = "hypothesis"

    def __post_init__(self) -> None:
        normalised = {}
        for pattern, feature in dict(self.paths).items():
            pattern = (pattern,) if isinstance(pattern, str) else tuple(pattern)
            if not pattern:
                raise InputError(f"hypothesis {self.name!r} has an empty path; name at least one component, e.g. ('a1.h1',)")
            normalised[pattern] = feature
        object.__setattr__(self, "paths", normalised)

    def components(self) -> set[str]:
        return {name for pattern in self.paths for name in pattern}


@dataclass(frozen=True)
class ScrubResult:
    hypothesis: str
    task: str
    metric: str
    ablation: str
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
    node_evaluations: int = 0
    forward_passes: int = 0
    cache_hits: int = 0


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
    n_boot: int = 2000,
    level: float = 0.95,
) -> ScrubResult:
    """Scrub ``task`` (its clean prompts) under ``hypothesis``; see the module docstring."""
    if ablation not in ABLATIONS:
        raise InputError(f"ablation={ablation!r}: expected one of {ABLATIONS}")
    if draws < 1:
        raise InputError(f"draws={draws}: expected at least 1 resampling draw")
    engine.graph.check(sorted(hypothesis.components()))
    for pattern, feature in hypothesis.paths.items():
        if feature is not None and feature not in task.features:
            raise InputError(
                f"hypothesis {hypothesis.name!r} asks path {pattern} to agree on feature {feature!r}, which task "
                f"{task.name!r} lacks; its features are {sorted(task.features)} (or None for the example itself)"
            )
    total = len(task)
    n = total if n is None else n
    if not 1 <= n <= total:
        raise InputError(f"n={n}: task {task.name!r} has {total} examples; choose 1..{total}")
    generator = torch.Generator().manual_seed(seed)
    if n < total:
        task = task.subset(torch.randperm(total, generator=generator)[:n].sort().values)
    measure = get_metric(metric)
    tokens = task.clean
    patterns = list(hypothesis.paths)
    features = sorted({f for f in hypothesis.paths.values() if f is not None})

    def measured(run, clean_logits) -> torch.Tensor:
        # Metrics compare with the task's tensors, which stay on the CPU whatever the device.
        return measure(run.logits.float().cpu(), task, clean_logits).double()

    clean_run = engine.run([tokens], lambda path: 0)
    clean_logits = clean_run.logits.float().cpu()
    clean_values = measured(clean_run, clean_logits)
    rows, counters = [], [0, 0, 0]
    ablated_all, scrubbed_all = [], []
    for draw in range(draws):
        if ablation == "resample":
            unimportant = tokens[_draw_others(n, generator)]
        else:
            unimportant = MeanInput(tokens) if ablation == "mean" else ZeroInput()
        agreeing = {f: tokens[_draw_agreeing(task.features[f], generator)] for f in features}
        inputs = [tokens, unimportant] + [agreeing[f] for f in features]
        input_of = [0 if f is None else 2 + features.index(f) for f in hypothesis.paths.values()]
        which, branch, key = hypothesis_functions(patterns, input_of, fallback=1)
        scrubbed_run = engine.run(inputs, which, branch, key=key)
        ablated_run = engine.run(inputs, lambda path: 1)
        scrubbed = measured(scrubbed_run, clean_logits)
        ablated = measured(ablated_run, clean_logits)
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
    low, high = bootstrap_recovery(clean_t, ablated_t, scrubbed_t, n_boot=n_boot, level=level, seed=seed)
    return ScrubResult(
        hypothesis=hypothesis.name, task=task.name, metric=metric if isinstance(metric, str) else getattr(metric, "__name__", "metric"),
        ablation=ablation, n=n, seed=seed, draws=draws, clean=means[0], ablated=means[1], scrubbed=means[2],
        fraction_recovered=fraction_recovered(means[2], means[1], means[0]), ci=(low, high), level=level,
        per_example=pd.concat(rows, ignore_index=True), node_evaluations=counters[0], forward_passes=counters[1],
        cache_hits=counters[2],
    )
