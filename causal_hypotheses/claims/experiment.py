"""The object a claim test uses: runs the experiment on the session's shared engine and task,
records the measurement, and raises ClaimNotMet when the verdict is not a pass."""
from __future__ import annotations

import time
from typing import Callable, Mapping

from ..errors import ClaimNotMet, ClaimSpecError
from .record import ClaimRecord, empty_record, make_record  # noqa: F401  (empty_record and make_record lived here)
from .registry import LoadedModel
from .spec import ClaimSpec
from .verdict import decide, explain


class Claim:
    """Runs one claim's experiment on the session's shared engine and task, and judges it.

    ``claim.scrub(hypothesis)`` is the one line a claim test needs.  ``engine``, ``task`` and
    ``model`` are there for building hypotheses (``claim.engine.graph.writers()``).
    """

    def __init__(
        self,
        claim_id: str,
        spec: ClaimSpec,
        model: LoadedModel,
        task,
        *,
        inconclusive: Callable[[str], None] | None = None,
    ) -> None:
        self.id = claim_id
        self.spec = spec
        self.model = model
        self.task = task
        self.result = None
        self.record: ClaimRecord | None = None
        self._controls = None
        self._hint = None
        self._inconclusive = inconclusive

    @property
    def engine(self):
        return self.model.engine

    def scrub(self, hypothesis, *, control: int | None = None, hints: int = 5):
        """Causally scrub ``hypothesis`` (a :class:`Hypothesis`) on the claim's task; return the
        ScrubResult when the claim holds, raise ClaimNotMet otherwise.

        ``control=N`` also scrubs N random hypotheses of the same shape (seeded; see
        interventions/controls.py) and reports where the hypothesis stands among them; with
        ``beats_random=`` on the marker (20 controls unless given) the claim also needs the
        permutation p-value to be at most 1 - beats_random.

        When a positive claim (``at_least``) falls short, the ``hints`` (default 5) paths it leaves
        out one level below what it names that would add the most recovery are ranked on the
        engine (interventions/hints.py) and listed in the message; ``hints=0`` skips that."""
        from ..interventions.scrubbing import Hypothesis, scrub

        self._once()
        if not isinstance(hypothesis, Hypothesis):
            if not isinstance(hypothesis, Mapping):
                raise ClaimSpecError(f"{self.id}: claim.scrub got a {type(hypothesis).__name__}; pass a "
                                     "Hypothesis({pattern: feature}, name=...) or a dict {pattern: feature}")
            hypothesis = Hypothesis(hypothesis)
        spec = self.spec
        control = self._control_count(control)
        paths = [[list(p), f] for p, f in hypothesis.paths.items()]
        self._hint = (hypothesis, hints) if hints else None
        if control is None:
            return self._judge(hypothesis.name, paths,
                               lambda: scrub(self.engine, hypothesis, self.task, spec.metric, seed=spec.seed, draws=spec.draws,
                                             ablation=spec.ablation, resampling=spec.resampling, level=spec.level))
        from ..interventions.controls import control as run_controls

        def measured():
            self._controls = run_controls(self.engine, hypothesis, self.task, spec.metric, count=control, seed=spec.seed,
                                          draws=spec.draws, ablation=spec.ablation, resampling=spec.resampling,
                                          level=spec.level)
            return self._controls.result

        return self._judge(hypothesis.name, paths, measured)

    def activation_patch(self, nodes, positions=None, *, direction: str = "noising"):
        """Claim that patching ``nodes`` (heads, head inputs, layers, MLPs) moves at least (or at
        most) a fraction of the task's clean-to-corrupt change: with ``direction="noising"`` the
        clean run reads the nodes from the corrupt prompts (how much of the corruption's effect
        they carry); with ``"denoising"`` the corrupt run reads them from the clean prompts (how
        much of the clean behaviour they restore).  Returns the EffectResult when the claim holds."""
        from ..interventions.effects import patch_effect

        return self._judge("", [], lambda: patch_effect(self.engine, self.task, self.spec.metric, kind="activation_patch",
                                                      direction=direction, level=self.spec.level, nodes=nodes,
                                                      positions=positions))

    def path_patch(self, senders, receivers, positions=None, *, direction: str = "noising"):
        """Like :meth:`activation_patch` for the direct paths from ``senders`` into ``receivers``
        (components, head inputs such as ``a9.h9.q``, or ``out``)."""
        from ..interventions.effects import patch_effect

        return self._judge("", [], lambda: patch_effect(self.engine, self.task, self.spec.metric, kind="path_patch",
                                                      direction=direction, level=self.spec.level, senders=senders,
                                                      receivers=receivers, positions=positions))

    def iia(self, causal_model, variable: str, nodes, positions=None):
        """Claim that aligning ``variable`` of ``causal_model`` (a :class:`CausalModel`) with ``nodes``
        has an interchange intervention accuracy of at least (or at most) the thresholds: on seeded
        pairs of distinct examples (as many as the claim's n), the base run with ``nodes`` read
        from the source (at ``positions``) predicts what the causal model answers with the
        variable set from the source.  Wilson interval over pairs.  A patch that never changes a
        prediction is ``no-effect``, never a pass of an ``at_most`` claim."""
        from ..interventions.interchange import interchange_intervention_accuracy

        self._once()
        spec = self.spec
        return self._judge("", [], lambda: interchange_intervention_accuracy(
            self.engine, self.task, causal_model, variable, nodes, seed=spec.seed, positions=positions, level=spec.level))

    def faithfulness(self, circuit, *, control: int | None = None, **options):
        """Claim on Wang et al.'s faithfulness of ``circuit`` (heads and MLPs): F(C) / F(M) with
        everything in scope outside the circuit knocked out (interventions/criteria.py; options:
        ``ablation="mean"|"resample"``, ``reference="corrupt"|"clean"``, ``normalise="model"|"ablated"``,
        default "model" for logit_diff and accuracy, "ablated" otherwise).  ``control=N`` also
        scores N random circuits of the same shape."""
        return self._criterion("faithfulness", circuit, control, options)

    def completeness(self, circuit, *, k: int = 10, subsets=None, control: int | None = None, **options):
        """Claim (usually ``at_most``) on the largest |F(C∖K) - F(M∖K)| / D over ∅, ``k`` random
        subsets K of the circuit and any ``subsets`` given (e.g. a class of heads)."""
        return self._criterion("completeness", circuit, control, {"k": k, "subsets": subsets, **options})

    def minimality(self, circuit, *, k: int = 4, components=None, control: int | None = None, **options):
        """Claim (``at_least``) that every component matters: each component v's best
        |F(C∖K) - F(C∖(K∪{v}))| / D over ∅ and ``k`` random subsets K of the rest; the value is the
        weakest component's, and the report lists every component's.  ``components`` (some of the
        circuit's) tests only those, in the whole circuit: e.g. ``at_most=0.1`` on heads added to
        a circuit as a control, or ``at_least=0.1`` on the heads a claim says are needed."""
        if components is not None and (control is not None or self.spec.beats_random is not None):
            raise ClaimSpecError(f"{self.id}: claim.minimality got components= and random controls (control= or "
                                 "beats_random=); random circuits do not hold those components, so compare the whole "
                                 "circuit (drop components=) or drop the controls")
        return self._criterion("minimality", circuit, control, {"k": k, "components": components, **options})

    def _criterion(self, kind: str, circuit, control, options: dict):
        from ..interventions import criteria

        self._once()
        spec = self.spec
        unknown = sorted(set(options) - {"k", "subsets", "components", "ablation", "reference", "normalise"})
        if unknown:
            raise ClaimSpecError(f"{self.id}: claim.{kind} got unknown option(s) {', '.join(unknown)}; options are "
                                 "ablation=, reference=, normalise=" + (", k=" if kind != "faithfulness" else "")
                                 + (", subsets=" if kind == "completeness" else "") + ", control=")
        if options.get("normalise") is None:
            options["normalise"] = "model" if spec.metric in criteria.RATIO_METRICS else "ablated"
        options = {"level": spec.level, **{key: value for key, value in options.items() if value is not None}}
        control = self._control_count(control)
        if control is None:
            return self._judge("", [], lambda: getattr(criteria, kind)(self.engine, circuit, self.task, spec.metric,
                                                                        seed=spec.seed, **options))

        def measured():
            self._controls = criteria.control_circuits(self.engine, kind, circuit, self.task, spec.metric, count=control,
                                                       seed=spec.seed, **options)
            return self._controls.result

        return self._judge("", [], measured)

    def _control_count(self, control):
        """The number of random controls to run (None: none), checked against beats_random."""
        spec = self.spec
        if control is None and spec.beats_random is not None:
            control = 20
        if control is not None and (isinstance(control, bool) or not isinstance(control, int) or control < 1):
            raise ClaimSpecError(f"{self.id}: control={control!r}: expected a number of random hypotheses >= 1, e.g. 20")
        if control is not None and spec.beats_random is not None and 1 / (control + 1) > 1 - spec.beats_random:
            raise ClaimSpecError(
                f"{self.id}: beats_random={spec.beats_random:g} needs a p-value <= {1 - spec.beats_random:.3g}, but with "
                f"control={control} the smallest possible is 1/{control + 1}; use control >= {_controls_for(spec.beats_random)}")
        return control

    def _hints_text(self, hypothesis, top: int, base=None) -> str:
        """The paths whose addition would recover the most, in words (never fails the claim itself)."""
        from ..interventions.hints import hints

        spec = self.spec
        try:
            found = hints(self.engine, hypothesis, self.task, spec.metric, top=top, seed=spec.seed, draws=spec.draws,
                          ablation=spec.ablation, resampling=spec.resampling, max_candidates=64, base=base)
        except Exception as error:  # noqa: BLE001 - a hint is advice; its failure must not hide the verdict
            return f"  hints: could not rank the missing paths ({type(error).__name__}: {error})"
        useful = [hint for hint in found if hint.adds > 0]
        if not useful:
            return "  hints: no single path one level below the hypothesis adds recovery"
        return "  hints (paths left out, by what adding each would recover):\n" + "\n".join(
            f"    adding {hint.pattern!r} would recover {hint.adds:+.3f} (to {hint.recovered:.3f})" for hint in useful)

    def _once(self) -> None:
        if self.result is not None:
            raise ClaimSpecError(f"{self.id}: this claim already ran an experiment; one experiment per claim "
                                 "(parametrize the test to check several hypotheses)")

    def _judge(self, name: str, paths: list, run):
        """Run the experiment, judge it on its interval, record it, raise ClaimNotMet unless it holds."""
        self._once()
        spec = self.spec
        started = time.perf_counter()
        result = run()
        seconds = time.perf_counter() - started
        verdict = decide(*result.ci, spec.at_least, spec.at_most, effect=result.effect_ci)
        message = explain(verdict, spec, result, name)
        if verdict in ("fail", "inconclusive") and spec.at_least is not None and self._hint is not None:
            message += "\n" + self._hints_text(*self._hint, base=result)
        controls = self._controls
        if controls is not None:
            message += "\n  " + control_text(controls, spec.beats_random)
            if verdict == "pass" and spec.beats_random is not None and not controls.p_value <= 1 - spec.beats_random:
                verdict = "fail"
                message = "claim not met — it does not beat random hypotheses of its shape: " + message
        self.result = result
        self.record = make_record(self.id, spec, result, name or getattr(result, "description", ""), paths, verdict,
                                  seconds, message, controls)
        if verdict in ("fail", "no-effect"):
            raise ClaimNotMet(message, verdict)
        if verdict == "inconclusive":
            if self._inconclusive is not None:
                self._inconclusive(message)
            raise ClaimNotMet(message, verdict)
        return result


def _controls_for(level: float) -> int:
    """The fewest controls whose smallest p-value, 1/(count+1), reaches 1 - level."""
    import math

    return math.ceil(1 / (1 - level) - 1 - 1e-9)


def control_text(controls, beats_random: float | None) -> str:
    """Where the hypothesis stands among its random controls, in words."""
    low, high = controls.control_range
    kind = getattr(controls.result, "kind", "scrub")
    if kind == "scrub":
        text = (f"random controls: {controls.count} hypotheses of the same shape (seed {controls.seed}) recover {low:.3f} "
                f"to {high:.3f}; the hypothesis beats {controls.percentile:.0f}% of them, permutation p = {controls.p_value:.3g}")
    else:
        text = (f"random controls: {controls.count} circuits of the same shape (seed {controls.seed}, each component "
                f"replaced within +-{controls.band} layers) have {kind} {low:.3f} to {high:.3f}; the circuit beats "
                f"{controls.percentile:.0f}% of them, permutation p = {controls.p_value:.3g}")
    if beats_random is not None:
        text += f" (beats_random={beats_random:g} needs p <= {1 - beats_random:.3g})"
    return text + (f"; {controls.note}" if controls.note else "")
