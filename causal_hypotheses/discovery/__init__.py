"""Discovery: candidate circuits from a task (attribution scores, exact pruning, claims written out)."""
from .attribution import Attribution, attribute
from .prune import EdgeSet, PrunedGraph, prune

__all__ = ["Attribution", "EdgeSet", "PrunedGraph", "attribute", "prune"]
