"""The engine against independent references: the unmodified HF forward, with hooks."""
from __future__ import annotations

import pytest
import torch

from causal_hypotheses import Engine, gpt2_tokenizer
from causal_hypotheses.graph import within
from causal_hypotheses.graph import component

import hf_reference as ref
from patch_definitions import downstream_patch, edge_patch, split_everything

ATOL = 1e-4


# --------------------------------------------------------------------------- plain runs
@pytest.mark.parametrize("model_name", ["tiny_model", "small_model"])
def test_all_paths_reading_one_input_equal_hf_forward(request, model_name):
    model = request.getfixturevalue(model_name)
    engine = Engine.from_hf(model)
    generator = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    inputs = [torch.randint(0, vocab, (3, 11), generator=generator) for _ in range(2)]
    for i, tokens in enumerate(inputs):
        result = engine.run(inputs, lambda path, i=i: i)
        expected = ref.logits(model, tokens)
        torch.testing.assert_close(result.logits, expected, atol=ATOL, rtol=0)
        hidden = ref.record(model, tokens, model.transformer.ln_f)
        torch.testing.assert_close(result.hidden_states, hidden, atol=ATOL, rtol=0)


@pytest.mark.parametrize("model_name", ["tiny_model", "small_model"])
def test_fully_split_computation_equals_hf_forward(request, model_name):
    """Every head, channel and MLP recomputed from decomposed inputs still equals HF."""
    model = request.getfixturevalue(model_name)
    engine = Engine.from_hf(model)
    tokens = torch.randint(0, model.config.vocab_size, (2, 7), generator=torch.Generator().manual_seed(1))
    which, branch, key = split_everything(0)
    result = engine.run([tokens], which, branch, key=key)
    torch.testing.assert_close(result.logits, ref.logits(model, tokens), atol=ATOL, rtol=0)
    n_layers = model.config.n_layer
    assert result.node_evaluations >= 4 * n_layers  # really recomputed, not gathered


def test_per_position_leaf_choice_equals_hf_on_mixed_tokens(tiny_model, tiny_engine, tiny_tokens):
    """Fully split, with embed reading input 0 or 1 per position = HF on the spliced tokens."""
    clean, corrupt = tiny_tokens
    choice = torch.zeros(clean.shape, dtype=torch.long)
    choice[0, 2] = choice[1, 5:] = choice[3, :] = 1
    mixed = torch.where(choice.bool(), corrupt, clean)
    which, branch, key = split_everything(choice)
    result = tiny_engine.run([clean, corrupt], which, branch, key=key)
    torch.testing.assert_close(result.logits, ref.logits(tiny_model, mixed), atol=ATOL, rtol=0)


# --------------------------------------------------------------------------- the seed
def test_engine_reads_the_seed_example_as_the_direct_path(small_model):
    """The seed README's example run through the engine's calling form: in the engine's grammar
    it sends only the direct path from a1 to the output to input 1 (the seed's own semantics,
    activation patching of a1, are causal_hypotheses.seed's: tests/test_seed.py)."""
    tokenizer = gpt2_tokenizer()
    model = Engine.from_hf(small_model)

    inputs = [
        tokenizer("The capital of Spain is", return_tensors="pt"),
        tokenizer("The capital of Italy is", return_tensors="pt"),
    ]

    def branch(path):
        if path[-1] == "a1": return True
        return False

    def which(path):
        if "a1" in path: return 1
        return 0

    res, cache = model(inputs, which, branch)

    # Reference: attention layer 1's output computed on input 1, everything else on input 0.
    clean, corrupt = inputs[0]["input_ids"], inputs[1]["input_ids"]
    attn1 = small_model.transformer.h[1].attn
    delta = ref.record(small_model, corrupt, attn1) - ref.record(small_model, clean, attn1)
    assert delta.abs().max() > 1e-3  # the patch is not a no-op
    expected = ref.final_residual_patch(small_model, clean, delta)
    torch.testing.assert_close(res.logits, expected, atol=ATOL, rtol=0)
    final = ref.record(small_model, clean, small_model.transformer.ln_f, kind="in")
    torch.testing.assert_close(res.hidden_states, small_model.transformer.ln_f(final + delta), atol=ATOL, rtol=0)
    assert cache is model.cache and len(cache) == 2  # both prompts captured once


