"""The claims a found circuit is written with, measured before they are written.

Each claim runs on the check prompts with the settings the written module's marker gives (the
same engine calls, seeds and draws as the ``claim`` object's methods make, so pytest measures the
same numbers), and its bar is chosen from its measured interval by the rule of
``circuits/README.md``: a claim is written only with a bar its whole interval clears, and a
measurement that supports no bar is written as a comment with its numbers.
"""
from __future__ import annotations

import math
import random
import sys
import time
from dataclasses import dataclass
from typing import Callable, Mapping

CARRIES = 0.75  # circuits/README.md: this circuit carries the behaviour (a wrong one: at most this)
MATTERS = 0.1  # a component on a path matters: its patching fraction at least this
NOTHING = 0.1  # random components (the negative control) do nothing: at most this
DRAWS = 2  # the written marker's draws
LEVEL = 0.95  # the claims' default confidence level, which the written marker leaves as it is
HEAVY_SECONDS = 60.0  # a claim whose check took more CPU seconds is written heavy=True (plugin: --claims-heavy)


@dataclass(frozen=True)
class Measured:
    """A claim's measurement on the check prompts: value, its interval, the interval of the effect
    there is to explain (clean - ablated, or None), what the statistic is, and the CPU seconds
    the measurement took."""

    value: float
    low: float
    high: float
    effect: tuple[float, float] | None
    statistic: str
    seconds: float = 0.0

    @property
    def heavy(self) -> bool:
        """Whether the claim is written heavy=True: its check took over HEAVY_SECONDS of CPU."""
        return self.seconds > HEAVY_SECONDS

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"


@dataclass(frozen=True)
class Bar:
    """The thresholds a claim is written with (both None: not claimed), what they say ("carries",
    "wrong", "matters", "nothing"; "" when not claimed) and why, in words."""

    at_least: float | None
    at_most: float | None
    says: str
    why: str

    @property
    def claimed(self) -> bool:
        return self.at_least is not None or self.at_most is not None

    def marker(self, heavy: bool = False) -> str:
        parts = [f"{name}={value:g}" for name, value in (("at_least", self.at_least), ("at_most", self.at_most)) if value is not None]
        return f"@pytest.mark.claim({', '.join(parts + ['heavy=True'] * heavy)})"


@dataclass(frozen=True)
class Draft:
    """One claim to write: its ``key``, the test's name for each thing it may say, its docstring
    and body, what it is meant to say ("carries" or "nothing"), whether its statistic is a patching
    fraction (which may also say "matters"), and ``run(engine, task, metric, seed)``, the
    experiment its body runs, returning the intervention's result."""

    key: str
    names: Mapping[str, str]
    says: str
    patching: bool
    doc: str
    body: str
    run: Callable


def scrubbing(paths, name: str) -> Callable:
    """The experiment of ``claim.scrub(Hypothesis({path: None for path in paths}, name=name))``."""
    def run(engine, task, metric: str, seed: int):
        from ..interventions.scrubbing import Hypothesis, scrub

        return scrub(engine, Hypothesis({tuple(path): None for path in paths}, name=name), task, metric, seed=seed,
                     draws=DRAWS, ablation="resample", resampling="independent", level=LEVEL)
    return run


def path_patching(senders, receivers) -> Callable:
    """The experiment of ``claim.path_patch(senders, receivers)`` (noising)."""
    def run(engine, task, metric: str, seed: int):
        from ..interventions.effects import patch_effect

        return patch_effect(engine, task, metric, kind="path_patch", direction="noising", level=LEVEL,
                            senders=list(senders), receivers=list(receivers))
    return run


def faithfulness(circuit) -> Callable:
    """The experiment of ``claim.faithfulness(circuit)`` with its default options."""
    def run(engine, task, metric: str, seed: int):
        from ..interventions import criteria

        normalise = "model" if metric in criteria.RATIO_METRICS else "ablated"
        return criteria.faithfulness(engine, list(circuit), task, metric, seed=seed, level=LEVEL, normalise=normalise)
    return run


