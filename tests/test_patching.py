"""Activation and path patching against hook-based computations on the unmodified HF model."""
from __future__ import annotations

import pandas as pd
import pytest
import torch

from causal_hypotheses import Engine, UnknownComponentError
from causal_hypotheses.models import random_gpt2
from causal_hypotheses.interventions import activation_patch, activation_patch_sweep, path_patch, path_patch_sweep
from causal_hypotheses.graph import component

import hf_reference as ref

ATOL = 1e-4


def batches(model, seed, shape=(3, 8)):
    generator = torch.Generator().manual_seed(seed)
    return (torch.randint(0, model.config.vocab_size, shape, generator=generator) for _ in range(2))


def head_delta(model, clean, corrupt, layer, head):
    return ref.head_output(model, corrupt, layer, head) - ref.head_output(model, clean, layer, head)


def test_activation_patch_head_layer_and_mlp(tiny_model, tiny_engine):
    clean, corrupt = batches(tiny_model, 20)
    blocks = tiny_model.transformer.h
    expected = ref.patch_head_z(tiny_model, clean, 0, 3, ref.head_z(tiny_model, corrupt, 0))
    torch.testing.assert_close(activation_patch(tiny_engine, clean, corrupt, "a0.h3"), expected, atol=ATOL, rtol=0)
    expected = ref.replace_output(tiny_model, clean, blocks[0].mlp, ref.record(tiny_model, corrupt, blocks[0].mlp))
    torch.testing.assert_close(activation_patch(tiny_engine, clean, corrupt, ["m0"]), expected, atol=ATOL, rtol=0)
    expected = ref.replace_output(tiny_model, clean, blocks[1].attn, ref.record(tiny_model, corrupt, blocks[1].attn))
    torch.testing.assert_close(activation_patch(tiny_engine, clean, corrupt, "a1"), expected, atol=ATOL, rtol=0)


def test_activation_patch_at_positions(small_model, small_engine):
    clean, corrupt = batches(small_model, 21)
    expected = ref.patch_head_z_at(small_model, clean, 5, 1, ref.head_z(small_model, corrupt, 5), [2, 6])
    got = activation_patch(small_engine, clean, corrupt, "a5.h1", positions=[2, 6])
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)
    everywhere = activation_patch(small_engine, clean, corrupt, "a5.h1")
    assert (everywhere - got).abs().max() > 1e-4


@pytest.mark.parametrize("position,read", [(3, [1, 3, 7]), (7, [7]), (0, [0, 5])])
def test_one_position_patch_recomputes_only_what_changes(small_model, small_engine, position, read):
    """A head patched at one position changes nothing before it (causal attention) and is
    recomputed at few entries; the logits at the positions read equal HF's with the hook."""
    clean, corrupt = batches(small_model, 27)
    expected = ref.patch_head_z_at(small_model, clean, 2, 7, ref.head_z(small_model, corrupt, 2), [position])
    got = activation_patch(small_engine, clean, corrupt, "a2.h7", positions=position, logit_positions=read)
    torch.testing.assert_close(got, expected[:, read], atol=ATOL, rtol=0)
    assert (expected[:, position] - ref.logits(small_model, clean)[:, position]).abs().max() > 1e-3
    torch.testing.assert_close(expected[:, :position], ref.logits(small_model, clean)[:, :position], atol=ATOL, rtol=0)


def test_path_patch_head_into_two_query_inputs(small_model, small_engine):
    clean, corrupt = batches(small_model, 22)
    delta = head_delta(small_model, clean, corrupt, 3, 4)
    expected = ref.path_patch_channels(small_model, clean, delta, [(9, 6, 0), (10, 7, 0)])
    got = path_patch(small_engine, clean, corrupt, ["a3.h4"], ["a9.h6.q", "a10.h7.q"])
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)
    assert (expected - ref.logits(small_model, clean)).abs().max() > 1e-4


