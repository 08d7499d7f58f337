"""Causal scrubbing and interchange interventions against hand-built HF computations."""
from __future__ import annotations

import math

import pytest
import torch

from causal_hypotheses import InputError
from causal_hypotheses.interventions import CausalModel, Hypothesis, interchange_intervention_accuracy, scrub
from causal_hypotheses.interventions.scrubbing import hypothesis_functions
from causal_hypotheses.tasks import Task, induction

import hf_reference as ref

ATOL = 1e-4


def pair(model, seed):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(0, model.config.vocab_size, (3, 8), generator=generator) for _ in range(2)]


def test_one_head_important_equals_hook_reference(tiny_model, tiny_engine):
    """Only the direct path from a1.h1 reads the example; every other path the random one."""
    x, r = pair(tiny_model, 30)
    which, branch, key = hypothesis_functions([("a1.h1",)], [0], fallback=1)
    got = tiny_engine.run([x, r], which, branch, key=key).logits
    delta = ref.head_output(tiny_model, x, 1, 1) - ref.head_output(tiny_model, r, 1, 1)
    torch.testing.assert_close(got, ref.final_residual_patch(tiny_model, r, delta), atol=ATOL, rtol=0)


@torch.no_grad()
def composed_head_reference(model, x, r, prev, layer, head):
    """a{layer}.h{head} reads x by query and value, and by key only through head ``prev`` of
    layer 0 (its other key inputs read r); everything else reads r.  Built by hand from
    the HF modules: attention computed explicitly."""
    block, attn = model.transformer.h[layer], model.transformer.h[layer].attn
    dh, d = attn.head_dim, attn.embed_dim
    stream_x = ref.record(model, x, block.ln_1, kind="in")
    stream_r = ref.record(model, r, block.ln_1, kind="in")
    stream_k = stream_r - ref.head_output(model, r, 0, prev) + ref.head_output(model, x, 0, prev)
    q = attn.c_attn(block.ln_1(stream_x))[..., head * dh : (head + 1) * dh]
    k = attn.c_attn(block.ln_1(stream_k))[..., d + head * dh : d + (head + 1) * dh]
    v = attn.c_attn(block.ln_1(stream_x))[..., 2 * d + head * dh : 2 * d + (head + 1) * dh]
    scores = q @ k.transpose(-1, -2) / math.sqrt(dh)
    t = scores.shape[-1]
    scores = scores.masked_fill(torch.triu(torch.ones(t, t, dtype=torch.bool), 1), float("-inf"))
    z = scores.softmax(-1) @ v
    new_out = z @ attn.c_proj.weight[head * dh : (head + 1) * dh]
    return ref.final_residual_patch(model, r, new_out - ref.head_output(model, r, layer, head))


def test_composition_through_the_key_equals_hand_built_reference(tiny_model, tiny_engine):
    x, r = pair(tiny_model, 31)
    hypothesis = Hypothesis({("a1.h2.q",): None, ("a1.h2.v",): None, ("a1.h2.k", "a0.h3"): None})
    which, branch, key = hypothesis_functions(list(hypothesis.paths), [0, 0, 0], fallback=1)
    got = tiny_engine.run([x, r], which, branch, key=key)
    torch.testing.assert_close(got.logits, composed_head_reference(tiny_model, x, r, 3, 1, 2), atol=ATOL, rtol=0)
    unmemoised = tiny_engine.run([x, r], which, branch)
    torch.testing.assert_close(unmemoised.logits, got.logits, atol=1e-6, rtol=0)


@pytest.fixture(scope="module")
def induction_task():
    return induction(24, half_len=6, vocab_size=512, seed=0)


@pytest.fixture(scope="module")
def trained():
    """The trained induction model, on which resampling changes the loss (a random model's does not)."""
    from causal_hypotheses import Engine
    from causal_hypotheses.trained import BOS, HALF_LEN, VOCAB_SIZE, induction_model

    return Engine.from_hf(induction_model()), induction(24, half_len=HALF_LEN, vocab_size=VOCAB_SIZE, seed=0, bos=BOS)


def test_empty_and_complete_hypotheses_recover_nothing_and_everything(trained):
    engine, task = trained
    empty = scrub(engine, Hypothesis({}, "empty"), task, "loss", seed=1)
    assert empty.scrubbed == empty.ablated and empty.fraction_recovered == 0
    complete = Hypothesis({(name,): None for name in engine.graph.writers()}, "complete")
    full = scrub(engine, complete, task, "loss", seed=1, draws=2)
    assert full.scrubbed == pytest.approx(full.clean, abs=1e-5) and full.fraction_recovered == pytest.approx(1.0)
    assert full.ci[0] == pytest.approx(1.0) and full.ci[1] == pytest.approx(1.0)
    assert full.units == 24 and full.unit == "example"
    assert len(full.per_example) == 2 * 24 and set(full.per_example.columns) >= {"draw", "example", "clean", "ablated", "scrubbed"}


def test_same_seed_same_numbers_other_seed_other_draws(tiny_engine, induction_task):
    hypothesis = Hypothesis({("a1",): None}, "layer 1")
    first = scrub(tiny_engine, hypothesis, induction_task, "loss", seed=3, draws=2)
    again = scrub(tiny_engine, hypothesis, induction_task, "loss", seed=3, draws=2)
    other = scrub(tiny_engine, hypothesis, induction_task, "loss", seed=4, draws=2)
    assert first.per_example.equals(again.per_example) and first.ci == again.ci
    assert not first.per_example["ablated"].equals(other.per_example["ablated"])


