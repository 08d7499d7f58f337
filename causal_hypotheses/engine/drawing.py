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

PALETTE = ["#9ecae1", "#fdae6b", "#a1d99b", "#bcbddc", "#fc9272", "#fdd0a2", "#c7e9c0", "#dadaeb"]
MIXED = "#d9d9d9"


def site_name(site: tuple) -> str:
    kind = site[0]
    if kind == "embed":
        return "embed"
    if kind == "attn_out":
        return f"a{site[1]}"
    if kind == "mlp_out":
        return f"m{site[1]}"
    if kind == "head_out":
        return f"a{site[1]}.h{site[2]}"
    if kind == "qkv":
        return f"a{site[1]}.h{site[2]}.{'qkv'[site[3]]}"
    where, layer = site[1], site[2]
    return "resid final" if where == "final" else f"resid into {'a' if where == 'attn_in' else 'm'}{layer}"


def _selector_label(selector) -> tuple[str, str]:
    if selector.kind == "input":
        return f"input {selector.index}", PALETTE[selector.index % len(PALETTE)]
    used = ", ".join(str(i) for i in selector.inputs())
    return f"per {selector.kind}: inputs {used}", MIXED


def _node_label(node) -> str:
    op, args = node.op, node.args
    if op == "final":
        return "output (ln_f, unembed)"
    if op == "sum":
        return "residual sum"
    if op == "mix":
        return "split examples: computed | read"
    if op == "mdelta":
        return f"{site_name(args[0])} change, split examples"
    if op == "mlp":
        return f"m{args[0]}"
    if op in ("core", "layer_core"):
        return f"a{args[0]}"
    if op in ("head", "head_core"):
        return f"a{args[0]}.h{args[1]}"
    if op == "proj":
        return f"a{args[0]}.h{args[1]}.{'qkv'[args[2]]}"
    return op


def plan_to_digraph(root, selectors: dict, n_inputs: int):
    """A ``graphviz.Digraph``: gathers coloured by the input they read, edges toward the output."""
    import graphviz

    dot = graphviz.Digraph("treeified", graph_attr={"rankdir": "BT"}, node_attr={"style": "filled", "fontname": "Helvetica"})
    seen, stack = set(), [root]
    while stack:
        node = stack.pop()
        if node.id in seen:
            continue
        seen.add(node.id)
        if node.op == "gather":
            site, key = node.args
            text, colour = _selector_label(selectors[key])
            dot.node(str(node.id), f"{site_name(site)}\n{text}", fillcolor=colour, shape="box")
        elif node.op == "delta":
            site, key, base = node.args
            text, colour = _selector_label(selectors[key])
            dot.node(str(node.id), f"{site_name(site)}\n{text} minus {_selector_label(selectors[base])[0]}", fillcolor=colour, shape="box")
        else:
            dot.node(str(node.id), _node_label(node), fillcolor="white", shape="ellipse")
        signs = node.args[0] if node.op == "sum" else None
        for i, child in enumerate(node.children):
            label = ("+" if signs[i] > 0 else "−") if signs else ""
            dot.edge(str(child.id), str(node.id), label=label)
            stack.append(child)
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
