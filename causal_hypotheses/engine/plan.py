"""Planning: walk the treeified computation once, asking ``branch`` and ``which``.

The walk turns the user's functions into a DAG of nodes (see ir.py), hash-consed on their
canonical signature ``(spec, children)``: two places in the tree that compute the same thing
become one node, evaluated once.  Unsplit components become *gathers* from the captured
activations of the input they read; residual streams are built as "captured residual
plus the changes", so a mostly-unchanged stream costs a few additions.
"""
from __future__ import annotations

import numbers
from collections import Counter
from functools import lru_cache
from typing import Callable

import numpy as np
import torch

from dataclasses import dataclass

from ..errors import PlanTooLargeError, SelectorError
from ..graph import CHANNELS, Component, ModelGraph, Path
from . import ir
from .ir import Node, Op, Spec


def constant_key(path: Path) -> int:
    """A ``key`` for functions whose answers on a path depend on its last name only: 0 for every
    path (see Engine.run).  The planner knows it is constant, so it neither calls it nor builds
    the paths it would be called on: each name is planned once, and each residual stream once."""
    return 0


class Selector:
    """What ``which(path)`` chose, in canonical form.

    ``kind`` is "input" (one input for every example), "example" ((B,) input per example)
    or "position" ((B, T) input per example and position).
    """

    __slots__ = ("kind", "index", "key")

    def __init__(self, kind: str, index, key) -> None:
        self.kind, self.index, self.key = kind, index, key

    def inputs(self) -> list[int]:
        if self.kind == "input":
            return [self.index]
        return sorted(set(self.index.flatten().tolist()))


class Mask:
    """Where ``branch`` split the computation, the rest gathered: examples (B,) or, for a split
    at some positions only, entries (B, T)."""

    __slots__ = ("rows", "key")

    def __init__(self, rows: torch.Tensor, key) -> None:
        self.rows, self.key = rows, key


