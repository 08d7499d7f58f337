"""Prompt datasets with clean and corrupt versions and answers."""
from .base import Task

__all__ = ["Task"]
