"""The engine's work counters (RunStats.rows, flops, floor_flops) against counts made by hand
from the model's configuration."""
from __future__ import annotations

import pytest
import torch

import hf_reference as ref

from causal_hypotheses import Engine, activation_patch_sweep, path_patch_sweep, random_gpt2
from causal_hypotheses.interventions.compile import activation_patch_functions, position_rows


@pytest.fixture(scope="module")
def model():
    return random_gpt2("tiny", seed=1, std=0.3, n_layer=3)  # D 64, 4 heads of 16, vocab 512


def forward_flops_by_hand(config, rows: int, seq: int, unembed: bool = True) -> int:
    """Matmul FLOPs of GPT-2's forward, from the configuration alone."""
    D, L, V = config.n_embd, config.n_layer, config.vocab_size
    inner = config.n_inner or 4 * D
    per_layer = 0
    for t in range(seq):
        per_layer += 2 * D * 3 * D  # c_attn: q, k, v of every head
        per_layer += 2 * 2 * D * (t + 1)  # scores and values: every head's dh, t + 1 keys
        per_layer += 2 * D * D  # c_proj
        per_layer += 2 * 2 * D * inner  # c_fc and the MLP's c_proj
    return rows * (L * per_layer + (seq * 2 * D * V if unembed else 0))


def test_an_all_clean_run_costs_one_forward_per_distinct_row(model):
    engine = Engine.from_hf(model)
    tokens = torch.randint(0, 512, (3, 11), generator=torch.Generator().manual_seed(0))
    tokens[2] = tokens[0]  # two distinct rows: captured once each, unembedded three times
    stats = engine.run([tokens], lambda path: 0).stats
    assert stats.rows_computed == 2
    assert stats.rows == {"unembed": 3 * 11}  # nothing recomputed
    expected = forward_flops_by_hand(model.config, 2, 11, unembed=False) + 3 * 11 * 2 * 64 * 512
    assert stats.flops == expected
    assert stats.floor_flops == expected
    distinct = torch.randint(0, 512, (3, 11), generator=torch.Generator().manual_seed(1))
    engine.cache.clear()
    assert engine.run([distinct], lambda path: 0).stats.flops == forward_flops_by_hand(model.config, 3, 11)


def test_patching_one_head_at_the_last_position_recomputes_later_components_there(model):
    """a1.h2 reads the corrupt input at the last position of each of 4 examples; the logits are
    read there.  By hand: MLPs 1 and 2 and layer 2's attention recompute one position per
    example; the engine computes the head's change from its two captured z's (2 x 4 head
    outputs, not part of the floor)."""
    engine = Engine.from_hf(model)
    generator = torch.Generator().manual_seed(3)
    B, T, D, H, dh, V = 4, 9, 64, 4, 16, 512
    clean = torch.randint(0, V, (B, T), generator=generator)
    corrupt = torch.randint(0, V, (B, T), generator=generator)
    which, branch, key = activation_patch_functions([frozenset(["a1.h2"])], B, position_rows([-1], B, T))
    stats = engine.run([clean, corrupt], which, branch, key=key, logit_positions=-1).stats

    assert stats.rows_computed == 2 * B
    assert stats.rows == {
        "mlp": 2 * B,  # m1 and m2 at the last position
        "qkv": 3 * H * B,  # layer 2's q, k, v of every head at the last position
        "attention": H * B,  # layer 2, every head, the last query (its keys and values did not change)
        "out": H * B + 2 * B,  # layer 2's output projection at the last position; a1.h2's change
        "unembed": B,
    }
    floor = (
        forward_flops_by_hand(model.config, 2 * B, T, unembed=False)  # capture clean and corrupt
        + 2 * B * 2 * D * 4 * D * 2  # two MLPs at one position each
        + B * 2 * D * 3 * D  # layer 2's q, k, v
        + B * 2 * 2 * D * T  # layer 2's last query reads T keys
        + B * 2 * D * D  # layer 2's output projection
        + B * 2 * D * V  # unembedding
    )
    assert stats.floor_flops == floor
    assert stats.flops == floor + 2 * B * 2 * dh * D


