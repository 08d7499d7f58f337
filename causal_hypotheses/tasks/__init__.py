"""Prompt datasets with clean and corrupt versions and answers."""
from .base import Task
from .factual import factual
from .greater_than import greater_than, greater_than_year_tokens
from .induction import induction
from .ioi import ioi

__all__ = ["Task", "factual", "greater_than", "greater_than_year_tokens", "induction", "ioi"]
