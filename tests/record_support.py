"""Claim records of every kind, made by make_record from small hand-made results: a scrub and two
patches (the real result classes), and stand-ins for the kinds to come (interchange intervention
accuracy; Wang et al.'s faithfulness, completeness and minimality) that follow the measurement
interface of causal_hypotheses/claims/record.py."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import pandas as pd

from causal_hypotheses.claims import ClaimSpec, make_record
from causal_hypotheses.interventions.effects import EffectResult
from causal_hypotheses.interventions.scrubbing import ScrubResult

NAN = float("nan")


@dataclass(frozen=True)
class FakeResult:
    """A result of a kind this package does not measure yet, with the interface's attributes."""

    kind: str
    statistic: str
    value: float
    ci: tuple[float, float]
    description: str
    target: float = NAN
    base: float = NAN
    intervened: float = NAN
    effect_ci: tuple[float, float] | None = None
    level: float = 0.95
    n: int = 4
    draws: int = 1
    seed: int = 0
    units: int = 4
    unit: str = "example"
    ablation: str = ""
    resampling: str = ""
    per_example: pd.DataFrame | None = None
    details: list = field(default_factory=list)
    node_evaluations: int = 5
    forward_passes: int = 2
    cache_hits: int = 1


def spec(**changes) -> ClaimSpec:
    values = dict(model="induction-2l", task="induction", metric="logit_diff", at_least=0.5, at_most=None, n=4, seed=3,
                  draws=2, ablation="resample", level=0.95)
    return ClaimSpec(**{**values, **changes})


def legacy_runs(clean, ablated, scrubbed) -> pd.DataFrame:
    """A per-example frame as scrubs and patches give it (runs named clean, ablated, scrubbed)."""
    return pd.DataFrame({"draw": 0, "example": range(len(clean)), "clean": clean, "ablated": ablated, "scrubbed": scrubbed})


def scrub_result() -> ScrubResult:
    return ScrubResult(hypothesis="induction heads", task="induction", metric="logit_diff", ablation="resample",
                       resampling="independent", n=4, seed=3, draws=1, clean=3.0, ablated=1.0, scrubbed=2.5,
                       fraction_recovered=0.75, ci=(0.6, 0.9), level=0.95,
                       per_example=legacy_runs([3.0, 3.0, 3.0, 3.0], [1.0, 1.0, 1.0, 1.0], [2.0, 3.0, 2.0, 3.0]),
                       effect_ci=(1.5, 2.5), units=4, node_evaluations=7, forward_passes=3, cache_hits=2)


def patch_result(kind: str, direction: str) -> EffectResult:
    return EffectResult(kind=kind, direction=direction, description="a1.h2 patched", metric="logit_diff", n=4,
                        clean=2.0, ablated=0.0, scrubbed=1.0, fraction_recovered=0.5, ci=(0.3, 0.7), level=0.95,
                        effect_ci=(1.5, 2.5), units=4, unit="example",
                        per_example=legacy_runs([2.0, 2.0, 2.0, 2.0], [0.0, 0.0, 0.0, 0.0], [0.5, 1.5, 0.5, 1.5]),
                        node_evaluations=4, forward_passes=3, cache_hits=0)


def iia_result() -> FakeResult:
    """Interchange accuracy: per-example hits (0/1), no target or base run."""
    hits = pd.DataFrame({"draw": 0, "example": range(4), "intervened": [1.0, 1.0, 0.0, 1.0]})
    return FakeResult(kind="iia", statistic="interchange accuracy", value=0.75, ci=(0.3, 0.95),
                      description="variable S aligned with a1.h2", per_example=hits)


def faithfulness_result() -> FakeResult:
    runs = pd.DataFrame({"draw": 0, "example": range(4), "target": [2.0, 2.2, 1.8, 2.0], "base": [0.0, 0.1, -0.1, 0.0],
                         "intervened": [1.8, 2.0, 1.7, 1.9]})
    return FakeResult(kind="faithfulness", statistic="faithfulness F(C)/F(M)", value=0.925, ci=(0.88, 0.96),
                      description="circuit of 4 heads", target=2.0, base=0.0, intervened=1.85, effect_ci=(1.8, 2.2),
                      ablation="mean", per_example=runs)


def completeness_result() -> FakeResult:
    rows = [{"removed": "a0.h3 <- embed", "F(C\\K)": 1.2, "F(M\\K)": 1.3, "gap": 0.1},
            {"removed": "a1.h2", "F(C\\K)": 0.4, "F(M\\K)": 0.45, "gap": 0.05}]
    return FakeResult(kind="completeness", statistic="completeness: largest |F(C\\K) - F(M\\K)|", value=0.1,
                      ci=(0.04, 0.16), description="circuit of 4 heads", ablation="mean", details=rows)


def minimality_result() -> FakeResult:
    rows = [{"component": "a1.h2", "F(C)": 2.1, "F(C\\v)": 1.5, "drop": 0.286, "needed": True},
            {"component": "a0.h0", "F(C)": 2.1, "F(C\\v)": 2.05, "drop": 0.024, "needed": False}]
    return FakeResult(kind="minimality", statistic="minimality: smallest relative drop", value=0.024, ci=(0.01, 0.04),
                      description="circuit of 4 heads", ablation="mean", details=rows)


# claim id -> the result its record is made from; one claim per kind.
RESULTS = {
    "t.py::test_scrub": scrub_result,
    "t.py::test_activation_patch": lambda: patch_result("activation_patch", "noising"),
    "t.py::test_path_patch": lambda: patch_result("path_patch", "denoising"),
    "t.py::test_iia": iia_result,
    "t.py::test_faithfulness": faithfulness_result,
    "t.py::test_completeness": completeness_result,
    "t.py::test_minimality": minimality_result,
}


def every_kind() -> list:
    """One ClaimRecord per kind, in RESULTS order, each named as a claim names it (the result's
    description where no hypothesis is given)."""
    records = []
    for order, (claim, build) in enumerate(RESULTS.items()):
        result = build()
        record = make_record(claim, spec(), result, result.description, [], "pass", 0.25, f"{claim}: claim holds")
        records.append(replace(record, order=order))
    return records
