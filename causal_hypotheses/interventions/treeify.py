"""Chan et al.'s causal-scrubbing recursion as ``which``/``branch`` for the engine.

A hypothesis is read as a tree (a *correspondence*): its patterns, merged on common
prefixes, name nodes of the treeified model from the output down, each with the feature of
the example it carries.  Scrubbing a node whose reference input is x:

* an input the hypothesis names reads a sample that agrees with x on that input's feature
  (None: x itself), and is scrubbed the same way, recursively, on that sample;
* an input it does not name reads its own independent random sample from the dataset (the
  whole subtree behind it reads that sample) — unless a pattern ends at this node or above
  it, in which case the whole subtree below belongs to that pattern and reads x.

The output's reference is the example itself.  Two inputs never share a random draw: each
sample is drawn from a generator seeded by (seed, draw, the place in the tree), so the same
seed gives the same samples whatever order the engine asks in.

*Inputs* are the components the engine distinguishes at that place: a layer-level writer
(``embed``, ``a{L}``, ``m{L}``) is one input, unless the hypothesis names something inside
that layer there; then each head of the layer is one input (and, inside a named head, each of
its query, key and value).

The engine reads dataset rows through ``n`` rotated copies of the dataset (copy j holds row
(i + j) mod n in place i), so any row can be chosen for any example; capture still runs each
distinct row once.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import torch

from ..graph import within

IDENTITY = None  # a reference that is the example itself


@dataclass
class TreeNode:
    """One named place of the correspondence."""

    name: str  # the pattern element ("" for the output)
    feature: str | None = None  # what it carries relative to its parent's reference
    terminal: bool = False  # a pattern ends here: the subtree below reads this node's reference
    children: dict[str, "TreeNode"] = field(default_factory=dict)


def correspondence(paths) -> TreeNode:
    """The tree of a hypothesis's patterns (``{pattern: feature}``), merged on common prefixes.

    A feature given to a pattern applies to the node where the pattern ends; a node that only
    lies inside longer patterns carries None (it agrees with its parent's reference).
    """
    root = TreeNode("")
    for pattern, feature in paths.items():
        node = root
        for element in pattern:
            node = node.children.setdefault(element, TreeNode(element))
        node.feature, node.terminal = feature, True
    return root


def _seed(*parts) -> int:
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


class Sampler:
    """Seeded draws of dataset rows for each place in the tree, recorded in ``log``.

    ``log`` maps a place (the engine path that reads the sample, or the path to a named node
    for its agreeing sample) to the (n,) dataset rows chosen for the n examples.
    """

    def __init__(self, n: int, features: dict[str, torch.Tensor], seed: int, draw: int) -> None:
        self.n, self.features, self.seed, self.draw = n, features, seed, draw
        self.log: dict[tuple, torch.Tensor] = {}

    def _generator(self, place: tuple, what: str) -> torch.Generator:
        return torch.Generator().manual_seed(_seed(self.seed, self.draw, what, place))

    def fresh(self, place: tuple) -> torch.Tensor:
        """An independent uniform draw from the dataset for every example."""
        if place not in self.log:
            self.log[place] = torch.randint(0, self.n, (self.n,), generator=self._generator(place, "fresh"))
        return self.log[place]

    def agreeing(self, place: tuple, reference: torch.Tensor | None, feature: str | None) -> torch.Tensor | None:
        """For each example, a row that agrees with its reference row on ``feature``."""
        if feature is None:
            return reference
        if place in self.log:
            return self.log[place]
        rows = torch.arange(self.n) if reference is None else reference
        values = self.features[feature]
        wanted = values[rows]
        generator = self._generator(place, "agree:" + feature)
        chosen = torch.empty(self.n, dtype=torch.long)
        for value in wanted.unique():  # draw among the rows whose feature has that value
            members = (values == value).nonzero().flatten()
            where = (wanted == value).nonzero().flatten()
            chosen[where] = members[torch.randint(0, len(members), (len(where),), generator=generator)]
        self.log[place] = chosen
        return chosen


def _merged_children(nodes: list[TreeNode]) -> dict[str, list[TreeNode]]:
    merged: dict[str, list[TreeNode]] = {}
    for node in nodes:
        for name, child in node.children.items():
            merged.setdefault(name, []).append(child)
    return merged


class _Walk:
    """Where the walk down the correspondence stands after a path's first elements: the
    named nodes reached, their merged children, the reference the next input agrees with,
    and whether a pattern ended on the way (the rest of the path then reads ``reference``)."""

    __slots__ = ("nodes", "children", "reference", "terminal")

    def __init__(self, nodes: list[TreeNode], reference, terminal: bool) -> None:
        self.nodes, self.reference, self.terminal = nodes, reference, terminal
        self.children = _merged_children(nodes)


class Resolver:
    """``resolve`` for every path of one scrubbed run, walking each path prefix once.

    The engine asks about every path of the treeified computation, each one element longer
    than a path it asked about before; the walk's state after each prefix is kept, so a path
    costs one step from its parent's state instead of a walk from the output.  Samples come
    from the sampler's log once drawn, so the answers are those of walking from the root."""

    def __init__(self, tree: TreeNode, sampler: Sampler, unnamed) -> None:
        self.sampler, self.unnamed = sampler, unnamed
        self._states: dict[tuple, _Walk | tuple] = {(): _Walk([tree], IDENTITY, False)}
        self._answers: dict[tuple, tuple[str, object]] = {}

    def __call__(self, path: tuple) -> tuple[str, object]:
        """("split", None) where the engine must look inside ``path[-1]``; otherwise
        ("read", rows): the (n,) dataset rows (None: the example itself) the path reads, or
        ``unnamed`` called with the place when the input is outside the hypothesis and
        ablated by a fixed input (mean or zero ablation: ``unnamed`` returns its marker)."""
        answer = self._answers.get(path)
        if answer is None:
            answer = self._answers[path] = self._resolve(path)
        return answer

    def _resolve(self, path: tuple) -> tuple[str, object]:
        if path:
            parent = self._state(path[:-1])
            if isinstance(parent, tuple):  # the walk ended above: the whole subtree reads there
                return parent
            element = path[-1]
            if any(name != element and within(element, name) for name in parent.children):
                return "split", None  # something named lies inside this element
        state = self._state(path)
        if isinstance(state, tuple):
            return state
        return ("split", None) if state.children else ("read", state.reference)

    def _state(self, prefix: tuple) -> _Walk | tuple:
        """The walk after ``prefix``, or the ("read", rows) answer where it ended."""
        found = self._states.get(prefix)
        if found is None:
            parent = self._state(prefix[:-1])
            found = parent if isinstance(parent, tuple) else self._step(parent, prefix)
            self._states[prefix] = found
        return found

    def _step(self, walk: _Walk, prefix: tuple) -> _Walk | tuple:
        """One element further: into the named nodes that ``prefix[-1]`` lies inside."""
        element, children = prefix[-1], walk.children
        matched = sorted((name for name in children if within(name, element)), key=lambda name: name.count("."))
        if not matched:
            return "read", (walk.reference if walk.terminal else self.unnamed(prefix))
        nodes, reference, terminal = [], walk.reference, walk.terminal
        for name in matched:  # coarse to fine: a finer node's feature is relative to the coarser one's sample
            for node in children[name]:
                reference = self.sampler.agreeing(prefix[:-1] + (name,), reference, node.feature)
                terminal = terminal or node.terminal
                nodes.append(node)
        return _Walk(nodes, reference, terminal)


def resolve(tree: TreeNode, path: tuple, sampler: Sampler, unnamed) -> tuple[str, object]:
    """One path's answer (see ``Resolver.__call__``), walking from the output."""
    return Resolver(tree, sampler, unnamed)(tuple(path))


def scrub_functions(tree: TreeNode, sampler: Sampler, fixed_input: int | None = None):
    """``which``/``branch`` of one scrubbed run over ``n`` rotated copies of the dataset
    (inputs 0..n-1) and, for mean or zero ablation, a fixed input ``fixed_input``."""
    n = sampler.n
    examples = torch.arange(n)

    def unnamed(place: tuple):
        return fixed_input if fixed_input is not None else sampler.fresh(place)

    def as_input(rows):
        if rows is None:
            return 0
        if isinstance(rows, int):
            return rows
        return (rows - examples) % n  # copy j holds row (i + j) mod n at place i

    resolve_path = Resolver(tree, sampler, unnamed)

    def which(path):
        kind, rows = resolve_path(tuple(path))
        return as_input(rows)

    def branch(path):
        return resolve_path(tuple(path))[0] == "split"

    return which, branch


def rotations(tokens: torch.Tensor) -> list[torch.Tensor]:
    """The dataset (n, T) as n rotated copies: copy j holds row (i + j) mod n at place i."""
    return [tokens.roll(-j, dims=0) for j in range(tokens.shape[0])]
