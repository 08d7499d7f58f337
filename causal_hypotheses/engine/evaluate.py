"""Evaluating a plan on the entries that change.

Every value is a :class:`SparseOverride`: a captured site read for one selector (its
*base*), overridden at the entries (example, position) where the value may differ.  A component
recomputed on a residual stream that differs from the captured one at a few entries is
recomputed at those entries only: a head patched at the last position costs every later
MLP and projection one position per example instead of all of them.  Attention is the
one operation that mixes positions: its output differs from the captured one where the
query changed and from the first changed key or value on (a query can only see earlier
keys), so it runs for the query positions that may change and are read (one span per
layer, from the first such position to the last), over every key up to the last.

Entries are flat indices ``example * T + position``.  Entries that no consumer reads
(see :func:`live_entries`: the other examples of a split, and what no requested logit
position depends on) are skipped everywhere.

When a change covers most entries (every head outside a circuit mean-ablated at every
position, as Wang et al.'s criteria do), per-entry bookkeeping costs more than it saves: a
residual stream whose changes together cover more than ``DENSE_SHARE`` of all its entries
(B * T) is summed in whole (B * T, ...) tensors, with no sorting of entries, and each
component's change (its recomputed value minus the captured one) is computed once, not again
for each later stream that adds it.  A sparse sum adds the changes in float64, from zero, then
the captured stream, and starts from the sum of the stream below it where it can (see
``Evaluator._changes_sum``).
"""
from __future__ import annotations

import torch

from . import ir
from .flops import Costs, Work
from .ir import Op
from .plan import entry_mask

# A sum of changes that together cover more than this share of the entries some consumer reads
# is accumulated densely, in whole (B * T, ...) tensors (Evaluator._dense_sum); below it, at the
# entries that change alone.
DENSE_SHARE = 0.5

# At most this many examples that read one captured row attend as one batch entry in
# Evaluator._attend_shared_keys (its mask is quadratic in them).
SHARED_KEYS_GROUP = 32


class SparseOverride:
    """``base`` (site, selector key) read everywhere except at ``index`` (n,), where the
    value is ``values`` (n, ...).  With ``base`` None the value is unspecified (never read)
    outside ``index``."""

    __slots__ = ("base", "index", "values", "changes")

    def __init__(self, base, index: torch.Tensor, values) -> None:
        self.base, self.index, self.values = base, index, values
        self.changes: dict = {}  # captured site -> (need, the value minus it there); see Evaluator._change


