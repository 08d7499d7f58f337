"""A byte-budgeted store of captured activations, keyed by the tokens of each input row.

Rows are the unit of reuse: any later run that needs a row already captured (under the
same model) gathers it instead of running the model again.  Entries are evicted oldest
first when the budget is exceeded, and every eviction is logged and counted.  A request's
result is assembled (copied out of the entries and the fresh capture) before the fresh
rows are stored, so evicting to make room never loses a row that the request reads.
"""
from __future__ import annotations

import logging
import numbers
from collections import OrderedDict
from dataclasses import dataclass, field

import torch

from ..errors import InputError

logger = logging.getLogger("causal_hypotheses.cache")


def _bytes_of(tree) -> int:
    if isinstance(tree, torch.Tensor):
        return tree.numel() * tree.element_size()
    if isinstance(tree, dict):
        return sum(_bytes_of(value) for value in tree.values())
    if isinstance(tree, (list, tuple)):
        return sum(_bytes_of(value) for value in tree)
    return 0


def tree_map(fn, tree, *others):
    """Apply ``fn`` to every tensor of a nested dict/list (and the matching leaves of ``others``)."""
    if isinstance(tree, torch.Tensor):
        return fn(tree, *others)
    if isinstance(tree, dict):
        return {key: tree_map(fn, value, *(o[key] for o in others)) for key, value in tree.items()}
    return [tree_map(fn, value, *(o[i] for o in others)) for i, value in enumerate(tree)]


def _index(tree, rows: torch.Tensor):
    """Select batch rows from every tensor of a nested dict/list of (U, ...) tensors."""
    return tree_map(lambda t: t.index_select(0, rows), tree)


def _concat(trees: list):
    if len(trees) == 1:
        return trees[0]
    return tree_map(lambda *parts: torch.cat(parts), trees[0], *trees[1:])


def check_cache_bytes(value) -> int:
    """``value`` as a byte budget (an int >= 0; numpy integers too), or an InputError saying how to fix it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        hint = f"; e.g. int({value!r})" if isinstance(value, float) and value >= 0 and value == int(value) else ""
        raise InputError(
            f"cache_bytes={value!r}: expected a number of bytes as an int, e.g. 2 * 1024**3 "
            f"(0 disables caching), not a {type(value).__name__}{hint}"
        )
    if value < 0:
        raise InputError(
            f"cache_bytes={value!r}: expected a number of bytes >= 0 as an int, e.g. 2 * 1024**3 (0 disables caching)"
        )
    return int(value)


@dataclass
class _Entry:
    acts: dict
    nbytes: int
    row_keys: list


@dataclass
class CacheStats:
    hits: int = 0  # rows found already captured
    misses: int = 0  # rows that needed a forward pass
    evictions: int = 0  # entries dropped to stay within the budget
    evicted_bytes: int = 0


@dataclass
class ActivationCache:
    """Captured activations for token rows, at most ``budget_bytes`` in total."""

    budget_bytes: int = 2 * 1024**3
    stats: CacheStats = field(default_factory=CacheStats)

    def __post_init__(self) -> None:
        self.budget_bytes = check_cache_bytes(self.budget_bytes)
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        self._rows: dict[bytes, tuple[int, int]] = {}
        self._next_id = 0

    @property
    def nbytes(self) -> int:
        return sum(entry.nbytes for entry in self._entries.values())

    def __len__(self) -> int:
        return len(self._rows)

    def clear(self) -> None:
        self._entries.clear()
        self._rows.clear()

    def activations(self, tokens: torch.Tensor, capture, copy: bool = True) -> tuple[dict, int]:
        """Activations for ``tokens`` (U, T) in row order, and the number of forward passes run.

        ``capture(tokens)`` runs the model on rows that are not cached yet.  The result is
        a fresh copy (the run's working set), assembled before the newly captured rows are
        stored: storing them may evict the entries that held the cached rows.  With ``copy``
        False, a caller that never writes into the result (the engine's runs) gets an
        entry's (or the fresh capture's) own tensors where the rows asked are all of its rows
        in order: no copy of every captured site.
        """
        keys = [row.numpy().tobytes() for row in tokens.cpu()]
        missing = [i for i, key in enumerate(keys) if key not in self._rows]
        self.stats.hits += len(keys) - len(missing)
        self.stats.misses += len(missing)
        forwards = 0
        fresh = None
        if missing:
            fresh = capture(tokens[missing])
            forwards = 1
        # Assemble in the order asked: group consecutive rows that come from one place.
        pieces, where_fresh = [], {i: j for j, i in enumerate(missing)}
        run_source, run_rows = None, []
        for i, key in enumerate(keys):
            if i in where_fresh:
                source, row = ("fresh", where_fresh[i])
            else:
                entry_id, row = self._rows[key]
                self._entries.move_to_end(entry_id)
                source = entry_id
            if source != run_source and run_rows:
                pieces.append((run_source, run_rows))
                run_rows = []
            run_source = source
            run_rows.append(row)
        pieces.append((run_source, run_rows))
        selected = []
        for source, rows in pieces:
            tree = fresh if source == "fresh" else self._entries[source].acts
            size = len(missing) if source == "fresh" else len(self._entries[source].row_keys)
            if not copy and rows == list(range(size)):  # the whole entry, in order: its own tensors
                selected.append(tree)
                continue
            index = torch.tensor(rows, device=tokens.device)
            selected.append(_index(tree, index))
        result = _concat(selected)
        working = _bytes_of(result)
        if self.budget_bytes and working > self.budget_bytes:
            logger.warning(
                "one run reads activations of %d rows (%.1f MB), more than the whole cache budget (%.1f MB); "
                "the run is correct, but its rows cannot all stay cached for the next run: raise cache_bytes "
                "or run smaller batches",
                len(keys), working / 2**20, self.budget_bytes / 2**20,
            )
        if fresh is not None:
            self._store(fresh, [keys[i] for i in missing])
        return result, forwards

    def _store(self, acts: dict, row_keys: list) -> None:
        nbytes = _bytes_of(acts)
        if self.budget_bytes == 0:  # caching disabled: nothing is kept, nothing to report
            return
        if nbytes > self.budget_bytes:
            logger.warning(
                "activations of %d rows (%.1f MB) exceed the cache budget (%.1f MB); used once, not kept",
                len(row_keys), nbytes / 2**20, self.budget_bytes / 2**20,
            )
            return
        while self._entries and self.nbytes + nbytes > self.budget_bytes:
            entry_id, entry = self._entries.popitem(last=False)
            for key in entry.row_keys:
                if self._rows.get(key, (None,))[0] == entry_id:
                    del self._rows[key]
            self.stats.evictions += 1
            self.stats.evicted_bytes += entry.nbytes
            logger.info(
                "evicted activations of %d rows (%.1f MB) to stay within the %.1f MB cache budget",
                len(entry.row_keys), entry.nbytes / 2**20, self.budget_bytes / 2**20,
            )
        entry_id = self._next_id
        self._next_id += 1
        self._entries[entry_id] = _Entry(acts, nbytes, row_keys)
        for row, key in enumerate(row_keys):
            self._rows[key] = (entry_id, row)