class Planner:
    """Builds the node DAG for one run from ``which``/``branch`` (and an optional ``key``)."""

    def __init__(
        self,
        graph: ModelGraph,
        n_inputs: int,
        batch: int,
        seq: int,
        which: Callable,
        branch: Callable | None,
        key: Callable | None,
        max_paths: int,
    ) -> None:
        self.graph = graph
        self.n_inputs, self.batch, self.seq = n_inputs, batch, seq
        self._which, self._branch, self._key = which, branch, key
        self._constant_key = key is constant_key
        self.max_paths = max_paths
        self.nodes: dict[tuple, Node] = {}
        self.selectors: dict[tuple, Selector] = {}
        self.masks: dict[tuple, Mask] = {}
        self._memo: dict[tuple, object] = {}
        self._restricted: dict[tuple, Selector] = {}
        self._changes: dict[tuple, tuple] = {}  # (id(part), site, base key) -> (part, signs, terms, nodes asked)
        self._splits: dict[tuple, object] = {}  # (dims, bytes) of a bool tensor branch answer -> what it means
        self._inside: dict[tuple, bool] = {}  # (inner mask key, outer mask key) -> _within's answer
        self._residuals: dict[tuple, tuple] = {}  # (where, layer, ids of the writers' parts) -> (parts, node)
        self._streams: dict[tuple, tuple] = {}  # under constant_key: (where, layer) -> (node, memo hits on a reuse)
        self.memo_hits = 0
        self.paths_visited = 0

    # ----------------------------------------------------------- user functions
    def _visit(self, path: Path) -> None:
        self.paths_visited += 1
        if self.paths_visited > self.max_paths:
            raise PlanTooLargeError(
                f"the treeified computation passed {self.max_paths} paths (last: {tuple(path)}); "
                "the tree is exponential in depth where branch() splits every layer. Pass "
                "key=... to run() so that paths whose subtrees are identical share one plan "
                "(see Engine.run), split fewer components, or raise max_paths"
            )

    def branch(self, path: Path):
        """True, False, or a Mask: split for the examples where the mask is true."""
        self._visit(path)
        if self._branch is None:
            return False
        answer = self._branch(path)
        if answer.__class__ is bool:  # the usual answer, as below
            return answer
        expected = (
            f"expected True (split the computation here), False, or a bool tensor ({self.batch},) "
            f"to split some examples only, or ({self.batch}, {self.seq}) to split some positions only"
        )
        if isinstance(answer, torch.Tensor) and tuple(answer.shape) in ((self.batch,), (self.batch, self.seq)):
            if answer.dtype != torch.bool:
                raise SelectorError(
                    f"branch({tuple(path)}) returned a tensor of dtype {answer.dtype}; a per-"
                    f"{'example' if answer.dim() == 1 else 'position'} answer must be a bool tensor "
                    f"{tuple(answer.shape)}: convert it, e.g. (answer != 0)"
                )
            answer = answer.detach().cpu()
            content = (answer.dim(), answer.numpy().tobytes())  # functions often return one tensor for many paths
            found = self._splits.get(content)
            if found is None:
                found = self._splits[content] = self._split(answer)
            return found
        if isinstance(answer, torch.Tensor):
            if answer.dim() != 0:
                raise SelectorError(f"branch({tuple(path)}) returned a tensor of shape {tuple(answer.shape)}; {expected}")
            if answer.dtype.is_floating_point or answer.dtype.is_complex:
                raise SelectorError(f"branch({tuple(path)}) returned {answer!r} (a tensor of dtype {answer.dtype}); {expected}")
            answer = answer.item()
        if isinstance(answer, (bool, np.bool_)):
            return bool(answer)
        if isinstance(answer, numbers.Integral) and int(answer) in (0, 1):
            return bool(answer)
        raise SelectorError(
            f"branch({tuple(path)}) returned {answer!r} ({type(answer).__name__}); {expected}"
            + ("; an int other than 0 or 1 is not an answer: return a comparison, e.g. path[-1] == 'a1'"
               if isinstance(answer, numbers.Integral) else "")
        )

    def _split(self, answer: torch.Tensor):
        """A bool tensor answer of ``branch`` as True, False or a Mask."""
        if bool(answer.all()):
            return True
        if not bool(answer.any()):
            return False
        if answer.dim() == 2 and bool((answer == answer[:, :1]).all()):
            answer = answer[:, 0].contiguous()  # the same at every position: a split of examples
        return self._intern_mask(answer.contiguous())

    def _intern_mask(self, mask: torch.Tensor) -> "Mask":
        key = ("mask", tuple(mask.shape), mask.numpy().tobytes())
        found = self.masks.get(key)
        if found is None:
            found = self.masks[key] = Mask(mask.clone(), key)  # a copy: the answer may be a buffer the function refills
        return found

    def select(self, path: Path) -> Selector:
        self._visit(path)
        value = self._which(path)
        return self._normalise(value, path)

    def _normalise(self, value, path: Path) -> Selector:
        if value.__class__ is int and 0 <= value < self.n_inputs:  # the usual answer, as below
            return self._intern("input", value)
        where = f"which({tuple(path)})"
        valid = f"an input index 0..{self.n_inputs - 1}"
        if isinstance(value, torch.Tensor) and value.dim() == 0:
            value = value.item()
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, torch.Tensor)):
            raise SelectorError(
                f"{where} returned {value!r} of type {type(value).__name__}; expected {valid}, "
                f"a LongTensor of shape ({self.batch},) or ({self.batch}, {self.seq})"
            )
        if not isinstance(value, torch.Tensor):
            value = int(value)
            if not 0 <= value < self.n_inputs:
                raise SelectorError(f"{where} returned {value}, out of range: there are {self.n_inputs} inputs, so expected {valid}")
            return self._intern("input", value)
        if value.dtype.is_floating_point or value.dtype.is_complex or value.dtype == torch.bool:
            raise SelectorError(f"{where} returned a tensor of dtype {value.dtype}; expected integer input indices ({valid})")
        if tuple(value.shape) not in ((self.batch,), (self.batch, self.seq)):
            raise SelectorError(
                f"{where} returned a tensor of shape {tuple(value.shape)}; expected ({self.batch},) for one input "
                f"per example or ({self.batch}, {self.seq}) for one per example and position"
            )
        value = value.detach().to("cpu", torch.long)
        low, high = (int(bound) for bound in torch.aminmax(value))
        if low < 0 or high >= self.n_inputs:
            bad = low if low < 0 else high
            raise SelectorError(f"{where} returned a tensor containing {bad}, out of range: expected {valid}")
        if low == high:
            return self._intern("input", low)
        if value.dim() == 2 and bool((value == value[:, :1]).all()):
            value = value[:, 0].contiguous()
        kind = "example" if value.dim() == 1 else "position"
        return self._intern(kind, value.contiguous())

    def _tensor(self, selector: Selector, per_position: bool) -> torch.Tensor:
        if selector.kind == "input":
            shape = (self.batch, self.seq) if per_position else (self.batch,)
            return torch.full(shape, selector.index, dtype=torch.long)
        if selector.kind == "example" and per_position:
            return selector.index[:, None].expand(self.batch, self.seq)
        return selector.index

    def restrict(self, selector: Selector, mask: Mask, base: Selector) -> Selector:
        """``selector`` on the examples in ``mask``, ``base`` elsewhere."""
        memo_key = (selector.key, mask.key, base.key)
        found = self._restricted.get(memo_key)
        if found is None:
            found = self._restricted[memo_key] = self._restrict(selector, mask, base)
        return found

    def _restrict(self, selector: Selector, mask: Mask, base: Selector) -> Selector:
        per_position = "position" in (selector.kind, base.kind) or mask.rows.dim() == 2
        chosen = self._tensor(selector, per_position)
        rows = entry_mask(mask.rows, self.seq) if per_position else mask.rows
        return self._normalise(torch.where(rows, chosen, self._tensor(base, per_position)).contiguous(), ())

    def _intern(self, kind: str, index) -> Selector:
        key = (kind, index if kind == "input" else index.numpy().tobytes())
        found = self.selectors.get(key)
        if found is None:  # a tensor is copied: the answer may be a buffer the function refills
            found = self.selectors[key] = Selector(kind, index if kind == "input" else index.clone(), key)
        return found

    # ----------------------------------------------------------- DAG building
    def node(self, spec: Spec, children: tuple = ()) -> Node:
        signature = (spec, tuple([child.id for child in children]))
        found = self.nodes.get(signature)
        if found is not None:
            self.memo_hits += 1
            return found
        found = self.nodes[signature] = Node(spec, children, len(self.nodes))
        return found

    def gather(self, site: tuple, selector: Selector) -> Node:
        return self.node(ir.Gather(site, selector.key))

    def _memoised(self, path: Path, build: Callable[[], object], memo_key: tuple | None = None):
        """``build()``, once per (last name, key) under ``key``; ``memo_key`` if already known."""
        if self._key is None:
            return build()
        if memo_key is None:
            memo_key = (path[-1], 0 if self._constant_key else self._key(path))
        if memo_key in self._memo:
            self.memo_hits += 1
            return self._memo[memo_key]
        result = self._memo[memo_key] = build()
        return result

    def root(self, logit_positions: tuple | None = None, logit_vocab: tuple | None = None) -> Node:
        resid = self.residual(Path((), self.graph), "final", self.graph.n_layers)
        return self.node(ir.Final(logit_positions, logit_vocab), (resid,))

    def residual(self, path: Path, where: str, layer: int) -> Node:
        """The residual stream read at ``path`` (an attention/MLP input or the final one)."""
        if self._constant_key:  # every reader's writers have the keys (name, 0): one stream per place
            found = self._streams.get((where, layer))
            if found is not None:
                self.memo_hits += found[1]  # the writers and the stream a walk would have found
                return found[0]
        parts: list[tuple[tuple, Part]] = []
        key, memo, constant = self._key, self._memo, self._constant_key
        writers = stream_writers(where, layer, self.graph.parallel_attn_mlp)
        for name, kind, l in writers:
            memo_key = None
            if key is not None:  # most writers of most streams are planned already: found here, no call
                memo_key = (name, 0) if constant else (name, key(path + (name,)))
                found = memo.get(memo_key)
                if found is not None:
                    self.memo_hits += 1
                    parts += found
                    continue
            parts += self.writer(path + (name,), kind, l, memo_key)
        # The same writers' parts (memoised ones, as under ``key``) make the same stream: built once.
        # The entry holds the parts, so no id in its signature can be another object's.
        signature = (where, layer, tuple([id(part) for _, part in parts]))
        found = self._residuals.get(signature)
        if found is not None:
            self.memo_hits += 1
            node = found[1]
        else:
            node = self._residual(parts, where, layer)
            self._residuals[signature] = (parts, node)
        if constant:
            self._streams[(where, layer)] = (node, len(writers) + 1)
        return node

    def _residual(self, parts: list[tuple[tuple, "Part"]], where: str, layer: int) -> Node:
        gathered = Counter(part.selector for _, part in parts if isinstance(part, Read))
        base = next(iter(gathered.most_common(1)))[0]  # embed is always gathered
        site = ("resid", where, layer if where != "final" else -1)
        signs, terms = [1], [self.gather(site, base)]
        for part_site, part in parts:
            found = self._changes.get((id(part), part_site, base.key))
            if found is None:
                found = self._changes[(id(part), part_site, base.key)] = (part, *self._change(part_site, part, base))
            else:
                self.memo_hits += found[3]  # the nodes that making it again would have found
            signs += found[1]
            terms += found[2]
        if len(terms) == 1:
            return terms[0]
        return self.node(ir.Sum(tuple(signs)), tuple(terms))

    def _change(self, site: tuple, part: "Part", base: Selector) -> tuple[list[int], list[Node], int]:
        """What ``part`` changes in a stream gathered with ``base``: its signs and terms (none if
        nothing changes), and the number of nodes asked for."""
        mask = None
        if isinstance(part, ForExamples):  # a part that counts for some examples only
            mask, part = part.mask, part.part
            if isinstance(part, Read):
                part = Read(self.restrict(part.selector, mask, base))
        if isinstance(part, Read):  # only rows whose choice differs from the base change
            if part.selector is base:  # selectors are interned: the base itself, nothing changes
                return [], [], 0
            return [1], [self.node(ir.Delta(site, part.selector.key, base.key))], 1
        if mask is not None:
            return [1], [self.node(ir.MaskedDelta(site, base.key, mask.key), (part.node,))], 1
        return [1, -1], [part.node, self.gather(site, base)], 1

    def writer(self, path: Path, kind: str, layer: int, memo_key: tuple | None = None) -> list[tuple[tuple, "Part"]]:
        """What one layer-level writer adds: [(site, part), ...] (``memo_key``: see _memoised)."""

        def build():
            if kind == "embed":
                return [(("embed",), Read(self.select(path)))]
            site = ("attn_out", layer) if kind == "attn" else ("mlp_out", layer)
            split = self.branch(path)
            if split is False:
                return [(site, Read(self.select(path)))]
            if kind == "mlp":
                resid = self.residual(path, "mlp_in", layer)
                parts = [(site, Computed(self.node(ir.Mlp(layer), (resid,))))]
            else:
                parts = self.attention(path[:-1], layer)
            if split is True:
                return parts
            rest = self._intern_mask(~split.rows)
            return [(s, ForExamples(split, part)) for s, part in parts] + [(site, ForExamples(rest, Read(self.select(path))))]

        return self._memoised(path, build, memo_key)

    def attention(self, path: Path, layer: int) -> list[tuple[tuple, "Part"]]:
        parts = [self.head(path + (head_name(layer, h),), layer, h) for h in range(self.graph.n_heads)]
        if all(part == parts[0] for part in parts) and isinstance(parts[0], Read):
            return [(("attn_out", layer), parts[0])]
        if all(isinstance(part, Computed) and part.node.op is Op.HEAD_CORE for part in parts):
            cores = {part.node.children[0].id for part in parts}
            if len(cores) == 1:
                core = parts[0].node.children[0]
                return [(("attn_out", layer), Computed(self.node(ir.LayerCore(layer), (core,))))]
        return [(("head_out", layer, h), part) for h, part in enumerate(parts)]

    def head(self, path: Path, layer: int, head: int) -> "Part":
        def build():
            split = self.branch(path)
            if split is False:
                return Read(self.select(path))
            computed = split_head(split)
            if split is True:
                return computed
            site = ("head_out", layer, head)
            own = self.gather(site, computed.selector) if isinstance(computed, Read) else computed.node
            other = self.gather(site, self.select(path))
            return Computed(self.node(ir.Mix(split.key), (own, other)))

        def split_head(split):
            sources = []
            for c, channel in enumerate(CHANNELS):
                source = self.channel(path[:-1] + (head_name(layer, head, channel),), layer, head, c)
                sources.append(source if split is True else self._unmixed(source, split))
            if all(source == sources[0] for source in sources):
                # A head whose three inputs read one input is that input's head output,
                # unless the choice varies by position: attention mixes positions.
                if isinstance(sources[0], Read) and sources[0].selector.kind != "position":
                    return sources[0]
                if isinstance(sources[0], FromResidual):
                    core = self.node(ir.Core(layer), (sources[0].resid,))
                    return Computed(self.node(ir.HeadCore(layer, head), (core,)))
            children = tuple(self._channel_node(layer, head, c, source) for c, source in enumerate(sources))
            return Computed(self.node(ir.Head(layer, head), children))

        return self._memoised(path, build)

    def _unmixed(self, source: "Channel", mask: Mask) -> "Channel":
        """A channel computed for every example of ``mask`` (and maybe more) is, for a head
        that only ``mask``'s examples read, simply its residual stream."""
        if not isinstance(source, Vector) or source.node.op is not Op.MIX:
            return source
        mix = source.node
        if not self._within(mask, self.masks[mix.spec.mask]):
            return source
        return FromResidual(mix.children[0].children[0])  # mix(proj(resid), gather)

    def _within(self, inner: Mask, outer: Mask) -> bool:
        """Whether every entry of ``inner`` is one of ``outer``'s (asked once per pair of masks)."""
        pair = (inner.key, outer.key)
        found = self._inside.get(pair)
        if found is None:
            found = self._inside[pair] = not bool((entry_mask(inner.rows, self.seq) & ~entry_mask(outer.rows, self.seq)).any())
        return found

    def _channel_node(self, layer: int, head: int, c: int, source: "Channel") -> Node:
        if isinstance(source, Read):
            return self.gather(("qkv", layer, head, c), source.selector)
        if isinstance(source, FromResidual):
            return self.node(ir.Proj(layer, head, c), (source.resid,))
        return source.node  # a Vector: already the channel's q, k or v

    def channel(self, path: Path, layer: int, h: int, c: int) -> "Channel":
        """How input ``c`` (0 q, 1 k, 2 v) of head ``h`` is obtained: read, computed from a
        residual, or a vector node."""

        def build():
            split = self.branch(path)
            if split is False:
                return Read(self.select(path))
            resid = self.residual(path, "attn_in", layer)
            if split is True:
                return FromResidual(resid)
            own = self.node(ir.Proj(layer, h, c), (resid,))
            other = self.gather(("qkv", layer, h, c), self.select(path))
            return Vector(self.node(ir.Mix(split.key), (own, other)))

        return self._memoised(path, build)


