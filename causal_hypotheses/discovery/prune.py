"""Exact edge pruning (ACDC, Conmy et al. 2023) on the engine, ordered by attribution scores.

The graph's edges are the attribution edges (``sender -> receiver``: ``embed``/``a{L}.h{H}``/
``m{L}`` into ``a{L}.h{H}.q``/``.k``/``.v``, ``m{L}`` or ``out``).  A *removed* edge reads the
corrupt input: in the engine's tree every path that passes through a removed edge reads the
corrupt prompt, every other path the clean one (for one edge that is ``path_patch(engine,
clean, corrupt, [sender], [receiver])``).  The greedy pass visits receivers from the output
back (``out``, the last MLP, the last attention layer's head inputs, ...), skipping receivers
that no kept edge connects to the output, and removes an edge when the metric (batch mean)
moves by less than ``threshold`` from the current graph's value.

``threshold`` bounds each removal's change, not their sum: many removals, each under it, can
add up (on SmolLM2's IOI, 0.02 of the change per edge left 0.37 of the clean logit difference).
``budget`` bounds the sum: with it, an edge is removed only if the pruned graph's metric also
stays within ``budget`` of the clean metric (|pruned - clean| <= budget), so the graph returned
is within the budget of the clean value whatever the threshold.

Exact, unlike attribution: each decision is an engine run.  Attribution only orders the
tests: a receiver's edges are tried from the smallest |score| up, in chunks: first every edge
whose |score| is under the threshold together, then the others one at a time; a chunk doubles
while whole chunks can be removed together (their joint change under the threshold) and halves
when one cannot, so the many edges that do nothing cost a few runs, not one each.  (Conmy et al.
test edges one at a time, each against the threshold; a chunk removed here changed the metric
by less than the threshold in all, which is stricter.)

The kept graph is returned as its paths from the output to the embedding (the engine's path
grammar, :class:`causal_hypotheses.graph.Path`), and as a :class:`Hypothesis` of those paths.
"""
from __future__ import annotations

import numbers
import sys
from dataclasses import dataclass, field
from typing import Callable

import pandas as pd
import torch

from ..errors import InputError
from ..graph import Path, component
from ..interventions.compile import OUT
from ..interventions.patching import _pair
from ..interventions.scrubbing import Hypothesis
from .attribution import Attribution, attribute

MAX_PATHS = 20_000  # paths of a kept graph listed at most; a larger graph is an error that says so


class EdgeSet:
    """``which``/``branch``/``key`` for the engine: paths through any edge of ``removed``, or
    through any node of ``nodes`` (all of its edges removed: it reads the corrupt input
    wherever it is read), read input 1 (corrupt); all others input 0 (clean).

    A path's edges are its consecutive elements (receiver, sender), plus (``out``, first
    element); a head in the middle of a path is named by the input it is entered by
    (``a1.h0.q``), so the receiver is that name and the sender the next element without its
    channel.  ``branch`` splits where a removed edge or node may lie below: a layer whose heads
    send a removed edge into the path's receiver or hold a removed node, a component that holds
    a removed edge's receiver, and anything later in the stream than a removed edge's receiver
    or a removed node."""

    def __init__(self, removed=(), nodes=()) -> None:
        self.removed = frozenset(removed)
        self.nodes = frozenset(nodes)
        self.by_receiver: dict[str, set[str]] = {}
        for sender, receiver in self.removed:
            self.by_receiver.setdefault(receiver, set()).add(sender)
        inner = [r for r in self.by_receiver if r != OUT]
        self.first = min([component(r).order for r in inner] + [component(n).order for n in self.nodes], default=None)
        self.holders = {r.rsplit(".", 1)[0] for r in inner if "." in r} | {r.split(".")[0] for r in inner} | set(inner)
        self.holders |= {n.split(".")[0] for n in self.nodes if ".h" in n}  # a layer holding a removed head
        self.layers_sending = {(s.split(".")[0], r) for s, r in self.removed if ".h" in s}

    def _read_corrupt(self, path) -> bool:
        for i, element in enumerate(path):
            sender = _sender(element)
            if sender in self.nodes:
                return True
            senders = self.by_receiver.get(OUT if i == 0 else path[i - 1])
            if senders and sender in senders:
                return True
        return False

    def which(self, path) -> int:
        return 1 if self._read_corrupt(path) else 0

    def branch(self, path) -> bool:
        if not (self.removed or self.nodes) or self._read_corrupt(path):
            return False
        last = path[-1]
        if last == "embed":
            return False
        if (last, OUT if len(path) == 1 else path[-2]) in self.layers_sending:  # some of its heads send a removed edge here
            return True
        if last in self.holders:  # holds a removed edge's receiver (a1, a1.h0, a1.h0.q, m1) or a removed head
            return True
        return self.first is not None and self.first < component(last).order

    def key(self, path):
        """What the subtree below ``path`` depends on besides its last element."""
        receiver = OUT if len(path) == 1 else path[-2]
        return (self._read_corrupt(path), receiver if (path[-1], receiver) in self.layers_sending else None)


