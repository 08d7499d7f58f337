"""Patching as a measurement: the fraction of a task's clean-to-corrupt change that patching
some components (or paths) moves, with its interval.

For each example, three runs give the metric: the *base* run (nothing patched), the *target*
run (every path reads the other prompt) and the *patched* run.  The statistic is

    fraction = E[patched - base] / E[target - base]

over the task's examples, with Fieller's interval (``causal_hypotheses.stats``; clusters as the
unit where the task declares them).  Two directions, by convention:

* ``direction="noising"`` (the default): base = clean prompts, the patch reads the corrupt ones;
  the fraction is how much of the corruption's effect the patched components carry;
* ``direction="denoising"``: base = corrupt prompts, the patch reads the clean ones; the fraction
  is how much of the clean behaviour patching them restores.

The result has the shape of a scrub's (clean = target, ablated = base, scrubbed = patched), so
the claims' verdicts and reports read it the same way; its ``kind`` says which it is.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
import torch

from ..errors import InputError
from ..metrics import finite, fraction_recovered, get_metric, metric_reads
from ..stats import mean_interval, ratio_interval
from .measurement import FractionOfChange
from .patching import activation_patch, path_patch

DIRECTIONS = ("noising", "denoising")


@dataclass(frozen=True)
class EffectResult(FractionOfChange):
    kind: str  # "activation_patch" or "path_patch"
    direction: str
    description: str  # what was patched, in words
    metric: str
    n: int
    clean: float  # the target run's mean metric
    ablated: float  # the base run's
    scrubbed: float  # the patched run's
    fraction_recovered: float
    ci: tuple[float, float]
    level: float
    effect_ci: tuple[float, float]  # interval of target - base: the change there is to move
    units: int
    unit: str
    per_example: pd.DataFrame = field(repr=False)
    draws: int = 1
    seed: int = 0
    node_evaluations: int = 0
    forward_passes: int = 0
    cache_hits: int = 0

    # The measurement interface a claim's record reads (causal_hypotheses/claims/record.py); no
    # ablation or resampling: the claim's record takes its spec's.
    @property
    def statistic(self) -> str:
        return "fraction moved"


def patch_effect(engine, task, metric, *, kind: str, direction: str = "noising", level: float = 0.95,
                 nodes=None, senders=None, receivers=None, positions=None) -> EffectResult:
    """Measure activation patching of ``nodes`` (``kind="activation_patch"``) or path patching
    from ``senders`` into ``receivers`` (``kind="path_patch"``) on ``task``; see the module docstring."""
    if direction not in DIRECTIONS:
        raise InputError(f"direction={direction!r}: expected 'noising' (patch the corrupt run into the clean one: "
                         "the fraction of the corruption's effect carried) or 'denoising' (patch clean into corrupt: "
                         "the fraction of the clean behaviour restored)")
    base, source = (task.clean, task.corrupt) if direction == "noising" else (task.corrupt, task.clean)
    if torch.equal(task.clean, task.corrupt):
        raise InputError(f"task {task.name!r} has identical clean and corrupt prompts: patching one into the other "
                         "cannot change anything; use a task with a corruption")
    measure = get_metric(metric)
    read, measured_task = metric_reads(metric, task, engine.adapter.vocab_size)  # a built-in metric's: compute only those
    runs = {}
    clean_run = engine.run([task.clean], lambda path: 0, **read)
    clean_logits = clean_run.logits.float().cpu()
    base_run = clean_run if direction == "noising" else engine.run([base], lambda path: 0, **read)
    target_run = engine.run([source], lambda path: 0, **read)
    if kind == "activation_patch":
        patched_logits = activation_patch(engine, base, source, nodes, positions, **read)
        description = f"{_names(nodes)} patched{_at(positions)}"
    elif kind == "path_patch":
        patched_logits = path_patch(engine, base, source, senders, receivers, positions, **read)
        description = f"paths {_names(senders)} -> {_names(receivers)} patched{_at(positions)}"
    else:  # pragma: no cover - the claims only ask for these two
        raise InputError(f"kind={kind!r}: expected 'activation_patch' or 'path_patch'")
    for name, logits in (("base", base_run.logits), ("target", target_run.logits), ("patched", patched_logits)):
        runs[name] = finite(measure(logits.float().cpu(), measured_task, clean_logits), metric, f"the {name} run")
    clusters = task.features[task.cluster] if task.cluster is not None else None
    unit = task.cluster or "example"
    moved = ratio_interval(runs["patched"] - runs["base"], runs["target"] - runs["base"], level=level, clusters=clusters, unit=unit)
    effect = mean_interval(runs["target"] - runs["base"], level=level, clusters=clusters, unit=unit)
    means = {name: float(values.mean()) for name, values in runs.items()}
    per_example = pd.DataFrame({"draw": 0, "example": range(len(task)), "clean": runs["target"].numpy(),
                                "ablated": runs["base"].numpy(), "scrubbed": runs["patched"].numpy()})
    stats = [run.stats for run in {id(r): r for r in (clean_run, base_run, target_run)}.values()]
    return EffectResult(
        kind=kind, direction=direction, description=description,
        metric=metric if isinstance(metric, str) else getattr(metric, "__name__", "metric"), n=len(task),
        clean=means["target"], ablated=means["base"], scrubbed=means["patched"],
        fraction_recovered=fraction_recovered(means["patched"], means["base"], means["target"]),
        ci=(moved.low, moved.high), level=level, effect_ci=(effect.low, effect.high), units=moved.units, unit=unit,
        per_example=per_example, node_evaluations=sum(s.node_evaluations for s in stats),
        forward_passes=sum(s.forward_passes for s in stats), cache_hits=sum(s.cache_hits for s in stats),
    )


def _names(names) -> str:
    if names is None:
        return "None"
    return repr(names) if isinstance(names, str) else ", ".join(map(str, names))


def _at(positions) -> str:
    if positions is None:
        return ""
    if hasattr(positions, "shape") and len(positions.shape) == 2:  # a (B, T) mask: its size, not its entries
        return f" at the {int(positions.sum())} positions of a {tuple(positions.shape)} mask"
    return f" at positions {positions!r}"
