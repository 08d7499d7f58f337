"""Logits that make their engine run when a metric reads them, at the positions and columns it reads.

A sweep hands a metric of your own ``LazyLogits``: a tensor of shape (N, T, V) whose values
do not exist yet.  Indexing it at some positions (``logits[:, -1]``, ``logits[:, -1, ids]``,
``logits[..., 3:5, :]``) runs the engine with ``logit_positions`` set to those positions, so the
engine computes and unembeds only what the metric reads; indexing vocabulary ids too
(``logits[rows, -1, answer]``) computes those columns of the logits alone (``logit_vocab``), and
ids read later at the same positions are unembedded from the run's final residual stream, not
by running again.  Conversions that act on each value alone (``.float()``, ``.double()``,
``.cpu()``, ``.to(dtype or device)``, ``.detach()``) stay lazy: ``logits.float().cpu()[:, -1, ids]``
reads as little as ``logits[:, -1, ids]``.  Any other use (``log_softmax(logits, -1)``,
``logits[0]``, printing) runs it at every position and column.  Either way the metric gets the values an
ordinary run gives (up to float rounding of the smaller products).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .core import as_index

Positions = tuple[int, ...]
Columns = tuple[int, ...]

PARTIAL_RUNS = 2  # runs at some positions per Deferred; a request past them runs every position


class _Made:
    """One run's logits so far: at ``positions`` (None: all), columns ``columns`` (None: all)."""

    def __init__(self, result, positions: Positions | None, columns: Columns | None, values: torch.Tensor) -> None:
        self.result, self.positions, self.columns, self.values = result, positions, columns, values


def _within(wanted: tuple | None, made: tuple | None) -> bool:
    return made is None or wanted is not None and set(wanted) <= set(made)


def _pick(values: torch.Tensor, axis: int, wanted: tuple | None, made: tuple | None) -> torch.Tensor:
    """``values``' entries of ``wanted`` along ``axis``, where the axis holds ``made`` (None: all)."""
    if wanted is None or wanted == made:
        return values
    index = list(wanted) if made is None else [made.index(i) for i in wanted]
    return values.index_select(axis, torch.tensor(index, device=values.device))


class Deferred:
    """One engine run, made on demand: ``logits(positions, columns)`` is (N, P, K), the logits at
    ``positions`` and vocabulary ids ``columns`` (sorted, distinct; None: all), from the run made
    for them, from a run at more positions (unembedding columns it lacks with ``more_columns``),
    or from a new run.  ``runs`` holds the results of the runs made."""

    def __init__(self, run: Callable[[Positions | None, Columns | None], object],
                 more_columns: Callable[[object, Columns | None], torch.Tensor],
                 shape: tuple[int, int, int], dtype: torch.dtype, device: torch.device) -> None:
        self._run = run  # (positions, columns) -> RunResult
        self._more_columns = more_columns  # (RunResult, columns) -> its logits at those columns, counted
        self.shape, self.dtype, self.device = shape, dtype, device
        self.runs: list = []
        self._made: list[_Made] = []

    @property
    def every_position(self) -> bool:
        """Whether some run computed the logits at every position."""
        return any(made.positions is None for made in self._made)

    def logits(self, positions: Positions | None = None, columns: Columns | None = None) -> torch.Tensor:
        made = next((made for made in self._made if _within(positions, made.positions)), None)
        if made is None:
            run_at = positions if positions is not None and len(self._made) < PARTIAL_RUNS else None
            result = self._run(run_at, columns)
            self.runs.append(result)
            made = _Made(result, run_at, columns, self._checked(result.logits, run_at, columns))
            self._made.append(made)
        if not _within(columns, made.columns):
            more = None if columns is None else tuple(sorted(set(columns) - set(made.columns)))
            values = self._checked(self._more_columns(made.result, more), made.positions, more)
            made.values = values if more is None else torch.cat([made.values, values], 2)
            made.columns = None if more is None else made.columns + more
        return _pick(_pick(made.values, 1, positions, made.positions), 2, columns, made.columns)

    def _checked(self, values: torch.Tensor, positions: Positions | None, columns: Columns | None) -> torch.Tensor:
        expected = (self.shape[0], self.shape[1] if positions is None else len(positions),
                    self.shape[2] if columns is None else len(columns))
        if tuple(values.shape) != expected or values.dtype != self.dtype:
            raise RuntimeError(f"the deferred run gave logits {tuple(values.shape)} {values.dtype}, not the "
                               f"{expected} {self.dtype} announced to the metric; please report this")
        return values

    def blocks(self, count: int) -> list["LazyLogits"]:
        """The run's rows in ``count`` equal blocks, each as LazyLogits."""
        size = self.shape[0] // count
        return [LazyLogits(self, slice(k * size, (k + 1) * size)) for k in range(count)]


