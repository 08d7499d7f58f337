"""causal_hypotheses.seed: the seed's ``res, cache = model(inputs, which, branch)`` with the seed's numbers.

Every number is checked against an independent hook-based reference on the unmodified HF
GPT-2 (tests/hf_reference.py); nothing here asks the seed module what the answer should be.
"""
from __future__ import annotations

import graphviz
import pytest
import torch

from causal_hypotheses import InputError, SelectorError, activation_patch, random_gpt2
from causal_hypotheses.seed import GPT2, create_gpt2

import hf_reference as ref

ATOL = 1e-5
CLEAN, CORRUPT = "The capital of Spain is", "The capital of Italy is"


# the seed README's example: split attention layer 1; every path through a1 reads input 1
def readme_branch(path):
    if path[-1] == "a1":
        return True
    return False


def readme_which(path):
    if "a1" in path:
        return 1
    return 0


@pytest.fixture(scope="module")
def seed_tiny(tiny_model):
    return GPT2(tiny_model.config, tiny_model)


@pytest.fixture
def pair(tiny_tokens):
    return list(tiny_tokens)  # [base (4, 9), source (4, 9)]


def run(seed_model, inputs, which, branch=None):
    res, cache = seed_model(inputs, which, branch)
    return res


@torch.no_grad()
def patch_input_at(model, tokens, module, source_tokens, positions):
    """Logits when ``module``'s input (ln_1: the heads' input; ln_2: the MLP's) at ``positions``
    comes from the run on ``source_tokens``; the residual stream keeps the base run's."""
    source_input = ref.record(model, source_tokens, module, kind="in")

    def swap(_, args):
        stream = args[0].clone()
        stream[:, positions] = source_input[:, positions]
        return (stream,)

    with ref.hooks((module, "pre", swap)):
        return model(tokens).logits


# ----------------------------------------------------------------------------- plain runs
@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_one_input_everywhere_is_the_plain_hf_forward_exactly(attention, pair):
    model = random_gpt2("tiny", seed=1, std=0.3)
    model.config._attn_implementation = attention
    seed = GPT2(model.config, model)
    for index in (0, 1):
        assert torch.equal(run(seed, pair, lambda path: index).logits, ref.logits(model, pair[index]))
    # splitting everything while every leaf reads input 0 is the same computation, from the cache
    res = run(seed, pair, lambda path: 0, lambda path: "positions" if path[-1].endswith(".head") else True)
    assert torch.equal(res.logits, ref.logits(model, pair[0]))
    assert res.computations == 1 + 2 * model.config.n_layer  # emb, a0, f0, a1, f1
    assert res.cache_hits > 0


def test_gpt2model_without_lm_head_gives_hidden_states(tiny_model, pair):
    seed = GPT2(tiny_model.config, tiny_model.transformer)
    res = run(seed, pair, lambda path: 1)
    assert res.logits is None
    with torch.no_grad():
        expected = tiny_model.transformer(pair[1]).last_hidden_state
    assert torch.equal(res.hidden_states, expected)


# ----------------------------------------------------------------------------- the README example
def test_readme_example_is_activation_patching_of_a1(tiny_model, seed_tiny, pair):
    base, source = pair
    attn = tiny_model.transformer.h[1].attn
    expected = ref.replace_output(tiny_model, base, attn, ref.record(tiny_model, source, attn))
    res = run(seed_tiny, pair, readme_which, readme_branch)
    torch.testing.assert_close(res.logits, expected, atol=ATOL, rtol=0)
    assert (expected - ref.logits(tiny_model, base)).abs().max() > 0.1  # the patch matters
    # emb, a0, f0 on each input; a1 (residual from input 0, heads from input 1); f1
    assert res.computations == 8


def test_readme_example_on_gpt2_small_shape_with_the_tokenizer(small_model, small_engine):
    """The seed README's prompts and functions on GPT-2 small's shape; the README quotes the
    engine's different reading of them (max |logit difference| 0.19 on this model)."""
    from causal_hypotheses import gpt2_tokenizer

    tokenizer = gpt2_tokenizer()
    inputs = [tokenizer(CLEAN, return_tensors="pt"), tokenizer(CORRUPT, return_tensors="pt")]
    base, source = (x["input_ids"] for x in inputs)
    seed = GPT2(small_model.config, small_model)
    res = run(seed, inputs, readme_which, readme_branch)
    attn = small_model.transformer.h[1].attn
    expected = ref.replace_output(small_model, base, attn, ref.record(small_model, source, attn))
    torch.testing.assert_close(res.logits, expected, atol=ATOL, rtol=0)
    assert res.computations == 2 * 3 + 2 * 11  # emb, a0, f0 per input; a1, f1, ..., a11, f11 once
    assert torch.equal(run(seed, inputs, lambda path: 0).logits, ref.logits(small_model, base))

    torch.testing.assert_close(activation_patch(small_engine, base, source, ["a1"]), res.logits, atol=1e-4, rtol=0)
    difference = (small_engine.run(inputs, readme_which, readme_branch).logits - res.logits).abs().max()
    assert 0.15 < difference < 0.25  # measured 0.193


