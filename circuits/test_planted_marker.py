"""Retrieving the token after a marker in the planted 2-layer model: heads composed.

The model (`marker-2l`, causal_hypotheses/planted.py, trained by `scripts/train_planted.py`)
reads [BOS] + 14 distinct tokens with a marker token at a random position m and again at the end,
and answers, at the last position, the token at m + 1.  No single head can find m + 1: the
layer-0 head MARKER_PREV_HEAD (a0.h0) attends from m + 1 to the marker (0.52; to t - 1 on average
0.25) and writes "the marker is before me" there; the layer-1 movers MARKER_MOVER_HEADS (a1.h0, and
a1.h1, a weaker second one) match it with their keys (K-composition, as in induction; Elhage et
al. 2021), attend from the last position to m + 1 (> 0.98) and copy the token there.  Their values
read a0.h0 too: at m + 1 it is the same in every sequence, and a value read from elsewhere copies
noise (the scrub without it recovers 0.81).  The other five heads write almost nothing (their
share of the output was priced out in training).  Checked on the unmodified HF model
(tests/test_planted.py): mean-ablating a0.h0, or both movers, sends the loss above chance;
mean-ablating a1.h0 alone leaves 59% accuracy, a1.h1 alone 98%, the other five 100%; removing
a0.h0's output from a1.h0's key input alone drops accuracy to 6%, from its value input to 73%.

Claims: the composed circuit carries the answer (scrubbing; what a0.h0 tells the movers is only
where the marker is; faithfulness against random circuits of the same shape; interchange accuracy
of the answer at the movers), and a0.h0's paths into the movers' keys and each head matter (path
patching, minimality: the 0.1 bar); wrong ones do not: the composition left out, a0.h0 feeding the
values only (V- instead of K-composition), another layer-0 head in its place, and three heads
outside the circuit alone.

Measured, value [95% CI], n=64, draws=2, metric loss, for ``--claims-seed`` 0 .. 4 (every claim
passes at every seed):

    claim                                                      bar     seed 0                  seed 1                  seed 2                  seed 3                  seed 4
    the mover key reads the previous token head                >= 0.75 1.000 [1.000, 1.000]    1.000 [1.000, 1.000]    1.000 [1.000, 1.000]    1.000 [1.000, 1.000]    1.000 [1.000, 1.000]
    the layer0 head tells the movers where the marker is       >= 0.75 1.000 [1.000, 1.000]    1.000 [1.000, 1.000]    1.000 [1.000, 1.000]    1.000 [1.000, 1.000]    1.000 [1.000, 1.000]
    the layer0 head path into the mover keys matters           >= 0.1  0.631 [0.544, 0.723]    0.560 [0.472, 0.653]    0.583 [0.497, 0.673]    0.569 [0.482, 0.663]    0.590 [0.501, 0.683]
    the mover output is the answer                             >= 0.75 1.000 [0.943, 1.000]    1.000 [0.943, 1.000]    1.000 [0.943, 1.000]    1.000 [0.943, 1.000]    1.000 [0.943, 1.000]
    without the composition little is recovered                <= 0.75 0.358 [0.270, 0.442]    0.386 [0.318, 0.452]    0.352 [0.268, 0.429]    0.379 [0.301, 0.454]    0.346 [0.259, 0.427]
    the layer0 head feeding the value instead recovers little  <= 0.75 0.374 [0.280, 0.464]    0.391 [0.319, 0.460]    0.381 [0.298, 0.457]    0.391 [0.309, 0.469]    0.423 [0.333, 0.507]
    another layer0 head in its place recovers little           <= 0.75 0.329 [0.239, 0.415]    0.419 [0.345, 0.491]    0.311 [0.227, 0.391]    0.372 [0.297, 0.444]    0.336 [0.248, 0.417]
    the circuit is faithful                                    >= 0.75 1.000 [1.000, 1.000]    1.000 [1.000, 1.000]    1.000 [1.000, 1.000]    1.000 [1.000, 1.000]    1.000 [1.000, 1.000]
    every head of the circuit matters (n=128)                  >= 0.1  0.703 [0.623, 0.788]    0.239 [0.119, 0.501]    0.354 [0.143, 0.674]    0.749 [0.659, 0.848]    0.754 [0.667, 0.851]
    three other heads keep nothing                             <= 0.1  0.000 [-0.002, 0.001]   -0.002 [-0.004, -0.001]  0.000 [-0.001, 0.002]   -0.001 [-0.002, 0.000]  -0.001 [-0.002, 0.001]
"""
from __future__ import annotations

