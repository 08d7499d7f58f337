"""Pictures: heatmaps of layer x head tables, attention patterns as SVG tables, notebook views
(_repr_html_) of sweeps, scrubs and claim records, and hypotheses drawn by layer."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pandas as pd
import pytest
import torch

from causal_hypotheses.errors import InputError

SVG = "{http://www.w3.org/2000/svg}"


def _cells(svg: str) -> list:
    return [r for r in ET.fromstring(svg).iter(f"{SVG}rect") if r.find(f"{SVG}title") is not None]


def test_heatmap_colours_are_diverging_and_centred_at_zero():
    from causal_hypotheses.reports.plots import heatmap_svg

    table = pd.DataFrame([[1.0, -1.0, 0.0], [0.5, float("nan"), -0.25]],
                         index=pd.RangeIndex(2, name="layer"), columns=pd.RangeIndex(3, name="head"))
    svg = heatmap_svg(table, title="a sweep")
    cells = _cells(svg)
    assert len(cells) == 6
    fills = {c.find(f"{SVG}title").text: c.get("fill") for c in cells}
    assert fills["layer 0, head 0: 1"] == "#b2182b"  # the largest |value|: full red
    assert fills["layer 0, head 1: -1"] == "#2166ac"  # full blue
    assert fills["layer 0, head 2: 0"] == "#ffffff"  # zero: white
    assert fills["layer 1, head 1: no value"] == "#e6e6e6"  # NaN: grey
    red, blue = fills["layer 1, head 0: 0.5"], fills["layer 1, head 2: -0.25"]
    assert int(red[1:3], 16) > int(red[5:7], 16) and int(blue[5:7], 16) > int(blue[1:3], 16)  # reddish, bluish
    texts = [t.text for t in ET.fromstring(svg).iter(f"{SVG}text")]
    assert "a sweep" in texts and "layer" in texts and "head" in texts  # title and axis labels
    with pytest.raises(InputError, match="heatmap_svg draws a DataFrame"):
        heatmap_svg(pd.Series([1.0]))


def test_attention_table_labels_rows_and_columns_with_tokens():
    from causal_hypotheses.reports.plots import attention_svg

    pattern = torch.tensor([[1.0, 0.0, 0.0], [0.25, 0.75, 0.0], [0.2, 0.3, 0.5]])
    svg = attention_svg(pattern, ["<bos>", " cat", " &"], title="a1.h4 on example 0")
    cells = _cells(svg)
    assert len(cells) == 9
    tips = [c.find(f"{SVG}title").text for c in cells]
    assert "query 1 ' cat' -> key 0 '<bos>': 0.250" in tips and "query 2 ' &' -> key 2 ' &': 0.500" in tips
    full = next(c for c in cells if c.find(f"{SVG}title").text.endswith("key 0 '<bos>': 1.000"))
    assert full.get("fill") == "#2166ac"
    texts = [t.text for t in ET.fromstring(svg).iter(f"{SVG}text")]
    assert "0 <bos>" in texts and "2  &" in texts  # escaped, parsed back
    with pytest.raises(InputError, match="a square pattern"):
        attention_svg(torch.ones(2, 3))
    with pytest.raises(InputError, match="2 token labels for a pattern over 3 positions"):
        attention_svg(pattern, ["a", "b"])


def test_sweeps_stay_dataframes_and_draw_themselves(tiny_engine, tiny_tokens):
    from causal_hypotheses import activation_patch_sweep

    clean, corrupt = tiny_tokens
    table = activation_patch_sweep(tiny_engine, clean, corrupt, lambda logits: logits[:, -1, 0] - logits[:, -1, 1])
    assert isinstance(table, pd.DataFrame) and table.shape == (2, 4) and "stats" in table.attrs
    html = table._repr_html_()
    assert html.startswith("<div><svg") and "<table" in html
    assert len(_cells(html[5 : html.index("</svg>") + 6])) == 8
    assert isinstance(table * 2, pd.DataFrame) and (table * 2).loc[1, 3] == 2 * table.loc[1, 3]
    series = activation_patch_sweep(tiny_engine, clean, corrupt, lambda logits: logits[:, -1, 0], nodes=["m0", "a1"])
    assert isinstance(series, pd.Series)  # components other than heads: a Series, as before


def test_scrub_results_and_claim_records_show_in_notebooks(tiny_engine):
    from causal_hypotheses import Hypothesis, scrub
    from causal_hypotheses.claims.record import ClaimRecord
    from causal_hypotheses.tasks.induction import induction

    task = induction(8, half_len=4, vocab_size=512, seed=0)
    result = scrub(tiny_engine, Hypothesis({("a1",): None}, name="layer 1 only"), task, n=8)
    html = result._repr_html_()
    assert "layer 1 only" in html and "fraction recovered" in html and "<svg" in html
    assert f"{result.fraction_recovered:.3f}" in html
    assert "empty hypothesis" not in html and re.search(r">a1<|label=a1\b", html)  # its hypothesis drawn, as SVG or DOT
    record = ClaimRecord(claim="c", kind="scrub", value=0.5, ci_low=0.4, ci_high=0.6, verdict="pass")
    assert '<section id="claim-c-' in record._repr_html_() and "pass" in record._repr_html_()


# ------------------------------------------------------------------ large hypotheses
def ioi_like_paths() -> list:
    """~100 patterns as an IOI-style hypothesis has them: name movers, S-inhibition heads into
    their queries, induction and duplicate-token heads into those heads' values."""
    movers, inhibition, early = ["a9.h9", "a9.h6", "a10.h0", "a10.h7"], ["a7.h3", "a7.h9", "a8.h6", "a8.h10"], ["a5.h5", "a6.h9", "a0.h1", "a3.h0"]
    paths = []
    for m in movers:
        paths += [[[m], "io"], [[m + ".k", "embed"], None]]
        for s in inhibition:
            paths.append([[m + ".q", s], "s"])
            paths += [[[m + ".q", s + ".v", e], None] for e in early]
    return paths


def test_large_hypotheses_are_drawn_by_layer(tmp_path):
    from causal_hypotheses import reports
    from causal_hypotheses.engine import drawing

    paths = ioi_like_paths()
    assert len(paths) == 88
    source = reports.hypothesis_digraph(paths, "ioi-like", "resample").source
    labels = dict(re.findall(r'\b(c\d+) \[label="?([\w.]+)"?\]', source))
    ranks = re.findall(r"subgraph rank_\w+ \{\s*rank=same\s*(.*?)\}", source, re.S)
    groups = [[labels[n] for n in re.findall(r"\b(c\d+)\b", block)] for block in ranks]
    # every drawn component sits in one rank, and a rank holds one place of the residual stream
    assert sorted(n for g in groups for n in g) == sorted(labels.values())
    for group in groups:
        places = {re.match(r"(embed|a\d+|m\d+)", name).group(1) for name in group}
        assert len(places) == 1, group
    assert len(groups) == 9  # embed and layers 0, 3, 5, 6, 7, 8, 9, 10: one rank each
    assert "layer 9 attention" in source and "embedding" in source and "rankdir=LR" in source
    program = drawing.dot_program()
    if program is None:
        pytest.skip("no dot program (apt-get install graphviz or pip install graphviz-pure)")
    svg = drawing.to_svg(reports.hypothesis_digraph(paths, "ioi-like", "resample"))
    width, height = (float(x) for x in re.search(r'<svg width="([\d.]+)pt" height="([\d.]+)pt"', svg).groups())
    assert width < 2500, (width, height)  # one strip, ranked by tree depth, was ~7600pt wide
