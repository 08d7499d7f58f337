"""Demo claim on the seed's example: where does the changed country reach the prediction?

Prompts from the seed README: "The capital of Spain is" (clean) and "The capital of Italy
is" (corrupt).  They differ in one token, four positions before the prediction.  In any
GPT-2, information moves between positions only inside attention, so:

    claim: the paths that pass through at least one attention layer carry all of the
    change in the " Madrid" - " Rome" logit difference; the paths that pass through
    none (embed and MLPs only) carry none of it.

This holds for every set of weights, so it is a check that the engine sends inputs down
exactly the paths it is told to.  Circuit claims about what a trained model computes
come with the interventions and the pytest plugin.

The seed's own example, stated both ways (the last two tests):

    seed grammar (causal_hypotheses.seed): splitting ``a1`` and sending every path through
    ``a1`` to the Italy prompt is activation patching of attention layer 1's output;
    engine grammar: ``activation_patch(engine, base, source, ["a1"])`` gives the same logits.

(``engine.run`` with the seed's which/branch computes something else, the direct path from
``a1`` to the output only: the engine's paths are the writers a signal passes through.)
"""
from __future__ import annotations

import pytest
import torch

CLEAN, CORRUPT = "The capital of Spain is", "The capital of Italy is"


def _is_attention(name: str) -> bool:
    return name.startswith("a")


def attention_paths_read(corrupt_through_attention: bool):
    """which/branch: paths through any attention layer read one input, all others the other."""
    through, elsewhere = (1, 0) if corrupt_through_attention else (0, 1)

    def which(path):
        return through if any(_is_attention(name) for name in path) else elsewhere

    def branch(path):  # an MLP reached without attention mixes both kinds of path below it
        return path[-1].startswith("m") and not any(_is_attention(name) for name in path)

    return which, branch, (lambda path: any(_is_attention(name) for name in path))


@pytest.fixture(scope="module")
def measured(gpt2_engine, gpt2_tokenizer):
    inputs = [gpt2_tokenizer(CLEAN, return_tensors="pt"), gpt2_tokenizer(CORRUPT, return_tensors="pt")]
    madrid, rome = (gpt2_tokenizer(word)["input_ids"][0] for word in (" Madrid", " Rome"))

    def logit_diff(result) -> float:
        last = result.logits[0, -1]
        return float(last[madrid] - last[rome])

    clean = logit_diff(gpt2_engine.run(inputs, lambda path: 0))
    corrupt = logit_diff(gpt2_engine.run(inputs, lambda path: 1))
    fractions = {}
    for corrupt_through_attention in (True, False):
        which, branch, key = attention_paths_read(corrupt_through_attention)
        patched = logit_diff(gpt2_engine.run(inputs, which, branch, key=key))
        fractions[corrupt_through_attention] = (patched - clean) / (corrupt - clean)
    return fractions


def test_attention_paths_carry_all_of_the_change(measured):
    assert measured[True] == pytest.approx(1.0, abs=1e-3)


def test_paths_without_attention_carry_none_of_the_change(measured):
    assert measured[False] == pytest.approx(0.0, abs=1e-3)


# ---------------------------------------------------------------------------- the seed's example
def seed_branch(path):  # verbatim from the seed README
    if path[-1] == "a1": return True  # noqa: E701
    return False


def seed_which(path):
    if "a1" in path: return 1  # noqa: E701
    return 0


@pytest.fixture(scope="module")
def seed_example(gpt2_engine, gpt2_tokenizer):
    from causal_hypotheses.seed import GPT2

    inputs = [gpt2_tokenizer(CLEAN, return_tensors="pt"), gpt2_tokenizer(CORRUPT, return_tensors="pt")]
    hf = gpt2_engine.model
    model = GPT2(hf.config, hf)
    res, cache = model(inputs, seed_which, seed_branch)
    return hf, [x["input_ids"] for x in inputs], res.logits


def test_seed_grammar_the_a1_split_is_activation_patching(seed_example):
    hf, (base, source), seed_logits = seed_example
    attention = hf.transformer.h[1].attn
    seen = {}
    with torch.no_grad():
        handle = attention.register_forward_hook(lambda module, args, output: seen.update(source=output[0]))
        try:
            hf(source)
        finally:
            handle.remove()
        handle = attention.register_forward_hook(lambda module, args, output: (seen["source"],) + tuple(output[1:]))
        try:
            patched = hf(base).logits
        finally:
            handle.remove()
    torch.testing.assert_close(seed_logits, patched, rtol=1e-5, atol=1e-4)


def test_engine_grammar_activation_patch_gives_the_seed_numbers(gpt2_engine, seed_example):
    from causal_hypotheses import activation_patch

    _, (base, source), seed_logits = seed_example
    torch.testing.assert_close(activation_patch(gpt2_engine, base, source, ["a1"]), seed_logits, rtol=1e-5, atol=1e-4)
