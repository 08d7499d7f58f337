"""Interventions: each compiles to the engine's which/branch."""
from .controls import ControlResult, control, random_like
from .effects import EffectResult, patch_effect
from .hints import Hint, hints
from .interchange import CausalModel, InterchangeResult, interchange_intervention_accuracy
from .logit_attribution import direct_contributions, direct_logit_attribution
from .patching import activation_patch, activation_patch_sweep, path_patch, path_patch_sweep
from .scrubbing import Hypothesis, ScrubResult, scrub
from .tables import HeadTable

__all__ = [
    "CausalModel",
    "ControlResult",
    "EffectResult",
    "HeadTable",
    "Hint",
    "hints",
    "control",
    "direct_contributions",
    "direct_logit_attribution",
    "patch_effect",
    "random_like",
    "Hypothesis",
    "InterchangeResult",
    "ScrubResult",
    "activation_patch",
    "activation_patch_sweep",
    "interchange_intervention_accuracy",
    "path_patch",
    "path_patch_sweep",
    "scrub",
]
