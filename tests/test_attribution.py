"""Attribution patching (node scores, EAP, EAP-IG) against independent references.

1. The same linear approximation computed another way: central finite differences of the metric
   on the unmodified HF model, each node or edge perturbed by its own hooks
   (tests/attribution_reference.py), in float64, on a tiny random GPT-2 and a tiny Llama with
   grouped-query attention.
2. The approximation against exact patching by the engine, where it must hold: a model whose
   clean and corrupt tokens have nearly equal embeddings, so every patch is small.
"""
from __future__ import annotations

import pytest
import torch

from causal_hypotheses import Engine, activation_patch, path_patch, random_gpt2
from causal_hypotheses.discovery import attribute
from causal_hypotheses.errors import InputError

import attribution_reference as ref
from test_llama import SHAPES, random_llama


def answer_metric(answer: int, distractor: int):
    return lambda logits: logits[:, -1, answer] - logits[:, -1, distractor]


def prompts(vocab: int, shape=(3, 6), seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(0, vocab, shape, generator=generator) for _ in range(2)]


MODELS = {
    "gpt2": lambda: random_gpt2("tiny", seed=0, std=0.3).double(),
    "llama-gqa": lambda: random_llama(seed=1, **SHAPES["gqa"]).double(),
}


@pytest.fixture(scope="module", params=list(MODELS))
def case(request):
    model = MODELS[request.param]()
    clean, corrupt = prompts(model.config.vocab_size)
    metric = answer_metric(3, 7)
    return model, clean, corrupt, metric, attribute(model, clean, corrupt, metric)


def close(got: float, expected: float, scale: float, tolerance: float = 1e-6) -> bool:
    return abs(got - expected) <= tolerance * scale + 1e-5 * abs(expected)


def test_node_scores_equal_finite_differences(case):
    model, clean, corrupt, metric, scores = case
    node_scores = scores.node_scores()
    embeds = ref.token_embedding(model, clean)
    scale = float(node_scores.abs().max())
    expected = {}
    for name in node_scores.index:
        if ".h" in name:
            layer, head = int(name[1:].split(".")[0]), int(name.split(".h")[1])
            delta = (ref.head_z(model, corrupt, layer) - ref.head_z(model, clean, layer))[:, :, head]
        else:
            delta = ref.sender_delta(model, clean, corrupt, name)
        expected[name] = ref.node_derivative(model, metric, embeds, name, delta)
    bad = {n: (float(node_scores[n]), expected[n]) for n in expected if not close(node_scores[n], expected[n], scale, ref.tolerance(model))}
    assert not bad, bad
    assert sum(abs(v) > 1e-3 * scale for v in expected.values()) >= len(expected) // 2  # most nodes matter


def test_per_position_node_scores_equal_finite_differences(case):
    model, clean, corrupt, metric, scores = case
    embeds = ref.token_embedding(model, clean)
    dz = ref.head_z(model, corrupt, 0) - ref.head_z(model, clean, 0)
    for position in (1, 4):
        expected = ref.node_derivative(model, metric, embeds, "a0.h1", dz[:, :, 1], position=position)
        assert close(scores.nodes.loc["a0.h1", position], expected, abs(expected), ref.tolerance(model))
        assert abs(expected) > 1e-6
    assert scores.node_scores(-1)["m1"] == scores.nodes.loc["m1"].iloc[-1]


def test_edge_scores_equal_finite_differences(case):
    model, clean, corrupt, metric, scores = case
    edges = scores.edges
    n_layers, n_heads = len(ref.blocks(model)), model.config.num_attention_heads
    senders = 1 + n_layers * (n_heads + 1)
    receivers = n_layers * (3 * n_heads + 1) + 1
    assert len(edges) == sum(1 + L * (n_heads + 1) for L in range(n_layers)) * 3 * n_heads + sum(
        1 + L * (n_heads + 1) + n_heads for L in range(n_layers)) + senders
    assert edges.receiver.nunique() == receivers
    deltas = {s: ref.sender_delta(model, clean, corrupt, s) for s in edges.sender.unique()}
    scale = float(edges.score.abs().max())
    bad = []
    for row in edges.itertuples():
        expected = ref.edge_derivative(model, metric, clean, row.receiver, deltas[row.sender])
        if not close(row.score, expected, scale, ref.tolerance(model)):
            bad.append((row.sender, row.receiver, row.score, expected))
    assert not bad, bad[:5]


def test_a_nodes_score_is_the_sum_of_its_edges(case):
    *_, scores = case
    by_sender = scores.edges.groupby("sender").score.sum()
    torch.testing.assert_close(torch.tensor(by_sender.to_numpy()), torch.tensor(scores.node_scores()[by_sender.index].to_numpy()))


def test_integrated_gradients_equal_averaged_finite_differences():
    """EAP-IG's node scores: finite differences at each interpolated embedding, averaged."""
    model = MODELS["gpt2"]()
    clean, corrupt = prompts(512)
    metric = answer_metric(3, 7)
    scores = attribute(model, clean, corrupt, metric, method="ig", steps=3).node_scores()
    e_clean, e_corrupt = ref.token_embedding(model, clean), ref.token_embedding(model, corrupt)
    dz = ref.head_z(model, corrupt, 1) - ref.head_z(model, clean, 1)
    d_mlp = ref.sender_delta(model, clean, corrupt, "m0")
    for name, delta in (("a1.h2", dz[:, :, 2]), ("m0", d_mlp), ("embed", e_corrupt - e_clean)):
        expected = sum(ref.node_derivative(model, metric, e_clean + (k / 3) * (e_corrupt - e_clean), name, delta) for k in range(3)) / 3
        assert close(scores[name], expected, abs(expected)), (name, scores[name], expected)


