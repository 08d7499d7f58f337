"""Graphviz drawings that need no model (no torch): components laid out by layer in the residual
stream, and a hypothesis drawn as the tree it is, with identical subtrees merged and deep ones cut
for large hypotheses.  A run's plan is drawn by engine/drawing.py; rendering is there too."""
from __future__ import annotations

from collections import Counter

from .errors import InputError
from .graph import component

# What every input a hypothesis does not draw reads, by ablation (the drawing's note and the page's).
OTHER = {"resample": "its own random example", "mean": "the dataset mean of what it carries", "zero": "zero"}
# A hypothesis tree of more nodes than this is drawn with identical subtrees merged and, if that is
# still more, cut at the deepest depth that keeps at most this many nodes (hypothesis_digraph).
MAX_DRAWN = 150


def hypothesis_digraph(paths, name: str, ablation: str, *, depth="auto", merge="auto"):
    """A ``graphviz.Digraph`` of a hypothesis, ``paths`` its (pattern, feature) pairs: each pattern
    drawn from its input-side component up to the output as the tree it is (one node per pattern
    prefix), a note saying what a pattern with a feature reads, components grouped by layer.

    ``merge=True`` draws identical subtrees once (same component, same pattern ends and features,
    same subtrees below): a node drawn with several arrows out stands for a copy under each
    parent, and its label says how many copies the tree holds ("x12").  ``depth=k`` (>= 1) draws
    the components at most k steps from the output and collapses everything below each node at
    depth k into one summary node saying how many paths end below it and how many tree nodes
    (and which components) it hides.  ``depth=None``, ``merge=False``: the whole tree.

    The default ("auto" for both) draws a hypothesis of at most ``MAX_DRAWN`` (150) tree nodes
    whole; a larger one merged, and, when the merged drawing still has more than 150 nodes, cut
    at the deepest depth that keeps it within 150 (at least depth 1).  The graph's label says
    what was merged or cut.  SmolLM2's 671-path IOI circuit (1,320 tree nodes) is drawn merged,
    as 33 nodes."""
    import graphviz

    if merge not in ("auto", True, False):
        raise InputError(f"merge={merge!r}: expected True (identical subtrees drawn once), False (the whole tree) or 'auto'")
    check_depth(depth, "components drawn at most that many steps from the output")
    tree = _Tree(paths)
    if merge == "auto":
        merge = len(tree.order) > MAX_DRAWN
    depth = cut_depth(depth, tree.height, lambda k: len(tree.drawn(k, merge)))
    other = OTHER.get(ablation, ablation)
    shown = tree.drawn(depth, merge)
    said = [f"hypothesis {name!r}"]
    if merge or depth is not None:
        said.append(f"{len(paths)} paths, {len(tree.order)} tree nodes drawn as {len(shown)}"
                    + ("; identical subtrees drawn once (an arrow per copy; xN: copies in the tree)" if merge else "")
                    + (f"; cut at depth {depth} (a dashed box per cut subtree)" if depth is not None else ""))
    dot = graphviz.Digraph(
        "hypothesis",
        graph_attr={"rankdir": "LR", "fontname": "Helvetica", "fontsize": "10", "labelloc": "t", "label": "\n".join(said)},
        node_attr={"shape": "box", "style": "filled", "fillcolor": "#dbe9f6", "fontname": "Helvetica", "fontsize": "11"},
        edge_attr={"fontname": "Helvetica", "fontsize": "9"},
    )
    dot.node("output", "output (logits)", shape="ellipse", fillcolor="white")
    ids: dict = {}  # drawn key -> node id
    copies_of = Counter(tree.key(prefix, merge, depth) for prefix in tree.order if depth is None or len(prefix) <= depth)
    edges, placed = set(), []
    for prefix in tree.order:
        if depth is not None and len(prefix) > depth:
            continue
        key = tree.key(prefix, merge, depth)
        if key not in ids:
            ids[key] = f"c{len(ids)}"
            copies = copies_of[key]
            dot.node(ids[key], prefix[-1] + (f"\nx{copies}" if copies > 1 else ""))
            placed.append((ids[key], prefix[-1]))
            feature = tree.ends.get(prefix)
            if feature is not None:  # without a note a pattern reads its parent's example
                dot.node(f"note_{ids[key]}", f"reads an example with the same {feature}", shape="note", fillcolor="#fff8dc",
                         fontsize="9")
                dot.edge(f"note_{ids[key]}", ids[key], style="dashed", arrowhead="none")
            if depth is not None and len(prefix) == depth and tree.children[prefix]:
                dot.node(f"below_{ids[key]}", tree.summary(prefix), shape="box", style="dashed,filled", fillcolor="#f4f4f4",
                         fontsize="9")
                dot.edge(f"below_{ids[key]}", ids[key], style="dashed")
        edge = (ids[key], "output" if len(prefix) == 1 else ids[tree.key(prefix[:-1], merge, depth)])
        if edge not in edges:
            edges.add(edge)
            dot.edge(*edge)
    group_by_layer(dot, placed)
    if not paths:
        dot.node("empty", f"empty hypothesis: every input reads {other}", shape="note", fillcolor="#fff8dc")
        dot.edge("empty", "output", style="dashed", arrowhead="none")
    return dot


def check_depth(depth, what: str) -> None:
    """Refuse a ``depth=`` that is not "auto", None or a whole number >= 1; ``what`` says what it counts."""
    if depth not in ("auto", None) and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 1):
        raise InputError(f"depth={depth!r}: expected a whole number >= 1 (the {what}, everything below collapsed), "
                         "None for no cut, or 'auto'")


