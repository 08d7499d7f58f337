"""Drawing a run's plan as a graphviz graph, and rendering it when a ``dot`` exists.

Rendering needs a ``dot`` program: Debian's ``graphviz`` or PyPI's ``graphviz-pure``
(command ``graphviz-pure``), found on PATH or beside the running Python (a virtualenv's
``bin``, which holds ``graphviz-pure`` even when the venv is not activated).  Without one,
the DOT source is written and a warning says so; a run never fails for want of a renderer.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path as FilePath

from ..drawing import check_depth, cut_depth, group_by_layer
from .ir import Delta, Gather, MaskedDelta, Mix, Mlp, Sum

PALETTE = ["#9ecae1", "#fdae6b", "#a1d99b", "#bcbddc", "#fc9272", "#fdd0a2", "#c7e9c0", "#dadaeb"]
MIXED = "#d9d9d9"


def _selector_label(selector) -> tuple[str, str]:
    if selector.kind == "input":
        return f"input {selector.index}", PALETTE[selector.index % len(PALETTE)]
    used = ", ".join(str(i) for i in selector.inputs())
    return f"per {selector.kind}: inputs {used}", MIXED


def _place(node, places: dict) -> str | None:
    """The component whose place in the residual stream a plan node is drawn at: ``embed``,
    ``a{L}`` (attention L's inputs, heads and output, and the stream it reads) or ``m{L}``; None
    for the final stream and the output, drawn after the last layer."""
    if node.id in places:
        return places[node.id]
    spec, place = node.spec, None
    if isinstance(spec, (Gather, Delta, MaskedDelta)):
        site = spec.site
        if site[0] == "embed":
            place = "embed"
        elif site[0] == "mlp_out":
            place = f"m{site[1]}"
        elif site[0] == "resid":
            place = None if site[1] == "final" else f"{'a' if site[1] == 'attn_in' else 'm'}{site[2]}"
        else:  # attn_out, head_out, qkv, z
            place = f"a{site[1]}"
    elif hasattr(spec, "layer"):
        place = f"{'m' if isinstance(spec, Mlp) else 'a'}{spec.layer}"
    elif isinstance(spec, (Sum, Mix)) and node.children:  # a stream (its captured part first) or a choice
        place = _place(node.children[0], places)
    places[node.id] = place
    return place


def plan_to_digraph(root, selectors: dict, n_inputs: int, *, depth="auto"):
    """A ``graphviz.Digraph``: gathers coloured by the input they read, edges toward the output,
    and the nodes laid out by layer (one row per place in the residual stream, labelled).

    The plan is a graph of shared nodes (a node computed once is drawn once).  ``depth=k`` (>= 1)
    draws the nodes at most k edges from the output (by their shortest way) and collapses what
    lies below each node at depth k into one dashed summary node saying how many plan nodes it
    hides; ``None`` draws the whole plan.  The default ("auto", what ``RunResult.visualise()``
    draws) draws a plan of at most ``MAX_DRAWN`` (150) nodes whole and cuts a larger one at the
    deepest depth that keeps the drawing within 150 nodes (at least depth 1)."""
    import graphviz

    check_depth(depth, "plan nodes drawn at most that many edges from the output")
    distance = _distances(root)
    depth = cut_depth(depth, max(distance.values()), lambda k: len(distance) if k is None else _drawn_count(distance, k))
    dot = graphviz.Digraph("treeified", graph_attr={"rankdir": "BT"}, node_attr={"style": "filled", "fontname": "Helvetica"})
    seen, stack, places = set(), [root], {}
    while stack:
        node = stack.pop()
        if node.id in seen:
            continue
        seen.add(node.id)
        _place(node, places)
        spec = node.spec
        if isinstance(spec, Gather):
            text, colour = _selector_label(selectors[spec.selector])
            dot.node(str(node.id), f"{spec.label()}\n{text}", fillcolor=colour, shape="box")
        elif isinstance(spec, Delta):
            text, colour = _selector_label(selectors[spec.chosen])
            dot.node(str(node.id), f"{spec.label()}\n{text} minus {_selector_label(selectors[spec.base])[0]}",
                     fillcolor=colour, shape="box")
        else:
            dot.node(str(node.id), spec.label(), fillcolor="white", shape="ellipse")
        signs = spec.signs if isinstance(spec, Sum) else None
        hidden = 0
        for i, child in enumerate(node.children):
            if depth is not None and distance[child.id] > depth:
                hidden += 1
                continue
            label = ("+" if signs[i] > 0 else "−") if signs else ""
            dot.edge(str(child.id), str(node.id), label=label)
            stack.append(child)
        if hidden:
            below = _hidden_below(node, distance, depth)
            dot.node(f"below_{node.id}", f"{hidden} input{'s' * (hidden != 1)} not drawn:\n{below} plan node{'s' * (below != 1)} below",
                     shape="box", style="dashed,filled", fillcolor="#f4f4f4", fontsize="10")
            dot.edge(f"below_{node.id}", str(node.id), style="dashed")
    group_by_layer(dot, [(str(i), place) for i, place in sorted(places.items()) if place is not None and i in seen],
                   per_row=12)
    legend = ", ".join(f"input {i}" for i in range(n_inputs))
    cut = "" if depth is None else (f"\n{len(distance)} plan nodes, cut at depth {depth}: {len(seen)} drawn, "
                                    "a dashed box per node whose inputs are not drawn")
    dot.attr(label=f"colours: {legend}; grey = chosen per example or position{cut}", fontsize="10")
    return dot


def _distances(root) -> dict[int, int]:
    """Each plan node's fewest edges from the output (breadth first)."""
    distance, frontier = {root.id: 0}, [root]
    while frontier:
        following = []
        for node in frontier:
            for child in node.children:
                if child.id not in distance:
                    distance[child.id] = distance[node.id] + 1
                    following.append(child)
        frontier = following
    return distance


def _drawn_count(distance: dict[int, int], depth: int) -> int:
    """Nodes a cut at ``depth`` draws, with one summary per node at the cut (an upper bound: a node
    at the cut whose inputs are all drawn has none)."""
    return sum(1 for d in distance.values() if d <= depth) + sum(1 for d in distance.values() if d == depth)


def _hidden_below(node, distance: dict[int, int], depth: int) -> int:
    """How many plan nodes beyond the cut ``node`` reads, directly or through others beyond it."""
    found, stack = set(), [child for child in node.children if distance[child.id] > depth]
    while stack:
        child = stack.pop()
        if child.id not in found:
            found.add(child.id)
            stack.extend(grand for grand in child.children if distance[grand.id] > depth)
    return len(found)


def dot_program() -> str | None:
    """The first renderer found: ``dot`` or ``graphviz-pure``, on PATH, then in the directory
    of the running interpreter (``sys.executable``'s, e.g. a venv's bin when it is not on PATH)."""
    for name in ("dot", "graphviz-pure"):
        found = shutil.which(name)
        if found:
            return found
    if sys.executable:
        beside = os.path.dirname(sys.executable)
        for name in ("dot", "graphviz-pure"):
            found = shutil.which(os.path.join(beside, name))  # a path: checked as is, PATH not searched
            if found:
                return found
    return None


def render(digraph, path: str, format: str = "svg") -> FilePath:
    """Write ``digraph`` to ``path.format`` with a dot program, or ``path.gv`` (with a warning) without one."""
    target = FilePath(path)
    source = target.with_suffix(".gv")
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_text(digraph.source)
    program = dot_program()
    if program is None:
        warnings.warn(
            f"no 'dot' program found; wrote the DOT source to {source}. Install Debian's graphviz "
            "(apt-get install graphviz) or `pip install graphviz-pure` to render it",
            stacklevel=2,
        )
        return source
    output = target.with_suffix("." + format)
    completed = subprocess.run([program, f"-T{format}", "-o", str(output), str(source)], capture_output=True, text=True)
    if completed.returncode != 0:
        warnings.warn(f"{program} failed ({completed.stderr.strip()}); the DOT source is in {source}", stacklevel=2)
        return source
    return output


def to_svg(digraph) -> str | None:
    """The drawing as SVG text, or None when no dot program is installed."""
    program = dot_program()
    if program is None:
        return None
    completed = subprocess.run([program, "-Tsvg"], input=digraph.source, capture_output=True, text=True)
    return completed.stdout if completed.returncode == 0 else None
