"""Causal scrubbing as Chan et al. define it, against a hand-written treeified computation.

The reference below computes every writer's output with hooks on the unmodified HF GPT-2 and
recomputes the named heads and MLPs by hand from the HF modules.  Each test spells out, for its
hypothesis, which input of which node reads which sample: the sampler's recorded draws are
looked up by those places, and the set of places drawn must be exactly the expected one (an
independent sample per unimportant input, agreement with the parent's sample on named ones).
"""
from __future__ import annotations

import math

import pytest
import torch

from causal_hypotheses import Hypothesis, scrub
from causal_hypotheses.engine.core import MeanInput, ZeroInput
from causal_hypotheses.interventions.treeify import Sampler, correspondence, rotations, scrub_functions
from causal_hypotheses.tasks import Task

import hf_reference as ref

ATOL = 1e-5
N, T = 6, 8


class Reference:
    """Writer outputs of every dataset row (from hooks), and by-hand recomputation of heads and MLPs."""

    def __init__(self, model, tokens):
        self.model, self.tokens = model, tokens
        blocks = model.transformer.h
        self.outs = {"embed": ref.record(model, tokens, blocks[0].ln_1, kind="in")}
        for layer, block in enumerate(blocks):
            self.outs[f"a{layer}"] = ref.record(model, tokens, block.attn)
            self.outs[f"m{layer}"] = ref.record(model, tokens, block.mlp)
            for head in range(block.attn.num_heads):
                self.outs[f"a{layer}.h{head}"] = ref.head_output(model, tokens, layer, head)
        self.fixed = None  # "mean" or "zero": what an unimportant input reads instead of a sample

    def out(self, name: str, rows) -> torch.Tensor:
        """What ``name`` writes when it reads dataset ``rows`` (n,) for the n examples."""
        if rows == "mean":
            return self.outs[name].mean(0, keepdim=True).expand(N, -1, -1)
        if rows == "zero":  # every component computes zero; a whole layer keeps its output bias
            layer = name[1:] if name.startswith("a") and "." not in name else None
            return torch.zeros_like(self.outs[name]) + (self.bias(int(layer)) if layer is not None else 0)
        return self.outs[name][rows]

    def bias(self, layer: int) -> torch.Tensor:
        return self.model.transformer.h[layer].attn.c_proj.bias

    @torch.no_grad()
    def head(self, layer: int, head: int, q, k, v) -> torch.Tensor:
        """Head ``layer.head``'s output when its query, key and value read residual streams q, k, v."""
        block = self.model.transformer.h[layer]
        attn = block.attn
        dh, d = attn.head_dim, attn.embed_dim
        w = [attn.c_attn(block.ln_1(stream))[..., c * d + head * dh: c * d + (head + 1) * dh] for c, stream in enumerate((q, k, v))]
        scores = w[0] @ w[1].transpose(-1, -2) / math.sqrt(dh)
        scores = scores.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf"))
        return scores.softmax(-1) @ w[2] @ attn.c_proj.weight[head * dh: (head + 1) * dh]

    @torch.no_grad()
    def mlp(self, layer: int, stream) -> torch.Tensor:
        block = self.model.transformer.h[layer]
        return block.mlp(block.ln_2(stream))

    @torch.no_grad()
    def logits(self, stream) -> torch.Tensor:
        return self.model.lm_head(self.model.transformer.ln_f(stream))


def toy_task(model, seed=40) -> Task:
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, model.config.vocab_size, (N, T), generator=generator)
    answer = torch.randint(0, model.config.vocab_size, (N,), generator=generator)
    features = {"parity": torch.arange(N) % 2, "third": torch.arange(N) % 3}
    return Task("toy", tokens, tokens, answer=answer, distractor=(answer + 1) % model.config.vocab_size, features=features)


def engine_logits(engine, task, paths, *, seed=0, draw=0, ablation="resample"):
    inputs = rotations(task.clean)
    fixed = None
    if ablation != "resample":
        inputs.append(MeanInput(task.clean) if ablation == "mean" else ZeroInput())
        fixed = N
    sampler = Sampler(N, task.features, seed, draw)
    which, branch = scrub_functions(correspondence(paths), sampler, fixed)
    return engine.run(inputs, which, branch).logits, sampler.log


X = torch.arange(N)  # the output's reference: each example itself


