"""Activation patching (interchange interventions) and path patching, single and swept.

Every function compiles to ``which``/``branch`` (see compile.py) and makes engine runs;
sweeps stack many experiments in one run (one block of the batch per component), in
chunks that keep a run's batch near ``max_tokens`` tokens.
"""
from __future__ import annotations

import logging
import math
import numbers
import sys
import warnings
from collections.abc import Iterable
from typing import Callable, Sequence

import pandas as pd
import torch

from ..errors import InputError, UnknownComponentError
from ..graph import component
from .compile import OUT, activation_patch_functions, check_writers, order, path_patch_functions, position_rows
from .tables import empty_head_table

logger = logging.getLogger("causal_hypotheses.progress")


def _tokens(x, label: str) -> torch.Tensor:
    """Token ids (B, T) from a LongTensor or a tokenizer output (whose padding is refused)."""
    if isinstance(x, dict) or hasattr(x, "keys"):
        if "input_ids" not in x:
            raise InputError(
                f"{label} is a mapping without 'input_ids' (keys {sorted(map(str, x.keys()))}); pass a LongTensor "
                "of token ids (B, T) or tokenizer(..., return_tensors='pt') outputs"
            )
        mask = x.get("attention_mask") if hasattr(x, "get") else None
        x = x["input_ids"]
        if mask is not None and torch.is_tensor(mask) and not bool((mask == 1).all()):
            raise InputError(
                f"{label} has padding (its attention_mask contains zeros); patching runs unpadded batches "
                "only: choose prompts of equal token length"
            )
    if not torch.is_tensor(x) or x.dim() != 2:
        shown = f"a tensor of shape {tuple(x.shape)}" if torch.is_tensor(x) else f"{type(x).__name__}"
        hint = f"; add the batch dimension with {label}[None]" if torch.is_tensor(x) and x.dim() == 1 else ""
        raise InputError(f"{label} must be a LongTensor of token ids (B, T) or a tokenizer output, got {shown}{hint}")
    if x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == torch.bool:
        raise InputError(f"{label} has dtype {x.dtype}; expected integer token ids: convert with {label}.long()")
    return x


def _pair(first, second, labels: tuple[str, str]) -> tuple[torch.Tensor, torch.Tensor]:
    """The two token batches of an experiment; they must have one shape (B, T)."""
    first, second = _tokens(first, labels[0]), _tokens(second, labels[1])
    if first.shape != second.shape:
        raise InputError(
            f"{labels[1]} has shape {tuple(second.shape)} but {labels[0]} has {tuple(first.shape)}; both must share "
            "one shape (B, T), example i of one paired with example i of the other: use prompts of equal token "
            "length and equal batch size"
        )
    return first, second


_EXAMPLES = {"nodes": "['a9.h9']", "senders": "['a5.h5']", "receivers": "['a9.h9.q'] (or 'out' for the logits)"}


def _names(names, label: str) -> list[str]:
    example = _EXAMPLES.get(label, "['a9.h9']")
    if isinstance(names, str):
        return [names]
    if names is None:
        raise InputError(f"{label}=None: name at least one component, e.g. {label}={example}")
    if not isinstance(names, Iterable) or isinstance(names, (bytes, dict)) or torch.is_tensor(names):
        raise InputError(
            f"{label}={names!r} ({type(names).__name__}): expected a component name or a list of them, e.g. {label}={example}"
        )
    names = list(names)
    if not names:
        raise InputError(f"{label} is empty; name at least one component, e.g. {label}={example}")
    return names


