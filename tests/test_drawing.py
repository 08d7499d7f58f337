"""Drawing the treeified computation; rendering with or without a dot program."""
from __future__ import annotations

import re

import pytest

from causal_hypotheses import render
from causal_hypotheses.engine import drawing


def seed_run(engine, tokens):
    return engine.run(list(tokens), lambda p: 1 if "a1" in p else 0, lambda p: p[-1] == "a1")


def test_visualise_colours_nodes_by_the_input_they_read(tiny_engine, tiny_tokens):
    result = seed_run(tiny_engine, tiny_tokens)
    dot = result.visualise()
    source = dot.source
    assert "a1\ninput 1" in source and drawing.PALETTE[1] in source  # a1 read from input 1
    assert "resid final\ninput 0" in source and drawing.PALETTE[0] in source
    assert "output (final norm, unembed)" in source
    assert result.visualise_path().source == source  # the seed's name


def test_per_example_choices_are_drawn_as_mixed(tiny_engine, tiny_tokens):
    import torch

    result = tiny_engine.run(list(tiny_tokens), lambda p: torch.tensor([0, 1, 0, 1]) if "a0" in p else 0, lambda p: p[-1] == "a0")
    assert "per example: inputs 0, 1" in result.visualise().source


def test_render_without_a_dot_program_writes_source_and_warns(tiny_engine, tiny_tokens, tmp_path, monkeypatch):
    monkeypatch.setattr(drawing.shutil, "which", lambda name: None)
    with pytest.warns(UserWarning, match="no 'dot' program found"):
        written = render(seed_run(tiny_engine, tiny_tokens).visualise(), str(tmp_path / "plan"))
    assert written.suffix == ".gv" and "digraph" in written.read_text()
    assert drawing.to_svg(seed_run(tiny_engine, tiny_tokens).visualise()) is None


@pytest.mark.skipif(drawing.dot_program() is None, reason="no dot program (apt-get install graphviz or pip install graphviz-pure)")
def test_render_with_a_dot_program_writes_svg(tiny_engine, tiny_tokens, tmp_path):
    written = render(seed_run(tiny_engine, tiny_tokens).visualise(), str(tmp_path / "plan"))
    assert written.suffix == ".svg" and "<svg" in written.read_text()


def test_the_plan_is_laid_out_by_layer(tiny_engine, tiny_tokens):
    """Each component's nodes sit in the row of its place in the residual stream, labelled, and
    the rows are chained from the embedding to the last layer."""
    import re

    result = seed_run(tiny_engine, tiny_tokens)
    source = result.visualise().source
    assert "newrank=true" in source
    rows = re.findall(r"subgraph rank_(\d+)_\d+ \{(.*?)\}", source, flags=re.S)
    labels = [re.search(r'label="?([^"\]]*)', body).group(1) for _, body in rows]
    assert "layer 1 attention" in labels
    assert [int(order) for order, _ in rows] == sorted(int(order) for order, _ in rows)  # residual-stream order
    # the node reading a1 from input 1 is in layer 1 attention's row
    node = re.search(r'(\d+) \[label="a1\ninput 1', source).group(1)
    body = next(body for (_, body), label in zip(rows, labels) if label == "layer 1 attention")
    assert re.search(rf"^\s*{node}\s*$", body, flags=re.M)


# Large hypotheses: identical subtrees merged, deep ones cut (causal_hypotheses/drawing.py) ---------------


def drawn(dot):
    """A hypothesis drawing's nodes {id: label} and its arrows (child, parent), the layout's
    invisible ones left out."""
    source = dot.source
    labels = {node: label.strip('"') for node, label in re.findall(r'^\s*(\w+) \[label=("[^"]*"|[^\s\]]+)', source, flags=re.M)}
    arrows = [(a, b) for a, b, rest in re.findall(r"^\s*(\w+) -> (\w+)(.*)$", source, flags=re.M) if "invis" not in rest]
    return labels, arrows


