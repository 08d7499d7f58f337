"""The plan's intermediate representation: one frozen dataclass per kind of node.

A plan is a DAG of :class:`Node` s, each an operation (a ``Spec``: which op, with its typed
arguments) over child nodes.  Nodes are hash-consed on ``(spec, children)``, so two places in
the treeified computation that compute the same thing are one node.  ``Spec.reads`` lists the
selector keys a node reads captured activations with; the engine captures exactly the rows
those selectors need.

Sites name captured activations (tuples; see ``Adapter.site``)::

    ("embed",)                     token + position embedding          (U, T, D)
    ("resid", where, layer)        residual stream: where is "attn_in", "mlp_in" or "final"
    ("attn_out", layer)            a whole attention layer's output, bias included
    ("head_out", layer, head)      one head's write to the residual stream (no bias)
    ("mlp_out", layer)             an MLP's output
    ("qkv", layer, head, channel)  one head's query (0), key (1) or value (2)  (U, T, d_head)
    ("qkv", layer)                 every head's q, k, v                 (U, T, 3, H, d_head)
    ("z", layer)                   every head's attention output z      (U, T, H, d_head)
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar

from ..graph import CHANNELS, Component

Site = tuple
SelectorKey = tuple  # Selector.key: ("input", i) or (kind, bytes of the index tensor)
MaskKey = tuple  # Mask.key


class Op(enum.Enum):
    GATHER = "gather"  # a captured site, read by one selector
    DELTA = "delta"  # site read by one selector minus by another, where they differ
    MASKED_DELTA = "masked_delta"  # a computed value minus the captured site, for some examples
    SUM = "sum"  # a captured residual stream plus changes
    MIX = "mix"  # one value for the examples of a mask, another for the rest
    MLP = "mlp"  # an MLP on a residual stream
    PROJ = "proj"  # one head's q, k or v projection of a residual stream
    CORE = "core"  # every head of a layer on one residual stream: z
    HEAD_CORE = "head_core"  # one head's write, from its layer's z
    LAYER_CORE = "layer_core"  # a whole layer's output, from its z
    HEAD = "head"  # one head from its own q, k and v
    FINAL = "final"  # final norm and unembedding


@dataclass(frozen=True)
class Spec:
    """What a node computes, without its children."""

    op: ClassVar[Op]

    @property
    def reads(self) -> tuple[SelectorKey, ...]:
        """Selector keys whose captured rows this node reads."""
        return ()

    def label(self) -> str:
        return self.op.value


@dataclass(frozen=True)
class Gather(Spec):
    op: ClassVar[Op] = Op.GATHER
    site: Site
    selector: SelectorKey

    @property
    def reads(self):
        return (self.selector,)

    def label(self) -> str:
        return site_name(self.site)


@dataclass(frozen=True)
class Delta(Spec):
    op: ClassVar[Op] = Op.DELTA
    site: Site
    chosen: SelectorKey
    base: SelectorKey

    @property
    def reads(self):
        return (self.chosen, self.base)

    def label(self) -> str:
        return site_name(self.site)


@dataclass(frozen=True)
class MaskedDelta(Spec):
    op: ClassVar[Op] = Op.MASKED_DELTA
    site: Site
    base: SelectorKey
    mask: MaskKey

    @property
    def reads(self):
        return (self.base,)

    def label(self) -> str:
        return f"{site_name(self.site)} change, split examples"


@dataclass(frozen=True)
class Sum(Spec):
    """Children: the captured residual, then per part either one delta-like change or a
    computed value followed by the captured value it replaces (signs +1, -1)."""

    op: ClassVar[Op] = Op.SUM
    signs: tuple[int, ...]

    def label(self) -> str:
        return "residual sum"


@dataclass(frozen=True)
class Mix(Spec):
    """Children: (computed, read); the first for the examples of ``mask``."""

    op: ClassVar[Op] = Op.MIX
    mask: MaskKey

    def label(self) -> str:
        return "split examples: computed | read"


@dataclass(frozen=True)
class Mlp(Spec):
    op: ClassVar[Op] = Op.MLP
    layer: int

    def label(self) -> str:
        return Component("mlp", self.layer).name


@dataclass(frozen=True)
class Proj(Spec):
    op: ClassVar[Op] = Op.PROJ
    layer: int
    head: int
    channel: int  # index into CHANNELS

    def label(self) -> str:
        return Component("attn", self.layer, self.head, CHANNELS[self.channel]).name


@dataclass(frozen=True)
class Core(Spec):
    op: ClassVar[Op] = Op.CORE
    layer: int

    def label(self) -> str:
        return Component("attn", self.layer).name


@dataclass(frozen=True)
class HeadCore(Spec):
    op: ClassVar[Op] = Op.HEAD_CORE
    layer: int
    head: int

    def label(self) -> str:
        return Component("attn", self.layer, self.head).name


@dataclass(frozen=True)
class LayerCore(Spec):
    op: ClassVar[Op] = Op.LAYER_CORE
    layer: int

    def label(self) -> str:
        return Component("attn", self.layer).name


@dataclass(frozen=True)
class Head(Spec):
    """Children: the head's q, k and v vectors."""

    op: ClassVar[Op] = Op.HEAD
    layer: int
    head: int

    def label(self) -> str:
        return Component("attn", self.layer, self.head).name


@dataclass(frozen=True)
class Final(Spec):
    op: ClassVar[Op] = Op.FINAL
    positions: tuple[int, ...] | None  # the positions unembedded (None: every one)
    vocab: tuple[int, ...] | None = None  # the vocabulary ids (logit columns) computed (None: every one)

    def label(self) -> str:
        return "output (final norm, unembed)"


class Node:
    """One distinct computation: ``spec`` over child nodes; ``id`` is topological."""

    __slots__ = ("spec", "children", "id")

    def __init__(self, spec: Spec, children: tuple, id: int) -> None:
        self.spec, self.children, self.id = spec, children, id

    @property
    def op(self) -> Op:
        return self.spec.op

    def __repr__(self) -> str:
        return f"Node({self.id}, {self.spec}, {[c.id for c in self.children]})"


def site_name(site: Site) -> str:
    """A site in words, with the component's canonical name."""
    kind = site[0]
    if kind == "embed":
        return "embed"
    if kind == "attn_out":
        return Component("attn", site[1]).name
    if kind == "mlp_out":
        return Component("mlp", site[1]).name
    if kind == "head_out":
        return Component("attn", site[1], site[2]).name
    if kind == "qkv" and len(site) == 4:
        return Component("attn", site[1], site[2], CHANNELS[site[3]]).name
    if kind in ("qkv", "z"):
        return f"{Component('attn', site[1]).name} {kind}"
    where, layer = site[1], site[2]
    if where == "final":
        return "resid final"
    return f"resid into {Component('attn' if where == 'attn_in' else 'mlp', layer).name}"
