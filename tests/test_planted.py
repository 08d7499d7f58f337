"""The planted-circuit models (causal_hypotheses/planted.py): each loads, solves its task, and does
it with the components the module names, checked on the unmodified HF model with attention
patterns and forward hooks, independently of the engine."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from causal_hypotheses import planted
from causal_hypotheses.errors import InputError
from causal_hypotheses.graph import component
from causal_hypotheses.tasks import planted as tasks
from hf_reference import head_output, path_patch_channel

torch.set_grad_enabled(False)


@pytest.fixture(scope="module")
def models():
    return {name: planted.planted_model(name) for name in planted.PLANTED if _shipped(name)}


def _shipped(name: str) -> bool:
    import os

    return os.path.isfile(os.path.join(planted.spec(name).path, "model.safetensors"))


def _model(models, name):
    if name not in models:
        pytest.skip(f"{name} is not shipped yet")
    return models[name]


def _task(name: str, n: int = 256, seed: int = 1234):
    spec = planted.spec(name)
    return getattr(tasks, spec.task)(n, seed=seed, **spec.task_options)


def _targets(task) -> torch.Tensor:
    if task.targets is not None:
        return task.targets
    targets = torch.full_like(task.clean, -100)
    targets[:, -1] = task.answer
    return targets


def _run(model, tokens, zero_heads=(), zero_mlps=(), mean_heads=()):
    """Logits with the named heads' outputs zeroed (or replaced by their mean over the batch, per
    position) by pre-hooks on c_proj, and the given MLP layers' outputs zeroed."""
    handles = []
    means = {}
    if mean_heads:
        layers = {component(h).layer for h in mean_heads}
        for layer in layers:
            attn = model.transformer.h[layer].attn
            handles.append(attn.c_proj.register_forward_pre_hook(
                lambda _, args, layer=layer: means.__setitem__(layer, args[0].mean(0, keepdim=True))))
        model(tokens)
        for handle in handles:
            handle.remove()
        handles = []
    for kind, heads in (("zero", zero_heads), ("mean", mean_heads)):
        for name in heads:
            parsed = component(name)
            attn = model.transformer.h[parsed.layer].attn

            def replace(_, args, attn=attn, head=parsed.head, layer=parsed.layer, kind=kind):
                shape = (*args[0].shape[:2], attn.num_heads, attn.head_dim)
                z = args[0].view(shape).clone()
                z[:, :, head] = 0 if kind == "zero" else means[layer].view(1, shape[1], *shape[2:])[:, :, head]
                return (z.view(args[0].shape),)

            handles.append(attn.c_proj.register_forward_pre_hook(replace))
    for layer in zero_mlps:
        handles.append(model.transformer.h[layer].mlp.register_forward_hook(lambda _, __, out: torch.zeros_like(out)))
    try:
        return model(tokens, output_attentions=True)
    finally:
        for handle in handles:
            handle.remove()


def _loss(out, targets) -> float:
    return F.cross_entropy(out.logits.transpose(1, 2), targets, ignore_index=-100).item()


def _accuracy(out, targets) -> float:
    counted = targets != -100
    return (out.logits.argmax(-1)[counted] == targets[counted]).float().mean().item()


def _heads(model, layer=None):
    layers = range(model.config.n_layer) if layer is None else [layer]
    return [f"a{l}.h{h}" for l in layers for h in range(model.config.n_head)]


def _pattern(out, name):
    parsed = component(name)
    return out.attentions[parsed.layer][:, parsed.head]  # (B, query, key)


# Loading ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(planted.PLANTED))
def test_each_model_loads_with_its_shapes_and_is_small(models, name):
    import os

    model = _model(models, name)
    spec = planted.spec(name)
    assert not model.training and all(p.dtype == torch.float32 for p in model.parameters())
    assert model.config.n_layer == spec.config["n_layer"] and model.config.n_head == spec.config["n_head"]
    assert os.path.getsize(os.path.join(spec.path, "model.safetensors")) < 1_000_000
    zero = all(torch.count_nonzero(p).item() == 0 for p in planted.mlp_parameters(model))
    assert zero == spec.attention_only


