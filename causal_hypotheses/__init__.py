"""causal_hypotheses: circuit claims about transformers, checked as tests by causal interventions.

Importing this package is cheap: torch and transformers load on first use of a name below.
"""
from __future__ import annotations

from .errors import CausalHypothesesError, InputError, SelectorError, UnknownComponentError
from .graph import ModelGraph, Path

__all__ = [
    "CachedActivations",
    "CausalHypothesesError",
    "CausalModel",
    "Engine",
    "HeadTable",
    "Hypothesis",
    "activation_patch",
    "activation_patch_sweep",
    "attention_svg",
    "direct_contributions",
    "direct_logit_attribution",
    "heatmap_svg",
    "interchange_intervention_accuracy",
    "path_patch",
    "path_patch_sweep",
    "scrub",
    "InputError",
    "ModelGraph",
    "Path",
    "RunResult",
    "SelectorError",
    "UnknownComponentError",
    "gpt2_tokenizer",
    "random_gpt2",
    "render",
]

_LAZY = {
    **{name: ("causal_hypotheses.interventions", name) for name in (
        "CausalModel", "Hypothesis", "activation_patch", "activation_patch_sweep",
        "interchange_intervention_accuracy", "path_patch", "path_patch_sweep", "scrub")},
    "Engine": ("causal_hypotheses.engine.core", "Engine"),
    "CachedActivations": ("causal_hypotheses.engine.activations", "CachedActivations"),
    "direct_contributions": ("causal_hypotheses.interventions.logit_attribution", "direct_contributions"),
    "direct_logit_attribution": ("causal_hypotheses.interventions.logit_attribution", "direct_logit_attribution"),
    "HeadTable": ("causal_hypotheses.interventions.tables", "HeadTable"),
    "attention_svg": ("causal_hypotheses.reports.plots", "attention_svg"),
    "heatmap_svg": ("causal_hypotheses.reports.plots", "heatmap_svg"),
    "RunResult": ("causal_hypotheses.engine.core", "RunResult"),
    "render": ("causal_hypotheses.engine.drawing", "render"),
    "gpt2_tokenizer": ("causal_hypotheses.models", "gpt2_tokenizer"),
    "random_gpt2": ("causal_hypotheses.models", "random_gpt2"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        value = getattr(importlib.import_module(module), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'causal_hypotheses' has no attribute {name!r}")