def unfold(labels, arrows, top="output"):
    """The root-to-leaf patterns a drawing stands for, each arrow into a node a copy of the subtree
    below it (what a merged drawing means), cut subtrees and notes left out."""
    below = {}
    for child, parent in arrows:
        if child.startswith("c"):
            below.setdefault(parent, []).append(child)
    patterns, stack = [], [(child, ()) for child in below.get(top, [])]
    while stack:
        node, above = stack.pop()
        pattern = (*above, labels[node].split("\n")[0])
        children = below.get(node, [])
        if not children:
            patterns.append(pattern)
        stack.extend((child, pattern) for child in children)
    return patterns


def leaves(paths):
    """The patterns no other pattern continues."""
    return {p for p in paths if not any(len(q) > len(p) and q[: len(p)] == p for q in paths)}


def ioi_found_paths():
    import ast
    from pathlib import Path

    module = Path(__file__).parents[1] / "circuits" / "test_ioi_found_default.py"
    tree = ast.parse(module.read_text())
    return next(ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign) and node.targets[0].id == "PATHS")


def test_merging_draws_identical_subtrees_once():
    from causal_hypotheses import Hypothesis

    hypothesis = Hypothesis({("a1.h0.k", "a0.h3", "embed"): None, ("a1.h1.k", "a0.h3", "embed"): None, ("a1.h2.q", "a0.h3"): None})
    whole_labels, whole_arrows = drawn(hypothesis.visualise())  # small: drawn whole by default
    assert sorted(whole_labels.values()).count("a0.h3") == 3 and len(whole_arrows) == 8
    labels, arrows = drawn(hypothesis.visualise(merge=True))
    ids = {label: node for node, label in labels.items()}
    # a0.h3 with embed below, under two parents: one node, x2, with an arrow to each parent; the
    # a0.h3 that ends a pattern has another subtree, so it is its own node
    assert ids["a0.h3\nx2"] and ids["embed\nx2"] and "a0.h3" in ids
    assert {(ids["a0.h3\nx2"], ids["a1.h0.k"]), (ids["a0.h3\nx2"], ids["a1.h1.k"]), (ids["embed\nx2"], ids["a0.h3\nx2"]),
            (ids["a0.h3"], ids["a1.h2.q"])} <= set(arrows)
    assert len(arrows) == 7 and len([n for n in labels if n.startswith("c")]) == 6
    assert sorted(unfold(labels, arrows)) == sorted(leaves(hypothesis.paths))


def test_a_cut_collapses_each_subtree_below_the_depth_into_one_summary():
    from causal_hypotheses import Hypothesis

    hypothesis = Hypothesis({("a1.h0.k", "a0.h3", "embed"): None, ("a1.h0.k", "a0.h1", "embed"): "seq",
                             ("a1.h0.k", "a0.h1"): None, ("a1.h1.q",): None}, name="cut")
    labels, arrows = drawn(hypothesis.visualise(depth=1, merge=False))
    components = {node: label for node, label in labels.items() if node.startswith("c")}
    assert sorted(components.values()) == ["a1.h0.k", "a1.h1.q"]
    summaries = {node: label for node, label in labels.items() if node.startswith("below_")}
    ids = {label: node for node, label in components.items()}
    # one summary, under a1.h0.k (a1.h1.q has nothing below): 3 patterns end below it, 4 tree nodes
    assert list(summaries) == [f"below_{ids['a1.h0.k']}"]
    assert summaries[f"below_{ids['a1.h0.k']}"] == "3 paths, 4 nodes below\nembed, a0.h1, a0.h3\nfeatures: seq"
    assert set(arrows) == {(ids["a1.h0.k"], "output"), (ids["a1.h1.q"], "output"), (f"below_{ids['a1.h0.k']}", ids["a1.h0.k"])}
    assert "cut at depth 1" in hypothesis.visualise(depth=1).graph_attr["label"]
    # depth 2 draws a0.h1 and a0.h3 and a summary below each; the feature's pattern ends below a0.h1,
    # so its summary names it and no note is drawn
    labels, arrows = drawn(hypothesis.visualise(depth=2, merge=False))
    assert sorted(label for node, label in labels.items() if node.startswith("below_")) == [
        "1 path, 1 node below\nembed", "1 path, 1 node below\nembed\nfeatures: seq"]
    assert "reads an example with the same seq" not in labels.values()
    assert "reads an example with the same seq" in drawn(hypothesis.visualise(depth=3))[0].values()