def test_missing_files_and_unknown_names_raise_input_errors(tmp_path):
    with pytest.raises(InputError, match="train_planted.py prev-token-1l"):
        planted.planted_model("prev-token-1l", path=str(tmp_path))
    with pytest.raises(InputError, match="planted models are"):
        planted.spec("prev-token-9l")


# prev-token-1l ---------------------------------------------------------------------------------


def test_prev_token_model_copies_the_previous_token_with_one_head(models):
    model = _model(models, "prev-token-1l")
    task = _task("prev-token-1l")
    targets = _targets(task)
    clean = _run(model, task.clean)
    assert _accuracy(clean, targets) > 0.99
    assert _loss(clean, targets) < 0.01
    head = planted.PREV_TOKEN_HEAD
    t = torch.arange(2, task.clean.shape[1])
    assert _pattern(clean, head)[:, t, t - 1].mean().item() > 0.9  # attends from t to t - 1
    # Zeroing the head leaves the model far worse than uniform guessing; zeroing all the others does nothing.
    assert _loss(_run(model, task.clean, zero_heads=[head]), targets) > math.log(model.config.vocab_size)
    others = [h for h in _heads(model) if h != head]
    assert set(others) == set(planted.PREV_TOKEN_OTHER_HEADS)
    without_others = _run(model, task.clean, zero_heads=others)
    assert _loss(without_others, targets) < 0.01 and _accuracy(without_others, targets) > 0.99



# marker-2l -------------------------------------------------------------------------------------


def test_marker_model_composes_a_previous_token_head_with_a_mover(models):
    model = _model(models, "marker-2l")
    task = _task("marker-2l")
    targets = _targets(task)
    clean = _run(model, task.clean)
    assert _accuracy(clean, targets) > 0.99
    rows, m = torch.arange(len(task)), task.features["marker"]
    prev, (mover, second) = planted.MARKER_PREV_HEAD, planted.MARKER_MOVER_HEADS
    for head in (mover, second):  # the last position reads m + 1
        assert _pattern(clean, head)[rows, -1, m + 1].mean().item() > 0.9
    assert _pattern(clean, prev)[rows, m + 1, m].mean().item() > 0.4  # m + 1 reads the marker (t - 1 ~ 0.25)
    chance = math.log(task.clean.shape[1] - 2)  # uniform over the sequence's other tokens
    assert _loss(_run(model, task.clean, mean_heads=[prev]), targets) > chance
    # The main mover mean-ablated: the weak second mover keeps some answers, but not most; without
    # both, worse than guessing.  The second alone mean-ablated costs little.
    without_mover = _run(model, task.clean, mean_heads=[mover])
    assert _loss(without_mover, targets) > 1.0 and _accuracy(without_mover, targets) < 0.75
    assert _accuracy(_run(model, task.clean, mean_heads=[second]), targets) > 0.9
    assert _loss(_run(model, task.clean, mean_heads=[mover, second]), targets) > chance
    others = [h for h in _heads(model) if h not in (prev, mover, second)]
    assert set(others) == set(planted.MARKER_OTHER_HEADS)
    assert _accuracy(_run(model, task.clean, mean_heads=others), targets) > 0.99
    # K-composition: the main mover's key without the layer-0 head's output (removed from the key's
    # input only) loses the answer; its value without it keeps most.
    layer, head = component(mover).layer, component(mover).head
    removed = -head_output(model, task.clean, component(prev).layer, component(prev).head)
    key_cut = path_patch_channel(model, task.clean, removed, layer, head, 1)
    value_cut = path_patch_channel(model, task.clean, removed, layer, head, 2)
    answer_rate = lambda logits: (logits[:, -1].argmax(-1) == task.answer).float().mean().item()  # noqa: E731
    assert answer_rate(key_cut) < 0.2
    assert answer_rate(value_cut) > 0.6  # measured 0.73: the value reads a little of it too


