"""What a claim states: marker arguments and profiles combined into a validated ClaimSpec."""
from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping

from ..errors import ClaimSpecError
from .registry import _MODELS, _TASKS, model_names, task_names


METRICS = ("loss", "logit_diff", "kl", "accuracy")  # causal_hypotheses.metrics.METRICS
ABLATIONS = ("resample", "mean", "zero")  # causal_hypotheses.interventions.scrubbing.ABLATIONS
RESAMPLING = ("independent", "shared")  # causal_hypotheses.interventions.scrubbing.RESAMPLING

THRESHOLDS = ("at_least", "at_most")
# A profile never scales a claim's n below this (nor below the n the claim states, if smaller).
MIN_SCALED_N = 8
MARKER_ARGUMENTS = ("model", "task", "metric", "at_least", "at_most", "n", "seed", "draws", "ablation", "resampling",
                    "level", "beats_random", "heavy")
# A heavy claim runs under this profile only (CI runs it when its time allows); elsewhere it is skipped.
HEAVY_PROFILE = "thorough"




@dataclass(frozen=True)
class Profile:
    """Named defaults: ``n`` and ``draws`` for claims that give none, ``n_scale`` multiplies
    a claim's own ``n``."""

    name: str
    n: int
    n_scale: float
    draws: int


PROFILES: Mapping[str, Profile] = MappingProxyType({
    "dev": Profile("dev", n=16, n_scale=0.25, draws=1),
    "ci": Profile("ci", n=64, n_scale=1.0, draws=1),
    "thorough": Profile("thorough", n=256, n_scale=4.0, draws=4),
})