def test_every_writer_of_the_baseline_reads_its_own_sample(tiny_model, tiny_engine):
    task = toy_task(tiny_model)
    got, log = engine_logits(tiny_engine, task, {})
    R = Reference(tiny_model, task.clean)
    writers = ["embed", "a0", "m0", "a1", "m1"]
    assert set(log) == {(w,) for w in writers}
    assert len({tuple(rows.tolist()) for rows in log.values()}) == len(writers)  # no two share a draw
    expected = R.logits(sum(R.out(w, log[(w,)]) for w in writers))
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)


def composition_reference(R, sample, x=X):
    """{("a1.h2.q",): None, ("a1.h2.v",): None, ("a1.h2.k", "a0.h3"): None} by hand; ``sample(place)``
    is what an unimportant input at ``place`` reads (a draw, or "mean"/"zero")."""
    layer1_x = R.out("embed", x) + R.out("a0", x) + R.out("m0", x)  # the residual a1 reads on x
    key = (R.out("embed", sample(("a1.h2.k", "embed"))) + R.bias(0) + R.out("m0", sample(("a1.h2.k", "m0")))
           + sum(R.out(f"a0.h{h}", sample(("a1.h2.k", f"a0.h{h}"))) for h in (0, 1, 2)) + R.out("a0.h3", x))
    stream = (R.out("embed", sample(("embed",))) + R.out("a0", sample(("a0",))) + R.out("m0", sample(("m0",)))
              + sum(R.out(f"a1.h{h}", sample((f"a1.h{h}",))) for h in (0, 1, 3)) + R.bias(1)
              + R.head(1, 2, q=layer1_x, k=key, v=layer1_x) + R.out("m1", sample(("m1",))))
    return R.logits(stream)


COMPOSITION = {("a1.h2.q",): None, ("a1.h2.v",): None, ("a1.h2.k", "a0.h3"): None}
COMPOSITION_PLACES = ({("embed",), ("a0",), ("m0",), ("a1.h0",), ("a1.h1",), ("a1.h3",), ("m1",)}
                      | {("a1.h2.k", w) for w in ("embed", "m0", "a0.h0", "a0.h1", "a0.h2")})


def test_composition_through_the_key_reads_a_sample_per_unimportant_input(tiny_model, tiny_engine):
    task = toy_task(tiny_model)
    got, log = engine_logits(tiny_engine, task, COMPOSITION)
    assert set(log) == COMPOSITION_PLACES
    assert len({tuple(rows.tolist()) for rows in log.values()}) == len(COMPOSITION_PLACES)
    expected = composition_reference(Reference(tiny_model, task.clean), lambda place: log[place])
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize("ablation", ["mean", "zero"])
def test_mean_and_zero_ablation_per_input(tiny_model, tiny_engine, ablation):
    task = toy_task(tiny_model)
    got, log = engine_logits(tiny_engine, task, COMPOSITION, ablation=ablation)
    assert log == {}  # nothing is drawn: every unimportant input reads the dataset mean (or zero) of what it carries
    expected = composition_reference(Reference(tiny_model, task.clean), lambda place: ablation)
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)


def test_nested_features_agree_with_the_parent_sample(tiny_model, tiny_engine):
    """Head 1.2 carries parity; relative to the example head 1.2 reads, head 0.1 enters its query
    with the same 'third'; the MLP m1 carries parity through head 1.0's value, and all of m1's
    other inputs are unimportant."""
    task = toy_task(tiny_model)
    paths = {("a1.h2",): "parity", ("a1.h2.q", "a0.h1"): "third", ("m1", "a1.h0.v"): "parity"}
    got, log = engine_logits(tiny_engine, task, paths)
    features = task.features
    y = log[("a1.h2",)]  # head 1.2's sample: agrees with each example on parity
    z = log[("a1.h2.q", "a0.h1")]  # head 0.1 into 1.2's query: agrees with y on third
    w = log[("m1", "a1.h0.v")]  # head 1.0 into m1 (by its value): agrees with the example on parity
    assert torch.equal(features["parity"][y], features["parity"]) and torch.equal(features["third"][z], features["third"][y])
    assert torch.equal(features["parity"][w], features["parity"])
    m1_unimportant = {("m1", n) for n in ("embed", "a0", "m0", "a1.h1", "a1.h2", "a1.h3")} | {
        ("m1", "a1.h0.q", ), ("m1", "a1.h0.k")}
    assert set(log) == {("a1.h2",), ("a1.h2.q", "a0.h1"), ("m1", "a1.h0.v"), ("embed",), ("a0",), ("m0",),
                        ("a1.h0",), ("a1.h1",), ("a1.h3",)} | m1_unimportant

    R = Reference(tiny_model, task.clean)
    on = lambda rows: R.out("embed", rows) + R.out("a0", rows) + R.out("m0", rows)  # noqa: E731  layer-1 input
    query = on(y) - R.out("a0.h1", y) + R.out("a0.h1", z)
    head12 = R.head(1, 2, q=query, k=on(y), v=on(y))
    head10_v = R.head(1, 0, q=on(log[("m1", "a1.h0.q")]), k=on(log[("m1", "a1.h0.k")]), v=on(w))
    m1_input = (R.out("embed", log[("m1", "embed")]) + R.out("a0", log[("m1", "a0")]) + R.out("m0", log[("m1", "m0")])
                + sum(R.out(f"a1.h{h}", log[("m1", f"a1.h{h}")]) for h in (1, 2, 3)) + R.bias(1) + head10_v)
    stream = (R.out("embed", log[("embed",)]) + R.out("a0", log[("a0",)]) + R.out("m0", log[("m0",)])
              + R.out("a1.h0", log[("a1.h0",)]) + R.out("a1.h1", log[("a1.h1",)]) + R.out("a1.h3", log[("a1.h3",)])
              + R.bias(1) + head12 + R.mlp(1, m1_input))
    torch.testing.assert_close(got, R.logits(stream), atol=ATOL, rtol=0)


