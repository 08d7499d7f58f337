"""The evaluator's dense sum (engine/evaluate.py, ``DENSE_SHARE``) and its sparse sum give the
numbers of independent hook-based references on the unmodified HF models, each path forced
on the same experiments: Wang et al.'s criteria on GPT-2 (every head outside a circuit
mean-ablated, several knocked-out sets stacked in one run) and stacked multi-head patches on
Llama."""
from __future__ import annotations

import pytest
import torch

from causal_hypotheses import Engine
from causal_hypotheses.engine import evaluate
from causal_hypotheses.interventions.compile import activation_patch_functions
from causal_hypotheses.interventions.criteria import completeness, minimality
from causal_hypotheses.metrics import logit_diff

import hf_reference as ref
import llama_reference as llama_ref
from test_criteria import CIRCUIT, F, outside, toy_task
from test_llama import ATOL, SHAPES, random_llama

PATHS = {"dense": 0.0, "sparse": 1.0}  # DENSE_SHARE forcing each path (the union never exceeds the live entries)


@pytest.fixture(params=list(PATHS))
def forced(request, monkeypatch):
    """Forces one path and counts the dense sums taken."""
    monkeypatch.setattr(evaluate, "DENSE_SHARE", PATHS[request.param])
    taken = []
    dense_sum = evaluate.Evaluator._dense_sum

    def counted(self, *args):
        taken.append(1)
        return dense_sum(self, *args)

    monkeypatch.setattr(evaluate.Evaluator, "_dense_sum", counted)
    return request.param, taken


def check_path(forced) -> None:
    path, taken = forced
    assert (len(taken) > 0) == (path == "dense"), f"the {path} path was not the one taken ({len(taken)} dense sums)"


def test_completeness_gaps_equal_hook_knockouts_on_either_path(tiny_model, forced):
    task = toy_task(tiny_model)
    K = [["a1.h0"], ["a0.h1", "a1.h2"]]
    result = completeness(Engine.from_hf(tiny_model), CIRCUIT, task, "logit_diff", k=0, subsets=K)
    check_path(forced)
    f_m = logit_diff(ref.logits(tiny_model, task.clean), task).double()
    rows = {row["K"]: row for row in result.details}
    for name, knocked in (("∅", []), ("{a1.h0}", [(1, 0)]), ("{a0.h1, a1.h2}", [(0, 1), (1, 2)])):
        f_c_k = F(tiny_model, task, outside(tiny_model, CIRCUIT) + knocked)
        f_m_k = F(tiny_model, task, knocked) if knocked else f_m
        assert rows[name]["gap"] == pytest.approx(abs(float((f_c_k - f_m_k).mean() / f_m.mean())), rel=1e-4, abs=1e-6)


def test_minimality_gaps_equal_hook_knockouts_on_either_path(tiny_model, forced):
    task = toy_task(tiny_model, n=9)
    result = minimality(Engine.from_hf(tiny_model), CIRCUIT, task, "logit_diff", k=0)
    check_path(forced)
    f_m = logit_diff(ref.logits(tiny_model, task.clean), task).double()
    base = outside(tiny_model, CIRCUIT)
    f_c = F(tiny_model, task, base)
    rows = {row["component"]: row for row in result.details}
    for name in CIRCUIT:
        layer, head = int(name[1]), int(name.split(".h")[1])
        gap = abs(float((f_c - F(tiny_model, task, base + [(layer, head)])).mean() / f_m.mean()))
        assert rows[name]["gap"] == pytest.approx(gap, rel=1e-4, abs=1e-6)


def llama_heads_patched(model, clean, corrupt, heads):
    """Logits of ``clean`` with ``heads`` ((layer, head)) reading their z from ``corrupt``:
    hooks on o_proj's input of the unmodified HF Llama."""
    registrations = []
    for layer in sorted({l for l, _ in heads}):
        attn = model.model.layers[layer].self_attn
        z_source = llama_ref.head_z(model, corrupt, layer)
        chosen = [h for l, h in heads if l == layer]

        def swap(_, args, attn=attn, z_source=z_source, chosen=chosen):
            z = args[0].view(*args[0].shape[:2], -1, attn.head_dim).clone()
            z[:, :, chosen] = z_source[:, :, chosen]
            return (z.view(*args[0].shape),)

        registrations.append((attn.o_proj, "pre", swap))
    with torch.no_grad(), llama_ref.hooks(*registrations):
        return model(clean).logits


def test_stacked_head_patches_equal_hook_patching_on_llama_on_either_path(forced):
    """Three blocks, each with its own heads read from the corrupt prompts, in one run: the
    residual streams sum changes that cover different blocks."""
    model = random_llama(seed=2, **SHAPES["gqa"])
    clean, corrupt = (torch.randint(0, 256, (3, 8), generator=torch.Generator().manual_seed(s)) for s in (11, 12))
    blocks = [[(0, 0), (0, 3), (1, 1)], [(0, 1), (0, 2), (1, 0), (1, 3)], [(0, 2)]]
    which, branch, key = activation_patch_functions(
        [frozenset(f"a{l}.h{h}" for l, h in heads) for heads in blocks], clean.shape[0])
    result = Engine.from_hf(model).run([clean.repeat(len(blocks), 1), corrupt.repeat(len(blocks), 1)], which, branch, key=key)
    check_path(forced)
    for k, heads in enumerate(blocks):
        expected = llama_heads_patched(model, clean, corrupt, heads)
        torch.testing.assert_close(result.logits[k * 3:(k + 1) * 3], expected, atol=ATOL, rtol=0)
        assert (expected - llama_ref.logits(model, clean)).abs().max() > 1e-3
