"""Verdicts: pure functions of a measurement and the thresholds, and their explanation (no
torch, no pytest)."""
from __future__ import annotations

import math

from .spec import ClaimSpec


# A verdict is the experiment's judgement ("pass", "fail", "inconclusive", "no-effect": the
# ablation changes nothing, so there is nothing to recover) or, when the test ended otherwise,
# the test's outcome ("skipped", "xfailed", "xpassed", "error").
VERDICTS = ("pass", "fail", "inconclusive", "no-effect", "skipped", "xfailed", "xpassed", "error")




def _fmt(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "nan"
    text = f"{x:.3f}"
    return text[1:] if text == "-0.000" else text


def no_effect(effect: tuple[float, float] | None) -> bool:
    """True when the interval of clean - ablated holds 0 (or is undefined): the ablation does not
    change the metric distinguishably, so no fraction of it can be recovered or missed."""
    if effect is None:
        return False
    low, high = effect
    return math.isnan(low) or math.isnan(high) or low <= 0 <= high


def decide(low: float, high: float, at_least: float | None, at_most: float | None,
           effect: tuple[float, float] | None = None) -> str:
    """"no-effect" when ``effect`` (the interval of clean - ablated) holds 0; otherwise "pass"
    when the whole interval of the fraction recovered clears every threshold, "fail" when it lies
    entirely on the wrong side of one, "inconclusive" otherwise (including an undefined interval)."""
    if no_effect(effect):
        return "no-effect"
    if math.isnan(low) or math.isnan(high):
        return "inconclusive"
    outcomes = []
    if at_least is not None:
        outcomes.append("pass" if low >= at_least else "fail" if high < at_least else "inconclusive")
    if at_most is not None:
        outcomes.append("pass" if high <= at_most else "fail" if low > at_most else "inconclusive")
    if "fail" in outcomes:
        return "fail"
    return "inconclusive" if "inconclusive" in outcomes else "pass"


def explain(verdict: str, spec: ClaimSpec, result, hypothesis_name: str) -> str:
    kind = getattr(result, "kind", "scrub")
    if kind in ("activation_patch", "path_patch"):
        return _explain_patch(verdict, spec, result)
    if kind == "iia":
        return _explain_iia(verdict, spec, result)
    if kind in ("faithfulness", "completeness", "minimality"):
        return _explain_criterion(verdict, spec, result)
    return _explain(verdict, spec, result, hypothesis_name)


def _head(verdict: str, spec: ClaimSpec, result) -> str:
    return {"pass": "claim holds", "fail": "claim not met"}.get(verdict) or f"inconclusive — {_advice(spec, result)}"


def _judged(name: str, value: float, verdict: str, spec: ClaimSpec, low: float, high: float) -> str:
    """``name value (CI)`` and, unless there was no effect to judge, which side of each threshold."""
    text = f"{name} {_fmt(value)} ({spec.level:.0%} CI {_fmt(low)} to {_fmt(high)})"
    return text if verdict == "no-effect" else f"{text} {_sides(spec, low, high)}"


def _explain_iia(verdict: str, spec: ClaimSpec, result) -> str:
    """An interchange claim in words: the accuracy, its Wilson interval, and what the patch did."""
    low, high = result.ci
    if verdict == "no-effect":
        head = (f"no effect — the patch never changes the model's prediction on any of {result.n} pairs, so its accuracy "
                f"is the unpatched model's ({_fmt(result.unpatched)}) and says nothing about the alignment; choose nodes "
                "that the prediction depends on")
    else:
        head = _head(verdict, spec, result)
    judged = _judged("interchange accuracy", result.accuracy, verdict, spec, low, high)
    return (
        f"{head}: {judged}\n"
        f"  iia: {result.description} on model {spec.model}, task {spec.task}, {result.n} pairs (seed {result.seed})\n"
        f"  the patch changes the prediction on {_fmt(result.changed)} of pairs; the unpatched model already gives the "
        f"counterfactual answer on {_fmt(result.unpatched)}; the interchange changes the causal model's answer on "
        f"{_fmt(result.relevant)}; Wilson interval over {result.n} pairs"
        + "".join(f"\n  note: {note}" for note in spec.notes)
    )


def _criterion_means(result) -> str:
    """The three means a criterion's record holds, named as the criterion reads them."""
    base = "0" if result.normalise == "model" else f"F(∅) {result.base:.4g}"
    if result.kind == "faithfulness":
        return f"F(M) {result.target:.4g}, F(C) {result.intervened:.4g}, base {base}"
    if result.kind == "completeness":
        return f"at the largest gap's K: F(M∖K) {result.target:.4g}, F(C∖K) {result.intervened:.4g}; base {base}"
    return (f"for the least necessary component v and its best K: F(C∖K) {result.target:.4g}, F(C∖(K∪{{v}})) "
            f"{result.intervened:.4g}; base {base}")


def _explain_criterion(verdict: str, spec: ClaimSpec, result) -> str:
    """A circuit criterion in words: the value, its interval, the knockouts, the deciding rows."""
    low, high = result.ci
    if verdict == "no-effect":
        head = (f"no effect to explain — knocking out every component in scope leaves the metric unchanged: "
                f"F(M) - F(∅) {spec.level:.0%} CI {_fmt(result.effect_ci[0])} to {_fmt(result.effect_ci[1])}; choose a "
                "metric or task the circuit's components matter for")
    else:
        head = _head(verdict, spec, result)
    judged = _judged(f"{result.statistic} =", result.value, verdict, spec, low, high)
    rows = ""
    if result.kind == "minimality":
        rows = "\n  components by their best gap: " + ", ".join(
            f"{row['component']} {_fmt(row['gap'])} (K={row['best K']})" for row in result.details[:8])
    elif result.kind == "completeness":
        rows = "\n  largest gaps: " + ", ".join(f"K={row['K']} {_fmt(row['gap'])}" for row in result.details[:5])
    return (
        f"{head}: {judged}\n"
        f"  {result.kind}: {result.description}; model {spec.model}, task {spec.task}, metric {spec.metric}, n={result.n}\n"
        f"  metric means: {_criterion_means(result)}; "
        f"{result.knockouts} knockout sets; {_interval_basis(result)}{rows}"
        + "".join(f"\n  note: {note}" for note in spec.notes)
    )


def _explain_patch(verdict: str, spec: ClaimSpec, result) -> str:
    """A patching claim in words: the fraction of the change moved, its interval, the runs."""
    low, high = result.ci
    moved = f"moved {_fmt(result.fraction_recovered)} of the change ({spec.level:.0%} CI {_fmt(low)} to {_fmt(high)})"
    base, target = ("clean", "corrupt") if result.direction == "noising" else ("corrupt", "clean")
    if verdict == "no-effect":
        head = (f"no effect to explain — the {target} prompts give the same metric as the {base} ones: change = "
                f"{result.clean - result.ablated:.4g} ({spec.level:.0%} CI {_fmt(result.effect_ci[0])} to "
                f"{_fmt(result.effect_ci[1])}); choose a task whose corruption changes the metric")
    else:
        head = _head(verdict, spec, result)
    return (
        f"{head}: {moved} {_sides(spec, low, high)}\n"
        f"  {result.kind} ({result.direction}: the {base} run with {result.description} from the {target} run) on model "
        f"{spec.model}, task {spec.task}, metric {spec.metric}, n={spec.n}\n"
        f"  metric means: {base} {result.ablated:.4g}, {target} {result.clean:.4g}, patched {result.scrubbed:.4g}; "
        f"{_interval_basis(result)}" + "".join(f"\n  note: {note}" for note in spec.notes)
    )


def _sides(spec: ClaimSpec, low: float, high: float) -> str:
    sides = []
    if spec.at_least is not None:
        side = "clears" if low >= spec.at_least else "lies entirely below" if high < spec.at_least else "straddles"
        sides.append(f"{side} at_least={spec.at_least:g}")
    if spec.at_most is not None:
        side = "clears" if high <= spec.at_most else "lies entirely above" if low > spec.at_most else "straddles"
        sides.append(f"{side} at_most={spec.at_most:g}")
    return " and ".join(sides)


def _explain(verdict: str, spec: ClaimSpec, result, hypothesis_name: str) -> str:
    """The verdict in words: measured value, interval with its level, threshold, n and seed."""
    low, high = result.ci
    interval = f"recovered {_fmt(result.fraction_recovered)} ({spec.level:.0%} CI {_fmt(low)} to {_fmt(high)})"
    effect_low, effect_high = getattr(result, "effect_ci", (float("nan"), float("nan")))
    if verdict == "pass":
        head = "claim holds"
    elif verdict == "fail":
        head = "claim not met"
    elif verdict == "no-effect":
        exact = result.clean == result.ablated
        head = (f"no effect to explain — {spec.ablation} ablation leaves the metric unchanged: clean − ablated = "
                f"{result.clean - result.ablated:.4g} ({spec.level:.0%} CI {_fmt(effect_low)} to {_fmt(effect_high)}), "
                + ("so no number of examples can help; " if exact else "indistinguishable from 0, so no fraction of it "
                   "can be recovered; ")
                + "choose a metric, task or ablation that the model's behaviour depends on")
    elif math.isnan(low) or math.isnan(high):
        head = ("inconclusive — the fraction recovered is undefined: clean and ablated give the same "
                "metric value, so there is nothing to recover; choose a metric or task the ablation changes")
    else:
        head = f"inconclusive — {_advice(spec, result)}"
    judged = (f"{interval}, not judged against {spec.thresholds()}" if verdict == "no-effect"
              else f"{interval} {_sides(spec, low, high)}")
    return (
        f"{head}: {judged}\n"
        f"  hypothesis {hypothesis_name!r} on model {spec.model}, task {spec.task}, metric {spec.metric}, "
        f"{spec.ablation} ablation ({spec.resampling} resampling), n={spec.n}, seed={spec.seed}, draws={spec.draws}\n"
        f"  metric means: clean {result.clean:.4g}, ablated {result.ablated:.4g}, scrubbed {result.scrubbed:.4g}; "
        f"{_interval_basis(result)}"
        + "".join(f"\n  note: {note}" for note in spec.notes)
    )


def _interval_basis(result) -> str:
    units, unit = getattr(result, "units", 0), getattr(result, "unit", "example")
    return (f"Fieller interval over {units} {unit}{'s' if units != 1 else ''}"
            + (" (draws averaged per example)" if getattr(result, "draws", 1) > 1 else ""))


def _advice(spec: ClaimSpec, result) -> str:
    """How many examples would decide an inconclusive claim if the effect holds."""
    from ..stats import Interval, examples_needed

    low, high = result.ci
    interval = Interval(result.fraction_recovered, low, high, spec.level, getattr(result, "units", spec.n), "example")
    straddled = [t for t in (spec.at_least, spec.at_most) if t is not None and low < t < high] or \
        [t for t in (spec.at_least, spec.at_most) if t is not None]
    needs = [examples_needed(interval, t, spec.n) for t in straddled]
    if any(need is None for need in needs):
        return (f"the estimate sits on the threshold, so more examples will not decide it (n={spec.n}); "
                "the claim is as close to its threshold as it can be")
    return f"about {max(needs)} examples would decide it if the effect holds (n={spec.n} now; set n= on the marker)"