def random_heads(outside_of, count: int, sample_seed: int = 0) -> Callable:
    """The experiment of the written negative control: ``count`` heads not in ``outside_of``, drawn
    with ``random.Random(sample_seed)`` from ``engine.graph.heads()``, their direct paths scrubbed in."""
    def run(engine, task, metric: str, seed: int):
        outside = [head for head in engine.graph.heads() if head not in outside_of]
        heads = random.Random(sample_seed).sample(outside, count)
        return scrubbing([(head,) for head in heads], "random heads")(engine, task, metric, seed)
    return run


def measure_claims(drafts: list[Draft], engine, task, metric: str, seed: int, *, progress: bool = True) -> dict[str, Measured]:
    """Run every draft's experiment on ``task`` (the check prompts) with the claims' ``seed``; the
    measurements by draft key.  A tqdm bar with its ETA counts the claims."""
    from tqdm.auto import tqdm

    measured = {}
    for draft in tqdm(drafts, desc="checking the claims", unit="claim", disable=not progress, file=sys.stderr):
        started = time.process_time()
        result = draft.run(engine, task, metric, seed)
        effect = getattr(result, "effect_ci", None)
        measured[draft.key] = Measured(float(result.value), float(result.ci[0]), float(result.ci[1]),
                                       None if effect is None else (float(effect[0]), float(effect[1])),
                                       str(getattr(result, "statistic", "value")), time.process_time() - started)
    return measured


def choose_bar(draft: Draft, measured: Measured | None) -> Bar:
    """The bar the rule gives ``draft`` from its measured interval (``None``: not measured, so the
    bar the claim is meant to meet, unchecked).

    A claim meant to say "carries": ``at_least=0.75`` when the whole interval clears 0.75;
    otherwise a patching fraction whose interval clears 0.1 says "matters" (``at_least=0.1``, with
    ``at_most=0.75`` too when the interval lies below 0.75); otherwise an interval at or below 0.75
    says the found circuit is "wrong" (``at_most=0.75``); otherwise nothing is claimed.  A negative
    control: ``at_most=0.1`` when the whole interval is at most 0.1, else nothing is claimed.  An
    ablation whose effect interval holds 0 leaves nothing to recover: nothing is claimed."""
    meant = (CARRIES, None) if draft.says == "carries" else (None, NOTHING)
    if measured is None:
        return Bar(*meant, draft.says, "not measured: the bar the rule sets for what the claim says, unchecked")
    low, high = measured.low, measured.high
    effect = measured.effect
    if effect is not None and (math.isnan(effect[0]) or math.isnan(effect[1]) or effect[0] <= 0 <= effect[1]):
        return Bar(None, None, "", f"the effect to explain (clean - ablated) has the interval "
                                   f"[{effect[0]:.3g}, {effect[1]:.3g}], which holds 0, so there is nothing to recover")
    if math.isnan(low) or math.isnan(high):
        return Bar(None, None, "", "the interval is undefined")
    if draft.says == "nothing":
        if high <= NOTHING:
            against = f" (it reaches below -{NOTHING:g}: these heads may work against the behaviour)" if low < -NOTHING else ""
            return Bar(None, NOTHING, "nothing", f"the whole interval is at most {NOTHING:g}: the control does nothing{against}")
        return Bar(None, None, "", f"the interval reaches above the noise bar {NOTHING:g}, so these "
                                   "random heads are no negative control")
    if low >= CARRIES:
        return Bar(CARRIES, None, "carries", f"the whole interval clears {CARRIES:g}: it carries the behaviour")
    if draft.patching and low >= MATTERS:
        below = high <= CARRIES
        return Bar(MATTERS, CARRIES if below else None, "matters",
                   f"the interval does not clear {CARRIES:g}, so it is not claimed to carry the behaviour; it clears "
                   f"{MATTERS:g}: the components matter" + (f", and lies at or below {CARRIES:g}" if below else ""))
    if high <= CARRIES:
        return Bar(None, CARRIES, "wrong", f"the whole interval lies at or below {CARRIES:g}: as a circuit it does not "
                                           "carry the behaviour (the rule's bar for a wrong hypothesis)")
    return Bar(None, None, "", f"the interval holds {CARRIES:g}, so under the rule it neither carries "
                               "the behaviour nor is shown not to")