def cut_depth(depth, height: int, drawn) -> int | None:
    """The depth a drawing is cut at: ``depth`` as given, or for "auto" none when the whole drawing
    (``drawn(None)`` nodes) has at most ``MAX_DRAWN`` nodes, else the deepest of 1..``height``
    whose drawing (``drawn(k)`` nodes) keeps within it (at least 1)."""
    if depth != "auto":
        return depth
    if drawn(None) <= MAX_DRAWN:
        return None
    return max([k for k in range(1, height + 1) if drawn(k) <= MAX_DRAWN], default=1)


class _Tree:
    """A hypothesis as the tree it is: one node per pattern prefix (``()`` the output), in the
    order the patterns give them, with what each node's subtree holds."""

    def __init__(self, paths) -> None:
        self.children: dict[tuple, list[tuple]] = {(): []}
        self.ends: dict[tuple, str | None] = {}  # a pattern's last prefix -> its feature
        self.order: list[tuple] = []
        for pattern, feature in paths:
            pattern = tuple(pattern)
            for d in range(1, len(pattern) + 1):
                if pattern[:d] not in self.children:
                    self.children[pattern[:d]] = []
                    self.children[pattern[: d - 1]].append(pattern[:d])
                    self.order.append(pattern[:d])
            self.ends[pattern] = feature
        self.height = max((len(prefix) for prefix in self.order), default=0)
        self.signature: dict[tuple, tuple] = {}  # prefix -> what its subtree is, whatever its place
        self.below: dict[tuple, int] = {}  # prefix -> how many levels its subtree has below it
        for prefix in sorted(self.children, key=len, reverse=True):  # children before parents
            below = self.children[prefix]
            self.signature[prefix] = (prefix[-1] if prefix else "", prefix in self.ends, self.ends.get(prefix),
                                      frozenset(self.signature[child] for child in below))
            self.below[prefix] = max((1 + self.below[child] for child in below), default=0)

    def key(self, prefix: tuple, merge: bool, depth: int | None):
        """The drawn node of ``prefix``: itself, or, merged, its subtree as far as the cut shows it
        (the same subtree cut at different heights is drawn as different nodes)."""
        if not merge:
            return prefix
        shown = self.below[prefix] if depth is None else min(self.below[prefix], depth - len(prefix))
        return self.signature[prefix], shown

    def drawn(self, depth: int | None, merge: bool) -> set:
        """What a drawing cut at ``depth`` (None: none) draws: component nodes and summary nodes."""
        shown = set()
        for prefix in self.order:
            if depth is None or len(prefix) <= depth:
                shown.add(self.key(prefix, merge, depth))
                if depth is not None and len(prefix) == depth and self.children[prefix]:
                    shown.add(("below", self.key(prefix, merge, depth)))
        return shown

    def summary(self, prefix: tuple) -> str:
        """What a cut subtree hides, in words."""
        hidden, stack = [], list(self.children[prefix])
        while stack:
            hidden.append(stack.pop())
            stack.extend(self.children[hidden[-1]])
        paths = sum(1 for p in hidden if p in self.ends)
        names = sorted({p[-1] for p in hidden}, key=lambda name: (component(name).order, name))
        listed = [", ".join(names[k : k + 3]) for k in range(0, min(len(names), 6), 3)]
        features = sorted({self.ends[p] for p in hidden if p in self.ends and self.ends[p] is not None})
        return "\n".join([f"{paths} path{'s' * (paths != 1)}, {len(hidden)} node{'s' * (len(hidden) != 1)} below",
                          *listed, *([f"... {len(names)} components in all"] if len(names) > 6 else []),
                          *([f"features: {', '.join(features)}"] if features else [])])


def group_by_layer(dot, placed, per_row: int | None = None) -> None:
    """Lay drawn components out by layer: one rank (a column left to right under ``rankdir=LR``, a
    row under ``BT``) per place in the residual stream (``embed``, then each layer's attention
    heads, then its MLP), or several of at most ``per_row`` nodes, each place labelled at its
    first rank ("layer 5 attention"); invisible edges chain the labels in residual-stream order,
    so the ranks follow the residual stream from the input to the output.  ``placed``: (node id,
    component name) pairs.  Clusters are avoided on purpose: an edge that skips layers would have
    to go around each cluster between its ends, which spreads the drawing sideways."""
    places: dict[int, list[str]] = {}  # place in the residual stream (embed -1, a{L} 2L, m{L} 2L+1) -> node ids
    for node_id, name in placed:
        places.setdefault(component(name).order, []).append(node_id)
    dot.attr(newrank="true")
    previous = None
    for order in sorted(places):
        ids = places[order]
        layer, is_mlp = divmod(order, 2)
        text = "embedding" if order < 0 else f"layer {layer} {'MLP' if is_mlp else 'attention'}"
        for k, start in enumerate(range(0, len(ids), per_row or len(ids))):
            label = f"row_{order + 1}_{k}"
            with dot.subgraph(name=f"rank_{order + 1}_{k}") as rank:
                rank.attr(rank="same")
                rank.node(label, text if k == 0 else "", shape="plaintext", style="", fontcolor="#777777", fontsize="10")
                for node_id in ids[start : start + (per_row or len(ids))]:
                    rank.node(node_id)
            if previous is not None:
                dot.edge(previous, label, style="invis")
            previous = label