def test_bad_depth_or_merge():
    from causal_hypotheses import Hypothesis, InputError

    hypothesis = Hypothesis({("a1.h0",): None})
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(InputError, match=f"depth={bad!r}: expected a whole number >= 1"):
            hypothesis.visualise(depth=bad)
    with pytest.raises(InputError, match="merge='yes': expected True"):
        hypothesis.visualise(merge="yes")


def test_a_large_hypothesis_is_merged_or_cut_by_default():
    """The default keeps a drawing within MAX_DRAWN nodes: SmolLM2's 671-path IOI circuit (1,320 tree
    nodes) merges into 33 nodes that stand for exactly its patterns; ten heads each reading twenty
    heads of their own (410 tree nodes, 211 merged) are cut at depth 1, the deepest within the bound."""
    from causal_hypotheses import Hypothesis
    from causal_hypotheses.drawing import MAX_DRAWN

    paths = ioi_found_paths()
    assert len(paths) == 671
    dot = Hypothesis({path: None for path in paths}, name="found").visualise()
    labels, arrows = drawn(dot)
    assert len([n for n in labels if n.startswith("c")]) == 33 and not any(n.startswith("below_") for n in labels)
    assert "671 paths, 1320 tree nodes drawn as 33; identical subtrees drawn once" in dot.graph_attr["label"]
    assert sorted(unfold(labels, arrows)) == sorted(leaves(set(paths)))
    assert "embed\nx135" in labels.values()  # embed sits below 135 places of the tree
    # ten heads, each reading twenty heads of its own from the embedding: 410 tree nodes, 211 merged
    distinct = {(f"a29.h{i}.q", f"a{i}.h{j}.v", "embed"): None for i in range(10) for j in range(20)}
    tree_nodes = len({pattern[:d] for pattern in distinct for d in range(1, 4)})
    assert tree_nodes == 410
    dot = Hypothesis(distinct).visualise()
    labels, _ = drawn(dot)
    components = [n for n in labels if n.startswith("c")]
    summaries = [n for n in labels if n.startswith("below_")]
    assert sorted(labels[n] for n in components) == sorted(f"a29.h{i}.q" for i in range(10))
    assert sorted(summaries) == sorted(f"below_{n}" for n in components)
    assert labels[f"below_{next(n for n in components if labels[n] == 'a29.h3.q')}"] == (
        "20 paths, 40 nodes below\nembed, a3.h0.v, a3.h1.v\na3.h10.v, a3.h11.v, a3.h12.v\n... 21 components in all")
    assert "cut at depth 1" in dot.graph_attr["label"] and "identical subtrees drawn once" in dot.graph_attr["label"]
    assert len(components) + len(summaries) <= MAX_DRAWN < tree_nodes


@pytest.mark.skipif(drawing.dot_program() is None, reason="no dot program (apt-get install graphviz or pip install graphviz-pure)")
def test_the_large_hypothesis_renders_at_a_readable_size():
    import re

    from causal_hypotheses import Hypothesis

    svg = drawing.to_svg(Hypothesis({path: None for path in ioi_found_paths()}).visualise())
    width, height = (float(x) for x in re.search(r'<svg width="([\d.]+)pt" height="([\d.]+)pt"', svg).groups())
    assert width < 2500 and height < 2500, (width, height)


# A large plan: cut at a depth (engine/drawing.py) -----------------------------------------------------