# --------------------------------------------------------------------------- patching
@pytest.mark.parametrize("model_name,layer", [("tiny_model", 0), ("small_model", 4)])
def test_attention_layer_patch_equals_hook_patching(request, model_name, layer):
    model = request.getfixturevalue(model_name)
    engine = Engine.from_hf(model)
    clean, corrupt = (torch.randint(0, model.config.vocab_size, (3, 8), generator=torch.Generator().manual_seed(s)) for s in (5, 6))
    attn = model.transformer.h[layer].attn
    expected = ref.replace_output(model, clean, attn, ref.record(model, corrupt, attn))
    which, branch, key = downstream_patch(f"a{layer}")
    result = engine.run([clean, corrupt], which, branch, key=key)
    torch.testing.assert_close(result.logits, expected, atol=ATOL, rtol=0)
    assert (expected - ref.logits(model, clean)).abs().max() > 1e-2


@pytest.mark.parametrize("model_name,layer,head", [("tiny_model", 0, 2), ("small_model", 3, 5)])
def test_head_patch_all_channels_equals_hook_patching(request, model_name, layer, head):
    model = request.getfixturevalue(model_name)
    engine = Engine.from_hf(model)
    clean, corrupt = (torch.randint(0, model.config.vocab_size, (3, 8), generator=torch.Generator().manual_seed(s)) for s in (7, 8))
    expected = ref.patch_head_z(model, clean, layer, head, ref.head_z(model, corrupt, layer))
    which, branch, key = downstream_patch(f"a{layer}.h{head}")
    result = engine.run([clean, corrupt], which, branch, key=key)
    torch.testing.assert_close(result.logits, expected, atol=ATOL, rtol=0)
    assert (expected - ref.logits(model, clean)).abs().max() > 1e-3


@pytest.mark.parametrize(
    "model_name,layer,head,channel",
    [("tiny_model", 1, 1, "q"), ("tiny_model", 0, 3, "k"), ("tiny_model", 0, 1, "v"), ("small_model", 6, 0, "q")],
)
def test_one_channel_patch_equals_hand_built_reference(request, model_name, layer, head, channel):
    """Only the head's query (or key, or value) input reads the corrupt prompt."""
    model = request.getfixturevalue(model_name)
    engine = Engine.from_hf(model)
    clean, corrupt = (torch.randint(0, model.config.vocab_size, (3, 8), generator=torch.Generator().manual_seed(s)) for s in (9, 10))
    expected = ref.patch_channel(model, clean, layer, head, "qkv".index(channel), corrupt)
    which, branch, key = downstream_patch(f"a{layer}.h{head}.{channel}")
    result = engine.run([clean, corrupt], which, branch, key=key)
    torch.testing.assert_close(result.logits, expected, atol=ATOL, rtol=0)

    which, branch, key = downstream_patch(f"a{layer}.h{head}")
    all_channels = engine.run([clean, corrupt], which, branch, key=key)
    assert (all_channels.logits - result.logits).abs().max() > 1e-3


@pytest.mark.parametrize(
    "model_name,sender,layer,head,channel",
    [("tiny_model", "a0", 1, 2, "k"), ("tiny_model", "m0", 1, 0, "v"), ("small_model", "a2.h3", 7, 1, "q")],
)
def test_path_patch_into_one_channel_equals_hand_built_reference(request, model_name, sender, layer, head, channel):
    """The receiving channel is recomputed on clean + (corrupt - clean) of the sender."""
    model = request.getfixturevalue(model_name)
    engine = Engine.from_hf(model)
    clean, corrupt = (torch.randint(0, model.config.vocab_size, (3, 8), generator=torch.Generator().manual_seed(s)) for s in (11, 12))
    blocks = model.transformer.h
    if "." in sender:
        l, h = component(sender).layer, component(sender).head
        delta = ref.head_output(model, corrupt, l, h) - ref.head_output(model, clean, l, h)
    else:
        block = blocks[component(sender).layer]
        module = block.attn if component(sender).kind == "attn" else block.mlp
        delta = ref.record(model, corrupt, module) - ref.record(model, clean, module)
    expected = ref.path_patch_channel(model, clean, delta, layer, head, "qkv".index(channel))
    which, branch, key = edge_patch(sender, f"a{layer}.h{head}.{channel}")
    result = engine.run([clean, corrupt], which, branch, key=key)
    torch.testing.assert_close(result.logits, expected, atol=ATOL, rtol=0)
    assert (expected - ref.logits(model, clean)).abs().max() > 1e-4