def test_the_engine_reads_the_readme_example_as_the_direct_path_only(tiny_model, tiny_engine, seed_tiny, pair):
    """Engine.run gives another number: it sends input 1 down the direct path from a1 to the
    output only (f1 still reads a1's base output); activation_patch(["a1"]) is the seed's."""
    base, source = pair
    seed_logits = run(seed_tiny, pair, readme_which, readme_branch).logits
    engine_logits = tiny_engine.run(pair, readme_which, readme_branch).logits
    attn = tiny_model.transformer.h[1].attn
    direct_only = ref.final_residual_patch(tiny_model, base, ref.record(tiny_model, source, attn) - ref.record(tiny_model, base, attn))
    torch.testing.assert_close(engine_logits, direct_only, atol=1e-4, rtol=0)
    assert (engine_logits - seed_logits).abs().max() > 0.5  # measured: 2.88 on this model and batch
    torch.testing.assert_close(activation_patch(tiny_engine, base, source, ["a1"]), seed_logits, atol=1e-4, rtol=0)


# ----------------------------------------------------------------------------- finer splits
def test_one_head_reads_the_source(tiny_model, seed_tiny, pair):
    base, source = pair
    which = lambda path: 1 if "a1.head2" in path else 0  # noqa: E731
    branch = lambda path: path[-1] in ("a1", "a1.head")  # noqa: E731
    res = run(seed_tiny, pair, which, branch)
    expected = ref.patch_head_z(tiny_model, base, 1, 2, ref.head_z(tiny_model, source, 1))
    torch.testing.assert_close(res.logits, expected, atol=ATOL, rtol=0)
    assert (expected - ref.logits(tiny_model, base)).abs().max() > 0.01


@pytest.mark.parametrize("channel", [0, 1, 2])
def test_one_head_input_reads_the_source(tiny_model, seed_tiny, pair, channel):
    base, source = pair
    name = f"a1.head3.{'qkv'[channel]}"
    which = lambda path: 1 if name in path else 0  # noqa: E731
    branch = lambda path: path[-1] in ("a1", "a1.head", "a1.head3")  # noqa: E731
    res = run(seed_tiny, pair, which, branch)
    expected = ref.patch_channel(tiny_model, base, 1, 3, channel, source)
    torch.testing.assert_close(res.logits, expected, atol=ATOL, rtol=0)
    assert (expected - ref.logits(tiny_model, base)).abs().max() > 0.01


def test_positions_at_an_attention_block(tiny_model, seed_tiny, pair):
    base, source = pair
    asked = []

    def which(path):
        asked.append(tuple(path))
        return 1 if "a1.head.pos2" in path else 0

    branch = lambda path: {"a1": True, "a1.head": "positions"}.get(path[-1], False)  # noqa: E731
    res = run(seed_tiny, pair, which, branch)
    expected = patch_input_at(tiny_model, base, tiny_model.transformer.h[1].ln_1, source, [2])
    torch.testing.assert_close(res.logits, expected, atol=ATOL, rtol=0)
    assert (expected - ref.logits(tiny_model, base)).abs().max() > 0.01
    assert ("ln_final", "a1", "a1.head", "a1.head.pos2", "a0", "emb") in asked


def test_mlp_split(tiny_model, seed_tiny, pair):
    base, source = pair
    which = lambda path: 1 if "f0.head" in path else 0  # noqa: E731
    branch = lambda path: path[-1] == "f0"  # noqa: E731
    res = run(seed_tiny, pair, which, branch)
    expected = patch_input_at(tiny_model, base, tiny_model.transformer.h[0].ln_2, source, slice(None))
    torch.testing.assert_close(res.logits, expected, atol=ATOL, rtol=0)
    assert (expected - ref.logits(tiny_model, base)).abs().max() > 0.01


def test_mlp_split_by_position(tiny_model, seed_tiny, pair):
    base, source = pair
    which = lambda path: 1 if "f1.head.pos5" in path else 0  # noqa: E731
    branch = lambda path: {"f1": True, "f1.head": "positions"}.get(path[-1], False)  # noqa: E731
    res = run(seed_tiny, pair, which, branch)
    expected = patch_input_at(tiny_model, base, tiny_model.transformer.h[1].ln_2, source, [5])
    torch.testing.assert_close(res.logits, expected, atol=ATOL, rtol=0)


# ----------------------------------------------------------------------------- paths, cache, verbose, drawing
def test_paths_are_lists_of_the_names_visited_from_the_top(seed_tiny, pair):
    asked = []

    def which(path):
        assert isinstance(path, list)
        asked.append(list(path))
        path.append("mutating the path changes nothing")
        return readme_which(path)

    run(seed_tiny, pair, which, readme_branch)
    assert asked == [["ln_final", "a0", "emb"], ["ln_final", "a1", "a1.head", "a0", "emb"]]


