"""The project's errors: one base class, one subclass per kind of mistake.

Every message names the bad value, what was expected, and how to fix it.
"""
from __future__ import annotations


class CausalHypothesesError(Exception):
    """Base class of every error this package raises on purpose."""


class InputError(CausalHypothesesError, ValueError):
    """Inputs to the engine are malformed (shapes, dtypes, padding)."""


class UnknownComponentError(CausalHypothesesError, ValueError):
    """A component or path name does not exist in the model's graph."""


class SelectorError(CausalHypothesesError, ValueError):
    """`which(path)` returned something other than a valid input selector."""


class PlanTooLargeError(CausalHypothesesError, RuntimeError):
    """The treeified computation grew past the engine's limit on paths."""


class UnsupportedModelError(CausalHypothesesError, ValueError):
    """The model or its configuration is not one the engine can run."""


class PositionError(InputError, UnknownComponentError):
    """``positions=`` is malformed or outside the prompt.

    An InputError; also an UnknownComponentError, which out-of-range positions raised
    before, so that ``except UnknownComponentError`` keeps catching them.
    """
