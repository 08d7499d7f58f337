"""Component and path names of a transformer's residual-stream graph (no torch here).

Grammar of a component name (layers and heads count from 0)::

    embed            token + position embedding (a leaf: it reads the tokens)
    a{L}             attention layer L: all its heads, all their inputs
    a{L}.h{H}        head H of attention layer L
    a{L}.h{H}.q      head H's query input (likewise .k and .v)
    m{L}             MLP of layer L

Numbers are written without leading zeros: ``a1.h0``, never ``a01`` or ``a1.h00``.  Every
name has exactly one spelling, so that matching names as strings is exact; any other
spelling is rejected with the canonical one in the message.

A *path* is a tuple of such names read from the output back toward the input:
``("a9.h9.q", "a5.h1")`` is the signal from head 5.1 entering head 9.9 by its query
and going from there to the output.  The engine names an element as coarsely as the
computation allows: ``a5`` when the whole layer reads one input, ``a5.h1`` when one head
does, ``a5.h1.q`` when its three inputs differ.  ``name in path`` therefore matches
hierarchically: ``"a1" in path`` is true when the path passes anywhere through attention
layer 1 (as ``a1``, ``a1.h3`` or ``a1.h3.k``).
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable

from .errors import UnknownComponentError

_NAME = re.compile(r"^(?:(embed)|a(\d+)(?:\.h(\d+)(?:\.([qkv]))?)?|m(\d+))$")
# The same grammar read loosely (case, spaces, leading zeros), to suggest the canonical spelling.
_LOOSE = re.compile(r"^\s*(?:(embed)|a\s*(\d+)(?:\s*\.\s*h\s*(\d+)(?:\s*\.\s*([qkv]))?)?|m\s*(\d+))\s*$", re.IGNORECASE)
CHANNELS = ("q", "k", "v")


@dataclass(frozen=True)
class Component:
    """A parsed component name; ``head`` and ``channel`` are None when not given."""

    kind: str  # "embed", "attn" or "mlp"
    layer: int | None = None
    head: int | None = None
    channel: str | None = None

    @property
    def name(self) -> str:
        if self.kind == "embed":
            return "embed"
        if self.kind == "mlp":
            return f"m{self.layer}"
        name = f"a{self.layer}"
        if self.head is not None:
            name += f".h{self.head}"
        if self.channel is not None:
            name += f".{self.channel}"
        return name

    def without_channel(self) -> "Component":
        """The component itself, for a head input (``a1.h0.q`` -> ``a1.h0``)."""
        return Component(self.kind, self.layer, self.head)

    @property
    def order(self) -> int:
        """Place in the residual stream: embed -1, attention layer L 2L, MLP L 2L+1."""
        if self.kind == "embed":
            return -1
        return 2 * self.layer + (1 if self.kind == "mlp" else 0)


@dataclass(frozen=True)
class ModelGraph:
    """The names that exist in a model with ``n_layers`` layers of ``n_heads`` heads."""

    n_layers: int
    n_heads: int
    architecture: str = "gpt2"
    parallel_attn_mlp: bool = False  # MLP L reads the layer's input, as attention L does (GPT-NeoX)

    def writes_into(self, lower: Component, upper: Component) -> bool:
        """Whether ``lower``'s output is part of the residual stream ``upper`` reads."""
        if lower.order >= upper.order or upper.kind == "embed":
            return False
        return not (self.parallel_attn_mlp and upper.kind == "mlp" and lower.kind == "attn" and lower.layer == upper.layer)

    def describe(self) -> str:
        last_layer, last_head = self.n_layers - 1, self.n_heads - 1
        return (
            f"this {self.n_layers}-layer, {self.n_heads}-head {self.architecture} model has "
            f"embed, attention layers a0..a{last_layer}, heads a{{L}}.h0..a{{L}}.h{last_head} "
            f"(inputs a{{L}}.h{{H}}.q/.k/.v) and MLPs m0..m{last_layer}"
        )

    def parse(self, name: str) -> Component:
        """Parse ``name``; raise UnknownComponentError naming the valid ones if it is bad.

        Only the canonical spelling is accepted: ``'a01'`` is an error that suggests ``'a1'``.
        """
        match = _NAME.match(name) if isinstance(name, str) else None
        if match is None:
            loose = _LOOSE.match(name) if isinstance(name, str) else None
            hint = ""
            if loose is not None:
                embed, a_layer, head, channel, m_layer = loose.groups()
                suggestion = Component("embed") if embed else (
                    Component("mlp", int(m_layer)) if m_layer is not None else
                    Component("attn", int(a_layer), None if head is None else int(head),
                              None if channel is None else channel.lower()))
                hint = f"did you mean {suggestion.name!r}? "
            shown = f"{name!r}" if isinstance(name, str) else f"{name!r} ({type(name).__name__})"
            raise UnknownComponentError(
                f"{shown} is not a component name; {hint}expected one of 'embed', 'a{{L}}', "
                f"'a{{L}}.h{{H}}', 'a{{L}}.h{{H}}.q' (or .k/.v), 'm{{L}}' with numbers written without leading "
                f"zeros ({self.describe()})"
            )
        embed, a_layer, head, channel, m_layer = match.groups()
        if embed:
            return Component("embed")
        layer = int(a_layer if a_layer is not None else m_layer)
        parsed = (Component("mlp", layer) if m_layer is not None
                  else Component("attn", layer, None if head is None else int(head), channel))
        if parsed.name != name:
            raise UnknownComponentError(
                f"{name!r} is not a canonical component name; did you mean {parsed.name!r}? "
                "(numbers are written without leading zeros, so that every name has one spelling)"
            )
        if layer >= self.n_layers:
            raise UnknownComponentError(
                f"{name!r} names layer {layer}, but {self.describe()}; "
                f"use a layer between 0 and {self.n_layers - 1}"
            )
        if parsed.head is not None and parsed.head >= self.n_heads:
            raise UnknownComponentError(
                f"{name!r} names head {head}, but {self.describe()}; "
                f"use a head between 0 and {self.n_heads - 1}"
            )
        return parsed

    def check(self, names: Iterable[str]) -> list[Component]:
        """Parse every name (raising on the first bad one)."""
        return [self.parse(name) for name in names]

    def check_pattern(self, pattern: Iterable[str]) -> list[Component]:
        """Parse a path pattern (names from the output toward the input) and check that some path
        of this model matches it: each name must write into the input of the one before it, so
        it comes strictly earlier in the residual stream, and ``embed`` (a leaf) can only be last.
        """
        names = [pattern] if isinstance(pattern, str) else list(pattern)
        if not names:
            raise UnknownComponentError("an empty path pattern matches no path; name at least one component, e.g. ('a1.h0',)")
        parsed = self.check(names)
        for (above, upper), (below, lower) in zip(zip(names, parsed), zip(names[1:], parsed[1:])):
            if upper.kind == "embed":
                raise UnknownComponentError(
                    f"path pattern {tuple(names)} continues past 'embed', which reads the tokens and has no inputs; "
                    "end the pattern at 'embed' (patterns run from the output toward the input)"
                )
            if lower.order < upper.order and not self.writes_into(lower, upper):
                raise UnknownComponentError(
                    f"path pattern {tuple(names)} has {below!r} after {above!r}, but in this model attention and "
                    f"MLP of one layer read the same stream in parallel, so {below!r} does not write into {above!r}'s "
                    "input and no path matches the pattern; name an earlier component"
                )
            if lower.order >= upper.order:
                raise UnknownComponentError(
                    f"path pattern {tuple(names)} has {below!r} after {above!r}, but {below!r} does not write into "
                    f"{above!r}'s input (it is not earlier in the residual stream), so no path matches it; patterns "
                    "run from the output toward the input, e.g. ('a1.h0.k', 'a0.h3'): head 0.3 into head 1.0's key"
                )
        return parsed

    def writers(self) -> list[str]:
        """Layer-level components that write to the final residual stream, in order."""
        names = ["embed"]
        for layer in range(self.n_layers):
            names += [f"a{layer}", f"m{layer}"]
        return names

    def heads(self) -> list[str]:
        return [f"a{l}.h{h}" for l in range(self.n_layers) for h in range(self.n_heads)]


