"""Factual recall in SmolLM2-135M-Instruct: where the model looks up "The capital city of France
is" -> " Paris", found by this project's activation-patching sweeps.

The task is the built-in ``factual`` (one-token subjects and objects; the corrupt prompt swaps in
another subject of the same relation; metric: logit difference, answer minus the corrupt
subject's object, at the last token).  SmolLM2's tokenizer keeps 115 of its 120 facts; over each
of them once the clean logit difference is 6.84 and the corrupt one -6.77 (capital cities 10.46,
languages 7.15, continents 2.91, countries of cities 6.04; top-1 accuracy 0.34, as " the" often
comes first for "... is in").

`scripts/find_factual_circuit.py` patches every MLP and every attention layer alone at each
position (denoising, as Meng et al. restore clean states: the corrupt run reads the component
from the clean prompt; n=32, seed 0; `circuits/findings/factual-smollm2/`):

- at the subject token, m0 alone moves 0.998 of the change; every other MLP there 0.083 at most
  (m7), together (m1-m14, from the subject on) 0.377; attention there at most 0.016 per layer;
- at the last token, attention layer 23 alone moves 0.961 (then a29 0.142, a27 0.041; a24
  -0.062); MLPs there matter from layer 23 on only (m29 0.155, m24 0.096, m23 0.094, m27 0.081;
  m22-m29 together 0.454), every earlier MLP there 0.005 at most;
- before the subject the prompts agree, and every patch there moves exactly 0.
Noising (the clean run reads the component from the corrupt prompt) gives the same picture
within 0.015 per cell (m0 at the subject 1.000, a23 at the last token 0.955).

So, as Meng et al. (2022) found in GPT-2 XL, the fact is read at the subject by MLPs and moved
to the last token by late attention.  Unlike there, one MLP dominates: m0 at the subject carries
the subject's identity on which the rest depends (an extended embedding), and the middle MLPs
each add a little.

Measured by the claims below (n=64, seed 0; Fieller's 95% interval over the prompts): see the
comments at each group.  Values and verdicts under ``--claims-seed`` 0..4 (the patching claims
draw 64 of the 115 facts, the faithfulness claims take all of them with other corrupt subjects):

    claim (threshold)                    seed 0       seed 1       seed 2       seed 3       seed 4
    m0 at the subject (>= 0.75)           0.998 pass   0.998 pass   0.998 pass   0.999 pass   0.999 pass
    m1-m14, subject on (>= 0.1)           0.382 pass   0.360 pass   0.374 pass   0.364 pass   0.360 pass
    m1-m14, subject on (<= 0.75)          0.382 pass   0.360 pass   0.374 pass   0.364 pass   0.360 pass
    m0-m14 at the last (<= 0.75)          0.005 pass   0.007 pass   0.010 pass   0.012 pass   0.009 pass
    a23 at the last (>= 0.75)             0.962 pass   0.967 pass   0.969 pass   0.969 pass   0.952 pass
    a0-a22 at the last (<= 0.75)          0.033 pass   0.036 pass   0.042 pass   0.034 pass   0.041 pass
    m22-m29 at the last (>= 0.1)          0.461 pass   0.465 pass   0.459 pass   0.461 pass   0.469 pass
    8 random MLPs (<= 0.1)                0.003 pass  -0.001 pass   0.008 pass   0.011 pass   0.009 pass
    random attention layer (<= 0.1)       0.000 pass   0.001 pass   0.001 pass  -0.002 pass   0.001 pass
    faithful: MLPs + a21-a29 (>= 0.75)    0.819 pass   0.830 pass   0.831 pass   0.811 pass   0.813 pass
    faithful: patched parts (<= 0.75)     0.565 pass   0.570 pass   0.553 pass   0.558 pass   0.554 pass

Thresholds follow ``circuits/README.md``: 0.75 for a set found
on a real model, at most 0.75 for a wrong one, 0.1 for a component that matters, at most 0.1 for
random components.

Positions: a set of nodes is patched at a suffix of each prompt (the subject and every later
token, or the last token).  When these claims were measured the engine refused several nodes at
some positions only, with unpatched positions after patched ones; it now recomputes a patched
node where the positions leave it unpatched (interventions/compile.py), but the claims keep
the suffixes their verdict table was measured with.
"""
from __future__ import annotations

