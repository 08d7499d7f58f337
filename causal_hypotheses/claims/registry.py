"""The model and task registries: what a claim marker's ``model=`` and ``task=`` name."""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping

from ..errors import ClaimSpecError


@dataclass(frozen=True)
class ModelBundle:
    """What a model loader may return instead of a bare model: the model plus what tasks need.

    task_options: per task name, keyword hints for its builder, e.g.
        ``{"induction": {"half_len": 24, "vocab_size": 64, "bos": 0}}``.
    """

    model: Any
    tokenizer: Any = None
    task_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class LoadedModel:
    """A registered model once loaded: its engine, tokenizer (or None) and task hints."""

    name: str
    engine: Any
    tokenizer: Any = None
    task_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def config(self):
        return self.engine.model.config

    @property
    def vocab_size(self) -> int:
        return int(self.config.vocab_size)


@dataclass(frozen=True)
class _Entry:
    loader: Callable
    description: str
    builtin: bool


_MODELS: dict[str, _Entry] = {}
_TASKS: dict[str, _Entry] = {}


def _register(table: dict, kind: str, name: str, function: Callable | None, description: str, replace: bool, builtin: bool = False):
    if not isinstance(name, str) or not name.strip():
        raise ClaimSpecError(f"{kind} name {name!r}: expected a non-empty string")

    def add(fn: Callable) -> Callable:
        if not callable(fn):
            raise ClaimSpecError(f"{kind} {name!r}: expected a function, got {type(fn).__name__}")
        old = table.get(name)
        if old is not None and old.builtin and not replace:
            raise ClaimSpecError(
                f"{kind} {name!r} is built in; pick another name, or pass replace=True to override it"
            )
        table[name] = _Entry(fn, description or (fn.__doc__ or "").strip().split("\n")[0], builtin)
        return fn

    return add if function is None else add(function)


def register_model(name: str, loader: Callable | None = None, *, description: str = "", replace: bool = False):
    """Register ``loader()`` under ``name`` (use as a decorator or call with the loader).

    The loader takes no arguments and returns a ``transformers`` model, an ``Engine``, or a
    :class:`ModelBundle`; the plugin moves it to ``--claims-device``/``--claims-dtype``,
    loads it once per session and shares its engine (and activation cache) between claims.
    Raise :class:`ModelUnavailable` to skip its claims with a reason.  A later registration
    of the same name replaces an earlier one; built-in names need ``replace=True``.
    """
    return _register(_MODELS, "model", name, loader, description, replace)


def register_task(name: str, builder: Callable | None = None, *, description: str = "", replace: bool = False):
    """Register ``builder(model: LoadedModel, n: int, seed: int) -> Task`` under ``name``."""
    return _register(_TASKS, "task", name, builder, description, replace)


def model_names() -> list[str]:
    return sorted(_MODELS)


def task_names() -> list[str]:
    return sorted(_TASKS)


def load_model(name: str, *, device: str = "cpu", dtype: str = "float32") -> LoadedModel:
    """Load a registered model and wrap it in an Engine on ``device`` with ``dtype``."""
    if name not in _MODELS:
        raise ClaimSpecError(f"unknown model {name!r}; registered models: {model_names()} (add one with register_model)")
    import torch

    from ..engine.core import Engine

    loaded = _MODELS[name].loader()
    bundle = loaded if isinstance(loaded, ModelBundle) else ModelBundle(loaded)
    target = getattr(torch, dtype)
    if isinstance(bundle.model, Engine):
        engine = bundle.model
        engine.model.to(device=device, dtype=target)
    else:
        engine = Engine.from_hf(bundle.model.to(device=device, dtype=target))
    options = MappingProxyType({k: MappingProxyType(dict(v)) for k, v in dict(bundle.task_options).items()})
    return LoadedModel(name=name, engine=engine, tokenizer=bundle.tokenizer, task_options=options)


def build_task(name: str, model: LoadedModel, n: int, seed: int):
    """Build a registered task for ``model`` with ``n`` examples."""
    if name not in _TASKS:
        raise ClaimSpecError(f"unknown task {name!r}; registered tasks: {task_names()} (add one with register_task)")
    return _TASKS[name].loader(model, n, seed)