_METADATA = {
    torch.Tensor.shape.__get__, torch.Tensor.dtype.__get__, torch.Tensor.device.__get__, torch.Tensor.ndim.__get__,
    torch.Tensor.layout.__get__, torch.Tensor.requires_grad.__get__, torch.Tensor.is_cuda.__get__,
    torch.Tensor.dim, torch.Tensor.size, torch.Tensor.numel, torch.Tensor.__len__, torch.Tensor.is_floating_point,
    torch.Tensor.element_size,
}


# Conversions of each value alone (a cast, a copy to another device): they commute with indexing,
# so they are applied to what is read, after it is read.
_ELEMENTWISE = {
    torch.Tensor.float, torch.Tensor.double, torch.Tensor.half, torch.Tensor.bfloat16, torch.Tensor.cpu,
    torch.Tensor.to, torch.Tensor.detach, torch.Tensor.contiguous,
}


class LazyLogits(torch.Tensor):
    """Rows ``rows`` of a :class:`Deferred` run's logits: (n, T, V), computed when read (see the
    module docstring), then converted by ``after`` ((method, args, kwargs), ...: elementwise
    conversions asked for before the read).  Shape, dtype and device are known without running
    anything."""

    @staticmethod
    def __new__(cls, deferred: Deferred, rows: slice, after: tuple = (), dtype=None, device=None):
        n = len(range(deferred.shape[0])[rows])
        return torch.Tensor._make_wrapper_subclass(cls, (n, *deferred.shape[1:]), dtype=dtype or deferred.dtype,
                                                   device=device or deferred.device)

    def __init__(self, deferred: Deferred, rows: slice, after: tuple = (), dtype=None, device=None) -> None:
        self._deferred = deferred
        self._rows = rows
        self._after = after

    def _values(self, positions: Positions | None = None, columns: Columns | None = None) -> torch.Tensor:
        values = self._deferred.logits(positions, columns)[self._rows]
        for method, args, kwargs in self._after:
            values = method(values, *args, **kwargs)
        return values

    def _converted(self, method, args: tuple, kwargs: dict) -> "LazyLogits":
        """This tensor after ``method`` (one of _ELEMENTWISE), still lazy: its dtype and device are
        those ``method`` gives an empty tensor of this one's."""
        with torch._C.DisableTorchFunctionSubclass():
            probe = method(torch.empty(0, dtype=self.dtype, device=self.device), *args, **kwargs)
        return LazyLogits(self._deferred, self._rows, self._after + ((method, args, kwargs),), probe.dtype, probe.device)

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _METADATA:
            with torch._C.DisableTorchFunctionSubclass():
                return func(*args, **kwargs)
        if func in _ELEMENTWISE and args and isinstance(args[0], LazyLogits) \
                and not any(isinstance(value, torch.Tensor) for value in (*args[1:], *kwargs.values())):
            return args[0]._converted(func, tuple(args[1:]), kwargs)
        if func is torch.Tensor.__getitem__ and isinstance(args[0], LazyLogits) and len(args) == 2 and not kwargs:
            this, index = args
            read = index_reads(index, tuple(this.shape))
            if read is not None:
                positions, columns, reindexed = read
                return this._values(positions, columns)[reindexed]
        return func(*_whole(args), **_whole(kwargs))

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):  # reached only past __torch_function__
        return func(*_whole(args), **_whole(kwargs or {}))


