"""Hints: which path that a hypothesis leaves out would recover the most if it were added?

Redwood's by-hand refinement loop, one step of it automated: when a hypothesis falls short in
causal scrubbing, add each path it leaves out "one level below what it names" (reading the
example itself, feature ``None``), scrub again, and rank the paths by the fraction of the
effect each adds::

    from causal_hypotheses.interventions.hints import hints
    for hint in hints(engine, hypothesis, task, "loss", top=5):
        print(hint.pattern, f"+{hint.adds:.3f} -> {hint.recovered:.3f}")

**Candidates**, unless given.  One level below what the hypothesis names, at the grain at which
scrubbing resamples inputs (a whole layer, or each head of a layer where the hypothesis names
something inside that layer at that place):

1. *direct paths* to the output: each writer of the final residual stream (``embed``, ``a{L}``,
   ``m{L}``; heads ``a{L}.h{H}`` of a layer it splits there) as a pattern of its own;
2. *inputs of named components*: for each head the hypothesis names (as the last or an
   intermediate element of a pattern, as ``a1.h0`` or as one of its inputs, ``a1.h0.k``), each
   writer into its query, key and value, extending that pattern's prefix: ``("a1.h0.k",
   "a0.h3")``; likewise the writers into a named MLP or whole attention layer;
3. then, finer, each head inside the whole-layer candidates of 1 and 2 (``("a0.h3",)`` inside
   ``("a0",)``): scored in a second round only for the whole layers among the ``top`` that add
   more than ``NOISE`` (0.01), or all at once with ``exhaustive=True``.

A candidate is dropped when the hypothesis already covers it (an existing pattern is a
prefix of it, name by name at the same or a coarser level: every path it matches is already
named) or when it would swallow an existing pattern (``("a1.h0",)`` when the hypothesis names
``("a1.h0.k", "a0.h3")``; ``("a1.h0.k", "a0")`` when it names ``("a1.h0.k", "a0.h0")``): that
is a coarsening, not a refinement, and would rank first for the wrong reason.  Past
``max_candidates`` (direct paths first) the rest are left out with a warning.

**Scores.**  Each candidate is scored by scrubbing ``hypothesis + {candidate: None}`` with the
same seed, draws, ablation and resampling as the base scrub: the numbers are
:func:`~causal_hypotheses.interventions.scrubbing.scrub`'s (same seed, same samples at the
same places of the tree; equal to about 1e-8).  ``recovered`` is its fraction recovered,
``adds`` that minus the base hypothesis's.  The clean run and the ablated baseline do not
depend on the hypothesis: the base scrub runs them once and every candidate reuses them.

**Cost.**  One base ``scrub`` (a clean run, and per draw a scrubbed and an ablated run), then
per draw one scrubbed run per candidate, *batched*: c candidates share one engine run of
c * n examples (the examples tiled c times; ``branch`` answers per example, so each copy
follows its own candidate's tree; on a path a candidate cannot reach, its copy answers as the
hypothesis alone, computed once), in runs of about ``max_tokens`` tokens.  Batching shares
the planning, the capture and every node's overhead, but not the tensor work: each copy
recomputes everything the hypothesis's own scrubbed run computes (the engine has no way to
share a computed node between copies or runs), and its own unembedding and metric.  So the
cost is about one scrubbed run per candidate: measured with one CPU thread, on the trained
2-layer induction model (n = 16, about 45 candidates and a second round of 4-8), 1.5 s against
0.05 s for the base scrub (~30x; each candidate run separately: 3-4.5 s), and on a random
GPT-2-small-shaped model (n = 16, 16 tokens, 100 candidates) 26 s against 1.0 s (~26x; the
unembedding into 50257 logits and the loss are half of it).  Built-in metrics unembed only
the positions they read.  ``progress=True`` prints each run to stderr.

**Screening.**  So that only a few candidates pay that cost, every candidate is first scored on
``screen`` (8) seeded examples with one draw, and only the ``top + 2`` best are scored on the
whole task with every draw (the numbers returned are always these).  On the trained induction
model (n = 64, 2 draws, one key composition left out, 45 candidates), with the claim's own scrub
passed as ``base``, quiet machine: 1.04 s against 0.18 s for the scrub (5.7x), against 5.1 s (28x)
scoring every candidate on the whole task; the same four leading hints, the fifth a different
one of the 0.0006-sized noise.  The exact scores of the ``top + 2`` finalists over every draw are
most of it (each costs about one scrubbed run per draw).  ``screen=None`` scores every candidate on the whole task.

The scores are point estimates on one set of draws: at n = 16-32 an ``adds`` within about
0.01 of zero is noise (on the true induction circuit none exceeds 0.01; a left-out key read
adds 0.03-0.14).  Confirm a hint by scrubbing the refined hypothesis with more examples and
draws, and read its interval.
"""
from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch

