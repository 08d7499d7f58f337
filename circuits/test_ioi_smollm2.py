"""IOI in SmolLM2-135M-Instruct: the circuit found by this project's own path-patching sweeps.

`scripts/find_ioi_circuit.py` follows Wang et al. (2022) on ABC-corrupted IOI prompts
(metric: logit difference, indirect object minus subject, at the last position):

1. every head -> the logits: the heads whose direct path moves the answer most are the
   name movers a23.h3 (-1.83 of a clean 4.32 when patched), a29.h1 (-1.08), a23.h0 (-0.91),
   a23.h1 (-0.53);
2. every earlier head -> the name movers' queries: a20.h0 (-0.73) and a19.h2 (-0.54) stand
   out (next: -0.08), the S-inhibition heads that tell the name movers which name not to copy.

The claims below scrub (Chan et al. 2022, independent resampling): the named paths read the
prompt itself, every input the hypothesis leaves out reads its own random IOI prompt (other
names), and the fraction of the logit difference recovered must clear the threshold on its
whole 95% interval (Fieller's, over the prompts' templates, the independent unit).  Measured
(2 draws, seed 0): name movers 0.930 [0.853, 1.033] (n=96); queries only through S-inhibition
0.956 [0.895, 1.031] (n=192); four random heads 0.008 [-0.011, 0.028] (n=48).  At n=48 the two
circuit scrubs were inconclusive under some seeds (name movers 0.888 [0.739, 1.039] at seed 2):
within each template the prompts' values vary, so these claims take more prompts; every verdict
under seeds 0-4 is in circuits/findings/verdicts.md.  Thresholds follow the rule of
``circuits/README.md``: 0.75 for a circuit found on a real model, 0.1 for random heads.

The rest of the circuit, found by the same script's later sweeps (induction, duplicate-token and
previous-token heads feeding the S-inhibition heads, negative name movers, their backup
behaviour), and the whole circuit's faithfulness, completeness and minimality follow below;
``circuits/findings/ioi-smollm2/README.md`` reads them as a paper section.
"""
from __future__ import annotations

import random

import pytest

from causal_hypotheses import CausalModel, Hypothesis

NAME_MOVERS = ["a23.h3", "a29.h1", "a23.h0", "a23.h1"]
NEGATIVE_NAME_MOVERS = ["a24.h4", "a29.h0"]
S_INHIBITION = ["a20.h0", "a19.h2"]
INDUCTION = ["a17.h4", "a18.h6"]
DUPLICATE_TOKEN = ["a14.h3", "a8.h1"]
PREVIOUS_TOKEN = ["a16.h0", "a11.h8", "a16.h5"]
CIRCUIT = NAME_MOVERS + NEGATIVE_NAME_MOVERS + S_INHIBITION + INDUCTION + DUPLICATE_TOKEN + PREVIOUS_TOKEN
OUTSIDE = [f"a{l}.h{h}" for l in range(30) for h in range(9) if f"a{l}.h{h}" not in CIRCUIT]

pytestmark = pytest.mark.claim(model="smollm2", task="ioi", metric="logit_diff", n=48, seed=0, draws=2)


def _queries_via_s_inhibition(feature, name):
    """Name movers' keys and values read the prompt; their queries read it only through the
    S-inhibition heads, from a prompt that agrees on ``feature`` (None: the prompt itself)."""
    paths = {}
    for head in NAME_MOVERS:
        paths[(f"{head}.k",)] = None
        paths[(f"{head}.v",)] = None
        for sender in S_INHIBITION:
            paths[(f"{head}.q", sender)] = feature
    return Hypothesis(paths, name=name)


@pytest.mark.claim(n=96, at_least=0.75)
def test_name_movers_and_their_inputs_carry_the_answer(claim):
    """The four name movers' direct paths, with everything that feeds them, recover the logit difference."""
    claim.scrub(Hypothesis({(head,): None for head in NAME_MOVERS}, name="name movers"))


@pytest.mark.claim(n=192, at_least=0.75)
def test_name_mover_queries_come_through_s_inhibition(claim):
    """Refined: the name movers' queries read the prompt only through the two S-inhibition heads."""
    claim.scrub(_queries_via_s_inhibition(None, "name movers, queries via S-inhibition"))


@pytest.mark.claim(at_most=0.1)
def test_four_random_heads_carry_little(claim):
    """Negative control: four heads drawn (seeded) from layers other than the circuit's."""
    outside = [f"a{l}.h{h}" for l in range(30) for h in range(9) if l not in (19, 20, 22, 23, 29)]
    heads = random.Random(0).sample(outside, len(NAME_MOVERS))
    claim.scrub(Hypothesis({(head,): None for head in heads}, name="four random heads"))