def test_a_receiver_downstream_of_another_reads_only_the_direct_change():
    """Receivers a1.h0.q and a2.h1.q: a2.h1's query reads the clean stream plus a0.h1's
    change, not a1.h0's recomputed output (Wang et al.'s two-run recipe). Sharp attention
    makes the difference 0.6 in the logits; the engine got it wrong before this test."""
    model = random_gpt2("tiny", seed=3, std=0.3, n_layer=3)
    clean, corrupt = batches(model, 28)
    delta = head_delta(model, clean, corrupt, 0, 1)
    expected = ref.path_patch_channels(model, clean, delta, [(1, 0, 0), (2, 1, 0)])
    got = path_patch(Engine.from_hf(model), clean, corrupt, ["a0.h1"], ["a1.h0.q", "a2.h1.q"])
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)
    assert (expected - ref.logits(model, clean)).abs().max() > 0.1


def test_path_patch_two_senders_into_a_whole_head(tiny_model, tiny_engine):
    clean, corrupt = batches(tiny_model, 23)
    delta = head_delta(tiny_model, clean, corrupt, 0, 1) + head_delta(tiny_model, clean, corrupt, 0, 2)
    expected = ref.path_patch_channels(tiny_model, clean, delta, [(1, 3, c) for c in range(3)])
    got = path_patch(tiny_engine, clean, corrupt, ["a0.h1", "a0.h2"], ["a1.h3"])
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)


def test_path_patch_into_an_mlp_and_into_the_logits(tiny_model, tiny_engine):
    clean, corrupt = batches(tiny_model, 24)
    blocks = tiny_model.transformer.h
    delta = ref.record(tiny_model, corrupt, blocks[0].attn) - ref.record(tiny_model, clean, blocks[0].attn)
    expected = ref.path_patch_mlp(tiny_model, clean, delta, 1)
    torch.testing.assert_close(path_patch(tiny_engine, clean, corrupt, "a0", "m1"), expected, atol=ATOL, rtol=0)
    direct = head_delta(tiny_model, clean, corrupt, 1, 0)
    expected = ref.final_residual_patch(tiny_model, clean, direct)
    torch.testing.assert_close(path_patch(tiny_engine, clean, corrupt, "a1.h0", "out"), expected, atol=ATOL, rtol=0)


def test_sweeps_equal_their_single_experiments_and_hooks(small_model, small_engine):
    clean, corrupt = batches(small_model, 25, shape=(2, 6))
    answer, distractor = 11, 42

    def metric(logits):
        return logits[:, -1, answer] - logits[:, -1, distractor]

    nodes = ["a2.h3", "a7.h0", "a11.h11", "a0.h5"]
    table = activation_patch_sweep(small_engine, clean, corrupt, metric, nodes, positions=-1, chunk_size=3)
    assert isinstance(table, pd.DataFrame) and table.shape == (12, 12) and table.notna().sum().sum() == 4
    for node in nodes:
        layer, head = component(node).layer, component(node).head
        z = ref.head_z(small_model, corrupt, layer)
        expected = metric(ref.patch_head_z_at(small_model, clean, layer, head, z, [5])).mean()
        assert table.loc[layer, head] == pytest.approx(float(expected), abs=ATOL)

    receivers = ["a10.h7.q", "a11.h10.q"]
    swept = path_patch_sweep(small_engine, clean, corrupt, receivers, metric, senders=["a3.h4", "a9.h9", "m2"], logit_positions=-1)
    assert list(swept.index) == ["a3.h4", "a9.h9", "m2"]
    for sender in swept.index:
        single = metric(path_patch(small_engine, clean, corrupt, [sender], receivers)).mean()
        assert swept[sender] == pytest.approx(float(single), abs=ATOL)
    delta = head_delta(small_model, clean, corrupt, 3, 4)
    expected = metric(ref.path_patch_channels(small_model, clean, delta, [(10, 7, 0), (11, 10, 0)])).mean()
    assert swept["a3.h4"] == pytest.approx(float(expected), abs=ATOL)