def test_each_distinct_signature_is_computed_once(seed_tiny, pair, capsys):
    # head 2 of a1 reads input 1; heads 0, 1, 3 and the residual read the same input-0
    # stream as the residual, so they are cache hits: 8 computations (emb, a0, f0 per input; a1; f1)
    seed = GPT2(seed_tiny.config, seed_tiny.model, verbose=True)
    res, cache = seed(pair, lambda path: 1 if "a1.head2" in path else 0, lambda path: path[-1] in ("a1", "a1.head"))
    assert res.computations == len(cache) == len(res.nodes) == 8
    assert res.cache_hits == 9  # heads 0, 1 and 3 each meet emb, a0 and f0 on input 0 again
    assert len(set(cache)) == len(cache)
    out = capsys.readouterr().out
    assert "ln_final a1 a1.head a1.head2 a0 emb\n    -> input 1" in out
    assert out.count("cache hit") == 9


def test_visualise_path_draws_the_computed_blocks(seed_tiny, pair):
    res = run(seed_tiny, pair, readme_which, readme_branch)
    dot = res.visualise_path()
    assert isinstance(dot, graphviz.Digraph)
    source = dot.source
    assert source.count("->") == 2 * 2 + 2 + 1 + 1  # emb->a0, a0->f0 per input; both f0 -> a1; a1 -> f1; f1 -> ln_final
    assert "striped" in source  # a1 and above read both inputs
    assert "emb\ninput 1" in source or "emb\\ninput 1" in source


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("answer,match", [
    ("1", r"returned '1' \(str\).*an int from 0 to 1"),
    (True, r"returned True \(bool\)"),
    (2, r"returned 2, but there are 2 inputs"),
    (-1, r"returned -1, but there are 2 inputs"),
])
def test_which_must_return_an_input_index(seed_tiny, pair, answer, match):
    with pytest.raises(SelectorError, match=match):
        run(seed_tiny, pair, lambda path: answer)


@pytest.mark.parametrize("branch,match", [
    (lambda path: "positions" if path[-1] == "a1" else False, r"branch\(\['ln_final', 'a1'\]\) returned 'positions'.*at 'a1' return True or False"),
    (lambda path: True if path[-1] == "a1" else None, r"returned None.*ends without `return`"),
    (lambda path: path[-1] == "f0" or ("heads" if path[-1] == "f0.head" else False), r"'heads' splits the input at 'a\{i\}.head' only; at 'f0.head' return True or False or 'positions'"),
    (lambda path: "yes", r"returned 'yes' \(str\); at 'f1' return True or False"),
])
def test_branch_answers_are_checked(seed_tiny, pair, branch, match):
    with pytest.raises(InputError, match=match):
        run(seed_tiny, pair, lambda path: 0, branch)


def test_bad_inputs_name_the_value_and_the_fix(seed_tiny, pair):
    with pytest.raises(InputError, match=r"inputs\[1\] has shape \(4, 8\) but inputs\[0\] has \(4, 9\).*equal token length"):
        run(seed_tiny, [pair[0], pair[1][:, :8]], lambda path: 0)
    padded = {"input_ids": pair[0], "attention_mask": torch.ones_like(pair[0]).index_fill(1, torch.tensor([0]), 0)}
    with pytest.raises(InputError, match=r"inputs\[0\] has padding"):
        run(seed_tiny, [padded, pair[1]], lambda path: 0)
    with pytest.raises(InputError, match=r"wrap a single input in a list"):
        run(seed_tiny, pair[0], lambda path: 0)
    with pytest.raises(InputError, match=r"token id 600, outside the vocabulary 0..511"):
        run(seed_tiny, [pair[0], pair[1].clamp(max=0) + 600], lambda path: 0)
    with pytest.raises(InputError, match=r"which=3 is a int"):
        run(seed_tiny, pair, 3)


# ----------------------------------------------------------------------------- loading
def test_create_gpt2_loads_a_local_checkpoint_offline(tiny_model, pair, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    config, tokenizer, model = create_gpt2(tmp_path)
    assert type(tokenizer).__name__ == "GPT2Tokenizer"  # no tokenizer files there: GPT-2's BPE, offline
    assert tokenizer("The capital of Spain is")["input_ids"] == [464, 3139, 286, 8602, 318]
    seed = GPT2(config, model)
    assert torch.equal(run(seed, pair, lambda path: 0).logits, ref.logits(tiny_model, pair[0]))
    assert create_gpt2(name=str(tmp_path))[0].n_layer == 2  # the seed's keyword


def test_create_gpt2_never_downloads(tmp_path):
    with pytest.raises(InputError, match=r"nothing is downloaded: pass a local directory"):
        create_gpt2(tmp_path / "no-such-checkpoint")