# Patching claims (noising: the clean run reads the patched components from the corrupt, ABC
# prompts; the fraction of the logit difference's change they move).  Measured (n=48, seed 0):
# the name movers' direct paths to the logits 0.939 [0.861, 1.014]; the S-inhibition heads into
# the name movers' queries 0.300 [0.244, 0.359]; four random heads at the last position
# 0.000 [-0.005, 0.006].  Rule (circuits/README.md): 0.75 for a circuit's output paths, 0.1 (the
# control bar) for a component claimed to lie on a path, 0.1 at most for random heads.


@pytest.mark.claim(at_least=0.75)
def test_name_movers_direct_paths_carry_the_change(claim):
    """Path patching: the name movers' direct paths to the logits carry the corruption's effect."""
    claim.path_patch(NAME_MOVERS, ["out"])


@pytest.mark.claim(at_least=0.1)
def test_s_inhibition_heads_reach_the_name_mover_queries(claim):
    """Path patching: the S-inhibition heads' direct paths into the name movers' queries."""
    claim.path_patch(S_INHIBITION, [f"{head}.q" for head in NAME_MOVERS])


@pytest.mark.claim(at_most=0.1)
def test_four_random_heads_carry_none_of_the_change(claim):
    """Negative control: activation patching four heads outside the circuit at the last position."""
    outside = [f"a{l}.h{h}" for l in range(30) for h in range(9) if l not in (19, 20, 22, 23, 29)]
    claim.activation_patch(random.Random(1).sample(outside, len(NAME_MOVERS)), positions=[-1])


# Interchange interventions (Geiger et al.): the causal model says the answer is the indirect
# object's name.  Patching attention at the last position from another prompt (other names)
# should make the model say that prompt's indirect object.  Measured (48 pairs, seed 0): every
# head of layers 22-29 0.896 [0.778, 0.955]; the four name movers alone 0.188 [0.102, 0.319]
# (more heads than the four write the name); the S-inhibition heads 0.021 [0.004, 0.109],
# although patching them changes 38% of the predictions: they say which name not to copy, not
# which name to say.  (Four random heads of early layers never change a prediction: no-effect,
# so they cannot serve as a control here.)  Rule (circuits/README.md): 0.75 for a found
# alignment, under 0.75 for a wrong one.
IO = CausalModel({"io": lambda f: f["io"]}, output=lambda v: v["io"], name="IOI: say the indirect object")
LATE_ATTENTION = [f"a{layer}" for layer in range(22, 30)]


@pytest.mark.claim(at_least=0.75)
def test_late_attention_carries_the_indirect_objects_name(claim):
    claim.iia(IO, "io", LATE_ATTENTION, positions=[-1])


@pytest.mark.claim(at_most=0.75)
def test_s_inhibition_heads_do_not_carry_the_name(claim):
    claim.iia(IO, "io", S_INHIBITION, positions=[-1])


# Wang et al.'s faithfulness, every other head mean-ablated over the ABC prompts of the same
# template: the six heads found so far keep 0.174 [-0.051, 0.379] of the logit difference
# (F(C)/F(M), over templates).  They are not the whole circuit: with everything else knocked out
# the S-inhibition heads have nothing to read (minimality: a20.h0's best gap 0.008), as Wang et
# al.'s duplicate-token and induction heads are missing.  Issue 14 looks for the rest.
@pytest.mark.claim(at_most=0.75)
def test_name_movers_and_s_inhibition_alone_are_not_the_whole_circuit(claim):
    claim.faithfulness(NAME_MOVERS + S_INHIBITION)


# The same incompleteness by the other two criteria.  Completeness (∅ and 3 random subsets K):
# knocking out the rest costs the six heads 0.826 [0.545, 1.145] of F(M) more than it costs the
# model.  Minimality (∅ and one random K per head): the name movers matter (a23.h3 0.664, a23.h0
# 0.285, a23.h1 0.283, a29.h1 0.118), the S-inhibition heads do not (a20.h0 0.008, a19.h2 0.010):
# without the heads upstream of them they have nothing to pass on.  So the weakest gap is
# 0.008 [0.000, 0.020], and the claim is that the circuit is not yet minimal in Wang et al.'s sense.
@pytest.mark.claim(at_least=0.1)
def test_the_six_heads_are_incomplete(claim):
    claim.completeness(NAME_MOVERS + S_INHIBITION, k=3)


@pytest.mark.claim(at_most=0.1)
def test_s_inhibition_heads_are_idle_without_their_inputs(claim):
    claim.minimality(NAME_MOVERS + S_INHIBITION, k=1)