def activation_patch(engine, base, source, nodes, positions=None, *, logit_positions=None, logit_vocab=None) -> torch.Tensor:
    """Logits when ``nodes`` (heads, head inputs, layers, MLPs, embed) read ``source`` and
    everything else reads ``base``; downstream components are recomputed.  ``positions``
    (an index, a list, or a (B, T) bool mask) limits the patch to those positions.
    ``logit_positions`` and ``logit_vocab``: the positions and vocabulary ids whose logits are
    computed (``Engine.run``'s options; default every one)."""
    base, source = _pair(base, source, ("base", "source"))
    nodes = _names(nodes, "nodes")
    engine.graph.check(nodes)
    pattern = position_rows(positions, *base.shape)
    which, branch, key = activation_patch_functions([frozenset(nodes)], base.shape[0], pattern)
    return engine.run([base, source], which, branch, key=key, logit_positions=logit_positions,
                      logit_vocab=logit_vocab).logits


def _check_path_patch(graph, senders, receivers) -> None:
    check_writers(graph, senders, "sender")
    graph.check([r for r in receivers if r != OUT])
    inner = [r for r in receivers if r != OUT]
    for sender in senders:
        if OUT not in receivers and not any(graph.writes_into(component(sender), component(r).without_channel())
                                            for r in inner):
            raise UnknownComponentError(
                f"sender {sender!r} has no direct path into any receiver {sorted(receivers)}: a sender must come "
                "before its receiver in the residual stream (embed, a0, m0, a1, ...; where attention and MLP of a layer "
                "run in parallel, a{L} does not write into m{L}); add 'out' to receive at the logits"
            )


def path_patch(engine, clean, corrupt, senders, receivers, positions=None, *, logit_positions=None, logit_vocab=None) -> torch.Tensor:
    """Logits when only the direct paths from ``senders`` into ``receivers`` read ``corrupt``.

    Receivers are components (``a9.h9``, ``m10``), head inputs (``a9.h9.q``) or ``out``
    (the logits).  A receiver reads its clean input plus the senders' corrupt-minus-clean
    outputs; everything downstream of the receivers is recomputed; all other paths read
    ``clean``.  ``positions`` limits the senders' corrupt outputs to those positions.
    ``logit_positions``, ``logit_vocab``: as in :func:`activation_patch`.
    """
    clean, corrupt = _pair(clean, corrupt, ("clean", "corrupt"))
    senders, receivers = _names(senders, "senders"), _names(receivers, "receivers")
    _check_path_patch(engine.graph, senders, receivers)
    pattern = position_rows(positions, *clean.shape)
    which, branch, key = path_patch_functions([frozenset(senders)], frozenset(receivers), clean.shape[0], pattern)
    return engine.run([clean, corrupt], which, branch, key=key, logit_positions=logit_positions,
                      logit_vocab=logit_vocab).logits


def _per_block(metric: Callable, blocks: Sequence[torch.Tensor]) -> list[float]:
    values = []
    for block in blocks:
        value = metric(block)
        try:
            number = torch.as_tensor(value, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError) as error:
            raise InputError(
                f"metric returned {value!r} ({type(value).__name__}); expected a number or a tensor of numbers, "
                "one per example, e.g. lambda logits: logits[:, -1, answer] - logits[:, -1, distractor]"
            ) from error
        if number.numel() == 0:
            raise InputError(
                f"metric returned an empty {type(value).__name__}; expected a number or a tensor of numbers, "
                "one per example, e.g. lambda logits: logits[:, -1, answer] - logits[:, -1, distractor]"
            )
        values.append(float(number.mean()))
    return values


def _check_sweep_options(metric, max_tokens, chunk_size) -> None:
    if not callable(metric):
        raise InputError(
            f"metric={metric!r} ({type(metric).__name__}) is not a function; pass a function of the logits, "
            "e.g. lambda logits: logits[:, -1, answer] - logits[:, -1, distractor]"
        )
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, numbers.Integral) or max_tokens < 1:
        raise InputError(f"max_tokens={max_tokens!r}: expected a positive int, the tokens per engine run, e.g. 8192 (the default)")
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, numbers.Integral) or chunk_size < 1):
        raise InputError(
            f"chunk_size={chunk_size!r}: expected a positive int, the experiments per engine run, or None to "
            "size runs by max_tokens"
        )


