"""Looking inside (engine.activations, direct logit attribution) against independent references:
HF's own attention probabilities (eager attention, output_attentions=True), forward hooks on the
unmodified HF models (tests/hf_reference.py, tests/llama_reference.py) and norms computed by hand.
The pictures of these views are tested in test_plots.py."""
from __future__ import annotations

import pytest
import torch

import hf_reference as gpt2_ref
import llama_reference as llama_ref
from causal_hypotheses import Engine, random_gpt2
from causal_hypotheses.errors import InputError, UnknownComponentError
from test_llama import random_llama

ATOL = 1e-5


@pytest.fixture(scope="module")
def gpt2():
    model = random_gpt2("tiny", seed=0, std=0.3)  # std 0.3: peaked attention, so patterns differ between heads
    model.set_attn_implementation("eager")
    return model


@pytest.fixture(scope="module")
def llama():
    # grouped-query attention (4 query heads, 2 key/value heads), eager attention in HF
    model = random_llama(seed=1, num_attention_heads=4, num_key_value_heads=2)
    model.set_attn_implementation("eager")
    return model


def prompts(vocab: int, shape=(3, 8), seed: int = 5) -> torch.Tensor:
    return torch.randint(0, vocab, shape, generator=torch.Generator().manual_seed(seed))


def close(a: torch.Tensor, b: torch.Tensor, atol: float = ATOL) -> bool:
    return torch.allclose(a.float(), b.float(), atol=atol, rtol=1e-4)


# ------------------------------------------------------------------ reading activations
def test_gpt2_activations_match_hooks_and_hf_attention(gpt2):
    engine = Engine.from_hf(gpt2)
    tokens = prompts(512)
    acts = engine.activations(tokens)
    with torch.no_grad():
        attentions = gpt2(tokens, output_attentions=True).attentions  # L x (B, H, T, T), HF eager attention
    blocks = gpt2.transformer.h
    for layer in range(2):
        z = gpt2_ref.head_z(gpt2, tokens, layer)
        qkv = gpt2_ref.record(gpt2, tokens, blocks[layer].attn.c_attn).view(3, 8, 3, 4, 16)
        for head in range(4):
            assert close(acts[f"a{layer}.h{head}.pattern"], attentions[layer][:, head])
            assert close(acts[f"a{layer}.h{head}"], gpt2_ref.head_output(gpt2, tokens, layer, head))
            assert close(acts[f"a{layer}.h{head}.z"], z[:, :, head])
            for c, channel in enumerate("qkv"):
                assert close(acts[f"a{layer}.h{head}.{channel}"], qkv[:, :, c, head])
        assert close(acts[f"a{layer}"], gpt2_ref.record(gpt2, tokens, blocks[layer].attn))
        assert close(acts[f"m{layer}"], gpt2_ref.record(gpt2, tokens, blocks[layer].mlp))
        assert close(acts[f"resid_pre.{layer}"], gpt2_ref.record(gpt2, tokens, blocks[layer], kind="in"))
        assert close(acts[f"resid_mid.{layer}"], gpt2_ref.record(gpt2, tokens, blocks[layer].ln_2, kind="in"))
        assert close(acts[f"a{layer}.pattern"], attentions[layer])  # every head at once, (B, H, T, T)
    assert close(acts["resid_post.0"], gpt2_ref.record(gpt2, tokens, blocks[1], kind="in"))
    assert close(acts["resid_post.1"], gpt2_ref.record(gpt2, tokens, gpt2.transformer.ln_f, kind="in"))
    assert close(acts["resid_final"], gpt2_ref.record(gpt2, tokens, gpt2.transformer.ln_f, kind="in"))
    assert close(acts["embed"], gpt2_ref.record(gpt2, tokens, blocks[0], kind="in"))
    # the patterns are not all alike (the comparison could not pass by accident)
    assert (acts["a0.h0.pattern"] - acts["a0.h1.pattern"]).abs().max() > 0.05


def test_llama_activations_match_hooks_and_hf_attention(llama):
    engine = Engine.from_hf(llama)
    tokens = prompts(256)
    acts = engine.activations(tokens)
    with torch.no_grad():
        attentions = llama(tokens, output_attentions=True).attentions
    for layer in range(2):
        z = llama_ref.head_z(llama, tokens, layer)
        block = llama.model.layers[layer]
        for head in range(4):
            assert close(acts[f"a{layer}.h{head}.pattern"], attentions[layer][:, head])
            assert close(acts[f"a{layer}.h{head}"], llama_ref.head_output(llama, tokens, layer, head))
            assert close(acts[f"a{layer}.h{head}.z"], z[:, :, head])
        # heads 0 and 1 share key/value head 0 under grouped-query attention
        assert torch.equal(acts[f"a{layer}.h0.k"], acts[f"a{layer}.h1.k"])
        assert close(acts[f"a{layer}"], llama_ref.record(llama, tokens, block.self_attn))
        assert close(acts[f"m{layer}"], llama_ref.record(llama, tokens, block.mlp))
        assert close(acts[f"resid_pre.{layer}"], llama_ref.layer_input(llama, tokens, layer))
        assert close(acts[f"a{layer}.pattern"], attentions[layer])
    assert close(acts["resid_post.0"], llama_ref.layer_input(llama, tokens, 1))
    assert close(acts["resid_post.1"], llama_ref.record(llama, tokens, llama.model.norm, kind="in"))
    assert close(acts["resid_final"], llama_ref.record(llama, tokens, llama.model.norm, kind="in"))


