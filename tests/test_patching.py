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


def test_several_nodes_before_an_unpatched_position_are_refused(tiny_model, tiny_engine):
    """m1 at position 7 would read the clean run although m0's patch at position 5 reaches it there:
    refused, not computed wrong (HF with hooks shows the later position does change)."""
    from causal_hypotheses.errors import PositionError

    clean, corrupt = batches(tiny_model, 24)
    with pytest.raises(PositionError, match=r"'m0' and 'm1' patched at some positions only: at position 6 of example 0"):
        activation_patch(tiny_engine, clean, corrupt, ["m0", "m1"], positions=[5])
    # Not vacuous: with m0 patched at 5, m1's output at 6 differs from the clean run's, which is
    # what m1 at 6 would have read.
    mlp0, mlp1 = tiny_model.transformer.h[0].mlp, tiny_model.transformer.h[1].mlp
    corrupt_m0, seen = ref.record(tiny_model, corrupt, mlp0), {}

    def patch_m0(_, __, output):
        output = output.clone()
        output[:, 5] = corrupt_m0[:, 5]
        return output

    with torch.no_grad(), ref.hooks((mlp0, "post", patch_m0), (mlp1, "post", lambda _, __, out: seen.setdefault("m1", out))):
        tiny_model(clean)
    assert (seen["m1"][:, 6:] - ref.record(tiny_model, clean, mlp1)[:, 6:]).abs().max() > 1e-4
    # one node at any positions, or heads of one layer, stay exact
    first = _mlps_replaced_at(tiny_model, clean, [0], corrupt, [5])
    torch.testing.assert_close(activation_patch(tiny_engine, clean, corrupt, ["m0"], positions=[5]), first, atol=ATOL, rtol=0)
    activation_patch(tiny_engine, clean, corrupt, ["a1.h0", "a1.h1"], positions=[5])
