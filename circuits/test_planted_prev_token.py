"""Previous-token copying in the planted 1-layer model, a circuit known by construction.

The model (`prev-token-1l`, causal_hypotheses/planted.py, trained by `scripts/train_planted.py`)
reads [BOS] + 15 random tokens and outputs, at every position t >= 2, the token at t - 1.  One
attention head does it: PREV_TOKEN_HEAD attends from t to t - 1 with its query and key (position
only) and copies the token there through its value.  The other heads' outputs were priced out in
training.  Checked on the unmodified HF model (tests/test_planted.py): zeroing that head's output
with a hook raises the loss from 0.0000 to about 14 (chance is log 31 = 3.4), zeroing the other
three changes nothing (their ||W_O|| are under 0.001).

Claims: the head, and its value alone, carry the behaviour (scrubbing, path patching into the
output, faithfulness, interchange accuracy of the copied token); wrong ones do not: its query
and key without its value, another head in its place, and (a control that does touch the
computation) its attention patched from the corrupt sequence.  No ``beats_random``: one layer of
four heads has only three other one-head circuits, too few for a permutation p-value under 0.25.

Measured, value [95% CI], n=64, draws=2, metric loss, for ``--claims-seed`` 0 .. 4 (all pass):

    claim                                    seed 0                seed 1                seed 2                seed 3                seed 4
    head carries the copy (scrub)    >=0.75  1.000 [1.000, 1.000]  1.000 [1.000, 1.000]  1.000 [1.000, 1.000]  1.000 [1.000, 1.000]  1.000 [1.000, 1.000]
    head value alone (scrub)         >=0.75  1.000 [1.000, 1.000]  1.000 [1.000, 1.000]  1.000 [1.000, 1.000]  1.000 [1.000, 1.000]  1.000 [1.000, 1.000]
    head -> out (path patch)         >=0.75  1.001 [0.999, 1.002]  1.001 [0.999, 1.003]  0.999 [0.998, 1.001]  1.000 [0.999, 1.002]  0.999 [0.997, 1.001]
    head alone (faithfulness)        >=0.75  1.000 [1.000, 1.000]  1.000 [1.000, 1.000]  1.000 [1.000, 1.000]  1.000 [1.000, 1.000]  1.000 [1.000, 1.000]
    copied token at the head (IIA)   >=0.75  1.000 [0.943, 1.000]  1.000 [0.943, 1.000]  1.000 [0.943, 1.000]  1.000 [0.943, 1.000]  1.000 [0.943, 1.000]
    query and key, no value (scrub)  <=0.75  -0.009 [-0.042, 0.022] 0.004 [-0.035, 0.041] 0.010 [-0.039, 0.057] 0.034 [-0.003, 0.071] 0.034 [-0.003, 0.070]
    another head (scrub)             <=0.75  -0.023 [-0.063, 0.015] 0.014 [-0.028, 0.055] 0.008 [-0.036, 0.050] 0.020 [-0.014, 0.053] 0.006 [-0.027, 0.038]
    head attention (activation patch) <=0.1  0.000 [0.000, 0.000]  0.000 [0.000, 0.000]  0.000 [0.000, 0.000]  0.000 [0.000, 0.000]  0.000 [0.000, 0.000]

The claims themselves take about 2 s on one core; loading and the session the rest.
"""
from __future__ import annotations

import pytest

from causal_hypotheses import CausalModel
from causal_hypotheses.interventions.scrubbing import Hypothesis
from causal_hypotheses.planted import PREV_TOKEN_HEAD, PREV_TOKEN_OTHER_HEADS

pytestmark = pytest.mark.claim(model="prev-token-1l", task="previous_token", metric="loss", n=64, seed=0, draws=2)
HEAD = PREV_TOKEN_HEAD
OTHER = PREV_TOKEN_OTHER_HEADS[0]


@pytest.mark.claim(at_least=0.75)
def test_the_previous_token_head_carries_the_copy(claim):
    """True: the output reads the head, which reads the sequence; every other path resampled."""
    claim.scrub(Hypothesis({(HEAD,): None}, name=f"{HEAD} reads the sequence"))


@pytest.mark.claim(at_least=0.75)
def test_the_head_value_alone_carries_the_token(claim):
    """True: the head's value reads the sequence; its query and key may read another one (the
    attention to t - 1 depends on position only)."""
    claim.scrub(Hypothesis({(f"{HEAD}.v",): None}, name=f"{HEAD} value"))


@pytest.mark.claim(at_least=0.75)
def test_the_head_path_to_the_output_carries_the_corruption(claim):
    """True: patching the head's direct path into the logits from the corrupt sequence moves the loss."""
    claim.path_patch([HEAD], ["out"])


@pytest.mark.claim(at_least=0.75)
def test_the_head_alone_is_faithful(claim):
    """True: the head alone keeps the behaviour (everything else mean-ablated)."""
    claim.faithfulness([HEAD])


COPY = CausalModel({"prev": lambda f: f["prev"]}, output=lambda v: v["prev"], name="copy the previous token")


@pytest.mark.claim(at_least=0.75)
def test_the_head_output_is_the_copied_token(claim):
    """True: patching the head's output at the last position from another sequence makes the model
    output that sequence's previous token."""
    claim.iia(COPY, "prev", [HEAD], positions=[-1])


@pytest.mark.claim(at_most=0.75)
def test_query_and_key_without_the_value_recover_little(claim):
    """Wrong channel: the head's query and key read the sequence, its value another one."""
    claim.scrub(Hypothesis({(f"{HEAD}.q",): None, (f"{HEAD}.k",): None}, name=f"{HEAD} query and key"))


@pytest.mark.claim(at_most=0.75)
def test_another_head_recovers_little(claim):
    """Wrong head: another layer-0 head reads the sequence, the previous-token head another one."""
    claim.scrub(Hypothesis({(OTHER,): None}, name=f"{OTHER} reads the sequence"))


@pytest.mark.claim(at_most=0.1)
def test_the_head_attention_carries_nothing(claim):
    """Negative control that touches the computation: the head's query and key from the corrupt
    sequence (its attention is positional, so the copy survives)."""
    claim.activation_patch([f"{HEAD}.q", f"{HEAD}.k"])
