"""What the pytester-based plugin tests share: the plugin arguments, the claims modules they
run, and the imports that must be loaded before pytester's in-process runs (pytester drops the
modules a run imports when it ends, and torch cannot be imported twice in one process)."""
from __future__ import annotations

import causal_hypotheses.engine.drawing  # noqa: F401
import causal_hypotheses.interventions  # noqa: F401
import causal_hypotheses.models  # noqa: F401
import causal_hypotheses.tasks  # noqa: F401
import graphviz  # noqa: F401
from transformers import GPT2Config, GPT2LMHeadModel, GPT2Tokenizer  # noqa: F401

# Load the plugin by module name; "no:" blocks the entry point, should it be installed too.
PLUGIN = ("-p", "no:causal_hypotheses", "-p", "causal_hypotheses.plugin", "-p", "no:cacheprovider", "--strict-markers")

# Two claims on the trained induction model whose verdicts are certain: every writer recovers
# exactly 1, nothing exactly 0.
TWO_CLAIMS = """
import pytest
from causal_hypotheses import Hypothesis

pytestmark = pytest.mark.claim(model="induction-2l", task="induction", metric="loss", n=8, seed=5)


@pytest.mark.claim(at_least=0.9)
def test_every_writer(claim):
    claim.scrub(Hypothesis({(w,): None for w in claim.engine.graph.writers()}, name="every writer"))


@pytest.mark.claim(at_most=0.1)
def test_nothing(claim):
    claim.scrub(Hypothesis({}, name="nothing"))
"""