def test_draws_depend_on_seed_draw_and_place_only(tiny_model, tiny_engine):
    task = toy_task(tiny_model)
    _, one = engine_logits(tiny_engine, task, COMPOSITION, seed=3, draw=1)
    _, again = engine_logits(tiny_engine, task, COMPOSITION, seed=3, draw=1)
    _, other = engine_logits(tiny_engine, task, COMPOSITION, seed=3, draw=2)
    assert all(torch.equal(one[p], again[p]) for p in one)
    assert any(not torch.equal(one[p], other[p]) for p in one)


def test_scrub_measures_the_treeified_runs(tiny_model, tiny_engine):
    """scrub()'s per-example numbers are the metric on exactly these runs (scrubbed and baseline)."""
    from causal_hypotheses.metrics import logit_diff

    task = toy_task(tiny_model)
    result = scrub(tiny_engine, Hypothesis(COMPOSITION), task, "logit_diff", seed=5, draws=2)
    assert result.resampling == "independent"
    for draw in range(2):
        scrubbed, _ = engine_logits(tiny_engine, task, COMPOSITION, seed=5, draw=draw)
        ablated, _ = engine_logits(tiny_engine, task, {}, seed=5, draw=draw)
        rows = result.per_example[result.per_example["draw"] == draw]
        torch.testing.assert_close(torch.tensor(rows["scrubbed"].values), logit_diff(scrubbed, task).double(), atol=1e-5, rtol=0)
        torch.testing.assert_close(torch.tensor(rows["ablated"].values), logit_diff(ablated, task).double(), atol=1e-5, rtol=0)
    shared = scrub(tiny_engine, Hypothesis(COMPOSITION), task, "logit_diff", seed=5, draws=2, resampling="shared")
    assert shared.resampling == "shared" and shared.scrubbed != result.scrubbed
    with pytest.raises(Exception, match="resampling='one': expected 'independent'"):
        scrub(tiny_engine, Hypothesis(COMPOSITION), task, resampling="one")


def test_zero_ablating_a_layer_or_each_of_its_heads_agree(tiny_model, tiny_engine):
    """Zero ablation does not depend on how finely the engine splits a layer (the constant
    output bias belongs to the layer, not to a head), nor on which input it takes as base."""
    task = toy_task(tiny_model)
    inputs = [task.clean, ZeroInput()]
    whole = tiny_engine.run(inputs, lambda path: 1 if path[-1] == "a0" else 0).logits
    heads = tiny_engine.run(inputs, lambda path: 1 if path[-1].startswith("a0.h") else 0, lambda path: path[-1] == "a0").logits
    mostly_zero = tiny_engine.run(inputs, lambda path: 0 if path[-1] in ("a0.h1", "embed", "m0") else 1,
                                  lambda path: path[-1] == "a0").logits  # most parts read zero: zero is the base
    R = Reference(tiny_model, task.clean)
    expected = R.logits(R.out("embed", X) + R.bias(0) + R.out("m0", X) + R.out("a1", X) + R.out("m1", X))
    torch.testing.assert_close(whole, expected, atol=ATOL, rtol=0)
    torch.testing.assert_close(heads, expected, atol=ATOL, rtol=0)
    expected = R.logits(R.out("embed", X) + R.bias(0) + R.out("a0.h1", X) + R.out("m0", X) + R.bias(1))
    torch.testing.assert_close(mostly_zero, expected, atol=ATOL, rtol=0)