@lru_cache(maxsize=4096)
def stream_writers(where: str, layer: int, parallel_attn_mlp: bool) -> tuple[tuple[str, str, int], ...]:
    """The (name, kind, layer) of every writer into the residual stream ``where`` of ``layer``."""
    names = [("embed", "embed", -1)]
    for l in range(layer):
        names += [(Component("attn", l).name, "attn", l), (Component("mlp", l).name, "mlp", l)]
    if where == "mlp_in" and not parallel_attn_mlp:  # parallel: MLP L reads the layer's input
        names.append((Component("attn", layer).name, "attn", layer))
    return tuple(names)


@lru_cache(maxsize=65536)
def head_name(layer: int, head: int, channel: str | None = None) -> str:
    """``a{layer}.h{head}`` or, with a channel, ``a{layer}.h{head}.{channel}``."""
    return Component("attn", layer, head, channel).name


def entry_mask(rows: torch.Tensor, seq: int) -> torch.Tensor:
    """A mask of examples (B,) or entries (B, T) as entries (B, T)."""
    return rows[:, None].expand(rows.shape[0], seq) if rows.dim() == 1 else rows


# What the planner passes around while building (never part of the plan itself).


@dataclass(frozen=True)
class Read:
    """A component read from the captured run of ``selector`` (a gather)."""

    selector: Selector


@dataclass(frozen=True)
class Computed:
    """A component computed by ``node``."""

    node: Node


@dataclass(frozen=True)
class ForExamples:
    """``part`` counts for the examples of ``mask`` only."""

    mask: Mask
    part: Read | Computed


@dataclass(frozen=True)
class FromResidual:
    """A head input to compute from the residual stream ``resid``."""

    resid: Node


@dataclass(frozen=True)
class Vector:
    """A head input already computed as a q, k or v vector by ``node``."""

    node: Node


Part = Read | Computed | ForExamples
Channel = Read | FromResidual | Vector
