"""Drawing the treeified computation; rendering with or without a dot program."""
from __future__ import annotations

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
