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


class ClaimSpecError(CausalHypothesesError, ValueError):
    """A ``claim`` marker has unknown arguments or bad values."""


class ModelUnavailable(CausalHypothesesError, RuntimeError):
    """A registered model cannot be loaded on this machine; claims on it are skipped with this reason."""


class ClaimNotMet(CausalHypothesesError, AssertionError):
    """A claim failed or was inconclusive; the message gives value, interval, threshold, n and seed."""

    def __init__(self, message: str, verdict: str) -> None:
        super().__init__(message)
        self.verdict = verdict