# The rest of the circuit (sweeps 3-6 of scripts/find_ioi_circuit.py; numbers in
# circuits/findings/ioi-smollm2/README.md).  Measured (n=48, seed 0) unless said otherwise.
#
# What the S-inhibition heads tell the name movers, in Chan et al.'s style: the name movers'
# queries read the S-inhibition heads run on another prompt that agrees with this one only on the
# order of the names (ABBA or BABA: whether the repeated name came first), with other names,
# template, place and object: 0.959 [0.886, 1.051], as much as with the prompt itself (0.956).
# Agreeing on the template instead (same wording, names and order drawn afresh, so the order
# agrees half the time) recovers 0.547 [0.489, 0.604].  So their output says which of the two
# names repeats, by its position.  n=192 for the three: at n=48 the template version gave 0.663
# [0.541, 0.790] under --claims-seed 1 and the order version 0.836 [0.717, 0.982] under seed 3,
# both inconclusive; at n=192 every seed 0-4 decides (circuits/findings/verdicts.md).
@pytest.mark.claim(n=192, at_least=0.75)
def test_s_inhibition_output_carries_which_name_repeats(claim):
    """Refined: the S-inhibition heads' output matters only through the order of the names."""
    claim.scrub(_queries_via_s_inhibition("order", "queries via S-inhibition, agreeing on the order"))


@pytest.mark.claim(n=192, at_most=0.75)
def test_s_inhibition_output_is_not_the_wording(claim):
    """Wrong: the S-inhibition heads' output carries the template (the wording), not the order."""
    claim.scrub(_queries_via_s_inhibition("template", "queries via S-inhibition, agreeing on the template"))


# Induction (a17.h4, a18.h6: from S2 they attend to the token after S1) and duplicate-token
# heads (a14.h3, a8.h1: from S2 to S1) write into the S-inhibition heads' values: 0.268 [0.217,
# 0.332] of the change; into their queries 0.005 [0.002, 0.007] (the wrong channel).
@pytest.mark.claim(at_least=0.1)
def test_induction_and_duplicate_heads_reach_s_inhibition_values(claim):
    claim.path_patch(INDUCTION + DUPLICATE_TOKEN, [f"{head}.v" for head in S_INHIBITION])


@pytest.mark.claim(at_most=0.1)
def test_induction_and_duplicate_heads_do_not_reach_s_inhibition_queries(claim):
    """Wrong channel: the same heads into the S-inhibition heads' queries."""
    claim.path_patch(INDUCTION + DUPLICATE_TOKEN, [f"{head}.q" for head in S_INHIBITION])


# The previous-token head a16.h0 (from the token after S1 it attends to S1: 0.90) feeds the
# induction heads' keys (K-composition).  Its input differs only when the names before the
# second mention differ, so these claims run on `ioi_abc` (all three names replaced).
@pytest.mark.claim(task="ioi_abc", at_least=0.1)
def test_previous_token_head_reaches_the_induction_keys(claim):
    claim.path_patch(PREVIOUS_TOKEN[:1], [f"{head}.k" for head in INDUCTION])


@pytest.mark.claim(task="ioi_abc", at_most=0.1)
def test_previous_token_head_does_not_reach_the_induction_values(claim):
    """Wrong channel: the same head into the induction heads' values."""
    claim.path_patch(PREVIOUS_TOKEN[:1], [f"{head}.v" for head in INDUCTION])


# Negative name movers a24.h4 and a29.h0 write against the answer (a24.h4 attends to the
# indirect object, 0.67, and lowers its logit): their direct paths move -0.384 [-0.457, -0.304]
# of the change.  With the name movers knocked out their direct effect rises (a24.h4 from -0.80
# to +0.63): they suppress what the name movers predict (copy suppression), the backup behaviour.
@pytest.mark.claim(at_most=-0.1)
def test_negative_name_movers_work_against_the_answer(claim):
    claim.path_patch(NEGATIVE_NAME_MOVERS, ["out"])


# The whole circuit by Wang et al.'s faithfulness: the 15 heads above (negative name movers
# included, as in Wang et al.), every other head mean-ablated over the corrupt prompts of the same
# template.  n=96, because the interval resamples the 12 templates and needs enough prompts of
# each: 0.900 [0.831, 0.978] (seeds 1-4: 0.950, 0.874, 0.892, 0.969, every lower bound above
# 0.78).  Wang et al.'s GPT-2 circuit keeps 87%.  Without the negative name movers the 13 heads
# keep 1.215 (more than the model: the heads that push against the answer are knocked out too).
# Negative control: 15 random heads from outside the circuit (seeded).
@pytest.mark.claim(n=96, at_least=0.75)
def test_the_whole_circuit_is_faithful(claim):
    claim.faithfulness(CIRCUIT)


