"""Fixtures for the claims: the model they run on, loaded once per session."""
from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def gpt2_engine():
    """GPT-2 small when its weights are on this machine, else a seeded random model of its shape.

    Set CAUSAL_HYPOTHESES_GPT2 to a directory (or a hub name already in the local cache)
    to choose the checkpoint; nothing is downloaded.
    """
    from causal_hypotheses import Engine, random_gpt2
    from causal_hypotheses.errors import InputError

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        return Engine.from_pretrained(os.environ.get("CAUSAL_HYPOTHESES_GPT2", "gpt2"))
    except InputError:
        return Engine.from_hf(random_gpt2("small", seed=0))


@pytest.fixture(scope="session")
def gpt2_tokenizer():
    from causal_hypotheses import gpt2_tokenizer

    return gpt2_tokenizer()