def test_per_example_which_equals_each_example_alone(tiny_model, tiny_tokens):
    clean, corrupt = tiny_tokens
    engine = Engine.from_hf(tiny_model)
    choice = torch.tensor([0, 1, 1, 0])
    node = "a0.h1"
    _, branch, key = downstream_patch(node)
    batched = engine.run([clean, corrupt], lambda path: choice if node in path else 0, branch, key=key)
    for b in range(4):
        which, branch, key = downstream_patch(node)
        alone = engine.run([clean[b : b + 1], corrupt[b : b + 1]], lambda path: int(choice[b]) if node in path else 0, branch, key=key)
        torch.testing.assert_close(batched.logits[b : b + 1], alone.logits, atol=ATOL, rtol=0)
    assert not torch.allclose(batched.logits[1], engine.run([clean], lambda p: 0).logits[1], atol=1e-3)


def test_per_example_resampling_reads_other_rows(tiny_model, tiny_tokens):
    """Inputs that are row permutations of one batch: each distinct row is run once."""
    clean, _ = tiny_tokens
    engine = Engine.from_hf(tiny_model)
    permuted = clean[torch.tensor([2, 0, 3, 1])]
    which, branch, key = downstream_patch("a1")
    result = engine.run([clean, permuted], which, branch, key=key)
    assert result.stats.rows_computed == 4  # not 8: the permuted rows are the same rows
    attn = tiny_model.transformer.h[1].attn
    expected = ref.replace_output(tiny_model, clean, attn, ref.record(tiny_model, permuted, attn))
    torch.testing.assert_close(result.logits, expected, atol=ATOL, rtol=0)


# --------------------------------------------------------------------------- caching
def test_caching_and_memoisation_change_no_number(tiny_model, tiny_tokens):
    clean, corrupt = tiny_tokens
    which, branch, key = downstream_patch("a0.h3.k")
    cold = Engine.from_hf(tiny_model).run([clean, corrupt], which, branch, key=key)
    engine = Engine.from_hf(tiny_model)
    engine.run([corrupt, clean], lambda p: 0)  # warm the cache with the rows in another order
    warm = engine.run([clean, corrupt], which, branch, key=key)
    unmemoised = Engine.from_hf(tiny_model).run([clean, corrupt], which, branch)
    uncached = Engine.from_hf(tiny_model, cache_bytes=0).run([clean, corrupt], which, branch, key=key)
    assert warm.stats.forward_passes == 1 and warm.stats.rows_from_cache == 4  # corrupt rows cached
    for other in (warm, unmemoised, uncached):
        torch.testing.assert_close(other.logits, cold.logits, atol=1e-6, rtol=0)
    assert unmemoised.node_evaluations == cold.node_evaluations
    assert unmemoised.stats.paths_visited > cold.stats.paths_visited


def _plan(result) -> list:
    """A run's plan as (spec, child ids) per node, in the order planned."""
    return [(node.spec, tuple(child.id for child in node.children)) for node in result._planner.nodes.values()]


def test_constant_key_plans_as_a_constant_key_that_is_called(tiny_model, tiny_tokens):
    """key=constant_key (never called, one plan per residual stream) plans what a key function
    returning 0 for every path plans: the same nodes, counters and logits."""
    from causal_hypotheses.engine.plan import constant_key
    from causal_hypotheses.interventions.compile import activation_patch_functions, position_rows

    clean, corrupt = tiny_tokens
    blocks = [frozenset(["a0.h1"]), frozenset(["m0", "a1.h2.q"]), frozenset(["a1"])]
    which, branch, key = activation_patch_functions(blocks, clean.shape[0], position_rows([2, 5], *clean.shape))
    assert key is constant_key
    inputs = [clean.repeat(3, 1), corrupt.repeat(3, 1)]
    engine = Engine.from_hf(tiny_model)
    fast = engine.run(inputs, which, branch, key=constant_key)
    called = engine.run(inputs, which, branch, key=lambda path: 0)
    assert _plan(fast) == _plan(called) and fast.root.id == called.root.id
    assert (fast.stats.memo_hits, fast.stats.paths_visited) == (called.stats.memo_hits, called.stats.paths_visited)
    assert torch.equal(fast.logits, called.logits)