def test_default_path_patch_sweep_covers_every_earlier_head(tiny_model, tiny_engine):
    clean, corrupt = batches(tiny_model, 26)
    table = path_patch_sweep(tiny_engine, clean, corrupt, ["a1.h2.q"], lambda logits: logits[:, -1, 0])
    assert table.loc[0].notna().all() and table.loc[1].isna().all()


@pytest.mark.parametrize(
    "senders,receivers,fragment",
    [
        (["a1.h0"], ["a0.h1.q"], "no direct path into any receiver"),
        (["a0.h1.q"], ["a1.h0.q"], "is a head's input"),
        (["a0.h9"], ["a1.h0.q"], "names head 9"),
        (["a0"], ["a1.h0.z"], "is not a component name"),
        ([], ["a1"], "senders is empty"),
    ],
)
def test_path_patch_rejects_bad_names(tiny_engine, senders, receivers, fragment):
    clean, corrupt = torch.zeros(1, 4, dtype=torch.long), torch.ones(1, 4, dtype=torch.long)
    with pytest.raises(Exception) as error:
        path_patch(tiny_engine, clean, corrupt, senders, receivers)
    assert fragment in str(error.value)


def test_activation_patch_rejects_bad_positions_and_names(tiny_engine):
    clean, corrupt = torch.zeros(1, 4, dtype=torch.long), torch.ones(1, 4, dtype=torch.long)
    with pytest.raises(UnknownComponentError, match="position 4 is outside the prompt"):
        activation_patch(tiny_engine, clean, corrupt, "a0", positions=[4])
    with pytest.raises(UnknownComponentError, match="'m2' names layer 2"):
        activation_patch(tiny_engine, clean, corrupt, "m2")


def _mlps_replaced_at(model, tokens, layers, source, positions):
    """HF logits with the MLP outputs of ``layers`` at ``positions`` taken from a run on ``source``."""
    mlps = [model.transformer.h[layer].mlp for layer in layers]
    recorded = [ref.record(model, source, mlp) for mlp in mlps]

    def swap(value):
        def hook(_, __, output):
            output = output.clone()
            output[:, positions] = value[:, positions]
            return output
        return hook

    with torch.no_grad(), ref.hooks(*[(mlp, "post", swap(value)) for mlp, value in zip(mlps, recorded)]):
        return model(tokens).logits


def test_several_nodes_at_a_suffix_of_positions(tiny_model, tiny_engine):
    """Two MLPs, the later one reading the earlier, patched at the last positions: as HF with hooks."""
    clean, corrupt = batches(tiny_model, 23)
    expected = _mlps_replaced_at(tiny_model, clean, [0, 1], corrupt, [5, 6, 7])
    got = activation_patch(tiny_engine, clean, corrupt, ["m0", "m1"], positions=[5, 6, 7])
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)
    assert (got - activation_patch(tiny_engine, clean, corrupt, ["m0"], positions=[5, 6, 7])).abs().max() > 1e-4


def _nodes_replaced_at(model, tokens, source, mlps=(), heads=(), positions=()):
    """HF logits with the outputs of MLPs ``mlps`` and heads ``heads`` ((layer, head), ...) at
    ``positions`` taken from a run on ``source``; everything else computed on ``tokens``."""
    blocks = model.transformer.h
    registrations = []
    for layer in mlps:
        value = ref.record(model, source, blocks[layer].mlp)

        def swap_mlp(_, __, output, value=value):
            output = output.clone()
            output[:, positions] = value[:, positions]
            return output

        registrations.append((blocks[layer].mlp, "post", swap_mlp))
    for layer in sorted({layer for layer, _ in heads}):
        attn, z_source = blocks[layer].attn, ref.head_z(model, source, layer)
        chosen = [head for l, head in heads if l == layer]

        def swap_z(_, args, attn=attn, z_source=z_source, chosen=chosen):
            z = args[0].view(*args[0].shape[:2], attn.num_heads, attn.head_dim).clone()
            for head in chosen:
                z[:, positions, head] = z_source[:, positions, head]
            return (z.view(*args[0].shape),)

        registrations.append((attn.c_proj, "pre", swap_z))
    with torch.no_grad(), ref.hooks(*registrations):
        return model(tokens).logits


