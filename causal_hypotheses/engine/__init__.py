"""The treeified, path-selecting forward pass, its caches and its drawings."""
from .core import Engine, MeanInput, RunResult, RunStats, ZeroInput

__all__ = ["Engine", "MeanInput", "RunResult", "RunStats", "ZeroInput"]
