"""The statistics a verdict rests on: intervals for a fraction recovered and for an effect.

The estimand of a scrub (or a patch) is a ratio of means over the task's distribution,

    R = E[scrubbed - ablated] / E[clean - ablated]

estimated by the ratio of sample means.  Examples are the resampling unit: each example's
resampling draws are averaged first (the draws are nested in the example, and the estimate
averages over them), and where a task declares clusters (IOI prompts share templates),
clusters are the unit: their totals are independent, the examples inside one are not.

The interval is Fieller's for a ratio of two means (paired: numerator and denominator come
from the same units): the set of R0 for which the studentised mean of
``u - R0 * v`` does not reject 0.  It accounts for the noise in the denominator, is not
tied to a resampling scheme, and is unbounded exactly when the denominator (the effect to
explain) is not distinguishable from 0.  ``tests/test_stats.py`` measures its coverage by
simulation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .errors import InputError


def t_quantile(p: float, df: float) -> float:
    """Student's t quantile by the Cornish-Fisher expansion around the normal quantile
    (error below 1e-3 for df >= 5; the normal quantile when df is infinite)."""
    z = float(torch.special.ndtri(torch.tensor(p, dtype=torch.float64)))
    if math.isinf(df):
        return z
    g1 = (z ** 3 + z) / 4
    g2 = (5 * z ** 5 + 16 * z ** 3 + 3 * z) / 96
    g3 = (3 * z ** 7 + 19 * z ** 5 + 17 * z ** 3 - 15 * z) / 384
    g4 = (79 * z ** 9 + 776 * z ** 7 + 1482 * z ** 5 - 1920 * z ** 3 - 945 * z) / 92160
    return z + g1 / df + g2 / df ** 2 + g3 / df ** 3 + g4 / df ** 4


def units(values: torch.Tensor, clusters: torch.Tensor | None = None) -> torch.Tensor:
    """Per-unit values: draws (D, N) averaged per example, then summed per cluster when given."""
    values = torch.as_tensor(values, dtype=torch.float64)
    per_example = values.mean(0) if values.dim() == 2 else values
    if clusters is None:
        return per_example
    clusters = torch.as_tensor(clusters)
    _, index = torch.unique(clusters, return_inverse=True)
    return torch.zeros(int(index.max()) + 1, dtype=torch.float64).index_add_(0, index, per_example)


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float
    level: float
    units: int  # how many independent units the interval rests on
    unit: str  # "example" or the cluster's name

    @property
    def bounded(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high)


def mean_interval(values, *, level: float = 0.95, clusters=None, unit: str = "example") -> Interval:
    """Student-t interval of a mean (per unit; with clusters, of the cluster totals' ratio to
    their sizes, i.e. the mean over examples)."""
    u = units(values, clusters)
    sizes = units(torch.ones_like(torch.as_tensor(values, dtype=torch.float64)), clusters)
    k = u.numel()
    estimate = float(u.sum() / sizes.sum())
    if k < 2:
        return Interval(estimate, -math.inf, math.inf, level, k, unit)
    # The mean of totals over the mean of sizes: a ratio, so Fieller with a fixed denominator
    # noise; for equal sizes this is the ordinary t-interval.
    return ratio_from_units(u, sizes, level=level, unit=unit, estimate=estimate)


def ratio_interval(numerator, denominator, *, level: float = 0.95, clusters=None, unit: str = "example") -> Interval:
    """Fieller interval of E[numerator] / E[denominator] from paired per-example values
    ((N,) or (D, N) with draws)."""
    return ratio_from_units(units(numerator, clusters), units(denominator, clusters), level=level, unit=unit)


def ratio_from_units(u: torch.Tensor, v: torch.Tensor, *, level: float, unit: str, estimate: float | None = None) -> Interval:
    if not 0 < level < 1:
        raise InputError(f"level={level!r}: expected a confidence level between 0 and 1, e.g. 0.95")
    k = u.numel()
    mean_u, mean_v = float(u.mean()), float(v.mean())
    if estimate is None:
        estimate = mean_u / mean_v if mean_v != 0 else math.nan
    if k < 2:
        return Interval(estimate, -math.inf, math.inf, level, k, unit)
    t = t_quantile((1 + level) / 2, k - 1)
    q = t * t / k
    s_uu, s_vv = float(u.var()), float(v.var())
    s_uv = float(((u - mean_u) * (v - mean_v)).sum() / (k - 1))
    a = mean_v ** 2 - q * s_vv
    b = mean_u * mean_v - q * s_uv
    c = mean_u ** 2 - q * s_uu
    if a <= 0 or (a == 0 and b == 0):  # the denominator is not distinguishable from 0
        return Interval(estimate, -math.inf, math.inf, level, k, unit)
    root = math.sqrt(max(b * b - a * c, 0.0))
    return Interval(estimate, (b - root) / a, (b + root) / a, level, k, unit)


def proportion_interval(hits, *, level: float = 0.95, unit: str = "pair") -> Interval:
    """Wilson score interval of a proportion from 0/1 outcomes (independent units): unlike the
    t-interval it does not collapse to a point when every outcome is the same."""
    if not 0 < level < 1:
        raise InputError(f"level={level!r}: expected a confidence level between 0 and 1, e.g. 0.95")
    hits = torch.as_tensor(hits, dtype=torch.float64).flatten()
    k = hits.numel()
    if k == 0:
        return Interval(math.nan, math.nan, math.nan, level, 0, unit)
    p = float(hits.mean())
    z = t_quantile((1 + level) / 2, math.inf)
    centre = (p + z * z / (2 * k)) / (1 + z * z / k)
    half = z * math.sqrt(p * (1 - p) / k + z * z / (4 * k * k)) / (1 + z * z / k)
    low = 0.0 if p == 0 else max(0.0, centre - half)  # exact at the ends: no rounding past 0 or 1
    high = 1.0 if p == 1 else min(1.0, centre + half)
    return Interval(p, low, high, level, k, unit)


def examples_needed(interval: Interval, threshold: float, n: int) -> int | None:
    """About how many examples would put ``threshold`` outside an interval this wide around
    this estimate (the half-width shrinks as 1 / sqrt(n)); None when that cannot happen (the
    estimate sits on the threshold, or the interval is unbounded)."""
    if not interval.bounded or interval.estimate == threshold or math.isnan(interval.estimate):
        return None
    half = (interval.high - interval.estimate) if threshold > interval.estimate else (interval.estimate - interval.low)
    distance = abs(interval.estimate - threshold)
    if half <= distance:
        return n
    return int(math.ceil(n * (half / distance) ** 2))


def family_level(level: float, claims: int, method: str) -> float:
    """The per-claim confidence level that keeps the chance of any false verdict among
    ``claims`` claims at 1 - level (Bonferroni), or ``level`` itself (``none``)."""
    if method == "none" or claims <= 1:
        return level
    if method == "bonferroni":
        return 1 - (1 - level) / claims
    raise InputError(f"family method {method!r}: expected 'none' or 'bonferroni'")
