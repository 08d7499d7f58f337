"""Interventions: each compiles to the engine's which/branch."""
from .patching import activation_patch, activation_patch_sweep, path_patch, path_patch_sweep

__all__ = ["activation_patch", "activation_patch_sweep", "path_patch", "path_patch_sweep"]