from ..errors import InputError, UnknownComponentError
from ..graph import CHANNELS, Component, ModelGraph, component, within
from ..metrics import finite, get_metric, metric_reads, whole_number
from .scrubbing import Hypothesis, draw_setups, scrub

NOISE = 0.01  # an adds this small is noise at the usual n (see Scores): no finer round for it
SCREEN_MARGIN = 2  # candidates past ``top`` that the screening passes on to the exact scores
COMPLETE = 1 - 1e-6  # a base fraction recovered at least this leaves nothing to add
TOKENS_PER_RUN = 65536  # default size of a batched run, in tokens (candidates x examples x positions)
LOGITS_PER_RUN = 2**27  # ... and in logits (tokens x vocabulary: 512 MiB of float32)


@dataclass(frozen=True)
class Hint:
    """A path to add to a hypothesis, and what adding it (reading the example itself) does."""

    pattern: tuple[str, ...]  # the pattern to add, from the output toward the input
    adds: float  # fraction recovered with it minus without it (a fraction of clean - ablated)
    recovered: float  # fraction recovered with it added


# ----------------------------------------------------------------------------- candidates


def _covers(outer: tuple, inner: tuple) -> bool:
    """Every path matching ``inner`` matches ``outer`` (``outer`` is a prefix of ``inner``, name by
    name at the same or a coarser level)."""
    return len(outer) <= len(inner) and all(within(o, i) for o, i in zip(outer, inner))


def _covering(patterns: Iterable[tuple], candidate: tuple) -> tuple | None:
    return next((pattern for pattern in patterns if _covers(pattern, candidate)), None)


def _swallowed(patterns: Iterable[tuple], candidate: tuple) -> tuple | None:
    return next((pattern for pattern in patterns if pattern != candidate and _covers(candidate, pattern)), None)


def _split_at(patterns: Iterable[tuple], place: tuple, writer: str) -> bool:
    """Whether scrubbing splits ``writer`` into its heads at ``place``: some pattern that the walk
    down ``place`` reaches names something inside ``writer`` there."""
    depth = len(place)
    return any(
        len(pattern) > depth and all(within(p, q) for p, q in zip(pattern, place))
        and pattern[depth] != writer and within(writer, pattern[depth])
        for pattern in patterns
    )


def _writer_groups(graph: ModelGraph, target: Component | None) -> list[tuple[str, list[str]]]:
    """(layer-level writer, the heads inside it) for each writer into ``target``'s input (None:
    the output), in residual-stream order."""
    groups = []
    for writer in graph.writers():
        parsed = component(writer)
        if target is not None and not graph.writes_into(parsed, target):
            continue
        inside = [head for head in graph.heads() if parsed.kind == "attn" and component(head).layer == parsed.layer]
        groups.append((writer, inside))
    return groups


def _inputs_of(parsed: Component) -> list[Component]:
    """The inputs one level below a named component: a head's (or head input's) query, key and
    value; a whole attention layer's or an MLP's input; nothing for the embedding."""
    if parsed.kind == "embed":
        return []
    if parsed.head is not None:
        return [Component("attn", parsed.layer, parsed.head, channel) for channel in CHANNELS]
    return [parsed]


def _candidate_levels(graph: ModelGraph, hypothesis: Hypothesis) -> tuple[list[tuple], dict[tuple, list[tuple]]]:
    """(coarse, inside): the candidates one level below what the hypothesis names, as scrubbing
    resamples inputs (a whole layer, or each head of a layer where the hypothesis names something
    inside it there), for the output first (direct paths) and then for each input of each named
    component (a head's query, key and value; a named MLP's or layer's input); and, for each
    whole-layer candidate, the candidates of the heads inside it.  Candidates the hypothesis
    covers, or that would swallow one of its patterns, are left out."""
    patterns = list(hypothesis.paths)
    for pattern in patterns:
        graph.check_pattern(pattern)
    coarse, inside, seen = [], {}, set()

    def keep(candidate: tuple) -> bool:
        fresh = candidate not in seen
        seen.add(candidate)
        return fresh and _covering(patterns, candidate) is None and _swallowed(patterns, candidate) is None

    def propose(place: tuple) -> None:
        target = component(place[-1]) if place else None  # (): the output
        for writer, heads in _writer_groups(graph, target):
            whole = place + (writer,)
            if heads and _split_at(patterns, place, writer):
                coarse.extend(candidate for candidate in (place + (head,) for head in heads) if keep(candidate))
            elif keep(whole):
                coarse.append(whole)
                if heads:
                    inside[whole] = [place + (head,) for head in heads]

    propose(())
    for pattern in patterns:
        for i, element in enumerate(pattern):
            for target in _inputs_of(component(element)):
                propose(pattern[:i] + (target.name,))
    return coarse, inside


