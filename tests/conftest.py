"""Shared fixtures: seeded random GPT-2s (no hub needed) and token batches."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from causal_hypotheses import Engine, random_gpt2

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def subprocesses_import_this_checkout():
    """Python subprocesses (pytester.runpytest_subprocess, pytest-xdist workers, writers) import
    the package from this checkout, like the tests themselves, not from wherever an editable
    install points (another worktree, say)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        yield


@pytest.fixture(scope="session")
def tiny_model():
    # std 0.3 makes attention peaked, so patching one head visibly changes the output.
    return random_gpt2("tiny", seed=1, std=0.3)


@pytest.fixture(scope="session")
def tiny_engine(tiny_model):
    return Engine.from_hf(tiny_model)


@pytest.fixture(scope="session")
def small_model():
    """GPT-2 small's shape (12 layers x 12 heads, d=768, vocab 50257), random weights."""
    return random_gpt2("small", seed=2)


@pytest.fixture(scope="session")
def small_engine(small_model):
    return Engine.from_hf(small_model)


@pytest.fixture
def tiny_tokens():
    generator = torch.Generator().manual_seed(3)
    clean = torch.randint(0, 512, (4, 9), generator=generator)
    corrupt = torch.randint(0, 512, (4, 9), generator=generator)
    return clean, corrupt