def _sender(element: str) -> str:
    """A path element as a sender: a head input names its head."""
    return element[: element.rfind(".")] if element.count(".") == 2 else element


def _evaluate(engine, clean, corrupt, metric, removed, read: dict, nodes=()) -> float:
    edges = EdgeSet(removed, nodes)
    logits = engine.run([clean, corrupt], edges.which, edges.branch, key=edges.key, **read).logits
    value = metric(logits)
    return float(torch.as_tensor(value, dtype=torch.float64).mean())


@dataclass(frozen=True)
class PrunedGraph:
    """The result of :func:`prune`.

    ``edges``: every edge with its attribution ``score``, ``kept`` (bool) and ``decision``
    ("kept", "removed", "unreachable": its receiver no longer reaches the output, "node
    removed": its sender is not a candidate node, "not tested": outside ``max_edges``).
    ``paths``: the kept graph's paths from the output to the embedding.  ``clean``,
    ``corrupt``, ``pruned``: the metric on the clean input, on the corrupt one, and with every
    edge but the kept ones reading the corrupt input.  ``runs``: engine runs made.
    ``budget``: the largest |pruned - clean| a removal could leave (None: no bound).
    """

    edges: pd.DataFrame
    paths: tuple[Path, ...]
    clean: float
    corrupt: float
    pruned: float
    threshold: float
    runs: int
    budget: float | None = None
    log: list = field(default_factory=list, repr=False)

    def kept(self) -> pd.DataFrame:
        return self.edges[self.edges.kept]

    def components(self) -> list[str]:
        """Heads and MLPs on the kept paths, in stream order."""
        names = {_sender(element) for path in self.paths for element in path} - {"embed"}
        return sorted(names, key=lambda n: (component(n).order, n))

    def hypothesis(self, name: str = "pruned circuit") -> Hypothesis:
        """The kept paths as a hypothesis: each reads the example itself."""
        if not self.paths:
            raise InputError("the pruned graph keeps no path from the output to the embedding; lower the threshold")
        return Hypothesis({tuple(path): None for path in self.paths}, name=name)


def kept_paths(kept: set[tuple[str, str]], graph, limit: int = MAX_PATHS) -> tuple[Path, ...]:
    """Every path from the output to the embedding whose edges are all in ``kept``."""
    into: dict[str, list[str]] = {}
    for sender, receiver in kept:
        into.setdefault(receiver, []).append(sender)
    for senders in into.values():
        senders.sort(key=lambda n: (component(n).order, n))
    paths: list[Path] = []

    def extend(prefix: tuple, sender: str) -> None:
        if len(paths) > limit:
            raise InputError(
                f"the kept graph has more than {limit} paths from the output to the embedding; raise the "
                "threshold to keep fewer edges, or pass a larger limit"
            )
        if sender == "embed":
            paths.append(Path(prefix + ("embed",), graph))
            return
        inputs = [f"{sender}.{c}" for c in "qkv"] if ".h" in sender else [sender]
        for receiver in inputs:
            for below in into.get(receiver, []):
                extend(prefix + (receiver,), below)

    for sender in into.get(OUT, []):
        extend((), sender)
    return tuple(paths)


