"""Discovery: candidate circuits from a task (attribution scores, exact pruning, claims written out).

Sits beside interventions, above the engine: it never imports claims/, the session or the plugin.
"""
from .attribution import Attribution, attribute
from .prune import EdgeSet, PrunedGraph, prune
from .write import Discovery, discover, write_claims

__all__ = ["Attribution", "Discovery", "EdgeSet", "PrunedGraph", "attribute", "discover", "prune", "write_claims"]