def test_names_shapes_and_the_cache(gpt2):
    engine = Engine.from_hf(gpt2)
    tokens = prompts(512, shape=(2, 5))
    acts = engine.activations(tokens)
    names = list(acts)
    assert len(names) == len(acts) == 1 + 2 * (6 + 4 * 6) + 1  # per layer: 2 resid, 4 more names and 6 per head
    assert names[:3] == ["embed", "resid_pre.0", "a0"] and names[-1] == "resid_final"
    for name in names:
        assert tuple(acts[name].shape) == acts.shape(name), name
    assert acts.shape("a1.pattern") == (2, 4, 5, 5) and acts.shape("resid_post.1") == (2, 5, 64)
    assert acts.shape("a1.h2.pattern") == (2, 5, 5) and acts.shape("a1.h2.q") == (2, 5, 16) and acts.shape("m0") == (2, 5, 64)
    assert "a1.h2.pattern" in acts and "a2.h0" not in acts and acts.get("nope") is None
    rows = acts["a1.h3.pattern"][0]
    assert torch.allclose(rows.sum(-1), torch.ones(5)) and rows.triu(1).abs().max() == 0  # causal, normalised
    # one head's outputs plus the layer's bias are the layer's output
    bias = gpt2.transformer.h[1].attn.c_proj.bias
    assert close(sum(acts[f"a1.h{h}"] for h in range(4)) + bias, acts["a1"])
    # a second read of the same rows comes from the engine's cache, without a forward
    hits, misses = engine.cache.stats.hits, engine.cache.stats.misses
    again = engine.activations(tokens[0])  # a 1-D prompt is one example
    assert engine.cache.stats.misses == misses and engine.cache.stats.hits == hits + 1
    assert torch.equal(again["a0.h1"][0], acts["a0.h1"][0])


def test_unknown_names_name_the_nearest_valid_ones(gpt2):
    acts = Engine.from_hf(gpt2).activations(prompts(512, shape=(1, 4)))
    with pytest.raises(UnknownComponentError, match=r"'a1\.h2\.patern' is not an activation name.*nearest valid names: 'a1\.h2\.pattern'"):
        acts["a1.h2.patern"]
    with pytest.raises(UnknownComponentError, match=r"'a2\.h0'.*L in 0\.\.1 and H in 0\.\.3"):
        acts["a2.h0"]
    with pytest.raises(UnknownComponentError, match=r"nearest valid names: 'resid_pre\.1'"):
        acts["resid_pre1"]
    with pytest.raises(UnknownComponentError, match="list\\(acts\\) gives them all"):
        acts.shape("a0.h9")
    with pytest.raises(InputError, match="has dtype torch.float32"):
        Engine.from_hf(gpt2).activations(torch.zeros(1, 3))


# ------------------------------------------------------------------ direct logit attribution
def _gpt2_frozen_norm(model, tokens, position):
    """By hand, from a hook on ln_f's input: each vector c read through ln_f with the clean scale."""
    ln = model.transformer.ln_f
    x = gpt2_ref.record(model, tokens, ln, kind="in")[:, position]  # (B, D)
    scale = torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + ln.eps)
    return lambda c: (c - c.mean(-1, keepdim=True)) / scale * ln.weight


