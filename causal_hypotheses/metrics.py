"""Metrics: pure functions from logits (and a task) to one value per example; recovery; bootstrap.

Every metric has the signature ``metric(logits, task, clean_logits=None) -> Tensor (B,)``.
``logits`` is (B, T, V), or (B, P, V) when the run unembedded P positions only (then
``position`` indexes those P), or (B, P, K) when it computed K vocabulary ids only (then
``answer`` and ``distractor`` index those K); ``clean_logits`` has the same layout.
:func:`metric_reads` says which positions and ids a built-in metric reads, so that runs compute
those only (:func:`metric_positions`, :func:`metric_vocab`: each alone).
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import torch
import torch.nn.functional as F

from .errors import InputError


def _at(logits: torch.Tensor, position: int) -> torch.Tensor:
    return logits[:, position if logits.shape[1] > 1 else 0]  # (B, V)


def logit_diff(logits: torch.Tensor, task, clean_logits=None) -> torch.Tensor:
    """logit[answer] - logit[distractor] at the task's prediction position."""
    if task.answer is None or task.distractor is None:
        raise InputError(f"task {task.name!r} has no answer/distractor tokens; use the 'loss' metric")
    position = task.position if logits.shape[1] > 1 else 0
    rows = torch.arange(logits.shape[0])
    # One index per read (row, position, id): lazy logits then compute those ids alone (engine/lazy.py).
    return logits[rows, position, task.answer] - logits[rows, position, task.distractor]


def loss(logits: torch.Tensor, task, clean_logits=None) -> torch.Tensor:
    """Mean next-token cross-entropy per example over the task's targets (answer at position if none)."""
    if task.targets is None:
        if task.answer is None:
            raise InputError(f"task {task.name!r} has neither targets nor answers to compute a loss on")
        return F.cross_entropy(_at(logits, task.position), task.answer, reduction="none")
    if logits.shape[1] != task.targets.shape[1]:
        raise InputError("the loss metric needs logits at every position; run without logit_positions")
    per_token = F.cross_entropy(logits.transpose(1, 2), task.targets, ignore_index=-100, reduction="none")  # (B, T)
    counted = (task.targets != -100).sum(1).clamp(min=1)
    return per_token.sum(1) / counted


def kl(logits: torch.Tensor, task, clean_logits=None) -> torch.Tensor:
    """KL(clean || patched) of the next-token distributions at the prediction position."""
    if clean_logits is None:
        raise InputError("the 'kl' metric needs the clean logits")
    clean = F.log_softmax(_at(clean_logits, task.position), -1)
    patched = F.log_softmax(_at(logits, task.position), -1)
    return (clean.exp() * (clean - patched)).sum(-1)


def accuracy(logits: torch.Tensor, task, clean_logits=None) -> torch.Tensor:
    """1.0 where the answer token is the top prediction at the prediction position."""
    if task.answer is None:
        raise InputError(f"task {task.name!r} has no answer tokens for accuracy")
    return (_at(logits, task.position).argmax(-1) == task.answer).float()


METRICS: dict[str, Callable] = {"logit_diff": logit_diff, "loss": loss, "kl": kl, "accuracy": accuracy}


def get_metric(metric) -> Callable:
    """A metric by name (``logit_diff``, ``loss``, ``kl``, ``accuracy``) or the callable itself."""
    if callable(metric):
        return metric
    if metric not in METRICS:
        raise InputError(f"unknown metric {metric!r}; choose one of {sorted(METRICS)} or pass a function")
    return METRICS[metric]


def _builtin(metric) -> str | None:
    """The name of a built-in metric given by name or as the function itself; None otherwise."""
    return metric if isinstance(metric, str) else next((n for n, f in METRICS.items() if f is metric), None)


def metric_reads(metric, task, vocab_size: int | None = None) -> tuple[dict, object]:
    """``(read, task)``: the ``Engine.run`` options that compute only what a built-in metric reads
    on ``task`` (``read`` = {"logit_positions": ..., "logit_vocab": ...}, each None when it reads
    all), and the task re-indexed so that the metric reads the same values from those logits
    (:func:`metric_positions`, then :func:`metric_vocab`).  A metric of your own gets both None:
    every position and every vocabulary id, as it always did."""
    positions, task = metric_positions(metric, task)
    vocab, task = metric_vocab(metric, task, vocab_size)
    return {"logit_positions": positions, "logit_vocab": vocab}, task