def test_attention_recomputes_the_queries_from_the_first_changed_key_on(model):
    """a1.h2 reads the corrupt input at position 5 of 9, every logit is read: layer 2 attends
    again for queries 5..8 only (earlier queries cannot see the change), every later component
    at those positions."""
    engine = Engine.from_hf(model)
    generator = torch.Generator().manual_seed(5)
    B, T, H, dh = 3, 9, 4, 16
    clean = torch.randint(0, 512, (B, T), generator=generator)
    corrupt = torch.randint(0, 512, (B, T), generator=generator)
    which, branch, key = activation_patch_functions([frozenset(["a1.h2"])], B, position_rows([5], B, T))
    stats = engine.run([clean, corrupt], which, branch, key=key).stats
    changed = T - 5
    assert stats.rows == {
        "mlp": B + B * changed,  # m1 at position 5, m2 at positions 5..8
        "qkv": 3 * H * B,  # layer 2's q, k, v at position 5
        "attention": H * B * changed,
        "out": H * B * changed + 2 * B,
        "unembed": B * T,
    }
    assert stats.flops - stats.floor_flops == 2 * B * 2 * dh * 64  # a1.h2's change from its captured z's


def test_keys_and_values_alone_where_no_query_is_read(model):
    """a1.h2 reads the corrupt input at every position, the logits are read at the last one:
    layer 2's attention needs its last query alone, over keys and values that changed at every
    position, so it projects q at the last position and k and v at all T (not q at all T).  The
    logits equal patching a1.h2's z with hooks on HF's model."""
    engine = Engine.from_hf(model)
    generator = torch.Generator().manual_seed(6)
    B, T, H = 3, 9, 4
    clean = torch.randint(0, 512, (B, T), generator=generator)
    corrupt = torch.randint(0, 512, (B, T), generator=generator)
    which, branch, key = activation_patch_functions([frozenset(["a1.h2"])], B)
    result = engine.run([clean, corrupt], which, branch, key=key, logit_positions=-1)
    assert result.stats.rows["qkv"] == H * B + 2 * H * B * T  # q at the last position; k and v everywhere
    assert result.stats.rows["attention"] == H * B  # the last query
    assert result.stats.rows["mlp"] == B * T + B  # m1 everywhere (layer 2's keys read it), m2 at the last position
    expected = ref.patch_head_z(model, clean, 1, 2, ref.head_z(model, corrupt, 1))[:, -1:]
    torch.testing.assert_close(result.logits, expected, atol=1e-4, rtol=0)


def test_sweeps_report_their_runs_summed(model):
    engine = Engine.from_hf(model)
    generator = torch.Generator().manual_seed(4)
    clean = torch.randint(0, 512, (2, 6), generator=generator)
    corrupt = torch.randint(0, 512, (2, 6), generator=generator)
    runs = []
    original = engine.run

    def counting(*args, **kwargs):
        result = original(*args, **kwargs)
        runs.append(result.stats)
        return result

    engine.run = counting

    def metric(logits):
        return logits[:, 0, 1] - logits[:, 0, 2]

    for sweep in (
        lambda: activation_patch_sweep(engine, clean, corrupt, metric, positions=[-1], logit_positions=-1, chunk_size=5),
        lambda: path_patch_sweep(engine, clean, corrupt, ["a2.h0.q"], metric, logit_positions=-1, chunk_size=3),
    ):
        runs.clear()
        totals = sweep().attrs["stats"]
        assert totals["runs"] == len(runs) > 1
        assert totals["flops"] == sum(s.flops for s in runs) >= totals["floor_flops"] == sum(s.floor_flops for s in runs) > 0
        assert totals["rows"]["mlp"] == sum(s.rows.get("mlp", 0) for s in runs) > 0
        assert totals["forward_passes"] == sum(s.forward_passes for s in runs)