import pytest

from causal_hypotheses import CausalModel
from causal_hypotheses.interventions.scrubbing import Hypothesis
from causal_hypotheses.planted import MARKER_MOVER_HEADS, MARKER_OTHER_HEADS, MARKER_PREV_HEAD

pytestmark = pytest.mark.claim(model="marker-2l", task="marker", metric="loss", n=64, seed=0, draws=2)
PREV, MOVERS = MARKER_PREV_HEAD, list(MARKER_MOVER_HEADS)
OTHER_LAYER0 = [h for h in MARKER_OTHER_HEADS if h.startswith("a0.")]
OTHER_LAYER1 = [h for h in MARKER_OTHER_HEADS if h.startswith("a1.")]


def mover(query_from=("embed",), key_from=(PREV,), value_from=("embed", PREV), name="K-composition", feature=None):
    """The movers' queries, keys and values read the example through the given senders; what they
    read through the layer-0 head agrees with the example on ``feature`` (None: the example)."""
    paths = {(f"{head}.{channel}", sender): feature if sender == PREV else None for head in MOVERS
             for channel, senders in (("q", query_from), ("k", key_from), ("v", value_from)) for sender in senders}
    return Hypothesis(paths, name=name)


@pytest.mark.claim(at_least=0.75)
def test_the_mover_key_reads_the_previous_token_head(claim):
    """True: the movers' keys read the layer-0 head; their values read the tokens and that head;
    their queries the tokens."""
    claim.scrub(mover())


@pytest.mark.claim(at_least=0.75)
def test_the_layer0_head_tells_the_movers_where_the_marker_is(claim):
    """True: what the movers read through the layer-0 head may come from any sequence with the
    marker at the same position."""
    claim.scrub(mover(name="K-composition, marker position only", feature="marker"))


@pytest.mark.claim(at_least=0.1)
def test_the_layer0_head_path_into_the_mover_keys_matters(claim):
    """True: patching only the layer-0 head's paths into the movers' keys from the corrupt sequence
    (marker elsewhere) moves the loss (a component on a path: the 0.1 bar)."""
    claim.path_patch([PREV], [f"{head}.k" for head in MOVERS])


@pytest.mark.claim(at_least=0.75, beats_random=0.95)
def test_the_circuit_is_faithful(claim):
    """True: the layer-0 head and the movers alone keep the behaviour, random circuits of the same
    shape do not."""
    claim.faithfulness([PREV, *MOVERS])


@pytest.mark.claim(at_least=0.1, n=128)
def test_every_head_of_the_circuit_matters(claim):
    """True: each head of the circuit matters.  The weakest is the second mover (about 0.2), so this
    claim uses 128 examples: with 64 the interval's low end touched 0.1 at some seeds."""
    claim.minimality([PREV, *MOVERS])


ANSWER = CausalModel({"answer": lambda f: f["answer"]}, output=lambda v: v["answer"], name="the token after the marker")


@pytest.mark.claim(at_least=0.75)
def test_the_mover_output_is_the_answer(claim):
    """True: patching the mover's output at the last position from another sequence makes the
    model answer that sequence's token."""
    claim.iia(ANSWER, "answer", MOVERS, positions=[-1])


@pytest.mark.claim(at_most=0.75)
def test_without_the_composition_little_is_recovered(claim):
    """Wrong: the mover's inputs all straight from the tokens, the layer-0 head left out."""
    claim.scrub(mover(key_from=("embed",), value_from=("embed",), name="no composition"))


@pytest.mark.claim(at_most=0.75)
def test_the_layer0_head_feeding_the_value_instead_recovers_little(claim):
    """Wrong channel: the layer-0 head feeds the movers' values only, their keys read the tokens."""
    claim.scrub(mover(key_from=("embed",), value_from=("embed", PREV), name="V- instead of K-composition"))


@pytest.mark.claim(at_most=0.75)
def test_another_layer0_head_in_its_place_recovers_little(claim):
    """Wrong head: another layer-0 head in place of the previous-token head."""
    claim.scrub(mover(key_from=(OTHER_LAYER0[0],), value_from=("embed", OTHER_LAYER0[0]), name=f"{OTHER_LAYER0[0]} in its place"))


@pytest.mark.claim(at_most=0.1)
def test_three_other_heads_keep_nothing(claim):
    """Negative control: three heads outside the circuit (as many as in it), alone."""
    claim.faithfulness([OTHER_LAYER0[1], OTHER_LAYER0[2], OTHER_LAYER1[1]])
