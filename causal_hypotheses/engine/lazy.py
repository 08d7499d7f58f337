"""Logits that make their engine run when a metric reads them, at the positions it reads.

A sweep hands a metric of your own ``LazyLogits``: a tensor of shape (N, T, V) whose values
do not exist yet.  Indexing it at some positions (``logits[:, -1]``, ``logits[:, -1, ids]``,
``logits[..., 3:5, :]``) runs the engine with ``logit_positions`` set to those positions, so the
engine computes and unembeds only what the metric reads; any other use (``logits.float()``,
``log_softmax(logits, -1)``, ``logits[0]``, printing) runs it at every position.  Either way the
metric gets the values an ordinary run gives (up to float rounding of the smaller products).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .core import as_index

Positions = tuple[int, ...]

PARTIAL_RUNS = 2  # runs at some positions per Deferred; a request past them runs every position


class Deferred:
    """One engine run, made on demand: ``logits(positions)`` is (N, P, V), the logits at
    ``positions`` (sorted, distinct; None: every position), from the run made for them, from
    a run at more positions, or from a new run.  ``runs`` holds the results of the runs made."""

    def __init__(self, run: Callable[[Positions | None], object], shape: tuple[int, int, int], dtype: torch.dtype,
                 device: torch.device) -> None:
        self._run = run  # positions -> RunResult
        self.shape, self.dtype, self.device = shape, dtype, device
        self.runs: list = []
        self._made: dict[Positions | None, torch.Tensor] = {}

    @property
    def every_position(self) -> bool:
        """Whether some run computed the logits at every position."""
        return None in self._made

    def logits(self, positions: Positions | None) -> torch.Tensor:
        if not self._covered(positions):
            run_at = positions if positions is not None and len(self._made) < PARTIAL_RUNS else None
            result = self._run(run_at)
            self.runs.append(result)
            values = result.logits
            expected = self.shape if run_at is None else (self.shape[0], len(run_at), self.shape[2])
            if tuple(values.shape) != expected or values.dtype != self.dtype:
                raise RuntimeError(f"the deferred run gave logits {tuple(values.shape)} {values.dtype}, not the "
                                   f"{expected} {self.dtype} announced to the metric; please report this")
            self._made[run_at] = values
        if None in self._made:
            whole = self._made[None]
            return whole if positions is None else whole[:, list(positions)]
        made, values = next((made, values) for made, values in self._made.items() if set(positions) <= set(made))
        return values if made == positions else values[:, [made.index(p) for p in positions]]

    def _covered(self, positions: Positions | None) -> bool:
        return None in self._made or positions is not None and any(set(positions) <= set(made) for made in self._made)

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


class LazyLogits(torch.Tensor):
    """Rows ``rows`` of a :class:`Deferred` run's logits: (n, T, V), computed when read (see the
    module docstring).  Shape, dtype and device are known without running anything."""

    @staticmethod
    def __new__(cls, deferred: Deferred, rows: slice):
        n = len(range(deferred.shape[0])[rows])
        return torch.Tensor._make_wrapper_subclass(cls, (n, *deferred.shape[1:]), dtype=deferred.dtype,
                                                   device=deferred.device)

    def __init__(self, deferred: Deferred, rows: slice) -> None:
        self._deferred = deferred
        self._rows = rows

    def _values(self, positions: Positions | None = None) -> torch.Tensor:
        return self._deferred.logits(positions)[self._rows]

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _METADATA:
            with torch._C.DisableTorchFunctionSubclass():
                return func(*args, **kwargs)
        if func is torch.Tensor.__getitem__ and isinstance(args[0], LazyLogits) and len(args) == 2 and not kwargs:
            this, index = args
            read = index_positions(index, tuple(this.shape))
            if read is not None:
                positions, reindexed = read
                return this._values(positions)[reindexed]
        return func(*_whole(args), **_whole(kwargs))

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):  # reached only past __torch_function__
        return func(*_whole(args), **_whole(kwargs or {}))


def _whole(value):
    """``value`` with every LazyLogits in it (also inside lists, tuples, dicts) computed at every position."""
    if isinstance(value, LazyLogits):
        return value._values()
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return type(value)(_whole(item) for item in value)
    if isinstance(value, dict):
        return {key: _whole(item) for key, item in value.items()}
    return value


def index_positions(index, shape: tuple[int, ...]) -> tuple[Positions, object] | None:
    """``(positions, reindexed)``: the positions (axis 1) that ``tensor[index]`` reads of a tensor
    of ``shape`` (N, T, ...), sorted, and the index that reads the same values, in the same
    layout, of the tensor (N, P, ...) of those positions.  None when it reads every position,
    or its index is one this does not follow (None, masks, steps below 1, arrays, nested lists):
    then the whole tensor is computed and torch indexes it as ever."""
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
    if len(items) < 2:
        return None
    seq, item = shape[1], items[1]
    single = as_index(item)
    if single is not None:
        if not -seq <= single < seq:
            return None
        positions = (single % seq,)
        items[1] = torch.zeros((), dtype=item.dtype, device=item.device) if torch.is_tensor(item) else 0
    elif isinstance(item, slice):
        parts = (item.start, item.stop, item.step)
        bounds = [None if part is None else as_index(part) for part in parts]
        if any(bound is None and part is not None for bound, part in zip(bounds, parts)) \
                or bounds[2] is not None and bounds[2] <= 0:  # torch refuses steps below 1
            return None
        positions = tuple(range(seq)[slice(*bounds)])
        if not positions:
            return None
        items[1] = slice(None)
    elif torch.is_tensor(item) and not item.dtype.is_floating_point and not item.dtype.is_complex and item.numel():
        if bool(((item < -seq) | (item >= seq)).any()):
            return None
        wanted = item.remainder(seq)
        chosen = torch.unique(wanted)  # sorted
        positions = tuple(int(p) for p in chosen)
        items[1] = torch.searchsorted(chosen, wanted).to(item.dtype)
    elif isinstance(item, list) and item and all(as_index(p) is not None and not torch.is_tensor(p) for p in item):
        wanted = [as_index(p) for p in item]
        if not all(-seq <= p < seq for p in wanted):
            return None
        positions = tuple(sorted({p % seq for p in wanted}))
        items[1] = [positions.index(p % seq) for p in wanted]
    else:
        return None
    if len(positions) == seq:
        return None
    return positions, tuple(items)
