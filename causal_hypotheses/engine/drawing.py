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

from ..drawing import group_by_layer
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


def plan_to_digraph(root, selectors: dict, n_inputs: int):
    """A ``graphviz.Digraph``: gathers coloured by the input they read, edges toward the output,
    and the nodes laid out by layer (one row per place in the residual stream, labelled)."""
    import graphviz

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
        for i, child in enumerate(node.children):
            label = ("+" if signs[i] > 0 else "−") if signs else ""
            dot.edge(str(child.id), str(node.id), label=label)
            stack.append(child)
    group_by_layer(dot, [(str(i), place) for i, place in sorted(places.items()) if place is not None], per_row=12)
    legend = ", ".join(f"input {i}" for i in range(n_inputs))
    dot.attr(label=f"colours: {legend}; grey = chosen per example or position", fontsize="10")
    return dot


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