def candidate_paths(graph: ModelGraph, hypothesis: Hypothesis) -> list[tuple[str, ...]]:
    """Every default candidate of :func:`hints` (``exhaustive=True``), in the order a cap keeps
    them: one level below what the hypothesis names (direct paths to the output first, then the
    inputs of named components; see the module docstring), then the heads inside the whole-layer
    ones, in the same order."""
    coarse, inside = _candidate_levels(graph, hypothesis)
    return coarse + [head for whole in coarse for head in inside.get(whole, [])]


def _given_candidates(graph: ModelGraph, hypothesis: Hypothesis, candidates) -> list[tuple[str, ...]]:
    example = "e.g. candidates=[('a1.h0.k', 'a0.h3'), ('a0',)]"
    if isinstance(candidates, (str, Mapping)) or not isinstance(candidates, Iterable):
        raise InputError(f"candidates={candidates!r}: expected a list of patterns (tuples of component names), {example}")
    chosen = []
    for i, candidate in enumerate(candidates):
        if isinstance(candidate, str):
            candidate = (candidate,)
        if not isinstance(candidate, (tuple, list)) or not all(isinstance(name, str) for name in candidate):
            raise InputError(
                f"candidates[{i}] = {candidate!r} is not a pattern; write each candidate as a tuple of component "
                f"names from the output toward the input, {example}"
            )
        candidate = tuple(candidate)
        try:
            graph.check_pattern(candidate)
        except UnknownComponentError as error:
            raise UnknownComponentError(f"candidates[{i}] = {candidate!r}: {error}") from error
        covering = _covering(hypothesis.paths, candidate)
        if covering is not None:
            raise InputError(
                f"candidates[{i}] = {candidate!r} is already covered by the hypothesis's pattern {covering!r} "
                "(every path it matches is named), so adding it changes nothing; leave it out"
            )
        if candidate not in chosen:
            chosen.append(candidate)
    if not chosen:
        raise InputError(f"candidates is empty; pass at least one pattern ({example}) or None for the default candidates")
    return chosen


# ----------------------------------------------------------------------------- batched scoring


def _tiled(inputs: list, copies: int) -> list:
    return [item.repeat(copies, 1) if torch.is_tensor(item) else item for item in inputs]


def _related(path: tuple, pattern: tuple) -> bool:
    """Whether ``pattern`` can bear on ``path``: name by name, along their common length, one lies
    inside the other.  A pattern that parts from the path (two unrelated names at one place) adds
    no node that the path's walk through the tree reaches, so the path reads as without it."""
    return all(within(p, c) or within(c, p) for p, c in zip(path, pattern))


def _batched(base, candidates: list[tuple], functions: list, n: int):
    """One which/branch over ``len(candidates)`` copies of the ``n`` examples, copy k following the
    tree of ``functions[k]`` (the hypothesis with ``candidates[k]`` added).  On a path unrelated to
    a candidate its copy answers as the hypothesis alone (``base``), which is computed once.  A
    copy whose tree stops above a path that another copy splits is masked out there by the
    engine's per-example branch, so what it is asked below does not matter."""
    copies = len(candidates)
    base_which, base_branch = base

    def related(path):
        path = tuple(path)
        return [k for k, candidate in enumerate(candidates) if _related(path, candidate)]

    def which(path):
        first = base_which(path)
        answers = {k: functions[k][0](path) for k in related(path)}
        if isinstance(first, int) and all(isinstance(a, int) and a == first for a in answers.values()):
            return first
        out = torch.empty(copies, n, dtype=torch.long)
        out[:] = first
        for k, answer in answers.items():
            out[k] = answer
        return out.flatten()

    def branch(path):
        first = bool(base_branch(path))
        answers = [first] * copies
        for k in related(path):
            answers[k] = bool(functions[k][1](path))
        if all(answers):
            return True
        if not any(answers):
            return False
        return torch.tensor(answers).repeat_interleave(n)

    return which, branch