@dataclass(frozen=True)
class ClaimSpec:
    """A claim's settings once markers, profile and command-line overrides are combined."""

    model: str
    task: str
    metric: str
    at_least: float | None
    at_most: float | None
    n: int
    seed: int
    draws: int
    ablation: str
    level: float
    resampling: str = "independent"
    beats_random: float | None = None  # the claim also needs p <= 1 - beats_random against random controls
    heavy: bool = False  # runs under the thorough profile only (HEAVY_PROFILE)
    notes: tuple[str, ...] = ()  # what the settings changed that the claim's author should know

    def thresholds(self) -> str:
        parts = []
        if self.at_least is not None:
            parts.append(f">= {self.at_least:g}")
        if self.at_most is not None:
            parts.append(f"<= {self.at_most:g}")
        return " and ".join(parts)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def make_spec(
    markers: list[tuple[tuple, Mapping[str, Any]]],
    *,
    profile: Profile,
    model: str | None = None,
    n: int | None = None,
    seed: int | None = None,
    where: str = "claim",
) -> ClaimSpec:
    """Combine ``claim`` markers (closest first: (args, kwargs) each) with the profile and overrides.

    Raises ClaimSpecError naming every bad argument and what is allowed.
    """
    values: dict[str, Any] = {}
    problems: list[str] = []
    notes: list[str] = []
    for args, kwargs in reversed(markers):  # the closest marker wins
        if args:
            problems.append(f"positional arguments {args!r}: the claim marker takes keyword arguments only")
        if any(key in kwargs for key in THRESHOLDS):  # thresholds are one setting: a nearer one replaces both
            for key in THRESHOLDS:
                values.pop(key, None)
        values.update(kwargs)
    unknown = sorted(set(values) - set(MARKER_ARGUMENTS))
    if unknown:
        problems.append(f"unknown argument{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; allowed: {', '.join(MARKER_ARGUMENTS)}")

    chosen_model = model if model is not None else values.get("model")
    if chosen_model is None:
        problems.append(f"model is missing; name a registered model ({', '.join(model_names())}) or pass --claims-model")
    elif chosen_model not in _MODELS:
        source = "--claims-model" if model is not None else "model"
        problems.append(f"{source}={chosen_model!r} is not a registered model; registered: {', '.join(model_names())} "
                        "(add one with causal_hypotheses.claims.register_model in a conftest.py)")
    task = values.get("task")
    if task is None:
        problems.append(f"task is missing; name a registered task ({', '.join(task_names())})")
    elif task not in _TASKS:
        problems.append(f"task={task!r} is not a registered task; registered: {', '.join(task_names())} "
                        "(add one with causal_hypotheses.claims.register_task)")
    metric = values.get("metric")
    if metric not in METRICS:
        problems.append(f"metric={metric!r}: expected one of {', '.join(METRICS)}" if metric is not None
                        else f"metric is missing; choose one of {', '.join(METRICS)}")
    at_least, at_most = values.get("at_least"), values.get("at_most")
    for label, value in (("at_least", at_least), ("at_most", at_most)):
        if value is not None and not _is_real(value):
            problems.append(f"{label}={value!r}: expected a finite number (a fraction recovered, e.g. 0.8)")
    if at_least is None and at_most is None:
        problems.append("no threshold: give at_least=... (the paths recover at least this fraction) "
                        "and/or at_most=... (a negative control)")
    elif _is_real(at_least) and _is_real(at_most) and at_least > at_most:
        problems.append(f"at_least={at_least} is above at_most={at_most}: no value can satisfy both")
    ablation = values.get("ablation", "resample")
    if ablation not in ABLATIONS:
        problems.append(f"ablation={ablation!r}: expected one of {', '.join(ABLATIONS)}")
    beats_random = values.get("beats_random")
    if beats_random is not None and (not _is_real(beats_random) or not 0 < beats_random < 1):
        problems.append(f"beats_random={beats_random!r}: expected a level strictly between 0 and 1, e.g. 0.95 (the "
                        "hypothesis must beat random hypotheses of its shape: permutation p-value <= 1 - level)")
    resampling = values.get("resampling", "independent")
    if resampling not in RESAMPLING:
        problems.append(f"resampling={resampling!r}: expected 'independent' (Chan et al.: a sample per unimportant input; "
                        "the default) or 'shared' (one random example for every unimportant path; cheaper, biased)")
    level = values.get("level", 0.95)
    if not _is_real(level) or not 0 < level < 1:
        problems.append(f"level={level!r}: expected a confidence level strictly between 0 and 1, e.g. 0.95")
    for label, value, low in (("n", values.get("n"), 1), ("seed", values.get("seed"), 0), ("draws", values.get("draws"), 1)):
        if value is not None and (not _is_int(value) or value < low):
            problems.append(f"{label}={value!r}: expected an integer >= {low}")
    heavy = values.get("heavy", False)
    if not isinstance(heavy, bool):
        problems.append(f"heavy={heavy!r}: expected True (the claim runs under --claims-profile {HEAVY_PROFILE} only) or False")
    if problems:
        raise ClaimSpecError(f"{where}: bad claim marker:\n  " + "\n  ".join(problems))

    if n is None:
        n = values.get("n")
        if n is None:
            n = profile.n
        else:
            scaled = max(1, round(n * profile.n_scale))
            floor = min(MIN_SCALED_N, n)
            if scaled < floor:
                notes.append(f"profile {profile.name!r} would scale n={n} to {scaled}; using {floor}, the floor for "
                             "scaled claims (give --claims-n to choose n yourself)")
                scaled = floor
            n = scaled
    if n == 1 and ablation == "resample":
        source = "--claims-n=1" if values.get("n") != 1 else "n=1"
        raise ClaimSpecError(f"{where}: bad claim marker:\n  {source} with resample ablation: there is no other example "
                             "to resample from, so nothing would be ablated; use n >= 2 (16 or more for a useful "
                             "interval), or ablation='mean'")
    return ClaimSpec(
        model=chosen_model, task=task, metric=metric,
        at_least=None if at_least is None else float(at_least), at_most=None if at_most is None else float(at_most),
        n=n, seed=seed if seed is not None else values.get("seed", 0), draws=values.get("draws", profile.draws),
        ablation=ablation, resampling=resampling, level=float(level),
        beats_random=None if beats_random is None else float(beats_random), heavy=heavy, notes=tuple(notes),
    )
