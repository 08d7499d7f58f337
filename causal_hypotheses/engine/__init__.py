"""The treeified, path-selecting forward pass, its caches and its drawings."""
from .core import Engine, RunResult, RunStats

__all__ = ["Engine", "RunResult", "RunStats"]