def test_agreeing_examples_share_the_feature(tiny_engine):
    """With every example in its own feature class, agreeing means the example itself."""
    task = induction(12, half_len=5, vocab_size=512, seed=2)
    alone = scrub(tiny_engine, Hypothesis({("a1",): "seq"}), task, "loss", seed=0)
    itself = scrub(tiny_engine, Hypothesis({("a1",): None}), task, "loss", seed=0)
    assert alone.scrubbed == pytest.approx(itself.scrubbed, abs=1e-6)


@pytest.mark.parametrize("ablation", ["mean", "zero"])
def test_mean_and_zero_ablation(tiny_model, tiny_engine, induction_task, ablation):
    result = scrub(tiny_engine, Hypothesis({("a1.h0",): None}), induction_task, "loss", ablation=ablation)
    assert math.isfinite(result.fraction_recovered) and result.ablation == ablation
    # The ablated run reads the mean (or zero) activations everywhere: check the mean case by hand.
    if ablation == "mean":
        tokens = induction_task.clean
        final = ref.record(tiny_model, tokens, tiny_model.transformer.ln_f, kind="in").mean(0, keepdim=True)
        with torch.no_grad():
            logits = tiny_model.lm_head(tiny_model.transformer.ln_f(final)).expand(len(tokens), -1, -1)
        from causal_hypotheses.metrics import loss

        assert result.ablated == pytest.approx(float(loss(logits, induction_task).mean()), abs=1e-4)


def test_scrub_rejects_bad_settings(tiny_engine, induction_task):
    with pytest.raises(InputError, match="feature 'colour', which task 'induction' lacks"):
        scrub(tiny_engine, Hypothesis({("a1",): "colour"}), induction_task)
    with pytest.raises(InputError, match="ablation='random'"):
        scrub(tiny_engine, Hypothesis({("a1",): None}), induction_task, ablation="random")
    with pytest.raises(InputError, match="n=99"):
        scrub(tiny_engine, Hypothesis({("a1",): None}), induction_task, n=99)
    with pytest.raises(Exception, match="'a7' names layer 7"):
        scrub(tiny_engine, Hypothesis({("a7",): None}), induction_task)


def test_interchange_accuracy_of_the_whole_model_is_the_sources_accuracy(tiny_model, tiny_engine):
    """Aligning 'answer' with every writer of the output makes the model the source's model."""
    generator = torch.Generator().manual_seed(5)
    tokens = torch.randint(0, 512, (16, 6), generator=generator)
    with torch.no_grad():
        top = tiny_model(tokens).logits[:, -1].argmax(-1)
    answer = torch.where(torch.arange(16) % 2 == 0, top, (top + 1) % 512)  # half right
    task = Task("toy", tokens, tokens, answer=answer, distractor=(answer + 1) % 512, features={"answer": answer})
    model = CausalModel({"answer": lambda f: f["answer"]}, output=lambda v: v["answer"])
    result = interchange_intervention_accuracy(tiny_engine, task, model, "answer", tiny_engine.graph.writers(), n=40, seed=1)
    sources = torch.tensor(result.per_pair["source"].to_numpy())
    assert result.accuracy == pytest.approx(float((top[sources] == answer[sources]).double().mean()))
    assert 0 < result.accuracy < 1 and result.ci[0] <= result.accuracy <= result.ci[1]
    with pytest.raises(InputError, match="no variable 'colour'"):
        interchange_intervention_accuracy(tiny_engine, task, model, "colour", ["a0"])


def test_interchange_that_changes_nothing_is_flagged(tiny_model, tiny_engine):
    """Pairs never equal; a variable whose interchange never changes the causal model's answer is
    an error; a patch that never changes a prediction has an effect interval holding 0."""
    generator = torch.Generator().manual_seed(5)
    tokens = torch.randint(0, 512, (16, 6), generator=generator)
    answer = torch.randint(0, 512, (16,), generator=generator)
    task = Task("toy", tokens, tokens, answer=answer, distractor=(answer + 1) % 512,
                features={"answer": answer, "same": torch.zeros(16, dtype=torch.long)})
    model = CausalModel({"answer": lambda f: f["answer"], "same": lambda f: f["same"]}, output=lambda v: v["answer"])
    result = interchange_intervention_accuracy(tiny_engine, task, model, "answer", ["a1.h0"], n=40, seed=1)
    assert (result.per_pair["base"] != result.per_pair["source"]).all()
    with pytest.raises(InputError, match="leaves .* answer unchanged"):
        interchange_intervention_accuracy(tiny_engine, task, model, "same", ["a1.h0"])
    # A causal model reads no later position: patching position 5 cannot change the prediction at position 0.
    tiny = Task("toy", tokens, tokens, answer=answer, distractor=(answer + 1) % 512, position=0,
                features={"answer": answer, "same": torch.zeros(16, dtype=torch.long)})
    nothing = interchange_intervention_accuracy(tiny_engine, tiny, model, "answer", ["embed"], n=40, seed=1, positions=[5])
    assert nothing.changed == 0 and nothing.effect_ci[0] <= 0 <= nothing.effect_ci[1]