class Evaluator:
    """Evaluates plan nodes in order for one run (see ``Engine.run``).

    ``need`` maps a node id to the (B, T) entries some consumer reads from it (absent:
    all of them; see :func:`live_entries`); a value may be anything elsewhere.
    """

    def __init__(self, adapter, acts: dict, rows_for: dict, planner, need: dict, device, costs: Costs | None = None) -> None:
        self.adapter, self.acts, self.rows_for, self.planner = adapter, acts, rows_for, planner
        self.costs = Costs(adapter) if costs is None else costs
        self.work = Work(self.costs)  # what this run computes (engine/flops.py)
        self.B, self.T = planner.batch, planner.seq
        self.device = device
        self.need = {node_id: entries.to(device) for node_id, entries in need.items()}
        self.no_entries = torch.zeros(0, dtype=torch.long, device=device)
        self._last_sum = None  # (changes, need, entries, their sum): see _changes_sum
        self._last_union = None  # (changes, the entries they list as a (B * T,) mask): see _union
        self._needed_entries: dict[int, tuple] = {}  # id(need) -> (need, entries, examples, positions)
        self._base_rows: dict[tuple, torch.Tensor] = {}  # (selector key, id(need)) -> rows: see _rows_at

    def captured(self, base) -> SparseOverride:
        """The captured ``base`` (site, selector key) with no overrides."""
        return SparseOverride(base, self.no_entries, None)

    # ------------------------------------------------------------ entries
    def _keep(self, index: torch.Tensor, values, need: torch.Tensor | None):
        """The overrides at entries that ``need`` (B, T) lists (all if None)."""
        if need is None or index.numel() == 0:
            return index, values
        keep = need.reshape(-1)[index]
        if bool(keep.all()):  # nothing to drop: no copy
            return index, values
        return index[keep], values[keep]

    def _entries(self, need: torch.Tensor | None) -> torch.Tensor:
        if need is None:
            return torch.arange(self.B * self.T, device=self.device)
        return need.reshape(-1).nonzero().flatten()

    def _examples(self, need: torch.Tensor | None) -> torch.Tensor:
        if need is None:
            return torch.arange(self.B, device=self.device)
        return need.any(1).nonzero().flatten()

    def _within(self, need: torch.Tensor | None, rows: torch.Tensor) -> torch.Tensor:
        """``need`` restricted to the examples in ``rows`` (B,), or the entries in ``rows`` (B, T)."""
        rows = entry_mask(rows.to(self.device), self.T)
        return rows if need is None else need & rows

    def _selection(self, key, index: torch.Tensor):
        """Captured rows and positions that selector ``key`` reads at entries ``index``."""
        rows, positions = self.rows_for[key]
        example, position = index // self.T, index % self.T
        if positions is None:
            return rows[example], position
        return rows[example, position], positions[example, position]

    def base_at(self, base, index: torch.Tensor) -> torch.Tensor:
        """The captured ``base`` (site, selector key) at entries ``index`` (n,): (n, ...)."""
        examples = self._whole_examples(index)
        if examples is not None:  # whole examples: a row gather, much faster than per entry
            return self.dense(self.captured(base), examples).flatten(0, 1)
        site, key = base
        return self._site(site, *self._selection(key, index))

    def _site(self, site, rows: torch.Tensor, positions: torch.Tensor | None) -> torch.Tensor:
        """``adapter.site``, counting the work of the one computed site: a head's output is
        its captured z times the head's rows of the output projection (not part of the floor:
        an ordinary forward computes it inside the captured layer output)."""
        if site[0] == "head_out":
            n = rows.numel() * (self.T if positions is None else 1)
            self.work.add("out", n, n * self.costs.vector, needed=0)
        return self.adapter.site(self.acts, site, rows, positions)

    def _whole_examples(self, index: torch.Tensor) -> torch.Tensor | None:
        """The examples whose entries ``index`` (sorted) lists completely, if it lists nothing else."""
        n = index.numel()
        if n == 0 or n % self.T:
            return None
        grid = index.view(-1, self.T)
        if bool((grid[:, 0] % self.T == 0).all()) and bool((grid == grid[:, :1] + torch.arange(self.T, device=self.device)).all()):
            return grid[:, 0] // self.T
        return None

    def dense(self, patch: SparseOverride, examples: torch.Tensor | None = None) -> torch.Tensor:
        """The value as (B, T, ...) or, for ``examples`` (r,), as (r, T, ...)."""
        count = self.B if examples is None else examples.numel()
        if patch.base is not None:
            site, key = patch.base
            rows, positions = self.rows_for[key]
            if examples is not None:
                rows = rows[examples]
                positions = None if positions is None else positions[examples]
            out = self._site(site, rows, positions)  # a new tensor: written into below
            if patch.index.numel() == 0:
                return out
        else:
            out = patch.values.new_zeros((count, self.T) + tuple(patch.values.shape[1:]))
        if patch.index.numel():
            index, values = patch.index, patch.values
            if examples is not None:
                where = self._local(index, examples)
                keep = where >= 0
                index, values = where[keep], values[keep]
            out.view((count * self.T,) + tuple(out.shape[2:])).index_copy_(0, index, values)
        return out

    def _dense_patch(self, need: torch.Tensor | None, compute) -> SparseOverride:
        """A value computed densely, ``compute(examples) -> (r, T, ...)``, kept where needed."""
        examples = self._examples(need)
        entries = self._entries(need)
        values = compute(examples).flatten(0, 1)
        return SparseOverride(None, entries, values[self._local(entries, examples)])

    def _local(self, index: torch.Tensor, examples: torch.Tensor) -> torch.Tensor:
        """Entries ``index`` as flat indices into (r * T) for ``examples`` (r,); negative for
        entries of other examples."""
        local = torch.full((self.B,), -1, dtype=torch.long, device=self.device)
        local[examples] = torch.arange(examples.numel(), device=self.device)
        return local[index // self.T] * self.T + index % self.T

    # ------------------------------------------------------------ evaluation
    def evaluate(self, node: ir.Node, args: list):
        """The value of ``node`` from its children's values ``args``."""
        return _HANDLERS[node.op](self, node.spec, node, args, self.need.get(node.id))

    # One handler per op: (self, spec, node, child values, needed entries) -> value.
    def _gather(self, spec: ir.Gather, node, args, need):
        return self.captured((spec.site, spec.selector))

    def _masked_delta(self, spec: ir.MaskedDelta, node, args, need):
        return self._change(args[0], (spec.site, spec.base), self._within(need, self.planner.masks[spec.mask].rows))

    def _mix_node(self, spec: ir.Mix, node, args, need):
        return self._mix(self.planner.masks[spec.mask].rows, *args, need)

    def _mlp(self, spec: ir.Mlp, node, args, need):
        layer = spec.layer
        return self._tokenwise(args[0], need, ("resid", "mlp_in", layer), ("mlp_out", layer),
                               lambda x, t: self.adapter.mlp(layer, x[None])[0], "mlp", 1, self.costs.mlp[layer])

    def _proj(self, spec: ir.Proj, node, args, need):
        layer, head, channel = spec.layer, spec.head, spec.channel
        return self._tokenwise(args[0], need, ("resid", "attn_in", layer), ("qkv", layer, head, channel),
                               lambda x, t: self.adapter.ln1_proj(layer, head, channel, x[None], t)[0],
                               "qkv", 1, self.costs.vector)

    def _head_core(self, spec: ir.HeadCore, node, args, need):
        layer, head = spec.layer, spec.head
        return self._tokenwise(args[0], need, ("z", layer), ("head_out", layer, head),
                               lambda z, t: self.adapter.head_from_core(layer, head, z[None])[0],
                               "out", 1, self.costs.vector)

    def _layer_core(self, spec: ir.LayerCore, node, args, need):
        layer = spec.layer
        return self._tokenwise(args[0], need, ("z", layer), ("attn_out", layer),
                               lambda z, t: self.adapter.layer_from_core(layer, z[None])[0],
                               "out", self.costs.n_heads, self.costs.n_heads * self.costs.vector)

    def _core_node(self, spec: ir.Core, node, args, need):
        return self._core(spec.layer, args[0], need)

    def _head_node(self, spec: ir.Head, node, args, need):
        return self._head(spec.layer, spec.head, args, need)

    def _final(self, spec: ir.Final, node, args, need):
        n = self.B * (self.T if spec.positions is None else len(spec.positions))
        self.work.add("unembed", n, n * self.costs.unembedding(spec.vocab))
        return self.adapter.final(self.dense(args[0]), spec.positions, spec.vocab)

    def _delta(self, spec: ir.Delta, node, args, need) -> SparseOverride:
        """The site read by one selector minus by another, at the entries where they differ."""
        site, chosen, base = spec.site, spec.chosen, spec.base
        (rows, positions), (other, other_positions) = self.rows_for[chosen], self.rows_for[base]
        if need is None and positions is None and other_positions is None:  # whole examples: row gathers
            differ = rows != other
            if bool(differ.all()):
                index = self._needed(None)[0]
            else:
                examples = differ.nonzero().flatten()
                rows, other = rows[examples], other[examples]
                index = (examples[:, None] * self.T + torch.arange(self.T, device=self.device)).flatten()
            change = self._site(site, rows, None)  # (r, T, ...), a new tensor: the difference is made in place
            return SparseOverride(None, index, change.sub_(self._site(site, other, None)).flatten(0, 1))
        index, _, position = self._needed(need)
        rows, other = self._rows_at(chosen, need), self._rows_at(base, need, keep=True)
        differ = rows != other
        if not bool(differ.all()):
            index, rows, other, position = index[differ], rows[differ], other[differ], position[differ]
        change = self._site(site, rows, position)  # a new tensor: the difference is made in place
        return SparseOverride(None, index, change.sub_(self._site(site, other, position)))

    def _needed(self, need: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The entries ``need`` lists (sorted), their examples and their positions, (n,) each;
        kept per ``need`` tensor (the nodes that one consumer reads share it, see live_entries)."""
        found = self._needed_entries.get(id(need))
        if found is None:
            entries = self._entries(need)
            found = self._needed_entries[id(need)] = (need, entries, entries // self.T, entries % self.T)  # holds need: its id stays its own
        return found[1:]

    def _rows_at(self, key, need: torch.Tensor | None, keep: bool = False) -> torch.Tensor:
        """The captured row that selector ``key`` reads at each entry ``need`` lists (n,), at
        the entry's own position; kept with ``keep`` (a selector that many nodes read)."""
        found = self._base_rows.get((key, id(need))) if keep else None
        if found is None:
            _, example, position = self._needed(need)
            rows, positions = self.rows_for[key]
            found = rows[example] if positions is None else rows[example, position]
            if keep:
                self._base_rows[(key, id(need))] = found
        return found

    def _rebase(self, patch: SparseOverride, base, need) -> SparseOverride:
        """The same value at the entries ``need`` lists, as overrides of ``base``, a read of
        the same site by another selector: entries where the two selectors read different
        captured rows become overrides too."""
        index, values = self._keep(patch.index, patch.values, need)
        if patch.base == base:
            return SparseOverride(base, index, values)
        entries = self._needed(need)[0]
        differ = self._rows_at(patch.base[1], need, keep=True) != self._rows_at(base[1], need, keep=True)
        if index.numel():  # entries (sorted) that ``index`` (a subset of them) lists already
            listed = torch.zeros(self.B * self.T, dtype=torch.bool, device=self.device)
            listed[index] = True
            differ &= ~listed[entries]
        extra = entries[differ]
        if extra.numel() == 0:
            return SparseOverride(base, index, values)
        parts = [(extra, self.base_at(patch.base, extra))] + ([(index, values)] if index.numel() else [])
        return _joined(base, parts)

    def _change(self, computed: SparseOverride, base, need, exact: bool = True) -> SparseOverride:
        """``computed`` minus the captured ``base`` site, where ``need`` says (``exact`` False:
        maybe also at other entries, for a caller that drops them itself).

        Kept on ``computed``: a component's change enters the residual stream of every later
        layer (each one a sum of the captured stream and every change upstream of it), so an
        MLP's change would otherwise be subtracted again for each of them."""
        known = computed.changes.get(base)
        if known is not None:
            known_need, change = known
            if known_need is need:
                return change
            if known_need is None or need is not None and not bool((need & ~known_need).any()):  # known at more entries
                return change if not exact else SparseOverride(None, *self._keep(change.index, change.values, need))
            wider = None if need is None else need | known_need  # computed again, at both sets of entries
            change = self._compute_change(computed, base, wider)
            computed.changes[base] = (wider, change)
            return change if not exact else SparseOverride(None, *self._keep(change.index, change.values, need))
        change = self._compute_change(computed, base, need)
        computed.changes[base] = (need, change)
        return change

    def _compute_change(self, computed: SparseOverride, base, need) -> SparseOverride:
        if computed.base is not None and computed.base[0] == base[0]:
            rebased = self._rebase(computed, base, need)
            if rebased.index.numel() == 0:
                return SparseOverride(None, rebased.index, None)
            return SparseOverride(None, rebased.index, rebased.values - self.base_at(base, rebased.index))
        captured = self.captured(base)
        return self._dense_patch(need, lambda examples: self.dense(computed, examples) - self.dense(captured, examples))

    def _sum(self, spec: ir.Sum, node, args: list, need) -> SparseOverride:
        """The captured residual (the first term) plus every change (the others)."""
        signs, base = spec.signs, args[0].base
        changes, i = [], 1
        while i < len(args):
            if node.children[i].op in (Op.DELTA, Op.MASKED_DELTA):
                changes.append(args[i])
                i += 1
            else:  # a recomputed component and, with sign -1, its captured value
                assert signs[i] == 1 and signs[i + 1] == -1 and args[i + 1].index.numel() == 0
                changes.append(self._change(args[i], args[i + 1].base, need, exact=False))
                i += 2
        changes = [c for c in changes if c.index.numel()]
        if not changes:
            return args[0]
        union = self._union(changes, need)
        if union.numel() == 0:  # no change where someone reads
            return args[0]
        if union.numel() > DENSE_SHARE * self.B * self.T:  # a whole tensor is read and written: worth it when most entries change
            return self._dense_sum(base, changes, union)
        captured = self.base_at(base, union)
        # captured is a new tensor (a gather): the float64 sum is added into it in place, in float64
        # and rounded once to its dtype, with no float64 copy of the stream
        return SparseOverride(base, union, captured.add_(self._changes_sum(changes, union, need)))

    def _changes_sum(self, changes: list[SparseOverride], union: torch.Tensor, need) -> torch.Tensor:
        """The sum of ``changes`` at the entries ``union`` (sorted; every needed entry that some
        change lists), (len(union), ...) in float64: each entry's changes added in order, from zero
        (float64 keeps the sum from depending on how it was split; the stream is rounded once,
        when the captured stream is added).

        The residual stream of a layer sums every change upstream of it, those of the stream
        before it and one or two more; so the last sum is kept and a sum whose first changes are
        its changes (and that needs no entry it did not) starts from it and adds the rest: the
        same additions in the same order (so the same numbers), not each upstream change again
        for every later layer."""
        last, start = self._last_sum, 0
        if last is not None:
            seen, seen_need, seen_union, seen_total = last
            if (_begins_with(changes, seen)
                    and (seen_need is None or need is not None and not bool((need & ~seen_need).any()))):
                start = len(seen)
        if start:
            if seen_union.numel() == union.numel() and torch.equal(seen_union, union):
                total = seen_total  # only _last_sum holds it, and it is replaced below: added to in place
            else:  # the entries of the last sum that this one needs; the others start from zero
                total = seen_total.new_zeros((union.numel(),) + tuple(seen_total.shape[1:]))
                where = torch.searchsorted(union, seen_union).clamp(max=union.numel() - 1)
                inside = union[where] == seen_union
                total.index_copy_(0, where[inside], seen_total[inside])
        else:
            total = None
        # Consecutive changes at disjoint entries (one per block of a sweep, say) are added in
        # one index_add_: no entry gets two of them, so each entry's additions keep their order.
        pending: list[tuple[torch.Tensor, torch.Tensor]] = []
        taken = torch.zeros(union.numel(), dtype=torch.bool, device=self.device)

        def flush(total):
            if pending:
                where = pending[0][0] if len(pending) == 1 else torch.cat([w for w, _ in pending])
                values = pending[0][1] if len(pending) == 1 else torch.cat([v for _, v in pending])
                if total is None:
                    total = torch.zeros((union.numel(),) + tuple(values.shape[1:]), dtype=torch.float64, device=self.device)
                total.index_add_(0, where, values.double())
                pending.clear()
                taken.zero_()
            return total

        for change in changes[start:]:
            index, values = self._keep(change.index, change.values, need)
            if index.numel() == 0:
                continue
            if index.numel() == union.numel() and bool((index[1:] > index[:-1]).all()):
                total = flush(total)
                if total is None:
                    total = torch.zeros((union.numel(),) + tuple(values.shape[1:]), dtype=torch.float64, device=self.device)
                total += values  # at every entry of the union, in its order: a plain add
                continue
            where = torch.searchsorted(union, index)
            if bool(taken[where].any()):
                total = flush(total)
            taken[where] = True
            pending.append((where, values))
        total = flush(total)
        self._last_sum = (changes, need, union, total)
        return total

    def _union(self, changes: list[SparseOverride], need) -> torch.Tensor:
        """The entries that some of ``changes`` lists and ``need`` lists (None: all), sorted.
        Like a sum, a union starts from the last one where its changes begin with the last one's."""
        last = self._last_union
        if last is not None and _begins_with(changes, last[0]):
            marks, start = last[1].clone(), len(last[0])
        else:
            marks, start = torch.zeros(self.B * self.T, dtype=torch.bool, device=self.device), 0
        for change in changes[start:]:
            marks[change.index] = True
        self._last_union = (changes, marks)  # kept whole: the next union may need other entries
        return (marks if need is None else marks & need.reshape(-1)).nonzero().flatten()

    def _dense_sum(self, base, changes: list[SparseOverride], union: torch.Tensor) -> SparseOverride:
        """The captured ``base`` plus ``changes`` (each at distinct entries), the entries of
        ``union`` (the live ones that change) overridden, accumulated in a whole (B * T, ...)
        tensor: each change added in place at all its entries, live or not, in the model's
        dtype, with no copies of the live ones, no sorting and no inverse index of entries.
        Taken when the changes cover more than ``DENSE_SHARE`` of all B * T entries; below
        that, reading and writing whole tensors costs more than the sparse sum saves.  (The
        sparse sum adds the changes in float64 before the captured stream: the two round
        differently, within float32 rounding of the stream.)"""
        whole = self.B * self.T
        values = self.dense(self.captured(base))
        flat = values.view((whole,) + tuple(values.shape[2:]))
        for change in changes:
            if change.index.numel() == whole and bool((change.index[1:] > change.index[:-1]).all()):
                flat += change.values  # every entry, in order
            else:
                flat.index_add_(0, change.index, change.values)
        return SparseOverride(base, union, flat if union.numel() == whole else flat[union])

    def _mix(self, mask: torch.Tensor, own: SparseOverride, other: SparseOverride, need) -> SparseOverride:
        """``own`` for the examples in ``mask`` (B,) or the entries in ``mask`` (B, T), ``other``
        for the rest."""
        mask = mask.to(self.device)
        if own.base is not None and other.base is not None and own.base[0] == other.base[0]:
            own = self._rebase(own, other.base, self._within(need, mask))
            parts = [(own.index, own.values), self._keep(other.index, other.values, self._within(need, ~mask))]
            parts = [(index, values) for index, values in parts if index.numel()]
            return _joined(other.base, parts) if parts else self.captured(other.base)

        def compute(examples):
            first, second = self.dense(own, examples), self.dense(other, examples)
            chosen = mask[examples]
            return torch.where(chosen.view(*chosen.shape, *([1] * (first.dim() - chosen.dim()))), first, second)

        return self._dense_patch(need, compute)

    def _tokenwise(self, x: SparseOverride, need, in_site, out_site, fn, kind: str, rows: int, flops: int) -> SparseOverride:
        """A computation that treats every (example, position) alone: run on the changed
        entries.  Each entry counts as ``rows`` positions of ``kind`` costing ``flops``."""
        if x.base is not None and x.base[0] == in_site:
            index, values = self._keep(x.index, x.values, need)
            if index.numel() == 0:
                return self.captured((out_site, x.base[1]))
            self.work.add(kind, rows * index.numel(), flops * index.numel())
            return SparseOverride((out_site, x.base[1]), index, fn(values, index % self.T))
        read = self._dense_patch(need, lambda examples: self.dense(x, examples))
        self.work.add(kind, rows * read.index.numel(), flops * read.index.numel())
        return SparseOverride(None, read.index, fn(read.values, read.index % self.T))

    def _attended(self, changed_q: list[SparseOverride], changed_kv: list[SparseOverride], examples: torch.Tensor, need) -> torch.Tensor:
        """Needed entries (of ``examples``) whose attention output may change: where the
        query changed, and from the first changed key or value on."""
        T = self.T
        first = torch.full((self.B,), T, dtype=torch.long, device=self.device)
        for patch in changed_kv:
            first.scatter_reduce_(0, patch.index // T, patch.index % T, reduce="amin")
        positions = torch.arange(T, device=self.device)
        hit = positions[None, :] >= first[examples, None]  # (r, T)
        for patch in changed_q:
            marks = torch.zeros(self.B * T, dtype=torch.bool, device=self.device)
            marks[patch.index] = True
            hit |= marks.view(self.B, T)[examples]
        if need is not None:
            hit &= need[examples]
        return (examples[:, None] * T + positions)[hit]

    def _mixed(self, key, rows: torch.Tensor) -> list[SparseOverride]:
        """For attention: every entry of the examples (of ``rows``) whose selector ``key``
        reads different inputs at different positions (no captured run attended over them)."""
        selected, positions = self.rows_for[key]
        if positions is None:
            return []
        varies = (selected != selected[:, :1]).any(1) & rows
        if not bool(varies.any()):
            return []
        return [SparseOverride(None, self._entries(varies[:, None].expand(self.B, self.T)), None)]

    def _changed_examples(self, patches: list[SparseOverride], rows: torch.Tensor) -> torch.Tensor:
        changed = torch.zeros(self.B, dtype=torch.bool, device=self.device)
        for patch in patches:
            changed[patch.index // self.T] = True
        return (changed & rows).nonzero().flatten()

    def _rows(self, need) -> torch.Tensor:
        """(B,) examples with some needed entry."""
        return torch.ones(self.B, dtype=torch.bool, device=self.device) if need is None else need.any(1)

    def _core(self, layer: int, resid: SparseOverride, need) -> SparseOverride:
        """All heads of a layer: z (B, T, H, dh)."""
        if resid.base is None or resid.base[0] != ("resid", "attn_in", layer):
            def compute(examples):
                self._count_qkv(examples.numel() * self.T, examples.numel() * self.T)
                self._count_attention(layer, self.costs.n_heads, examples.numel(), None)
                return self.adapter.attn_core(layer, self.dense(resid, examples))

            return self._dense_patch(need, compute)
        key, rows = resid.base[1], self._rows(need)
        changes = [resid] + self._mixed(key, rows)
        examples = self._changed_examples(changes, rows)
        if examples.numel() == 0:
            return self.captured((("z", layer), key))
        changed = self._attended([], changes, examples, need)
        if changed.numel() == 0:
            return self.captured((("z", layer), key))
        start, stop = self._span(changed)
        window = self.costs.windows[layer] if self.costs.windows else None
        first = 0 if window is None else max(0, start - window + 1)  # the first key any of these queries reads
        index, values = self._keep(resid.index, resid.values, rows[:, None].expand(self.B, self.T))
        position = index % self.T
        read = (position >= first) & (position < stop)  # the recomputed entries attention reads
        if not bool(read.all()):
            index, values, position = index[read], values[read], position[read]
        queries = position >= start  # q, k and v there; before start, keys and values alone
        self._count_qkv(int(queries.sum()), index.numel())
        z = self._attend_shared_keys(layer, key, examples, index, values, position, start, stop, first, window)
        if z is None:  # every example's keys gathered
            z = self._attend_gathered(layer, key, examples, index, values, position, queries, start, stop, first)
        self._count_attention(layer, self.costs.n_heads, examples.numel(), changed, start, stop)
        return SparseOverride((("z", layer), key), changed, z.flatten(0, 1)[self._local_span(changed, examples, start, stop)])

    def _attend_gathered(self, layer: int, key, examples: torch.Tensor, index: torch.Tensor, values: torch.Tensor,
                         position: torch.Tensor, queries: torch.Tensor, start: int, stop: int, first: int) -> torch.Tensor:
        """z (r, stop - start, H, dh) of ``examples`` (r,) at the query positions start..stop-1,
        from the captured queries of the span and the keys and values they read, one per
        key/value head (not repeated to its query heads), overwritten at the recomputed entries
        ``index`` (``values`` their residual stream, ``queries`` those at start.. )."""
        q = self._span_site(("q", layer), key, examples, start, stop)  # (r, stop - start, H, dh)
        kv = self._span_site(("kv", layer), key, examples, first, stop)  # (r, stop - first, 2, Hkv, dh)
        if index.numel():
            example = self._local(index, examples) // self.T
            keys_only = ~queries
            if bool(queries.any()):
                new_q, new_kv = (t[0] for t in self.adapter.q_kv(layer, values[queries][None], position[queries]))
                local = example[queries] * (stop - start) + position[queries] - start
                q.view((-1,) + tuple(q.shape[2:])).index_copy_(0, local, new_q)
                kv.view((-1,) + tuple(kv.shape[2:])).index_copy_(
                    0, example[queries] * (stop - first) + position[queries] - first, new_kv)
            if bool(keys_only.any()):
                kv.view((-1,) + tuple(kv.shape[2:])).index_copy_(
                    0, example[keys_only] * (stop - first) + position[keys_only] - first,
                    self.adapter.kv(layer, values[keys_only][None], position[keys_only])[0])
        z = self.adapter.attend_grouped(layer, start, first, q.transpose(1, 2), kv[:, :, 0].transpose(1, 2), kv[:, :, 1].transpose(1, 2))
        return z.transpose(1, 2)

    def _attend_shared_keys(self, layer: int, key, examples: torch.Tensor, index: torch.Tensor, values: torch.Tensor,
                            position: torch.Tensor, start: int, stop: int, first: int, window) -> torch.Tensor | None:
        """``_attend_gathered``'s z where every changed example changed at every query position
        start..stop-1 and at no key it reads before: its keys and values before ``start`` are
        those of the captured row it reads, which it shares with the other examples reading that
        row (the patched variants of one prompt in a sweep).  Each group of examples reading one
        row attends as one batch entry: its queries over the row's keys read once, plus each
        example's own keys in the span (a mask keeps an example from reading another's), so the
        shared keys are neither gathered per example nor attended per example.  None where this
        does not apply."""
        selected, positions = self.rows_for[key]
        span = stop - start
        r = examples.numel()
        if positions is not None or (window is not None and stop - first > window) or r < 2 or index.numel() != r * span:
            return None
        grid = index.view(r, span)  # sorted: each example's span positions, if every one changed
        if not bool((grid == (examples * self.T + start)[:, None] + torch.arange(span, device=self.device)).all()):
            return None
        read_rows, group_of, counts = torch.unique(selected[examples], return_inverse=True, return_counts=True)
        groups = read_rows.numel()
        size = r // groups
        if groups == r or not bool((counts == size).all()):
            return None
        cap = SHARED_KEYS_GROUP  # the examples that attend together: the mask grows with their square
        part = next(p for p in range(min(size, cap), 0, -1) if size % p == 0)
        if part < 2:
            return None
        H, Hkv, dh = self.costs.n_heads, self.costs.n_kv_heads, self.adapter.d_head
        g, n = H // Hkv, groups * (size // part)  # n batch entries of ``part`` examples each
        order = torch.argsort(group_of, stable=True)  # examples grouped by the row they read
        q, kv = (t[0] for t in self.adapter.q_kv(layer, values[None], position))  # (r * span, H, dh), (r * span, 2, Hkv, dh)
        q = q.view(r, span, Hkv, g, dh)[order].view(n, part, span, Hkv, g, dh).permute(0, 3, 1, 2, 4, 5).reshape(n, Hkv, part * span * g, dh)
        own = kv.view(r, span, 2, Hkv, dh)[order].view(n, part * span, 2, Hkv, dh)
        prefix = self._site(("kv", layer), read_rows, None)[:, first:start]  # (groups, start - first, 2, Hkv, dh)
        prefix = prefix.repeat_interleave(size // part, dim=0)  # one copy per batch entry
        keys = torch.cat((prefix, own), 1)  # (n, start - first + part * span, 2, Hkv, dh)
        # query (example i, position start + a, head of the group) reads every shared key and
        # example i's own keys at positions up to start + a
        mine = torch.eye(part, dtype=torch.bool, device=self.device)[:, None, None, :, None]
        causal = torch.ones(span, span, dtype=torch.bool, device=self.device).tril()[None, :, None, None, :]
        allowed = (mine & causal).expand(part, span, g, part, span).reshape(part * span * g, part * span)
        mask = torch.cat((allowed.new_ones(part * span * g, start - first), allowed), 1)
        z = self.adapter.attend_keys(layer, q, keys[:, :, 0].transpose(1, 2), keys[:, :, 1].transpose(1, 2), mask)
        z = z.view(n, Hkv, part, span, g, dh).permute(0, 2, 3, 1, 4, 5).reshape(r, span, H, dh)
        return torch.empty_like(z).index_copy_(0, order, z)  # back in the order of ``examples``

    def _span_site(self, site, key, examples: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """The captured ``site`` read by selector ``key`` for ``examples`` (r,) at positions
        start..stop-1 alone: (r, stop - start, ...), a new tensor."""
        rows, positions = self.rows_for[key]
        span = torch.arange(start, stop, device=self.device)
        if positions is None:
            rows, positions = rows[examples][:, None].expand(-1, stop - start), span.expand(examples.numel(), -1)
        else:
            rows, positions = rows[examples][:, start:stop], positions[examples][:, start:stop]
        return self._site(site, rows, positions)

    def _head(self, layer: int, head: int, channels: list[SparseOverride], need) -> SparseOverride:
        """One head from its q, k and v inputs: its write to the residual stream (B, T, D)."""
        keys = {c.base[1] if c.base is not None and c.base[0] == ("qkv", layer, head, i) else None for i, c in enumerate(channels)}
        if len(keys) == 1 and None not in keys:
            key, rows = keys.pop(), self._rows(need)
            mixed = self._mixed(key, rows)
            examples = self._changed_examples(channels + mixed, rows)
            if examples.numel() == 0:
                return self.captured((("head_out", layer, head), key))
            changed = self._attended(channels[:1], channels[1:] + mixed, examples, need)
            if changed.numel() == 0:
                return self.captured((("head_out", layer, head), key))
            start, stop = self._span(changed)
            q, k, v = (self.dense(c, examples)[:, start if i == 0 else 0 : stop] for i, c in enumerate(channels))
            z = self.adapter.attend_from(layer, start, q[:, None], k[:, None], v[:, None])[:, 0]  # (r, stop - start, dh)
            self._count_attention(layer, 1, examples.numel(), changed, start, stop)
            self.work.add("out", changed.numel(), changed.numel() * self.costs.vector)
            picked = z.flatten(0, 1)[self._local_span(changed, examples, start, stop)]
            return SparseOverride((("head_out", layer, head), key), changed, picked @ self.adapter.w_out(layer, head))

        def compute(examples):
            self._count_attention(layer, 1, examples.numel(), None)
            self.work.add("out", examples.numel() * self.T, examples.numel() * self.T * self.costs.vector)
            return self.adapter.head_from_qkv(layer, head, *(self.dense(c, examples) for c in channels))

        return self._dense_patch(need, compute)

    # ------------------------------------------------------------ work counters
    def _count_qkv(self, queries: int, keys: int) -> None:
        """Every query head's q projected at ``queries`` entries, every key/value head's k and v at ``keys``."""
        vectors = queries * self.costs.n_heads + keys * 2 * self.costs.n_kv_heads
        self.work.add("qkv", vectors, vectors * self.costs.vector)

    def _count_attention(self, layer: int, heads: int, examples: int, kept: torch.Tensor | None,
                         start: int = 0, stop: int | None = None) -> None:
        """``heads`` heads attended for the query positions start..stop-1 (default: all) of
        ``examples`` examples, of which the entries ``kept`` (flat indices; None: all) are
        read: the floor's share."""
        stop = self.T if stop is None else stop
        computed = examples * heads * self.costs.attention(layer, range(start, stop))
        needed = computed if kept is None else heads * self.costs.attention(layer, kept % self.T)
        self.work.add("attention", examples * heads * (stop - start), computed, needed)

    def _span(self, entries: torch.Tensor) -> tuple[int, int]:
        """The positions from the first to the last of ``entries`` (non-empty): start, stop."""
        positions = entries % self.T
        return int(positions.min()), int(positions.max()) + 1

    def _local_span(self, index: torch.Tensor, examples: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """Entries ``index`` (of ``examples``, positions in start..stop-1) as flat indices into
        (r * (stop - start))."""
        local = torch.full((self.B,), -1, dtype=torch.long, device=self.device)
        local[examples] = torch.arange(examples.numel(), device=self.device)
        return local[index // self.T] * (stop - start) + index % self.T - start


def live_entries(order: list, planner) -> dict:
    """For each node, the (B, T) entries whose value some consumer reads (absent: all).

    The output reads the logit positions only.  Where ``branch`` split some examples
    only, each side of a split is read for its examples alone.  Attention reads keys and
    values at every position up to the last query position it must produce.
    """
    batch, seq = planner.batch, planner.seq
    root = order[-1]
    positions = root.spec.positions
    start = None
    if positions is not None:
        start = torch.zeros(batch, seq, dtype=torch.bool)
        start[:, list(positions)] = True
    need: dict[int, torch.Tensor | None] = {root.id: start}

    unions: dict[tuple, tuple] = {}  # (id(a), id(b)) -> (a, b, a | b, or a itself where it holds b)

    def union(a, b):
        found = unions.get((id(a), id(b)))
        if found is None:  # consumers share few distinct tensors: each pair is joined once
            joined = a | b
            found = unions[(id(a), id(b))] = (a, b, a if torch.equal(joined, a) else joined)
        return found[2]

    def add(child, entries):
        known = need.get(child.id, False)
        if known is False:
            need[child.id] = entries
        elif known is not None and known is not entries:  # the same tensor from another consumer: nothing to add
            need[child.id] = None if entries is None else union(known, entries)

    def rows(mask, entries):
        mask = entry_mask(mask, seq)
        return mask if entries is None else entries & mask

    def prefix(entries):
        if entries is None:
            return None
        return entries.flip(1).int().cummax(1).values.flip(1).bool()

    for node in reversed(order):
        entries = need[node.id]
        if node.op is Op.MIX:
            mask = planner.masks[node.spec.mask].rows
            add(node.children[0], rows(mask, entries))
            add(node.children[1], rows(~mask, entries))
        elif node.op is Op.MASKED_DELTA:
            add(node.children[0], rows(planner.masks[node.spec.mask].rows, entries))
        elif node.op is Op.CORE:
            add(node.children[0], prefix(entries))
        elif node.op is Op.HEAD:
            add(node.children[0], entries)
            for child in node.children[1:]:
                add(child, prefix(entries))
        else:
            for child in node.children:
                add(child, entries)
    everything: dict[int, bool] = {}  # id(entries) -> entries lists every entry (consumers share tensors)
    kept = {}
    for node_id, entries in need.items():
        if entries is None:
            continue
        whole = everything.get(id(entries))
        if whole is None:
            whole = everything[id(entries)] = bool(entries.all())
        if not whole:
            kept[node_id] = entries
    return kept


def _begins_with(changes: list, seen: list) -> bool:
    """Whether ``changes`` begin with the very objects ``seen`` (a stream's changes begin with
    those of the stream below it: its sum and union continue from the last ones)."""
    return len(seen) <= len(changes) and all(a is b for a, b in zip(seen, changes))


def _joined(base, parts: list[tuple]) -> SparseOverride:
    """One SparseOverride of ``base`` from overrides on disjoint entries."""
    if not parts:
        raise AssertionError("no overrides to join")  # pragma: no cover
    index, order = torch.sort(torch.cat([index for index, _ in parts]))
    return SparseOverride(base, index, torch.cat([values for _, values in parts])[order])


_HANDLERS = {
    Op.GATHER: Evaluator._gather,
    Op.DELTA: Evaluator._delta,
    Op.MASKED_DELTA: Evaluator._masked_delta,
    Op.SUM: Evaluator._sum,
    Op.MIX: Evaluator._mix_node,
    Op.MLP: Evaluator._mlp,
    Op.PROJ: Evaluator._proj,
    Op.CORE: Evaluator._core_node,
    Op.HEAD_CORE: Evaluator._head_core,
    Op.LAYER_CORE: Evaluator._layer_core,
    Op.HEAD: Evaluator._head_node,
    Op.FINAL: Evaluator._final,
}