# modsum-1l -------------------------------------------------------------------------------------


def test_modsum_model_moves_a_with_heads_and_adds_in_the_mlp(models):
    model = _model(models, "modsum-1l")
    task = _task("modsum-1l")
    targets = _targets(task)
    clean = _run(model, task.clean)
    assert _accuracy(clean, targets) == 1.0
    main, second = planted.MODSUM_MOVER_HEADS
    chance = math.log(planted.MODSUM_P)
    assert _loss(_run(model, task.clean, zero_mlps=[0]), targets) > chance  # no MLP: worse than chance
    assert _loss(_run(model, task.clean, mean_heads=[main]), targets) > chance  # a lost: worse than chance
    without_second = _accuracy(_run(model, task.clean, mean_heads=[second]), targets)
    assert 0.5 < without_second < 0.95  # the second mover helps (measured 0.82)
    others = [h for h in _heads(model) if h not in (main, second)]
    assert set(others) == set(planted.MODSUM_OTHER_HEADS)
    assert _accuracy(_run(model, task.clean, mean_heads=others), targets) == 1.0
    assert _pattern(clean, main)[:, -1, 1].mean().item() > 0.4  # b's position reads a (measured 0.47)


# Tasks -----------------------------------------------------------------------------------------


def test_previous_token_task_targets_the_token_before():
    task = tasks.previous_token(8, seq_len=6, vocab_size=10, seed=3)
    assert task.clean.shape == (8, 6) and (task.clean[:, 0] == 0).all() and (task.clean[:, 1:] != 0).all()
    assert (task.targets[:, :2] == -100).all() and (task.targets[:, 2:] == task.clean[:, 1:-1]).all()
    assert (task.corrupt[:, 1:] != task.clean[:, 1:]).all()
    assert (task.answer == task.clean[:, -2]).all() and (task.features["prev"] == task.answer).all()


def test_marker_task_answers_the_token_after_the_first_marker():
    task = tasks.marker(50, seq_len=8, vocab_size=12, seed=3)
    for row, m, answer, corrupt, distractor in zip(task.clean.tolist(), task.features["marker"].tolist(),
                                                   task.answer.tolist(), task.corrupt.tolist(), task.distractor.tolist()):
        assert row[m] == tasks.MARKER == row[-1] and row.count(tasks.MARKER) == 2 and row[0] == 0
        assert row[m + 1] == answer and row.count(answer) == 1 and m + 1 < len(row) - 1
        assert corrupt[corrupt.index(tasks.MARKER) + 1] == distractor != answer
    assert len(set(task.features["marker"].tolist())) > 3  # the marker moves


def test_modular_sum_task_answers_the_sum():
    p = 5
    task = tasks.modular_sum(40, p=p, seed=3)
    a, b = task.features["a"], task.features["b"]
    assert (task.clean[:, 1] == a + 1).all() and (task.clean[:, 2] == b + 1).all()
    assert (task.answer == (a + b) % p + p + 1).all() and (task.distractor != task.answer).all()
    assert (task.corrupt[:, 1] != task.clean[:, 1]).all() and (task.corrupt[:, 2] != task.clean[:, 2]).all()


@pytest.mark.parametrize("call, match", [
    (lambda: tasks.previous_token(4, seq_len=2), "seq_len=2"),
    (lambda: tasks.marker(4, seq_len=8, vocab_size=5), "vocab_size=5"),
    (lambda: tasks.marker(4, bos=1, marker=1), "two different token ids"),
    (lambda: tasks.modular_sum(4, p="7"), "p='7'"),
])
def test_task_builders_reject_bad_input(call, match):
    with pytest.raises(InputError, match=match):
        call()


def test_planted_models_and_tasks_are_registered():
    from causal_hypotheses.claims.registry import model_names, task_names

    assert set(planted.PLANTED) <= set(model_names())
    assert {"previous_token", "marker", "modular_sum"} <= set(task_names())
