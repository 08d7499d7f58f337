"""Discovery: candidate circuits from a task (attribution scores, exact pruning, claims written out)."""
from .attribution import Attribution, attribute

__all__ = ["Attribution", "attribute"]