import random

import pytest
import torch

pytestmark = [
    pytest.mark.claim(model="smollm2", task="factual", metric="logit_diff", n=64, seed=0),
    pytest.mark.filterwarnings("ignore:dropping facts whose subject or object is not a single token"),
]

MIDDLE_MLPS = [f"m{layer}" for layer in range(1, 15)]
EARLY_MLPS = ["m0", *MIDDLE_MLPS]
LATE_MLPS = [f"m{layer}" for layer in range(22, 30)]
LATE_ATTENTION = [f"a{layer}" for layer in range(21, 30)]
ALL_MLPS = [f"m{layer}" for layer in range(30)]


def subject(task) -> torch.Tensor:
    """(B, T) mask of each prompt's subject token."""
    return torch.arange(task.clean.shape[1])[None, :] == task.features["subject_pos"][:, None]


def from_subject_on(task) -> torch.Tensor:
    """(B, T) mask of the subject and every later token: a suffix of each prompt."""
    return torch.arange(task.clean.shape[1])[None, :] >= task.features["subject_pos"][:, None]


# At the subject: MLPs.  Measured (n=64, seed 0): m0 at the subject 0.998 [0.997, 1.000]; the
# middle MLPs m1-m14 from the subject on 0.382 [0.361, 0.403]; m0-m14 at the last token 0.005
# [-0.003, 0.013].


@pytest.mark.claim(at_least=0.75)
def test_m0_at_the_subject_carries_the_fact(claim):
    """Restoring m0's output at the subject token restores the clean fact."""
    claim.activation_patch(["m0"], positions=subject(claim.task), direction="denoising")


@pytest.mark.claim(at_least=0.1)
def test_the_middle_mlps_at_the_subject_matter(claim):
    """m1-m14, from the subject on, restore a part of the fact without m0."""
    claim.activation_patch(MIDDLE_MLPS, positions=from_subject_on(claim.task), direction="denoising")


@pytest.mark.claim(at_most=0.75)
def test_the_middle_mlps_alone_do_not_carry_the_fact(claim):
    """Wrong: m1-m14 without m0 carry the fact (they add to the subject's identity m0 writes)."""
    claim.activation_patch(MIDDLE_MLPS, positions=from_subject_on(claim.task), direction="denoising")


@pytest.mark.claim(at_most=0.75)
def test_early_mlps_at_the_last_token_do_not_carry_the_fact(claim):
    """Wrong: the early and middle MLPs look the fact up at the last token."""
    claim.activation_patch(EARLY_MLPS, positions=-1, direction="denoising")


# At the last token: attention moves the fact there, late MLPs add to it.  Measured (n=64, seed 0):
# a23 0.962 [0.943, 0.981]; a0-a22 0.033 [0.021, 0.045]; m22-m29 0.461 [0.433, 0.486].


@pytest.mark.claim(at_least=0.75)
def test_attention_layer_23_moves_the_fact_to_the_last_token(claim):
    claim.activation_patch(["a23"], positions=-1, direction="denoising")


@pytest.mark.claim(at_most=0.75)
def test_earlier_attention_at_the_last_token_does_not(claim):
    """Wrong: attention layers 0-22 move the fact to the last token."""
    claim.activation_patch([f"a{layer}" for layer in range(23)], positions=-1, direction="denoising")


@pytest.mark.claim(at_least=0.1)
def test_late_mlps_at_the_last_token_matter(claim):
    claim.activation_patch(LATE_MLPS, positions=-1, direction="denoising")


# Negative controls, drawn once (seeded) from the layers the sweeps found idle at the last token.
# Measured (n=64, seed 0): eight random MLPs (m2, m7, m9, m13, m14, m16, m17, m21) 0.003
# [-0.005, 0.011]; one random attention layer (a12) 0.000 [-0.003, 0.004].