def plan_graph(dot):
    """A plan drawing's plan nodes, summary nodes {id: label} and arrows (child, parent)."""
    labels, arrows = drawn(dot)
    nodes = {node for node in labels if node.isdigit()}
    return nodes, {n: label for n, label in labels.items() if n.startswith("below_")}, arrows


def distances(nodes, arrows):
    """Each node's fewest arrows to the output, read off the whole drawing."""
    parents = {}
    for child, parent in arrows:
        parents.setdefault(parent, []).append(child)
    root = next(n for n in nodes if not any(child == n for child, _ in arrows))
    distance, frontier = {root: 0}, [root]
    while frontier:
        following = []
        for node in frontier:
            for child in parents.get(node, []):
                if child not in distance:
                    distance[child] = distance[node] + 1
                    following.append(child)
        frontier = following
    return distance, parents


def test_a_plan_cut_at_a_depth_draws_the_nodes_above_it_and_counts_the_rest(tiny_engine, tiny_tokens):
    from causal_hypotheses import InputError

    result = tiny_engine.run(list(tiny_tokens), lambda p: len(p) % 2, lambda p: True)
    whole = drawing.plan_to_digraph(result.root, result._planner.selectors, result.n_inputs, depth=None)
    nodes, summaries, arrows = plan_graph(whole)
    assert not summaries and len(nodes) == 33
    distance, parents = distances(nodes, arrows)
    cut_nodes, cut_summaries, cut_arrows = plan_graph(
        drawing.plan_to_digraph(result.root, result._planner.selectors, result.n_inputs, depth=2))
    assert cut_nodes == {n for n in nodes if distance[n] <= 2}
    expected = {}
    for node in cut_nodes:
        hidden_inputs = [c for c in parents.get(node, []) if distance[c] > 2]
        if hidden_inputs:
            below, stack = set(), list(hidden_inputs)
            while stack:
                n = stack.pop()
                if n not in below:
                    below.add(n)
                    stack += [c for c in parents.get(n, []) if distance[c] > 2]
            expected[f"below_{node}"] = (f"{len(hidden_inputs)} input{'s' * (len(hidden_inputs) != 1)} not drawn:\n"
                                         f"{len(below)} plan node{'s' * (len(below) != 1)} below")
    assert expected and cut_summaries == expected
    assert {(a, b) for a, b in cut_arrows if not a.startswith("below_")} == {(a, b) for a, b in arrows if a in cut_nodes and b in cut_nodes}
    with pytest.raises(InputError, match="depth=0: expected a whole number >= 1"):
        drawing.plan_to_digraph(result.root, result._planner.selectors, result.n_inputs, depth=0)
    assert plan_graph(result.visualise(depth=2)) == (cut_nodes, cut_summaries, cut_arrows)  # the same through RunResult
    with pytest.raises(InputError, match="depth=0: expected a whole number >= 1"):
        result.visualise(depth=0)


def test_a_large_plan_is_cut_by_default(tiny_engine, tiny_tokens, monkeypatch):
    """RunResult.visualise() draws a plan of more than MAX_DRAWN nodes cut at the deepest depth
    within it (here the bound is lowered to 12 so that the tiny model's 33-node plan is large)."""
    result = tiny_engine.run(list(tiny_tokens), lambda p: len(p) % 2, lambda p: True)
    assert len(plan_graph(result.visualise())[0]) == 33  # within the bound: whole
    import causal_hypotheses.drawing as shared  # the bound both drawings cut at (cut_depth)

    monkeypatch.setattr(shared, "MAX_DRAWN", 12)
    dot = result.visualise()
    nodes, summaries, _ = plan_graph(dot)
    assert len(nodes) + len(summaries) <= 12
    depth = int(re.search(r"cut at depth (\d+)", dot.source).group(1))
    deeper = plan_graph(drawing.plan_to_digraph(result.root, result._planner.selectors, result.n_inputs, depth=depth + 1))
    assert len(deeper[0]) + len(deeper[1]) > 12