def test_several_nodes_at_some_positions_recompute_the_rest(tiny_model, tiny_engine):
    """A patched node left unpatched at a position after another node's patch is recomputed there:
    m1 at positions 6 and 7 reads m0's patch at 5 (HF with hooks, where m1 runs on the hooked stream)."""
    clean, corrupt = batches(tiny_model, 24)
    for positions in ([5], [2, 5], [0, 3, 6]):
        expected = _mlps_replaced_at(tiny_model, clean, [0, 1], corrupt, positions)
        got = activation_patch(tiny_engine, clean, corrupt, ["m0", "m1"], positions=positions)
        torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)
    # Not vacuous: reading m1 from the clean run at positions 6 and 7 (what the engine did before
    # it refused this) gives other logits there: m0's patch at 5 reaches m1.
    mlp0, mlp1 = tiny_model.transformer.h[0].mlp, tiny_model.transformer.h[1].mlp
    clean_m1, corrupt_m1 = ref.record(tiny_model, clean, mlp1), ref.record(tiny_model, corrupt, mlp1)
    corrupt_m0 = ref.record(tiny_model, corrupt, mlp0)

    def patch_m0(_, __, output):
        output = output.clone()
        output[:, 5] = corrupt_m0[:, 5]
        return output

    def stale_m1(_, __, output):
        output = clean_m1.clone()
        output[:, 5] = corrupt_m1[:, 5]
        return output

    with torch.no_grad(), ref.hooks((mlp0, "post", patch_m0), (mlp1, "post", stale_m1)):
        stale = tiny_model(clean).logits
    assert (stale - _mlps_replaced_at(tiny_model, clean, [0, 1], corrupt, [5]))[:, 6:].abs().max() > 1e-4


def test_heads_and_mlps_across_layers_at_some_positions(small_model, small_engine):
    """Heads of several layers with MLPs between them, at scattered positions: as HF with hooks."""
    clean, corrupt = batches(small_model, 25)
    cases = [
        (["a0.h1", "m1", "a3.h2", "a3.h5", "a7.h0"], [1], [(0, 1), (3, 2), (3, 5), (7, 0)], [1, 4]),
        (["m0", "a2.h3", "m5"], [0, 5], [(2, 3)], [6]),
        (["a1.h4", "a6.h6", "m9"], [9], [(1, 4), (6, 6)], [0, 2, 3, 7]),
    ]
    for nodes, mlps, heads, positions in cases:
        expected = _nodes_replaced_at(small_model, clean, corrupt, mlps, heads, positions)
        got = activation_patch(small_engine, clean, corrupt, nodes, positions=positions)
        torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)


def test_blocks_of_several_nodes_at_some_positions(tiny_model, tiny_engine):
    """Two blocks of several nodes each in one run, at some positions: each block as HF with hooks."""
    from causal_hypotheses.interventions.compile import activation_patch_functions, position_rows

    clean, corrupt = batches(tiny_model, 26)
    pattern = position_rows([2, 5], *clean.shape)
    blocks = [frozenset(["m0", "m1"]), frozenset(["a0.h1", "a1.h2"])]
    which, branch, key = activation_patch_functions(blocks, clean.shape[0], pattern)
    stacked = [torch.cat([clean, clean]), torch.cat([corrupt, corrupt])]
    logits = tiny_engine.run(stacked, which, branch, key=key).logits
    first = _nodes_replaced_at(tiny_model, clean, corrupt, mlps=[0, 1], positions=[2, 5])
    second = _nodes_replaced_at(tiny_model, clean, corrupt, heads=[(0, 1), (1, 2)], positions=[2, 5])
    torch.testing.assert_close(logits, torch.cat([first, second]), atol=ATOL, rtol=0)
