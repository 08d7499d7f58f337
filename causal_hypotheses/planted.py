"""Small trained GPT-2s with planted, independently verified circuits (one synthetic task each).

The weights ship with the package (``causal_hypotheses/data/<dir>``) and are produced,
deterministically, by ``scripts/train_planted.py NAME``.  The tasks are in tasks/planted.py.
What each model does is measured on the unmodified HF model with attention patterns and forward
hooks, in the training script and again in tests/test_planted.py; the constants below name the
components those checks found.

- ``prev-token-1l``: 1 layer, 4 heads, attention only.  Output at t is the token at t - 1.
  One previous-token head carries it (PREV_TOKEN_HEAD).
- ``marker-2l``: 2 layers, 4 heads each, attention only.  Predict the token after the first
  marker.  A layer-0 head (MARKER_PREV_HEAD) attends from m + 1 to the marker and writes that
  into position m + 1; two layer-1 movers (MARKER_MOVER_HEADS, the first the main one) read it
  with their keys (K-composition) and copy the token there (their values read the token and,
  a little, the layer-0 head).
- ``modsum-1l``: 1 layer, 4 heads and an MLP.  [bos, a, b] -> (a + b) mod p.  Two heads
  (MODSUM_MOVER_HEADS, the first the main one) bring a (mixed with b) to b's position; the MLP
  (``m0``) and the direct paths to the logits compute the sum together.

The heads outside these circuits write almost nothing: training priced each head's share of its
layer's output (scripts/train_planted.py).  Attention-only models keep HF's MLP with 4 hidden units whose weights and biases are exactly zero
(checked on load), so every MLP output is exactly zero.  Embeddings are untied.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch

from .errors import InputError

DATA_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
BOS = 0


@dataclass(frozen=True)
class Planted:
    """One planted model: its registry name, data directory, GPT2Config fields, task and task options."""

    name: str
    directory: str
    config: dict
    task: str
    task_options: dict = field(default_factory=dict)
    attention_only: bool = True

    @property
    def path(self) -> str:
        return os.path.join(DATA_ROOT, self.directory)


def _config(vocab_size: int, n_positions: int, n_layer: int, n_head: int, n_embd: int = 32, n_inner: int = 4) -> dict:
    return dict(vocab_size=vocab_size, n_positions=n_positions, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
                n_inner=n_inner, activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                bos_token_id=BOS, eos_token_id=BOS, tie_word_embeddings=False)


SEQ_LEN = 16
MODSUM_P = 11
PLANTED = {
    "prev-token-1l": Planted("prev-token-1l", "prev_token_1l", _config(32, SEQ_LEN, 1, 4), "previous_token",
                             {"seq_len": SEQ_LEN, "vocab_size": 32}),
    "marker-2l": Planted("marker-2l", "marker_2l", _config(32, SEQ_LEN, 2, 4), "marker",
                         {"seq_len": SEQ_LEN, "vocab_size": 32}),
    "modsum-1l": Planted("modsum-1l", "modsum_1l", _config(2 * MODSUM_P + 1, 4, 1, 4, n_inner=128), "modular_sum",
                         {"p": MODSUM_P}, attention_only=False),
}

# What the checks (scripts/train_planted.py, tests/test_planted.py) found in the shipped weights.
PREV_TOKEN_HEAD = "a0.h0"
PREV_TOKEN_OTHER_HEADS = ("a0.h1", "a0.h2", "a0.h3")
MARKER_PREV_HEAD = "a0.h0"
MARKER_MOVER_HEADS = ("a1.h0", "a1.h1")
MARKER_OTHER_HEADS = ("a0.h1", "a0.h2", "a0.h3", "a1.h2", "a1.h3")
MODSUM_MOVER_HEADS = ("a0.h0", "a0.h1")
MODSUM_OTHER_HEADS = ("a0.h2", "a0.h3")


def spec(name: str) -> Planted:
    if name not in PLANTED:
        raise InputError(f"unknown planted model {name!r}; the planted models are {sorted(PLANTED)}")
    return PLANTED[name]


def expected_parameter_shapes(config: dict) -> dict[str, tuple[int, ...]]:
    """Parameter name -> shape for a GPT2Config's fields (untied embeddings)."""
    d, inner, vocab = config["n_embd"], config["n_inner"], config["vocab_size"]
    shapes = {"transformer.wte.weight": (vocab, d), "transformer.wpe.weight": (config["n_positions"], d),
              "transformer.ln_f.weight": (d,), "transformer.ln_f.bias": (d,), "lm_head.weight": (vocab, d)}
    for layer in range(config["n_layer"]):
        p = f"transformer.h.{layer}."
        shapes.update({
            p + "ln_1.weight": (d,), p + "ln_1.bias": (d,),
            p + "attn.c_attn.weight": (d, 3 * d), p + "attn.c_attn.bias": (3 * d,),
            p + "attn.c_proj.weight": (d, d), p + "attn.c_proj.bias": (d,),
            p + "ln_2.weight": (d,), p + "ln_2.bias": (d,),
            p + "mlp.c_fc.weight": (d, inner), p + "mlp.c_fc.bias": (inner,),
            p + "mlp.c_proj.weight": (inner, d), p + "mlp.c_proj.bias": (d,),
        })
    return shapes


def mlp_parameters(model):
    """The MLP weights and biases of every block (zero in an attention-only planted model)."""
    return [p for block in model.transformer.h for p in (*block.mlp.c_fc.parameters(), *block.mlp.c_proj.parameters())]


def planted_model(name: str, path: str | None = None, attn_implementation: str = "eager"):
    """The planted model ``name`` (``GPT2LMHeadModel``, eval mode, fp32), loaded offline from the
    package data (or ``path``); checks its parameter shapes, untied embeddings and, for the
    attention-only models, that the MLPs are exactly zero."""
    from transformers import GPT2LMHeadModel

    planted = spec(name)
    path = planted.path if path is None else path
    missing = [f for f in ("config.json", "model.safetensors") if not os.path.isfile(os.path.join(path, f))]
    if missing:
        raise InputError(f"the {name} model's files {missing} are missing from {path}; "
                         f"regenerate them with `python scripts/train_planted.py {name}`")
    model = GPT2LMHeadModel.from_pretrained(path, local_files_only=True, attn_implementation=attn_implementation,
                                            dtype=torch.float32)
    shapes = {key: tuple(p.shape) for key, p in model.named_parameters(remove_duplicate=False)}
    expected = expected_parameter_shapes(planted.config)
    if shapes != expected:
        wrong = sorted(set(shapes.items()) ^ set(expected.items()))
        raise InputError(f"the {name} model in {path} does not have the expected parameters: {wrong[:6]}")
    if model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr():
        raise InputError(f"the {name} model in {path} ties lm_head to wte; its weights are untied")
    if planted.attention_only and any(torch.count_nonzero(p).item() for p in mlp_parameters(model)):
        raise InputError(f"the {name} model in {path} has a nonzero MLP parameter; it is attention-only")
    return model.float().eval()