def test_answers_are_read_by_content_not_identity(tiny_model, tiny_tokens):
    """A branch and a which that refill one tensor in place for every path plan and compute as
    ones that return a new tensor each time: the planner keeps what an answer means by its
    content, and a copy of it."""
    from causal_hypotheses.interventions.compile import activation_patch_functions

    clean, corrupt = tiny_tokens
    rows = 3 * clean.shape[0]
    which, branch, key = activation_patch_functions([frozenset(["a0.h1"]), frozenset(["m0"]), frozenset(["a1.h2"])], clean.shape[0])
    buffer = torch.zeros(rows, dtype=torch.bool)

    def fresh(path):
        answer = branch(path)
        return answer.clone() if isinstance(answer, torch.Tensor) else torch.full((rows,), answer)

    def refilled(path):
        return buffer.copy_(fresh(path))

    chosen = torch.zeros(rows, dtype=torch.long)

    def which_refilled(path):
        answer = which(path)
        return chosen.copy_(answer) if isinstance(answer, torch.Tensor) else answer

    inputs = [clean.repeat(3, 1), corrupt.repeat(3, 1)]
    engine = Engine.from_hf(tiny_model)
    one, other = engine.run(inputs, which, fresh, key=key), engine.run(inputs, which_refilled, refilled, key=key)
    assert len(one._planner.masks) >= 2  # more than one split was asked with the one buffer
    assert sum(s.kind == "example" for s in one._planner.selectors.values()) >= 2  # and which answered with it twice
    assert _plan(one) == _plan(other)
    assert torch.equal(one.logits, other.logits)


def test_node_evaluations_equal_distinct_signatures(tiny_model, tiny_tokens):
    """Path patch a0 -> every q/k/v input of every head of a1 (direct to the output).

    The 12 receiving channels read the same residual stream (clean + a0's corrupt-minus-
    clean), so the distinct computations are: that residual sum, a1's attention on it,
    a1's output, the final residual sum, and the output: 5, however many paths.
    """
    clean, corrupt = tiny_tokens
    engine = Engine.from_hf(tiny_model)

    def which(path):
        return 1 if len(path) >= 2 and path[0].count(".") == 2 and path[1] == "a0" else 0

    def branch(path):
        return len(path) == 1 and within("a1", path[0])

    result = engine.run([clean, corrupt], which, branch)
    assert result.node_evaluations == 5
    assert result.stats.gathers == 4  # resid into a1, a0 corrupt-minus-clean, final resid, a1 on clean
    assert result.stats.memo_hits > 0

    # Reference: a1 runs on the patched stream; only its direct effect reaches the output.
    block0, block1 = tiny_model.transformer.h[0], tiny_model.transformer.h[1]
    delta0 = ref.record(tiny_model, corrupt, block0.attn) - ref.record(tiny_model, clean, block0.attn)
    stream = ref.record(tiny_model, clean, block1.ln_1, kind="in") + delta0
    with torch.no_grad():
        a1_patched = block1.attn(block1.ln_1(stream))[0]
    delta1 = a1_patched - ref.record(tiny_model, clean, block1.attn)
    torch.testing.assert_close(result.logits, ref.final_residual_patch(tiny_model, clean, delta1), atol=ATOL, rtol=0)


def test_counters_of_plain_and_repeated_runs(tiny_engine, tiny_tokens):
    clean, _ = tiny_tokens
    tiny_engine.cache.clear()
    first = tiny_engine.run([clean], lambda p: 0)
    assert (first.forward_passes, first.node_evaluations, first.stats.gathers) == (1, 1, 1)
    second = tiny_engine.run([clean], lambda p: 0)
    assert second.forward_passes == 0 and second.stats.rows_from_cache == 4 and second.cache_hits >= 4


def test_cache_budget_evicts_and_says_so(tiny_model, tiny_tokens, caplog):
    clean, corrupt = tiny_tokens
    engine = Engine.from_hf(tiny_model)
    engine.run([clean], lambda p: 0)
    one_entry = engine.cache.nbytes
    engine = Engine.from_hf(tiny_model, cache_bytes=int(one_entry * 1.5))
    engine.run([clean], lambda p: 0)
    with caplog.at_level("INFO", logger="causal_hypotheses.cache"):
        engine.run([corrupt], lambda p: 0)
    assert engine.cache.stats.evictions == 1 and engine.cache.nbytes <= int(one_entry * 1.5)
    assert "evicted activations of 4 rows" in caplog.text
    again = engine.run([clean], lambda p: 0)
    assert again.forward_passes == 1  # evicted rows are recomputed, correctly
    torch.testing.assert_close(again.logits, ref.logits(tiny_model, clean), atol=ATOL, rtol=0)