def _receivers_backward(edges: pd.DataFrame) -> list[str]:
    """Receivers from the output back: out, then by decreasing place in the stream."""
    names = list(dict.fromkeys(edges.receiver))
    return sorted(names, key=lambda r: (float("inf") if r == OUT else component(r).order, r), reverse=True)


def _check(threshold, scores, budget=None) -> None:
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not threshold >= 0:
        raise InputError(f"threshold={threshold!r}: expected a number >= 0, the largest change of the metric's mean "
                         "an edge may make and still be removed, e.g. 0.01 * |clean - corrupt|")
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, numbers.Real) or not budget >= 0):
        raise InputError(f"budget={budget!r}: expected a number >= 0, the largest |pruned - clean| of the metric's mean "
                         "the removals may add up to, e.g. 0.1 * |clean - corrupt|, or None for no bound")
    if scores is not None and not isinstance(scores, Attribution):
        raise InputError(f"scores={type(scores).__name__}: expected the Attribution of attribute(...) with edges, or None to compute it")
    if scores is not None and scores.edges is None:
        raise InputError("scores were computed with edges=False; pruning orders edges by their scores: call attribute(..., edges=True)")


def prune(
    engine,
    clean,
    corrupt,
    metric: Callable[[torch.Tensor], torch.Tensor],
    threshold: float,
    *,
    budget: float | None = None,
    scores: Attribution | None = None,
    nodes=None,
    max_edges: int | None = None,
    logit_positions=None,
    logit_vocab=None,
    progress: bool = True,
) -> PrunedGraph:
    """The ACDC pass over the model's edges (see the module docstring).

    ``metric(logits)``: one value per example (or their mean); ``threshold``: the largest change
    of its batch mean that removing an edge (or a chunk of edges) may make.  ``budget``: the largest
    distance |pruned - clean| of the batch mean that the removals together may leave (None: no
    bound; a graph that starts outside it, through ``nodes``/``max_edges``, removes nothing more).  ``scores``: an
    :class:`Attribution` with edges (computed with EAP here when None).  ``logit_positions``:
    as in the sweeps (the metric then reads logits (B, P, V)); ``logit_vocab``: the vocabulary ids
    whose logits are computed (then (B, P, K), as ``Engine.run``).  ``progress``: a tqdm bar
    (with its ETA) over the edges decided, on stderr.

    For large models, restrict the search: ``nodes`` (heads and MLPs; the embedding always
    stays) keeps only those as candidates, every other node reading the corrupt input from the
    start (decision "node removed"); ``max_edges`` tests only the edges with the largest |score|
    among the candidates', the others removed from the start ("not tested").
    """
    clean, corrupt = _pair(clean, corrupt, ("clean", "corrupt"))
    _check(threshold, scores, budget)
    if max_edges is not None and (isinstance(max_edges, bool) or not isinstance(max_edges, numbers.Integral) or max_edges < 1):
        raise InputError(f"max_edges={max_edges!r}: expected a positive int (the edges to test, by |score|) or None for all")
    if scores is None:
        scores = attribute(engine, clean, corrupt, metric, logit_positions=logit_positions, logit_vocab=logit_vocab)
    table = scores.edges.copy()
    decision: dict[tuple[str, str], str] = {}
    removed_nodes: set[str] = set()
    if nodes is not None:
        names = [nodes] if isinstance(nodes, str) else list(nodes)
        for parsed, name in zip(engine.graph.check(names), names):
            if parsed.kind == "attn" and (parsed.head is None or parsed.channel is not None):
                raise InputError(f"nodes: {name!r} is not a head or an MLP; name heads ('a1.h0') and MLPs ('m0')")
        candidates = set(names) | {"embed"}
        everything = set(table.sender)
        removed_nodes = everything - candidates
        for sender, receiver in zip(table.sender, table.receiver):
            if sender in removed_nodes:
                decision[(sender, receiver)] = "node removed"
    removed: set[tuple[str, str]] = set()
    if max_edges is not None:
        open_rows = table[[(s, r) not in decision for s, r in zip(table.sender, table.receiver)]]
        if nodes is not None:  # edges into removed nodes never reach the output
            open_rows = open_rows[[r == OUT or _sender(r) not in removed_nodes for r in open_rows.receiver]]
        ranked = open_rows.assign(size=open_rows.score.abs()).sort_values("size", ascending=False, kind="stable")
        for edge in zip(ranked.sender[max_edges:], ranked.receiver[max_edges:]):
            decision[edge] = "not tested"
            removed.add(edge)
    read = {"logit_positions": logit_positions, "logit_vocab": logit_vocab}
    runs = 0

    def value(edges) -> float:
        nonlocal runs
        runs += 1
        return _evaluate(engine, clean, corrupt, metric, edges, read, removed_nodes)

    clean_value, corrupt_value = (
        float(torch.as_tensor(metric(engine.run([x], lambda path: 0, **read).logits), dtype=torch.float64).mean())
        for x in (clean, corrupt)
    )
    current = value(removed) if (removed or removed_nodes) else clean_value
    log: list = []
    alive = {OUT}
    receivers = _receivers_backward(table)
    grouped = {r: rows for r, rows in table.groupby("receiver")}
    bar = _bar(sum(edge not in decision for edge in zip(table.sender, table.receiver)), progress)
    try:
        for receiver in receivers:
            rows = grouped[receiver]
            rows = rows[[(s, r) not in decision for s, r in zip(rows.sender, rows.receiver)]]
            edges = list(zip(rows.sender, rows.receiver))
            target = OUT if receiver == OUT else _sender(receiver)
            reaches = receiver == OUT or any(decision.get((target, r)) == "kept" for r in alive)
            if not reaches or not edges:
                decision.update({edge: "unreachable" for edge in edges})
                bar.update(len(edges))
                continue
            alive.add(receiver)
            magnitude = rows.score.abs().to_numpy()
            pending = [edges[i] for i in magnitude.argsort(kind="stable")]
            negligible = int((magnitude < threshold).sum())  # the edges attribution calls negligible: one chunk first
            size = max(1, negligible)
            while pending:
                chunk = pending[: min(size, len(pending))]
                trial = value(removed | set(chunk))
                change = abs(trial - current)
                log.append((receiver, len(chunk), trial, change))
                if change < threshold and (budget is None or abs(trial - clean_value) <= budget):
                    removed |= set(chunk)
                    decision.update({edge: "removed" for edge in chunk})
                    # after the negligible chunk, the edges attribution calls large one at a time
                    size = 1 if len(chunk) == negligible else len(chunk) * 2
                    negligible = -1
                    current, pending = trial, pending[len(chunk):]
                    bar.update(len(chunk))
                elif len(chunk) > 1:
                    size = len(chunk) // 2
                else:
                    decision[chunk[0]] = "kept"
                    pending = pending[1:]
                    bar.update(1)
                bar.set_postfix(runs=runs, kept=sum(d == "kept" for d in decision.values()), refresh=False)
    finally:
        bar.close()
    table["decision"] = [decision.get(edge, "unreachable") for edge in zip(table.sender, table.receiver)]
    table["kept"] = table.decision == "kept"
    paths = kept_paths({edge for edge, d in decision.items() if d == "kept"}, engine.graph)
    return PrunedGraph(table, paths, clean_value, corrupt_value, current, float(threshold), runs,
                       None if budget is None else float(budget), log)


def _bar(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="prune: edges decided", unit="edge", disable=not enabled, file=sys.stderr)