def metric_vocab(metric, task, vocab_size: int | None = None) -> tuple[list[int] | None, object]:
    """``(ids, task)``: the vocabulary ids (sorted, distinct) whose logits a built-in metric reads
    on ``task``, and the task with which it reads the same values from logits computed at those
    ids only (``Engine.run(..., logit_vocab=ids)``: (B, P, K); ``answer`` and ``distractor``
    re-indexed into K).  ``(None, task)`` when it reads whole rows of the vocabulary: loss, kl and
    accuracy (a softmax or an argmax over every id), a metric of your own, or a task whose answer
    or distractor are not token ids (below 0, or ``vocab_size`` and above when given: the metric
    says what is wrong with it).

    logit_diff reads the answer and distractor ids of every example."""
    if _builtin(metric) != "logit_diff" or not dataclasses.is_dataclass(task):
        return None, task
    answer, distractor = task.answer, task.distractor
    if not all(torch.is_tensor(t) and t.dim() == 1 and not t.dtype.is_floating_point and not t.dtype.is_complex
               and t.dtype != torch.bool and t.numel() for t in (answer, distractor)):
        return None, task
    ids = torch.unique(torch.cat([answer, distractor]))  # sorted
    if int(ids[0]) < 0 or vocab_size is not None and int(ids[-1]) >= vocab_size:
        return None, task  # not token ids: the metric indexes as it always did (and raises)
    where = lambda t: torch.searchsorted(ids, t.contiguous()).to(t.dtype)  # noqa: E731
    return ids.tolist(), dataclasses.replace(task, answer=where(answer), distractor=where(distractor))


def metric_positions(metric, task) -> tuple[list[int] | None, object]:
    """``(positions, task)``: the positions (sorted indices into T) whose logits a built-in metric
    reads on ``task``, and the task with which it reads the same values from logits unembedded at
    those positions only (``Engine.run(..., logit_positions=positions)``: (B, P, V); ``position``
    and ``targets`` re-indexed into P).  ``(None, task)`` when it reads every position: a metric of
    your own, a loss whose targets cover every position, or a task this cannot re-index.

    logit_diff, accuracy and kl read the prediction position; loss the positions that have a
    target in some example (or the prediction position, for a task without targets)."""
    name = _builtin(metric)
    seq = task.clean.shape[1]
    if name not in METRICS or not dataclasses.is_dataclass(task):
        return None, task
    if name == "loss" and task.targets is not None:
        positions = (task.targets != -100).any(0).nonzero().flatten().tolist()
        if not positions or len(positions) == seq or task.targets.shape[1] != seq:
            return None, task
        return positions, dataclasses.replace(task, targets=task.targets[:, positions])
    if not -seq <= task.position < seq:
        return None, task  # the metric says what is wrong with it
    return [task.position % seq], dataclasses.replace(task, position=0)


def fraction_recovered(scrubbed: float, ablated: float, clean: float) -> float:
    """(scrubbed - ablated) / (clean - ablated); NaN when clean equals ablated."""
    denominator = clean - ablated
    if denominator == 0:
        return float("nan")
    return (scrubbed - ablated) / denominator


def finite(values: torch.Tensor, metric, where: str) -> torch.Tensor:
    """``values`` (per example) as float64, or an InputError saying on how many examples of
    ``where`` (e.g. "the clean run") the metric is NaN or inf: no fraction can be computed then."""
    values = values.double()
    bad = int((~torch.isfinite(values)).sum())
    if bad:
        raise InputError(
            f"metric {getattr(metric, '__name__', metric)!r} is not finite (NaN or inf) on {bad} of {values.numel()} "
            f"examples of {where}, so no fraction recovered can be computed; check the model's dtype (float16 "
            "overflows), the task's answers and targets, and the metric"
        )
    return values


def whole_number(value, name: str, low: int, example: str) -> int:
    """``value`` as an int when it is a whole number >= ``low`` (Python or numpy integer, or a
    0-d integer tensor); otherwise an InputError naming the value and an example."""
    if isinstance(value, torch.Tensor) and value.dim() == 0 and not value.dtype.is_floating_point and value.dtype != torch.bool:
        value = value.item()
    is_int = isinstance(value, int) or type(value).__module__ == "numpy" and hasattr(value, "dtype") and value.dtype.kind in "iu"
    if isinstance(value, bool) or not is_int or int(value) < low:
        raise InputError(f"{name}={value!r}: expected a whole number >= {low}, e.g. {name}={example}")
    return int(value)


def bootstrap_recovery(
    clean: torch.Tensor,
    ablated: torch.Tensor,
    scrubbed: torch.Tensor,
    *,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the fraction recovered (claims use the Fieller interval
    of :mod:`causal_hypotheses.stats`, which is better calibrated; this stays for comparison).

    Inputs are per-example values, shape (N,) or (D, N) for D resampling draws; each example's
    draws are averaged first (the estimate averages over them), then examples are resampled
    with replacement and the ratio of means recomputed.
    """
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
        raise InputError(f"level={level!r}: expected a confidence level between 0 and 1, e.g. 0.95")
    n_boot = whole_number(n_boot, "n_boot", 100, "2000")
    values = [torch.as_tensor(x, dtype=torch.float64) for x in (clean, ablated, scrubbed)]
    values = [v.mean(0) if v.dim() == 2 else v for v in values]
    n = values[0].numel()
    generator = torch.Generator().manual_seed(seed)
    examples = torch.randint(0, n, (n_boot, n), generator=generator)
    means = [v[examples].mean(1) for v in values]  # each (n_boot,)
    ratios = (means[2] - means[1]) / (means[0] - means[1])
    ratios = ratios[torch.isfinite(ratios)]
    if ratios.numel() == 0:
        return float("nan"), float("nan")
    low, high = torch.quantile(ratios, torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64))
    return float(low), float(high)
