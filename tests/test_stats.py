"""The intervals verdicts rest on, checked by simulation: a 95% interval covers the true value
about 95% of the time (0.93-0.97), for the fraction recovered with and without resampling draws,
with clustered examples, and for the effect (clean - ablated)."""
from __future__ import annotations

import math

import pytest
import torch

from causal_hypotheses import stats

TRIALS = 2000
TRUE_RATIO = 0.6


def synthetic(n: int, draws: int, generator: torch.Generator, heavy: bool = False):
    """Per-example clean (N,), ablated and scrubbed (D, N) with E[s - a] / E[c - a] = 0.6.

    Each example has its own effect (c - a) around 1; scrubbing recovers 0.6 of it; ablated and
    scrubbed runs add per-draw noise.  ``heavy``: effects from a skewed (log-normal) distribution.
    """
    if heavy:
        effect = torch.distributions.LogNormal(0.0, 0.5).sample((n,))
        effect = effect / math.exp(0.125)  # mean 1
    else:
        effect = 1 + 0.5 * torch.randn(n, generator=generator, dtype=torch.float64)
    clean = 2 + torch.randn(n, generator=generator, dtype=torch.float64)
    ablated = clean - effect + 0.3 * torch.randn(draws, n, generator=generator, dtype=torch.float64)
    scrubbed = ablated + TRUE_RATIO * effect + 0.3 * torch.randn(draws, n, generator=generator, dtype=torch.float64)
    return clean, ablated, scrubbed


def cluster_shift(clusters: int, assignment: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Examples of one cluster (template) share how much scrubbing recovers: a shift of mean 0."""
    return 0.5 * torch.randn(clusters, generator=generator, dtype=torch.float64)[assignment]


def coverage(n: int, draws: int, seed: int, heavy: bool = False, clusters: int | None = None) -> tuple[float, float]:
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    hits, widths = 0, []
    assignment = None if clusters is None else torch.arange(n) % clusters
    for _ in range(TRIALS):
        clean, ablated, scrubbed = synthetic(n, draws, generator, heavy)
        if assignment is not None:
            scrubbed = scrubbed + cluster_shift(clusters, assignment, generator)
        interval = stats.ratio_interval(scrubbed - ablated, clean - ablated, level=0.95, clusters=assignment)
        hits += interval.low <= TRUE_RATIO <= interval.high
        widths.append(interval.high - interval.low)
    return hits / TRIALS, float(torch.tensor(widths).median())


@pytest.mark.parametrize("n", [16, 48, 128])
@pytest.mark.parametrize("draws", [1, 2, 4])
def test_the_fraction_recovered_interval_is_calibrated(n, draws):
    covered, width = coverage(n, draws, seed=n * 10 + draws)
    assert 0.93 <= covered <= 0.97, (covered, width)


def test_calibrated_on_skewed_effects_too():
    covered, _ = coverage(48, 2, seed=7, heavy=True)
    assert 0.93 <= covered <= 0.97, covered


def test_clustered_examples_use_clusters_as_the_unit():
    """With examples sharing a cluster effect, treating examples as independent undercovers;
    cluster totals as the unit restore the nominal level."""
    covered, _ = coverage(96, 1, seed=11, clusters=12)
    assert 0.93 <= covered <= 0.97, covered
    generator = torch.Generator().manual_seed(12)
    naive_hits, assignment = 0, torch.arange(96) % 12
    for _ in range(TRIALS):
        clean, ablated, scrubbed = synthetic(96, 1, generator)
        scrubbed = scrubbed + cluster_shift(12, assignment, generator)
        interval = stats.ratio_interval(scrubbed - ablated, clean - ablated)  # examples as if independent
        naive_hits += interval.low <= TRUE_RATIO <= interval.high
    assert naive_hits / TRIALS < 0.85


@pytest.mark.parametrize("n", [16, 128])
def test_the_effect_interval_is_calibrated(n):
    generator = torch.Generator().manual_seed(n)
    hits = 0
    for _ in range(TRIALS):
        clean, ablated, _ = synthetic(n, 2, generator)
        interval = stats.mean_interval(clean - ablated)
        hits += interval.low <= 1.0 <= interval.high
    assert 0.93 <= hits / TRIALS <= 0.97


def test_an_effect_indistinguishable_from_zero_gives_an_unbounded_ratio_interval():
    generator = torch.Generator().manual_seed(3)
    v = 0.01 + torch.randn(16, generator=generator, dtype=torch.float64)
    interval = stats.ratio_interval(0.5 * v, v)
    assert not interval.bounded


def test_t_quantiles():
    assert stats.t_quantile(0.975, math.inf) == pytest.approx(1.959964, abs=1e-5)
    for df, expected in ((5, 2.570582), (15, 2.131450), (47, 2.011741), (127, 1.978819)):
        assert stats.t_quantile(0.975, df) == pytest.approx(expected, abs=2e-3)


def test_examples_needed_scales_with_the_square_of_the_half_width():
    interval = stats.Interval(0.71, 0.62, 0.80, 0.95, 48, "example")
    assert stats.examples_needed(interval, 0.75, 48) == math.ceil(48 * (0.09 / 0.04) ** 2)
    assert stats.examples_needed(interval, 0.71, 48) is None
    assert stats.examples_needed(stats.Interval(0.7, -math.inf, math.inf, 0.95, 8, "example"), 0.75, 8) is None


def test_family_level():
    assert stats.family_level(0.95, 10, "bonferroni") == pytest.approx(0.995)
    assert stats.family_level(0.95, 10, "none") == 0.95
    with pytest.raises(Exception, match="'holm'"):
        stats.family_level(0.95, 10, "holm")


def test_wilson_interval_matches_closed_forms():
    from causal_hypotheses.stats import proportion_interval

    every = proportion_interval(torch.ones(64))
    z = 1.959964
    assert every.low == pytest.approx(64 / (64 + z * z), abs=1e-4) and every.high == 1.0  # all hits: n / (n + z^2)
    half = proportion_interval(torch.tensor([1.0, 0.0] * 50))
    assert (half.low, half.high) == pytest.approx((0.4038, 0.5962), abs=1e-4)
    none = proportion_interval(torch.zeros(10))
    assert none.low == 0.0 and none.high == pytest.approx(z * z / (10 + z * z), abs=1e-4)