@pytest.mark.claim(at_most=0.1)
def test_eight_random_mlps_at_the_last_token_carry_nothing(claim):
    """As many MLPs as m22-m29, drawn from m1-m21."""
    mlps = random.Random(0).sample([f"m{layer}" for layer in range(1, 22)], len(LATE_MLPS))
    claim.activation_patch(mlps, positions=-1, direction="denoising")


@pytest.mark.claim(at_most=0.1)
def test_a_random_attention_layer_at_the_last_token_carries_nothing(claim):
    """One attention layer, as a23, drawn from a0-a20."""
    layer = random.Random(0).choice([f"a{layer}" for layer in range(21)])
    claim.activation_patch([layer], positions=-1, direction="denoising")


# Wang et al.'s faithfulness (every head and MLP outside the circuit mean-ablated over the corrupt
# prompts, at every position; F(C) / F(M)), on all 115 facts (at n=64 the first claim's interval
# reached below 0.75 for one seed of five).  Measured (n=115, seed 0): every MLP with the late
# attention layers a21-a29 0.819 [0.762, 0.882]: mean-ablating the 189 heads of layers 0-20
# costs less than a fifth, the MLPs are all needed; the parts the patching found (m0-m14, a23, m22-m29) 0.565 [0.523, 0.606].  The
# script's step 4 (n=32) says which part is missing: every MLP with a23 alone keeps 0.786
# [0.682, 0.912], without m15-m21 0.578 [0.508, 0.652], although no one of m15-m21 moves more
# than 0.033 when patched alone.
@pytest.mark.claim(at_least=0.75, n=115)
def test_the_mlps_and_late_attention_are_faithful(claim):
    claim.faithfulness(ALL_MLPS + LATE_ATTENTION)


@pytest.mark.claim(at_most=0.75, n=115)
def test_the_patched_parts_alone_are_not_faithful(claim):
    claim.faithfulness(EARLY_MLPS + ["a23"] + LATE_MLPS)


# Completeness and minimality of the same circuit (its 81 heads and 30 MLPs; n=115, seed 0).
# Completeness, the largest gap over ∅ and 3 random K: 0.181 [0.098, 0.253], at K = ∅ (that is
# 1 - faithfulness; the random K's give 0.054, 0.007, 0.002).  With all 115 facts its interval
# straddles the rule's 0.1 bar, so the circuit is claimed neither complete nor incomplete; the
# parts the patching found alone miss 0.435 [0.382, 0.488] (the wrong circuit above).
# Minimality: many of the late heads do nothing for the fact (the weakest component's gap, K = ∅
# only, is 0.000, a28.h6), so the circuit is not minimal, while m0, which carries the subject,
# is necessary in it (0.811 [0.730, 0.903]); three random heads of layers 0-20 added to the
# circuit can each be dropped (0.000 [0.000, 0.004]), the control.  The whole-circuit minimality takes 113 knockout sets (about three minutes on 2
# cores): heavy.
@pytest.mark.claim(at_most=0.1, n=115, heavy=True)
def test_the_mlps_and_late_attention_are_not_minimal(claim):
    claim.minimality(ALL_MLPS + LATE_ATTENTION, k=0)


@pytest.mark.claim(at_least=0.1, n=115)
def test_m0_is_necessary_in_the_circuit(claim):
    claim.minimality(ALL_MLPS + LATE_ATTENTION, k=0, components=["m0"])


@pytest.mark.claim(at_most=0.1, n=115)
def test_random_heads_added_to_the_circuit_can_each_be_dropped(claim):
    """Control: three random heads of layers 0-20 added to the circuit, tested as its components."""
    added = random.Random(0).sample([f"a{layer}.h{head}" for layer in range(21) for head in range(9)], 3)
    claim.minimality(ALL_MLPS + LATE_ATTENTION + added, k=0, components=added)