def test_integrated_gradients_complete_and_reduce_to_eap():
    """With many steps the embedding's score is the whole change M(corrupt) - M(clean); one step is EAP."""
    model = MODELS["gpt2"]()
    clean, corrupt = prompts(512)
    metric = answer_metric(3, 7)
    many = attribute(model, clean, corrupt, metric, method="ig", steps=200, edges=False)
    with torch.no_grad():
        exact = float(metric(model(corrupt).logits).mean() - metric(model(clean).logits).mean())
    assert many.corrupt - many.clean == pytest.approx(exact, abs=1e-9)
    assert many.node_scores()["embed"] == pytest.approx(exact, rel=0.02)
    one = attribute(model, clean, corrupt, metric, method="ig", steps=1)
    eap = attribute(model, clean, corrupt, metric)
    assert one.nodes.equals(eap.nodes) and one.edges.equals(eap.edges)
    assert abs(eap.node_scores()["embed"] - exact) > 0.05 * abs(exact)  # the gradient alone misses (IG matters)


@pytest.fixture(scope="module")
def nearly_equal_tokens():
    """A GPT-2 in which tokens 200..209 have embeddings within 1e-3 of tokens 100..109: corrupting
    a prompt by replacing the one with the other patches every component by a small amount."""
    model = random_gpt2("tiny", seed=0, std=0.3)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        wte = model.transformer.wte.weight
        wte[200:210] = wte[100:110] + 1e-3 * torch.randn(10, wte.shape[1], generator=generator)
    clean = torch.randint(100, 110, (4, 6), generator=generator)
    clean[:, -1] = 50  # the prediction position reads the same token in both
    return model, clean, clean + torch.where(clean == 50, 0, 100)


def test_node_scores_approximate_exact_activation_patching(nearly_equal_tokens):
    model, clean, corrupt = nearly_equal_tokens
    metric = answer_metric(3, 7)
    engine = Engine.from_hf(model)
    scores = attribute(engine, clean, corrupt, metric).node_scores()
    with torch.no_grad():
        base = float(metric(model(clean).logits).mean())
    exact = {n: float(metric(activation_patch(engine, clean, corrupt, [n])).mean()) - base for n in scores.index}
    scale = max(abs(v) for v in exact.values())
    assert scale > 1e-5
    for name, value in exact.items():
        assert abs(scores[name] - value) <= 0.02 * scale, (name, scores[name], value)


def test_edge_scores_approximate_exact_path_patching(nearly_equal_tokens):
    model, clean, corrupt = nearly_equal_tokens
    metric = answer_metric(3, 7)
    engine = Engine.from_hf(model)
    edges = attribute(engine, clean, corrupt, metric).edges
    with torch.no_grad():
        base = float(metric(model(clean).logits).mean())
    chosen = edges[edges.receiver.isin(["a1.h0.q", "a1.h2.k", "a1.h3.v", "m0", "m1", "out"])]
    exact = [float(metric(path_patch(engine, clean, corrupt, [s], [r])).mean()) - base for s, r in zip(chosen.sender, chosen.receiver)]
    scale = max(abs(v) for v in exact)
    assert scale > 1e-5
    for (s, r, got), value in zip(chosen[["sender", "receiver", "score"]].itertuples(index=False), exact):
        assert abs(got - value) <= 0.02 * scale, (s, r, got, value)


def test_head_table_has_the_sweeps_layout(case):
    *_, scores = case
    table = scores.head_table()
    assert list(table.index.names) == ["layer"] and list(table.columns.names) == ["head"]
    assert table.loc[1, 2] == scores.node_scores()["a1.h2"]
    assert scores.head_table(-1).loc[0, 3] == scores.nodes.loc["a0.h3"].iloc[-1]


def test_bad_arguments_are_errors_that_say_the_fix(case):
    model, clean, corrupt, metric, _ = case
    with pytest.raises(InputError, match="method='integrated'"):
        attribute(model, clean, corrupt, metric, method="integrated")
    with pytest.raises(InputError, match="steps=0"):
        attribute(model, clean, corrupt, metric, method="ig", steps=0)
    with pytest.raises(InputError, match="does not depend on the logits"):
        attribute(model, clean, corrupt, lambda logits: torch.tensor([1.0]))
    with pytest.raises(InputError, match="shape"):
        attribute(model, clean, corrupt[:, :-1], metric)
    with pytest.raises(InputError, match="logit_positions=9"):
        attribute(model, clean, corrupt, metric, logit_positions=9)
    scores = attribute(model, clean, corrupt, lambda logits: logits[:, 0, 3] - logits[:, 0, 7], logit_positions=-1, edges=False)
    with pytest.raises(InputError, match="edges=False"):
        scores.edge_scores()
    with pytest.raises(InputError, match="position=6"):
        scores.node_scores(6)


def test_discovery_stays_below_claims_and_plugin():
    """LAYOUT: discovery sits beside interventions, above the engine; it never imports claims/, session, plugin or pytest."""
    import ast
    from pathlib import Path

    import causal_hypotheses.discovery as discovery

    for path in Path(discovery.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                for name in names:
                    assert not any(part in ("claims", "plugin", "session", "pytest") for part in name.split(".")), (path.name, name)