@lru_cache(maxsize=4096)
def component(name: str) -> Component:
    """Parse a name without a model (layer and head numbers unchecked): the one parser that
    code which only needs a name's structure (its place in the residual stream, its head)
    uses.  Bad or non-canonical spellings raise as in ModelGraph.parse."""
    return ANY_MODEL.parse(name)


def within(name: str, element: str) -> bool:
    """True when path element ``element`` is ``name`` or lies inside it (``a1`` ⊇ ``a1.h0.q``)."""
    return element == name or element.startswith(name + ".")


def enclosing(name: str) -> list[str]:
    """The names that strictly contain ``name``, coarsest first (``a5.h1.q``: ``a5``, ``a5.h1``):
    exactly the ``outer`` with ``within(outer, name)`` and ``outer != name``."""
    return [name[:i] for i, char in enumerate(name) if char == "."]


# A graph with every layer and head: checks spelling and structure, never ranges.
ANY_MODEL = ModelGraph(n_layers=sys.maxsize, n_heads=sys.maxsize)


class Path(tuple):
    """A path from the output toward the input: a tuple of component names.

    ``name in path`` matches hierarchically (see the module docstring) and rejects names
    that do not exist in the model, so a typo such as ``"a12"`` in a 12-layer model
    raises instead of silently never matching.
    """

    graph: ModelGraph | None

    def __new__(cls, elements: Iterable[str] = (), graph: ModelGraph | None = None) -> "Path":
        path = super().__new__(cls, elements)
        path.graph = graph
        return path

    def __add__(self, other: tuple) -> "Path":  # type: ignore[override]
        path = tuple.__new__(Path, tuple.__add__(self, tuple(other)))  # the planner extends paths often: no __new__ call
        path.graph = self.graph
        return path

    def __getitem__(self, index):  # type: ignore[override]
        item = tuple.__getitem__(self, index)
        return Path(item, self.graph) if isinstance(index, slice) else item

    def __contains__(self, name: object) -> bool:  # type: ignore[override]
        if not isinstance(name, str):
            return tuple.__contains__(self, name)
        if self.graph is not None:
            self.graph.parse(name)
        return any(within(name, element) for element in self)

    def __repr__(self) -> str:
        return f"Path{tuple.__repr__(self)}"

    def __reduce__(self):
        return (Path, (tuple(self), self.graph))