def _llama_frozen_norm(model, tokens, position):
    norm = model.model.norm
    x = llama_ref.record(model, tokens, norm, kind="in")[:, position]
    scale = torch.sqrt(x.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon)
    return lambda c: c / scale * norm.weight


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_direct_logit_attribution_against_hooks_and_the_logit_difference(family, gpt2, llama):
    from causal_hypotheses import direct_contributions, direct_logit_attribution

    model = gpt2 if family == "gpt2" else llama
    ref = gpt2_ref if family == "gpt2" else llama_ref
    vocab = model.config.vocab_size
    engine = Engine.from_hf(model)
    tokens = prompts(vocab, shape=(4, 7), seed=11)
    answer, distractor, position = torch.tensor([3, 9, 27, 100]), 42, 5
    table = direct_contributions(engine, tokens, answer, distractor, position)
    # Each row sums to the example's logit difference in HF's own forward (the frozen scale makes it exact).
    with torch.no_grad():
        logits = model(tokens).logits[:, position]
    logit_diff = logits[torch.arange(4), answer] - logits[:, distractor]
    assert torch.allclose(torch.tensor(table.sum(axis=1).to_numpy()), logit_diff, atol=1e-4)
    # Each head's share by hand: its hooked output through the norm with the clean scale, along W_U[a] - W_U[d].
    frozen = (_gpt2_frozen_norm if family == "gpt2" else _llama_frozen_norm)(model, tokens, position)
    W = model.get_output_embeddings().weight
    direction = W[answer] - W[distractor]
    heads = direct_logit_attribution(engine, tokens, answer, distractor, position)
    assert heads.shape == (2, 4) and heads.index.name == "layer" and heads.columns.name == "head"
    for layer in range(2):
        for head in range(4):
            with torch.no_grad():
                by_hand = (frozen(ref.head_output(model, tokens, layer, head)[:, position]) * direction).sum(-1)
            assert torch.allclose(torch.tensor(table[f"a{layer}.h{head}"].to_numpy()), by_hand, atol=1e-4)
            assert heads.loc[layer, head] == pytest.approx(float(by_hand.mean()), abs=1e-4)
    assert heads.to_numpy().std() > 0.01  # heads differ: the check above compares something
    assert heads.attrs["logit_diff"] == pytest.approx(float(logit_diff.mean()), abs=1e-4)
    assert list(table.columns[:2]) == ["embed", "a0.h0"] and table.columns[-1] == "final bias"


def test_direct_logit_attribution_rejects_bad_input(gpt2):
    from causal_hypotheses import direct_logit_attribution

    engine = Engine.from_hf(gpt2)
    tokens = prompts(512, shape=(2, 4))
    with pytest.raises(InputError, match="answer has 3 token ids for 2 examples"):
        direct_logit_attribution(engine, tokens, torch.tensor([1, 2, 3]), 4)
    with pytest.raises(InputError, match="distractor holds token id 512; valid ids are 0..511"):
        direct_logit_attribution(engine, tokens, 1, 512)
    with pytest.raises(InputError, match="position=4: expected an int index into the 4 positions"):
        direct_logit_attribution(engine, tokens, 1, 2, position=4)
    with pytest.raises(InputError, match="answer=1.5"):
        direct_logit_attribution(engine, tokens, 1.5, 2)


# ------------------------------------------------------------------ every architecture in the table
ARCHITECTURES = {  # model_type, overrides: every norm kind (LayerNorm, RMSNorm, Gemma's 1 + w), a sliding window
    "mistral_window": ("mistral", {"sliding_window": 3}),
    "qwen2": ("qwen2", {}),
    "gemma": ("gemma", {}),
    "pythia": ("gpt_neox", {}),
    "opt": ("opt", {}),
}


def out_hidden(model, tokens):
    """HF's hidden states: [0] the embedding, [L + 1] the residual stream after layer L (the last
    one after the final norm, so only the earlier ones are compared)."""
    with torch.no_grad():
        return model(tokens, output_hidden_states=True).hidden_states


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_patterns_and_direct_contributions_on_every_architecture(name):
    import arch_reference as arch
    from causal_hypotheses import direct_contributions

    model_type, overrides = ARCHITECTURES[name]
    model = arch.random_model(model_type, seed=7, **overrides)
    model.set_attn_implementation("eager")
    engine = Engine.from_hf(model)
    tokens = prompts(arch.VOCAB, shape=(2, 8), seed=13)
    acts = engine.activations(tokens)
    with torch.no_grad():
        out = model(tokens, output_attentions=True)
    for layer in range(2):
        for head in range(4):
            assert close(acts[f"a{layer}.h{head}.pattern"], out.attentions[layer][:, head]), (layer, head)
        assert close(acts[f"a{layer}.pattern"], out.attentions[layer]), layer
    # the residual stream after a layer, parallel attention and MLP (pythia) included
    assert close(acts["resid_post.0"], acts["resid_pre.1"]) and close(acts["resid_post.1"], acts["resid_final"])
    assert close(acts["resid_post.0"], out_hidden(model, tokens)[1])
    if name == "mistral_window":  # the window shows: a query reads at most 3 keys
        assert int((acts["a0.h0.pattern"][0] > 0).sum(-1).max()) == 3
    table = direct_contributions(engine, tokens, torch.tensor([3, 200]), 17, position=-1)
    logit_diff = out.logits[:, -1, [3, 200]].diagonal() - out.logits[:, -1, 17]
    assert torch.allclose(torch.tensor(table.sum(axis=1).to_numpy()), logit_diff, atol=1e-4)