@pytest.mark.claim(n=96, at_most=0.1)
def test_fifteen_random_heads_are_not_a_circuit(claim):
    claim.faithfulness(random.Random(0).sample(OUTSIDE, len(CIRCUIT)))


# Completeness and minimality of the 15 heads (seed 0; heavy: one to five minutes each on a 2-core
# machine, so they run under --claims-profile thorough or with --claims-heavy=run, as CI does).
# Completeness, the largest gap over ∅, 3 random K and the K below (n=96): 0.306 [0.146, 0.556],
# at K = {a14.h3, a16.h0, a17.h4, a19.h2, a20.h0, a24.h4}: knocking those out of the whole model
# costs far more (to -0.48) than knocking them out of the circuit (1.32), so heads outside it (the
# other layer-23/24 heads that write names) take part when the circuit is damaged.  Minimality,
# the weakest component's best gap over ∅ and one random K (n=48): 0.007 [0.000, 0.017] (a16.h5;
# then a23.h1 0.022, a11.h8 0.026, a14.h3 0.043, a18.h6 0.045, a19.h2 0.046, a23.h0 0.055, a16.h0
# 0.101): the two weaker previous-token heads and one name mover can each be dropped.  Both are
# stated as what they are: by Wang et al.'s criteria at these tolerances the circuit is faithful
# but neither complete nor minimal.
#
# Each with its control.  Completeness: 15 random heads from outside the circuit give 1.123
# [1.012, 1.269], more than three times the circuit's gap; since completeness (K = ∅ among its K)
# is at least 1 - faithfulness, a set that carries nothing misses what the model keeps, and the
# bar is the rule's 0.75 turned around: at least 0.25.  Minimality: the strongest head of four
# classes by the sweeps (name mover a23.h3, negative name mover a24.h4, S-inhibition a20.h0,
# induction a17.h4) is each necessary in the circuit (>= 0.1, the rule's bar for a component that
# matters), while three random heads added to the circuit can each be dropped: 0.000 [0.000,
# 0.000] (<= 0.1).  So "not minimal" is about the circuit's weak heads, not a measure that sees
# nothing.  The necessity claim tries 3 random K per head: the negative name mover's gap is 0.10
# at K = ∅ and 0.22-0.52 at the K's where the name movers it works against remain, so with one
# random K it was inconclusive under --claims-seed 3 (0.101 [0.000, 0.244]).  Three K's per head
# widen the simultaneous intervals (at n=48, seed 2: 0.199 [0.091, 0.276], inconclusive), so the
# claim takes n=96: seeds 0-4 give 0.216, 0.199, 0.211, 0.209, 0.221, every lower bound >= 0.110.
ADDED = random.Random(0).sample(OUTSIDE, 3)


# Incompleteness is shown by one K with a gap: the K the random search found at seed 0 is tried
# under every seed, beside 3 random ones (the interval stays simultaneous over all), with n=96: at
# n=48 with random K's only, --claims-seed 1 drew none as telling (0.218 [0.082, 0.486],
# inconclusive).  With it, n=96: seed 1 0.361 [0.254, 0.516], seed 2 0.276 [0.135, 0.438].
FOUND_K = ["a14.h3", "a16.h0", "a17.h4", "a19.h2", "a20.h0", "a24.h4"]


@pytest.mark.claim(n=96, at_least=0.1, heavy=True)
def test_the_whole_circuit_is_not_complete(claim):
    claim.completeness(CIRCUIT, k=3, subsets=[FOUND_K])


@pytest.mark.claim(n=96, at_least=0.25, heavy=True)
def test_fifteen_random_heads_are_far_from_complete(claim):
    """Control: the same test on 15 random heads from outside the circuit."""
    claim.completeness(random.Random(0).sample(OUTSIDE, len(CIRCUIT)), k=3)


@pytest.mark.claim(at_most=0.1, heavy=True)
def test_the_whole_circuit_is_not_minimal(claim):
    claim.minimality(CIRCUIT, k=1)


@pytest.mark.claim(n=96, at_least=0.1, heavy=True)
def test_the_strongest_head_of_four_classes_is_each_necessary(claim):
    claim.minimality(CIRCUIT, k=3, components=["a23.h3", "a24.h4", "a20.h0", "a17.h4"])


@pytest.mark.claim(at_most=0.1, heavy=True)
def test_random_heads_added_to_the_circuit_can_each_be_dropped(claim):
    """Control: three random heads from outside the circuit, added to it, tested as its components."""
    claim.minimality(CIRCUIT + ADDED, k=1, components=ADDED)