def _sweep_names(names, label: str, engine) -> list[str]:
    names = _names(names, label)
    engine.graph.check(names)
    return names


def sweep_totals(stats: Sequence) -> dict:
    """The work of a sweep: its engine runs' ``RunStats`` summed (see engine/flops.py).  Keys:
    runs, seconds, forward_passes, rows_computed, node_evaluations, rows (per kind), flops,
    floor_flops."""
    rows: dict[str, int] = {}
    for s in stats:
        for kind, n in s.rows.items():
            rows[kind] = rows.get(kind, 0) + n
    return {
        "runs": len(stats),
        "seconds": sum(s.seconds for s in stats),
        "forward_passes": sum(s.forward_passes for s in stats),
        "rows_computed": sum(s.rows_computed for s in stats),
        "node_evaluations": sum(s.node_evaluations for s in stats),
        "rows": rows,
        "flops": sum(s.flops for s in stats),
        "floor_flops": sum(s.floor_flops for s in stats),
    }


def _sweep(engine, base, source, items, metric, compile_fn, max_tokens, chunk_size, logit_positions, progress, label):
    """The metric's mean with each item patched alone, and the runs' summed work (``sweep_totals``).
    Without ``logit_positions`` each run is made when the metric reads its logits, at the
    positions it indexes (engine/lazy.py)."""
    batch, seq = base.shape
    per_run = chunk_size or max(1, min(len(items), max_tokens // (batch * seq)))
    n_runs = math.ceil(len(items) / per_run)
    values: list[float] = []
    stats = []
    every_position = False
    for run in range(n_runs):
        group = items[run * per_run : (run + 1) * per_run]
        which, branch, key = compile_fn(group)
        k = len(group)
        inputs = [base.repeat(k, 1), source.repeat(k, 1)]
        if logit_positions is None:
            deferred = engine.deferred(inputs, which, branch, key=key)
            values += _per_block(metric, deferred.blocks(k))
            results, every_position = deferred.runs, every_position or deferred.every_position
        else:
            results = [engine.run(inputs, which, branch, key=key, logit_positions=logit_positions)]
            values += _per_block(metric, results[0].logits.chunk(k))
        stats += [result.stats for result in results]
        seconds = sum(result.stats.seconds for result in results)
        message = f"{label}: run {run + 1}/{n_runs} ({len(values)}/{len(items)} done, {seconds:.1f}s)"
        logger.info(message)
        if progress:
            print(message, file=sys.stderr, flush=True)
    if every_position and seq > 1:
        warnings.warn(
            f"{label}: the metric used the logits other than by indexing the positions it reads (e.g. "
            f"logits[:, -1], logits[:, -1, ids]), so every run computed and unembedded all {seq} positions; if it "
            "reads some positions only, index them first or pass logit_positions=-1 (or the list it reads): "
            "that is much faster with a large vocabulary",
            stacklevel=3,
        )
    totals = sweep_totals(stats)
    logger.info(
        "%s: %d runs, %.1fs, %d forward passes, %.3g FLOPs (floor %.3g), rows %s",
        label, totals["runs"], totals["seconds"], totals["forward_passes"], totals["flops"], totals["floor_flops"], totals["rows"],
    )
    return values, totals


def _as_table(names: list[str], values: list[float], graph) -> pd.DataFrame | pd.Series:
    parsed = [graph.parse(n) for n in names]
    if all(c.kind == "attn" and c.head is not None and c.channel is None for c in parsed):
        table = empty_head_table(graph.n_layers, graph.n_heads)  # a DataFrame that draws itself in notebooks
        for c, v in zip(parsed, values):
            table.loc[c.layer, c.head] = v
        return table
    return pd.Series(values, index=pd.Index(names, name="component"))


def activation_patch_sweep(
    engine,
    base,
    source,
    metric: Callable[[torch.Tensor], torch.Tensor],
    nodes: Sequence[str] | None = None,
    positions=None,
    *,
    max_tokens: int = 8192,
    chunk_size: int | None = None,
    logit_positions=None,
    progress: bool = False,
):
    """``metric(logits)`` (averaged over the batch) with each node patched alone.

    Nodes default to every head; the result is a DataFrame (layer x head) for heads and
    a Series by name otherwise.  Many nodes share one engine run (``max_tokens`` tokens
    per run, or ``chunk_size`` nodes); ``table.attrs["stats"]`` holds their summed work
    (:func:`sweep_totals`: runs, seconds, rows per kind, FLOPs and the floor's).

    The metric gets logits (B, T, V) that are computed when it indexes them, at the positions it
    indexes: ``lambda logits: logits[:, -1, answer] - logits[:, -1, distractor]`` makes the engine
    compute and unembed the last position only, as ``logit_positions=-1`` would (see
    engine/lazy.py); a metric that uses the logits otherwise (``logits.float()``, a softmax over
    them) gets every position, with a warning.  ``logit_positions`` (an index or a list) instead
    hands the metric logits (B, P, V) at those positions.
    """
    base, source = _pair(base, source, ("base", "source"))
    _check_sweep_options(metric, max_tokens, chunk_size)
    nodes = _sweep_names(nodes, "nodes", engine) if nodes is not None else engine.graph.heads()
    pattern = position_rows(positions, *base.shape)

    def compile_fn(group):
        return activation_patch_functions([frozenset([n]) for n in group], base.shape[0], pattern)

    values, totals = _sweep(engine, base, source, nodes, metric, compile_fn, max_tokens, chunk_size, logit_positions, progress, "activation_patch_sweep")
    table = _as_table(nodes, values, engine.graph)
    table.attrs["stats"] = totals
    return table


def path_patch_sweep(
    engine,
    clean,
    corrupt,
    receivers,
    metric: Callable[[torch.Tensor], torch.Tensor],
    senders: Sequence[str] | None = None,
    positions=None,
    *,
    max_tokens: int = 8192,
    chunk_size: int | None = None,
    logit_positions=None,
    progress: bool = False,
):
    """``metric(logits)`` with each sender path-patched alone into ``receivers``.

    Senders default to every head before the last receiver (every head for ``out``);
    the result is a DataFrame (layer x head; NaN for heads that cannot send) for heads,
    a Series by name otherwise.  The metric reads logits computed at the positions it indexes,
    as in :func:`activation_patch_sweep`; ``table.attrs["stats"]`` holds the runs' summed work.

    Example: ``path_patch_sweep(engine, clean, corrupt, ["a9.h9.q"], lambda logits: logits[:, -1, a]
    - logits[:, -1, b])``, or with ``logit_positions=-1``, ``lambda logits: logits[:, 0, a] - logits[:, 0, b]``.
    """
    clean, corrupt = _pair(clean, corrupt, ("clean", "corrupt"))
    _check_sweep_options(metric, max_tokens, chunk_size)
    receivers = _names(receivers, "receivers")
    inner = [r for r in receivers if r != OUT]
    if senders is None:
        engine.graph.check(inner)
        latest = float("inf") if OUT in receivers else max(order(r) for r in inner)
        senders = [h for h in engine.graph.heads() if order(h) < latest]
        if not senders:
            raise InputError(
                f"receivers={receivers!r}: no head comes before them, so the default senders (every head before "
                "the last receiver) are none; name senders, e.g. senders=['embed'], or choose a later receiver"
            )
    senders = _sweep_names(senders, "senders", engine)
    _check_path_patch(engine.graph, senders, receivers)
    pattern = position_rows(positions, *clean.shape)

    def compile_fn(group):
        return path_patch_functions([frozenset([s]) for s in group], frozenset(receivers), clean.shape[0], pattern)

    values, totals = _sweep(engine, clean, corrupt, senders, metric, compile_fn, max_tokens, chunk_size, logit_positions, progress, "path_patch_sweep")
    table = _as_table(senders, values, engine.graph)
    table.attrs["stats"] = totals
    return table
