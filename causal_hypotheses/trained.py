"""A small trained model with a known circuit: a 2-layer attention-only GPT-2 with induction heads.

The weights ship with the package (``causal_hypotheses/data/induction_2l``) and are produced,
deterministically, by ``scripts/train_induction.py``.  The model reads ``[BOS] + r + r``, where ``r``
is ``HALF_LEN`` uniformly random non-BOS tokens, and predicts the repeated half.

The circuit (attention patterns checked in tests/test_trained_model.py; path patching numbers in
the comments below):

- ``a0.h0`` is a previous-token head: position t attends to t-1 and writes "the previous token
  was x[t-1]".
- ``a0.h3`` attends to t-2 and writes x[t-2].
- ``a1.h0`` .. ``a1.h3`` are induction heads: on the second copy, position t attends to the token
  after the previous occurrence of x[t] and copies it (their values read the embeddings).  They
  match *bigrams*: their keys read ``a0.h0`` and ``a0.h3`` (K-composition: x[k-1], x[k-2]) and
  their queries read the embedding and ``a0.h0`` (Q-composition: x[t], x[t-1]).

The MLPs exist (HF GPT-2 blocks always have one) but have 4 hidden units whose weights and
biases are exactly zero, so every MLP output is exactly zero: the model is attention-only.
Embeddings are untied (``lm_head`` is its own matrix).
"""
from __future__ import annotations

import os

import torch

from .errors import InputError

DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "induction_2l")

VOCAB_SIZE = 64
BOS = 0  # the first token of every sequence; never drawn in the random part
HALF_LEN = 24  # length of the random sequence r in [BOS] + r + r
SEQ_LEN = 1 + 2 * HALF_LEN

# GPT2Config fields of the model (scripts/train_induction.py builds it from these).
CONFIG = dict(
    vocab_size=VOCAB_SIZE,
    n_positions=64,
    n_embd=64,
    n_layer=2,
    n_head=4,
    n_inner=4,
    activation_function="gelu_new",
    resid_pdrop=0.0,
    embd_pdrop=0.0,
    attn_pdrop=0.0,
    bos_token_id=BOS,
    eos_token_id=BOS,
    tie_word_embeddings=False,
)

# The circuit found in the shipped weights (seed 0).  Resampling one path on 64 sequences, with
# the rest clean (engine, second-half loss; clean 0.22, first half 4.15):
#   a0.h0 -> a1 keys 4.02, a0.h0 -> a1 queries 3.58, a0.h3 -> a1 keys 3.54,
#   a0.h0 -> a1 values 0.22, a0.h1 / a0.h2 -> a1 q, k or v 0.22-0.23.
PREVIOUS_TOKEN_HEADS = ("a0.h0",)  # attend to t-1
PREVIOUS_PREVIOUS_TOKEN_HEADS = ("a0.h3",)  # attend to t-2
INDUCTION_HEADS = ("a1.h0", "a1.h1", "a1.h2", "a1.h3")
# Which layer-0 heads each induction head's inputs read (the other layer-0 heads are not used).
INDUCTION_KEY_READS = PREVIOUS_TOKEN_HEADS + PREVIOUS_PREVIOUS_TOKEN_HEADS
INDUCTION_QUERY_READS = PREVIOUS_TOKEN_HEADS


def induction_hypothesis(query_from=("embed", *INDUCTION_QUERY_READS), key_from=INDUCTION_KEY_READS,
                         value_from=("embed",), *, name: str = "induction (Q- and K-composition)", leave_out=()):
    """A Hypothesis in the circuit's shape: each induction head writes to the output, and its
    query, key and value read the example through the given senders (by default the circuit
    found in the weights), less the patterns in ``leave_out``."""
    from .interventions.scrubbing import Hypothesis

    paths = {}
    for head in INDUCTION_HEADS:
        for channel, senders in (("q", query_from), ("k", key_from), ("v", value_from)):
            for sender in senders:
                if (f"{head}.{channel}", sender) not in leave_out:
                    paths[(f"{head}.{channel}", sender)] = None
    return Hypothesis(paths, name=name)


def expected_parameter_shapes() -> dict[str, tuple[int, ...]]:
    """Parameter name -> shape for CONFIG."""
    from .planted import expected_parameter_shapes as shapes_for

    return shapes_for(CONFIG)


def repeated_tokens(batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``(batch, SEQ_LEN)`` LongTensor of ``[BOS] + r + r`` with r uniform over the non-BOS tokens."""
    half = torch.randint(1, VOCAB_SIZE, (batch, HALF_LEN), generator=generator)
    bos = torch.full((batch, 1), BOS, dtype=torch.long)
    return torch.cat([bos, half, half], dim=1)


def induction_model(path: str | None = None, attn_implementation: str = "eager"):
    """The trained 2-layer attention-only induction model (``GPT2LMHeadModel``, eval mode, fp32).

    Loads from the package data directory (or ``path``) without network access and checks
    every parameter's shape and that the MLPs are exactly zero.
    """
    from transformers import GPT2LMHeadModel

    path = DATA_DIR if path is None else path
    missing = [f for f in ("config.json", "model.safetensors") if not os.path.isfile(os.path.join(path, f))]
    if missing:
        raise InputError(
            f"the induction model's files {missing} are missing from {path}; "
            "regenerate them with `python scripts/train_induction.py`"
        )
    model = GPT2LMHeadModel.from_pretrained(
        path, local_files_only=True, attn_implementation=attn_implementation, dtype=torch.float32
    )
    shapes = {name: tuple(p.shape) for name, p in model.named_parameters(remove_duplicate=False)}
    expected = expected_parameter_shapes()
    if shapes != expected:
        wrong = sorted(set(shapes.items()) ^ set(expected.items()))
        raise InputError(f"the induction model in {path} does not have the expected parameters: {wrong[:6]}")
    if model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr():
        raise InputError(f"the induction model in {path} ties lm_head to wte; its weights are untied")
    for block in model.transformer.h:
        for p in (*block.mlp.c_fc.parameters(), *block.mlp.c_proj.parameters()):
            if torch.count_nonzero(p).item():
                raise InputError(f"the induction model in {path} has a nonzero MLP parameter")
    return model.float().eval()
