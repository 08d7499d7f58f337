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
``budget`` bounds the sum, by a *repair* after that pass.  It restores receivers (a head's
query, key or value input, an MLP; a removed edge into the output puts that edge back and
restores its sender's inputs): everything a restored receiver reads then reads clean, whatever
the pass decided below it.  They are walked from the largest measured change away from clean
(each removal step's change shared over its edges), each restored unless it carries the metric
past clean by more than ``budget``, up to the first graph within ``budget`` of clean (an
exponential then a binary search per stretch of the walk: a few runs).  The graph returned is
then within the budget of the clean value whatever the threshold (if even every candidate
restored is not, because ``nodes``/``max_edges`` removed more from the start, it is as close as
that allows).  On SmolLM2's IOI the drift comes mostly from chunks of many small edges into a
few heads (the rest of the model feeding a name mover or an S-inhibition head): restoring an
edge at a time would bring back hundreds of heads, each with every input to prune again;
restoring the receiver says "this input reads the whole model", which is one path.  Testing the
budget at each removal of the pass instead (the old way) spent it on the first receivers near
the output and then kept nearly every later edge that moved the metric at all: too slow.

Exact, unlike attribution: each decision is an engine run.  Attribution only orders the
tests: the receivers of one place in the stream (a layer's head inputs) first try every edge
whose |score| is under the threshold together; then each receiver's edges are tried from the
smallest |score| up, in chunks: first its edges under the threshold (if that joint chunk
failed), then the others one at a time; a chunk doubles
while whole chunks can be removed together (their joint change under the threshold) and halves
when one cannot, so the many edges that do nothing cost a few runs, not one each.  (Conmy et al.
test edges one at a time, each against the threshold; a chunk removed here changed the metric
by less than the threshold in all, which is stricter.)

The kept graph is returned as its paths from the output to the embedding or to a restored
receiver (the engine's path grammar, :class:`causal_hypotheses.graph.Path`), and as a
:class:`Hypothesis` of those paths (a path's subtree below its last name reads the example).
"""
from __future__ import annotations

import itertools
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
    wherever it is read), read input 1 (corrupt); all others input 0 (clean).  Below a receiver
    of ``restored`` (a head input ``a1.h0.q`` or an MLP ``m0``) everything reads clean: a path
    that reaches it without a removed edge or node above reads input 0 whatever lies below.

    A path's edges are its consecutive elements (receiver, sender), plus (``out``, first
    element); a head in the middle of a path is named by the input it is entered by
    (``a1.h0.q``), so the receiver is that name and the sender the next element without its
    channel.  ``branch`` splits where a removed edge, a removed node or a restored receiver may
    lie below: a layer whose heads send a removed edge into the path's receiver or hold a
    removed node, a component that holds a removed edge's or a restored receiver, and anything
    later in the stream than such a receiver or a removed node."""

    def __init__(self, removed=(), nodes=(), restored=()) -> None:
        self.removed = frozenset(removed)
        self.nodes = frozenset(nodes)
        self.restored = frozenset(restored)
        self.by_receiver: dict[str, set[str]] = {}
        for sender, receiver in self.removed:
            self.by_receiver.setdefault(receiver, set()).add(sender)
        inner = [r for r in self.by_receiver if r != OUT] + list(self.restored)
        self.first = min([component(r).order for r in inner] + [component(n).order for n in self.nodes], default=None)
        self.holders = {r.rsplit(".", 1)[0] for r in inner if "." in r} | {r.split(".")[0] for r in inner} | set(inner)
        self.holders |= {n.split(".")[0] for n in self.nodes if ".h" in n}  # a layer holding a removed head
        self.layers_sending = {(s.split(".")[0], r) for s, r in self.removed if ".h" in s}

    def _status(self, path) -> str:
        """"corrupt" (a removed edge or node on it), "clean" (a restored receiver on it first), or "open"."""
        for i, element in enumerate(path):
            sender = _sender(element)
            if sender in self.nodes:
                return "corrupt"
            senders = self.by_receiver.get(OUT if i == 0 else path[i - 1])
            if senders and sender in senders:
                return "corrupt"
            if element in self.restored:
                return "clean"
        return "open"

    def which(self, path) -> int:
        return 1 if self._status(path) == "corrupt" else 0

    def branch(self, path) -> bool:
        if not (self.removed or self.nodes or self.restored) or self._status(path) != "open":
            return False
        last = path[-1]
        if last == "embed":
            return False
        if (last, OUT if len(path) == 1 else path[-2]) in self.layers_sending:  # some of its heads send a removed edge here
            return True
        if last in self.holders:  # holds a removed edge's receiver (a1, a1.h0, a1.h0.q, m1), a restored one or a removed head
            return True
        return self.first is not None and self.first < component(last).order

    def key(self, path):
        """What the subtree below ``path`` depends on besides its last element."""
        receiver = OUT if len(path) == 1 else path[-2]
        return (self._status(path), receiver if (path[-1], receiver) in self.layers_sending else None)


def _sender(element: str) -> str:
    """A path element as a sender: a head input names its head."""
    return element[: element.rfind(".")] if element.count(".") == 2 else element


def _evaluate(engine, clean, corrupt, metric, removed, read: dict, nodes=(), restored=()) -> float:
    edges = EdgeSet(removed, nodes, restored)
    logits = engine.run([clean, corrupt], edges.which, edges.branch, key=edges.key, **read).logits
    value = metric(logits)
    return float(torch.as_tensor(value, dtype=torch.float64).mean())


@dataclass(frozen=True)
class PrunedGraph:
    """The result of :func:`prune`.

    ``edges``: every edge with its attribution ``score``, ``kept`` (bool) and ``decision``
    ("kept", "removed", "restored": removed, then put back by the repair (kept), "unreachable":
    its receiver no longer reaches the output, "node removed": its sender is not a candidate
    node, "not tested": outside ``max_edges``).
    ``paths``: the kept graph's paths from the output to the embedding or a restored receiver.
    ``clean``, ``corrupt``, ``pruned``: the metric on the clean input, on the corrupt one, and
    with every edge but the kept ones reading the corrupt input (everything below a restored
    receiver clean).  ``runs``: engine runs made.
    ``budget``: the largest |pruned - clean| the repair aimed at (None: no bound, no repair).
    ``restored``: the receivers the repair restored (everything they read reads clean; the
    paths end there).  ``log``: one row per run (receiver or "restore", chunk size or number
    restored, value, change).  ``steps``: the pass's removals (edges, signed change), in order.
    """

    edges: pd.DataFrame
    paths: tuple[Path, ...]
    clean: float
    corrupt: float
    pruned: float
    threshold: float
    runs: int
    budget: float | None = None
    restored: tuple[str, ...] = ()
    log: list = field(default_factory=list, repr=False)
    steps: list = field(default_factory=list, repr=False)

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


def kept_paths(kept: set[tuple[str, str]], graph, limit: int = MAX_PATHS, restored=()) -> tuple[Path, ...]:
    """Every path from the output to the embedding whose edges are all in ``kept``; a path that
    reaches a receiver of ``restored`` ends there (everything below it reads clean)."""
    restored = set(restored)
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
            if receiver in restored:
                paths.append(Path(prefix + (receiver,), graph))
                continue
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
    distance |pruned - clean| of the batch mean that the removals together may leave, enforced by
    the repair of the module docstring (None: no bound, no repair).  ``scores``: an
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
    clean_value, corrupt_value = (
        float(torch.as_tensor(metric(engine.run([x], lambda path: 0, **read).logits), dtype=torch.float64).mean())
        for x in (clean, corrupt)
    )
    search = _Search(lambda edges, restored=(): _evaluate(engine, clean, corrupt, metric, edges, read, removed_nodes, restored),
                     table, decision, removed, clean_value, clean_value, threshold, progress)
    if removed or removed_nodes:
        search.current = search.value(removed)
    search.greedy()
    if budget is not None:
        search.repair(budget)
    table["decision"] = [decision.get(edge, "unreachable") for edge in zip(table.sender, table.receiver)]
    table["kept"] = table.decision.isin(KEPT)
    paths = kept_paths({edge for edge, d in decision.items() if d in KEPT}, engine.graph, restored=search.restored)
    return PrunedGraph(table, paths, clean_value, corrupt_value, search.current, float(threshold), search.runs,
                       None if budget is None else float(budget), tuple(sorted(search.restored)), search.log, search.steps)


KEPT = ("kept", "restored")  # decisions of the edges in the returned graph


class _Search:
    """The pruning state: each edge's decision, the removed set, the current metric, runs, log."""

    def __init__(self, evaluate, table: pd.DataFrame, decision: dict, removed: set, current: float, clean: float,
                 threshold: float, progress: bool) -> None:
        self.evaluate, self.table, self.decision, self.removed = evaluate, table, decision, removed
        self.current, self.clean, self.threshold, self.progress = current, clean, threshold, progress
        self.runs, self.log, self.steps = 0, [], []
        self.grouped = {r: rows for r, rows in table.groupby("receiver")}
        self.alive = {OUT}
        self.restored: set[str] = set()

    def value(self, removed, restored=()) -> float:
        self.runs += 1
        return self.evaluate(removed, restored)

    def kept_count(self) -> int:
        return sum(d in KEPT for d in self.decision.values())

    def greedy(self) -> None:
        """Visit receivers from the output back; decide their undecided edges when the receiver
        reaches the output through kept edges, else call them "unreachable".  An edge (or a
        chunk) is removed when the metric's mean moves by less than the threshold."""
        def is_open(edge) -> bool:
            return edge not in self.decision

        total = sum(map(is_open, zip(self.table.sender, self.table.receiver)))
        bar = _bar(total, self.progress, "prune: edges decided")
        try:
            receivers = _receivers_backward(self.table)
            for _, group in itertools.groupby(receivers, key=lambda r: float("inf") if r == OUT else component(r).order):
                reachable = []  # (receiver, its open rows): one place in the stream, decided by the later ones
                for receiver in group:
                    rows = self.grouped[receiver]
                    rows = rows[[is_open(edge) for edge in zip(rows.sender, rows.receiver)]]
                    if rows.empty:
                        continue
                    target = OUT if receiver == OUT else _sender(receiver)
                    if receiver == OUT or any(self.decision.get((target, r)) in KEPT for r in self.alive):
                        reachable.append((receiver, rows))
                    else:
                        self.decision.update({edge: "unreachable" for edge in zip(rows.sender, rows.receiver)})
                        bar.update(len(rows))
                self.alive.update(receiver for receiver, _ in reachable)
                if len(reachable) > 1:  # the negligible edges of every receiver here: one chunk first
                    negligible = [e for _, rows in reachable for e in zip(rows.sender, rows.receiver, rows.score.abs()) if e[2] < self.threshold]
                    if len(negligible) > 1 and self._try([(s, r) for s, r, _ in negligible], bar):
                        reachable = [(receiver, rows[rows.score.abs() >= self.threshold]) for receiver, rows in reachable]
                for receiver, rows in reachable:
                    if not rows.empty:
                        self._decide(rows, list(zip(rows.sender, rows.receiver)), bar)
        finally:
            bar.close()

    def _try(self, chunk, bar) -> bool:
        """Remove ``chunk`` if the metric moves by less than the threshold."""
        trial = self.value(self.removed | set(chunk))
        change = abs(trial - self.current)
        self.log.append((chunk[0][1], len(chunk), trial, change))
        accepted = change < self.threshold
        if accepted:
            self.removed |= set(chunk)
            self.decision.update({edge: "removed" for edge in chunk})
            self.steps.append((tuple(chunk), trial - self.current))
            self.current = trial
            bar.update(len(chunk))
        return accepted

    def _decide(self, rows, edges, bar) -> None:
        magnitude = rows.score.abs().to_numpy()
        pending = [edges[i] for i in magnitude.argsort(kind="stable")]
        negligible = int((magnitude < self.threshold).sum())  # the edges attribution calls negligible: one chunk first
        size = max(1, negligible)
        while pending:
            chunk = pending[: min(size, len(pending))]
            if self._try(chunk, bar):
                # after the negligible chunk, the edges attribution calls large one at a time
                size = 1 if len(chunk) == negligible else len(chunk) * 2
                negligible = -1
                pending = pending[len(chunk):]
            elif len(chunk) > 1:
                size = len(chunk) // 2
            else:
                self.decision[chunk[0]] = "kept"
                pending = pending[1:]
                bar.update(1)
            bar.set_postfix(runs=self.runs, kept=self.kept_count(), refresh=False)

    def repair(self, target: float) -> None:
        """Restore receivers until the metric is within ``target`` of clean.

        A candidate is a receiver the pass visited with edges removed (everything it reads then
        reads clean: it joins ``restored``, its removed edges become "restored"), or a removed
        edge into the output (it is put back and its sender's inputs are restored).  Its weight:
        the measured changes of the removal steps that removed its edges, each step's change
        shared equally over the step's edges.  Walking the candidates from the largest change
        away from clean, one is restored unless it carries the metric past clean by more than
        ``target``; the walk stops at the first graph within ``target``.  Done by an exponential
        then a binary search for the shortest run of candidates (after the last one decided)
        that reaches the target or crosses clean: within it, done; past it, that run's last
        candidate is skipped and the walk goes on.  So the graph is within ``target``, and
        without its last restored candidate outside it on the drift's side.  If the walk ends
        outside, every candidate is restored."""
        drift = self.current - self.clean
        if abs(drift) <= target:
            return
        side = 1 if drift > 0 else -1
        share: dict = {}
        for edges, change in self.steps:
            for edge in edges:
                share[edge] = change / len(edges)
        weight: dict = {}
        for (sender, receiver), change in share.items():
            unit = (sender, OUT) if receiver == OUT else receiver
            weight[unit] = weight.get(unit, 0.0) + change
        order = sorted(weight, key=lambda unit: (-weight[unit] * side, str(unit)))

        def undo(units) -> tuple[set, set]:
            """(edges put back, receivers restored) by ``units``."""
            edges, receivers = set(), set()
            for unit in units:
                if isinstance(unit, tuple):
                    edges.add(unit)
                    receivers |= {f"{unit[0]}.{c}" for c in "qkv"} if ".h" in unit[0] else ({unit[0]} if unit[0] != "embed" else set())
                else:
                    edges |= {edge for edge in share if edge[1] == unit}
                    receivers.add(unit)
            return edges, receivers

        def evaluate(units) -> float:
            edges, receivers = undo(units)
            return self.value(self.removed - edges, self.restored | receivers)

        back: list = []  # restored so far
        bar = _bar(None, self.progress, "repair: engine runs")
        try:
            start, value = 0, self.current
            while start < len(order):
                values: dict[int, float] = {0: value}

                def reached(k: int) -> bool:
                    if k not in values:
                        values[k] = evaluate(back + order[start:start + k])
                        self.log.append(("restore", len(back) + k, values[k], abs(values[k] - self.clean)))
                        bar.update(1)
                    return (values[k] - self.clean) * side <= target

                low, high, rest = 0, 1, len(order) - start  # low: outside the target on the drift's side
                while high < rest and not reached(high):
                    low, high = high, min(2 * high, rest)
                if not reached(high):
                    back, value = back + order[start:], values[high]
                    break
                while high - low > 1:
                    middle = (low + high) // 2
                    if reached(middle):
                        high = middle
                    else:
                        low = middle
                if abs(values[high] - self.clean) <= target:
                    back, value = back + order[start:start + high], values[high]
                    break
                back, value, start = back + order[start:start + high - 1], values[high - 1], start + high  # skip the jumper
        finally:
            bar.close()
        if abs(value - self.clean) > target and len(back) < len(order):
            back, value = order, evaluate(order)
        edges, receivers = undo(back)
        self.removed -= edges
        self.restored |= receivers
        self.decision.update({edge: "restored" for edge in edges})
        self.current = value


def _bar(total: int | None, enabled: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="edge" if total is not None else "run", disable=not enabled, file=sys.stderr)