def _scrubbed_means(engine, hypothesis, task, candidates, metric, clean_logits, ablation, resampling,
                    seed, draws, max_tokens, label: str | None) -> torch.Tensor:
    """(K,) mean over draws and examples of the metric with each candidate added; ``label``: print
    each run to stderr under that label."""
    n, seq = task.clean.shape
    measure = get_metric(metric)
    if max_tokens is None:  # a run's logits (tokens x vocabulary) stay under LOGITS_PER_RUN floats
        max_tokens = min(TOKENS_PER_RUN, LOGITS_PER_RUN // max(1, int(engine.adapter.vocab_size)))
    per_run = max(1, min(len(candidates), max_tokens // (n * seq)))
    chunks = [candidates[i : i + per_run] for i in range(0, len(candidates), per_run)]
    read, measured_task = metric_reads(metric, task, engine.adapter.vocab_size)  # a built-in metric's: compute only those
    totals = torch.zeros(len(candidates), dtype=torch.float64)
    started = time.perf_counter()
    generator = torch.Generator().manual_seed(seed)  # scrub's, consumed in the same order (shared mode)
    for draw, inputs, functions in draw_setups(hypothesis, task, ablation, resampling, seed, draws, generator):
        done = 0
        for c, chunk in enumerate(chunks):
            trees = [functions({**hypothesis.paths, candidate: None})[:2] for candidate in chunk]
            which, branch = _batched(functions(hypothesis.paths)[:2], chunk, trees, n)
            run = engine.run(_tiled(inputs, len(chunk)), which, branch, **read)
            logits = run.logits.float().cpu()
            for k in range(len(chunk)):
                values = finite(measure(logits[k * n : (k + 1) * n], measured_task, clean_logits), metric,
                                f"the run with candidate {chunk[k]!r} added")
                totals[done + k] += values.mean()
            done += len(chunk)
            if label:
                print(f"{label}: draw {draw + 1}/{draws}, run {c + 1}/{len(chunks)}: {done}/{len(candidates)} "
                      f"candidates scored ({time.perf_counter() - started:.1f}s)", file=sys.stderr, flush=True)
    return totals / draws


def _clean_logits(engine, metric, task):
    """The clean logits, laid out as the metric's runs, when the metric reads them (kl and metrics of
    your own); None otherwise."""
    if metric != "kl" and isinstance(metric, str):
        return None
    read = metric_reads(metric, task, engine.adapter.vocab_size)[0]
    return engine.run([task.clean], lambda path: 0, **read).logits.float().cpu()


def _screened(engine, hypothesis, task, metric, pool: list[tuple], keep: int, examples: int, settings: dict,
              max_tokens, label) -> list[tuple]:
    """The ``keep`` candidates that add the most on ``examples`` seeded examples with one draw, in
    the pool's order: a cheap first pass, so that only they are scored on the whole task."""
    generator = torch.Generator().manual_seed(settings["seed"])
    small = task.subset(torch.randperm(len(task), generator=generator)[:examples].sort().values)
    base = scrub(engine, hypothesis, small, metric, draws=1, **settings)
    clean_logits = _clean_logits(engine, metric, small)
    means = _scrubbed_means(engine, hypothesis, small, pool, metric, clean_logits, settings["ablation"],
                            settings["resampling"], settings["seed"], 1, max_tokens, label)
    best = set(sorted(range(len(pool)), key=lambda i: -float(means[i]) * (1 if base.clean >= base.ablated else -1))[:keep])
    return [candidate for i, candidate in enumerate(pool) if i in best]


# ----------------------------------------------------------------------------- the entry point


def hints(
    engine,
    hypothesis: Hypothesis | Mapping,
    task,
    metric="loss",
    *,
    top: int = 5,
    seed: int = 0,
    draws: int = 1,
    ablation: str = "resample",
    resampling: str = "independent",
    candidates: Iterable | None = None,
    max_candidates: int = 256,
    max_tokens: int | None = None,
    exhaustive: bool = False,
    progress: bool = False,
    screen: int | None = 8,
    base=None,
) -> list[Hint]:
    """The ``top`` paths left out of ``hypothesis`` whose addition recovers the most; see the
    module docstring.

    Returns Hints sorted by ``adds`` (largest first; an ``adds`` near or below zero is noise, not
    a hint), or ``[]`` when the hypothesis already recovers everything (fraction recovered >= 1)
    or leaves no candidate.

    ``candidates``: patterns to try (one round) instead of the default ones.  The default ones
    are scored in two rounds: those one level below what the hypothesis names, then the heads
    inside each whole-layer candidate among the ``top`` that adds something; ``exhaustive=True``
    scores every head inside every whole layer in one round (:func:`candidate_paths`, slower).
    ``max_candidates`` caps the first round (direct paths first, with a warning);
    ``max_tokens`` sizes the batched engine runs (default: 65536 tokens, fewer for a large
    vocabulary, so that a run's logits stay under 512 MiB); ``progress`` prints each run to stderr.

    ``screen`` (default 8): when there are more than ``top + 2`` candidates and the task has more
    than ``screen`` examples, every candidate is first scored on ``screen`` seeded examples with
    one draw, and only the ``top + 2`` best are scored on the whole task with every draw; the
    scores returned are always the whole task's.  ``screen=None`` scores every candidate on the
    whole task.  ``base``: the hypothesis's own ScrubResult on this task with these settings,
    when the caller has it (a claim does), so that it is not scrubbed again.
    """
    top = whole_number(top, "top", 1, "5")
    draws = whole_number(draws, "draws", 1, "2")
    max_candidates = whole_number(max_candidates, "max_candidates", 1, "256")
    if max_tokens is not None:
        max_tokens = whole_number(max_tokens, "max_tokens", 1, "8192")
    if isinstance(hypothesis, Mapping):
        hypothesis = Hypothesis(hypothesis)
    if not isinstance(hypothesis, Hypothesis):
        raise InputError(f"hypothesis is a {type(hypothesis).__name__}; pass a Hypothesis({{pattern: feature}}) or a dict")
    given = None if candidates is None else _given_candidates(engine.graph, hypothesis, candidates)
    if screen is not None:
        screen = whole_number(screen, "screen", 2, "8")
    settings = dict(seed=seed, ablation=ablation, resampling=resampling)
    if base is None:
        base = scrub(engine, hypothesis, task, metric, draws=draws, **settings)
    if base.clean == base.ablated:
        raise InputError(
            f"on task {task.name!r} the ablated model scores the same as the clean one ({base.clean:.6g} on "
            f"{base.metric!r}), so there is no effect to recover and no path can add to it; use a task and metric "
            "on which ablating the model changes something"
        )
    if base.fraction_recovered >= COMPLETE:
        return []
    inside: dict[tuple, list[tuple]] = {}
    if candidates is None:
        pool, inside = _candidate_levels(engine.graph, hypothesis)
        if exhaustive:
            pool, inside = pool + [head for whole in pool for head in inside.get(whole, [])], {}
        if len(pool) > max_candidates:
            warnings.warn(
                f"hints: {len(pool)} candidate paths, scoring the first {max_candidates} (direct paths first); "
                f"left out: {pool[max_candidates:][:3]}...; raise max_candidates=, or pass candidates= to choose",
                stacklevel=2,
            )
            pool = pool[:max_candidates]
    else:
        pool = given
    if not pool:
        return []
    clean_logits = _clean_logits(engine, metric, task)
    effect = base.clean - base.ablated
    if progress:
        print(f"hints: {hypothesis.name!r} recovers {base.fraction_recovered:.3f}; scoring {len(pool)} candidates",
              file=sys.stderr, flush=True)

    def scored(paths: list[tuple], label: str) -> list[Hint]:
        scrubbed = _scrubbed_means(engine, hypothesis, task, paths, metric, clean_logits, ablation, resampling,
                                   seed, draws, max_tokens, label if progress else None)
        recovered = (scrubbed - base.ablated) / effect
        return [Hint(path, float(r) - base.fraction_recovered, float(r)) for path, r in zip(paths, recovered)]

    if screen is not None and len(pool) > top + SCREEN_MARGIN and len(task) > screen:
        pool = _screened(engine, hypothesis, task, metric, pool, top + SCREEN_MARGIN, screen, settings, max_tokens,
                         "hints, screening" if progress else None)
    found = scored(pool, "hints")
    # Round 2: the heads inside each whole layer that made the top and adds something.
    leading = sorted(found, key=lambda hint: -hint.adds)[:top]
    finer = [head for hint in leading if hint.adds > NOISE for head in inside.get(hint.pattern, [])]
    if finer:
        found += scored(finer, "hints, heads inside the leading layers")
    found.sort(key=lambda hint: -hint.adds)  # stable: ties keep the candidates' order
    return found[:top]
