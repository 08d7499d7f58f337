"""The shipped 2-layer attention-only induction model: it loads, it does induction, and the heads
named in causal_hypotheses.trained attend the way the circuit says."""
from __future__ import annotations

import math
import os

import pytest
import torch
import torch.nn.functional as F

from causal_hypotheses import trained
from causal_hypotheses.errors import InputError
from causal_hypotheses.graph import component

H = trained.HALF_LEN


@pytest.fixture(scope="module")
def model():
    return trained.induction_model()


@pytest.fixture(scope="module")
def run(model):
    tokens = trained.repeated_tokens(64, torch.Generator().manual_seed(1234))
    with torch.no_grad():
        out = model(tokens, output_attentions=True)
    return tokens, out


def _head(name: str) -> tuple[int, int]:
    parsed = component(name)
    return parsed.layer, parsed.head


def _all_heads(model) -> list[str]:
    return [f"a{l}.h{h}" for l in range(model.config.n_layer) for h in range(model.config.n_head)]


def _lag_score(out, name: str, lag: int, queries: torch.Tensor, keys: torch.Tensor | None = None) -> float:
    layer, head = _head(name)
    pattern = out.attentions[layer][:, head]  # (B, T, T): query x key
    keys = queries - lag if keys is None else keys
    return pattern[:, queries, keys].mean().item()


def test_model_loads_with_expected_shapes_and_zero_mlps(model):
    from transformers import GPT2LMHeadModel

    assert isinstance(model, GPT2LMHeadModel)
    assert not model.training
    assert all(p.dtype == torch.float32 for p in model.parameters())
    config = model.config
    assert (config.n_layer, config.n_head, config.vocab_size) == (2, trained.CONFIG["n_head"], trained.VOCAB_SIZE)
    assert config.n_positions >= trained.SEQ_LEN
    for block in model.transformer.h:
        for p in (*block.mlp.c_fc.parameters(), *block.mlp.c_proj.parameters()):
            assert torch.count_nonzero(p).item() == 0
    sizes = {f: os.path.getsize(os.path.join(trained.DATA_DIR, f)) for f in ("config.json", "model.safetensors")}
    print("file sizes (bytes):", sizes)
    assert sum(sizes.values()) < 512 * 1024


def test_missing_weights_raise_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="train_induction"):
        trained.induction_model(str(tmp_path))


def test_repeated_half_is_predicted(run):
    tokens, out = run
    losses = F.cross_entropy(out.logits[:, :-1].transpose(1, 2), tokens[:, 1:], reduction="none")
    first = losses[:, 1:H].mean().item()  # predicting r[1:] in the first copy
    second = losses[:, H + 1:].mean().item()  # predicting r[1:] in the second copy
    chance = math.log(trained.VOCAB_SIZE - 1)
    print(f"first-half loss {first:.3f} (chance {chance:.3f}), second-half loss {second:.3f}")
    assert abs(first - chance) < 0.15
    assert second < 0.3 * first


@pytest.mark.parametrize("lag,heads", [(1, trained.PREVIOUS_TOKEN_HEADS), (2, trained.PREVIOUS_PREVIOUS_TOKEN_HEADS)])
def test_heads_attending_to_earlier_tokens(model, run, lag, heads):
    """The named layer-0 heads attend to position t - lag; no other head does."""
    _, out = run
    queries = torch.arange(lag, trained.SEQ_LEN)
    scores = {name: _lag_score(out, name, lag, queries) for name in _all_heads(model)}
    print(f"attention to t-{lag}:", {k: round(v, 3) for k, v in scores.items()})
    for name in heads:
        assert name.startswith("a0.") and scores[name] > 0.8, (name, scores[name])
    for name in set(scores) - set(heads):
        assert scores[name] < 0.3, (name, scores[name])


def test_induction_heads(model, run):
    _, out = run
    # on the second copy, the token after the previous occurrence of the current token
    queries = torch.arange(H + 1, trained.SEQ_LEN)
    scores = {name: _lag_score(out, name, 0, queries, keys=queries - H + 1) for name in _all_heads(model)}
    print("attention to the token after the previous occurrence:", {k: round(v, 3) for k, v in scores.items()})
    assert trained.INDUCTION_HEADS
    for name in trained.INDUCTION_HEADS:
        assert name.startswith("a1.") and scores[name] > 0.7, (name, scores[name])
    for name in set(scores) - set(trained.INDUCTION_HEADS):
        assert scores[name] < 0.3, (name, scores[name])