def _whole(value):
    """``value`` with every LazyLogits in it (also inside lists, tuples, dicts) computed at every position and column."""
    if isinstance(value, LazyLogits):
        return value._values()
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return type(value)(_whole(item) for item in value)
    if isinstance(value, dict):
        return {key: _whole(item) for key, item in value.items()}
    return value


def index_reads(index, shape: tuple[int, ...]) -> tuple[Positions | None, Columns | None, object] | None:
    """``(positions, columns, reindexed)``: the positions (axis 1) and vocabulary ids (axis 2) that
    ``tensor[index]`` reads of a tensor of ``shape`` (N, T, V), each sorted (None: every one), and
    the index that reads the same values, in the same layout, of the tensor (N, P, K) of those
    positions and columns.  None when it reads every position and column, or its index is one
    this does not follow (None, masks, steps below 1, arrays, nested lists): then the whole
    tensor is computed and torch indexes it as ever.  An axis indexed in a way this does not
    follow is read whole."""
    items = list(index) if isinstance(index, tuple) else [index]
    for item in items:
        if item is None or isinstance(item, (bool, np.bool_)) \
                or (torch.is_tensor(item) or isinstance(item, np.ndarray)) and item.dtype in (torch.bool, torch.uint8, np.bool_):
            return None
    ellipses = [i for i, item in enumerate(items) if item is Ellipsis]  # `is`: == on a tensor compares values
    if len(ellipses) > 1:
        return None
    consumed = len(items) - len(ellipses)
    if consumed > len(shape):
        return None
    if ellipses:
        items[ellipses[0] : ellipses[0] + 1] = [slice(None)] * (len(shape) - consumed)
    read = [None, None]
    for axis in (1, 2):
        if axis < len(items):
            found = _axis_read(items[axis], shape[axis])
            if found is not None:
                read[axis - 1], items[axis] = found
    if read == [None, None]:
        return None
    return read[0], read[1], tuple(items)


def _axis_read(item, size: int) -> tuple[tuple[int, ...], object] | None:
    """``(ids, replacement)``: the indices (sorted, distinct) that ``item`` reads along an axis of
    ``size``, and the item that reads the same of the axis holding those indices alone.  None
    when it reads all of them or is an item this does not follow."""
    single = as_index(item)
    if single is not None:
        if not -size <= single < size:
            return None
        ids = (single % size,)
        replacement = torch.zeros((), dtype=item.dtype, device=item.device) if torch.is_tensor(item) else 0
    elif isinstance(item, slice):
        parts = (item.start, item.stop, item.step)
        bounds = [None if part is None else as_index(part) for part in parts]
        if any(bound is None and part is not None for bound, part in zip(bounds, parts)) \
                or bounds[2] is not None and bounds[2] <= 0:  # torch refuses steps below 1
            return None
        ids = tuple(range(size)[slice(*bounds)])
        if not ids:
            return None
        replacement = slice(None)
    elif torch.is_tensor(item) and not item.dtype.is_floating_point and not item.dtype.is_complex and item.numel():
        if bool(((item < -size) | (item >= size)).any()):
            return None
        wanted = item.remainder(size)
        chosen = torch.unique(wanted)  # sorted
        ids = tuple(int(i) for i in chosen)
        replacement = torch.searchsorted(chosen, wanted).to(item.dtype)
    elif isinstance(item, list) and item and all(as_index(i) is not None and not torch.is_tensor(i) for i in item):
        wanted = [as_index(i) for i in item]
        if not all(-size <= i < size for i in wanted):
            return None
        ids = tuple(sorted({i % size for i in wanted}))
        replacement = [ids.index(i % size) for i in wanted]
    else:
        return None
    if len(ids) == size:
        return None
    return ids, replacement
