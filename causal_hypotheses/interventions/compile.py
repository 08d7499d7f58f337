"""Compiling interventions to ``which``/``branch``/``key`` for the engine.

Experiments are stacked in *blocks*: block k is a copy of the batch (rows k*B..k*B+B-1)
with its own patched components, so a sweep over K components is one engine run.  A
block's decision is made where its patched component is reached (``path[-1]``); below
that point its rows read one input, so whatever the tree computes for them there is
never used.  That keeps every answer a function of the last one or two path names,
and the plan linear in the model's size (``key`` is constant or one flag).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Sequence

import numpy as np
import torch

from ..engine.core import as_index, describe, is_boolean
from ..engine.plan import constant_key
from ..errors import InputError, PositionError, UnknownComponentError
from ..graph import ModelGraph, component, enclosing, within

OUT = "out"


def order(name: str) -> int:
    """Place of a component in the residual stream: embed, a0, m0, a1, m1, ..."""
    return component(name).order


def check_writers(graph: ModelGraph, names: Sequence[str], role: str) -> None:
    for name in names:
        parsed = graph.parse(name)
        if parsed.channel is not None:
            raise UnknownComponentError(
                f"{role} {name!r} is a head's input, not a component that writes to the residual stream; "
                f"use the head {parsed.without_channel().name!r}"
            )


def position_rows(positions, batch: int, seq: int) -> torch.Tensor | None:
    """None (every position) or a (B, T) long mask of the patched positions.

    ``positions`` is an index (an int, a numpy integer or a 0-d integer tensor), a list
    (or 1-d integer tensor) of indices, or a (B, T) bool mask; duplicates are harmless.
    Anything that patches no position, and bools used as indices, are errors.
    """
    if positions is None:
        return None
    allowed = (
        f"pass an index in -{seq}..{seq - 1} (e.g. positions=-1 for the last position), a list of "
        f"indices, a (B, T) = ({batch}, {seq}) bool mask, or None for every position"
    )
    given = positions  # as passed, for messages
    if isinstance(positions, np.ndarray):
        positions = torch.from_numpy(positions)
    single = as_index(positions)
    if single is not None:
        chosen = [single]
    elif is_boolean(positions):
        raise PositionError(f"positions={given!r} is a bool, not a position (Python counts True as 1); {allowed}")
    elif isinstance(positions, torch.Tensor) and positions.dtype == torch.bool:
        if tuple(positions.shape) != (batch, seq):
            hint = f"; expand a (T,) mask with mask.expand({batch}, {seq})" if tuple(positions.shape) == (seq,) else ""
            raise PositionError(
                f"positions is a bool mask of shape {tuple(positions.shape)}; a positions mask must have shape "
                f"(B, T) = ({batch}, {seq}){hint}"
            )
        if not bool(positions.any()):
            raise PositionError(
                f"positions is an all-False ({batch}, {seq}) mask: it patches no position; nothing would change. "
                "Set the positions to patch to True, or pass positions=None for every position"
            )
        return positions.detach().cpu().long()
    elif isinstance(positions, torch.Tensor) and positions.dim() != 1:
        raise PositionError(
            f"positions is {describe(given)}, not an index, a list of indices or a bool mask; {allowed}"
            + ("; convert a 0/1 mask with mask.bool()" if positions.dim() == 2 else "")
        )
    elif isinstance(positions, (str, bytes, Mapping)) or not isinstance(positions, Iterable):
        raise PositionError(f"positions={given!r} is {describe(given)}, not an index or a list of indices; {allowed}")
    else:
        chosen = list(positions)
        if not chosen:
            raise PositionError(f"positions={given!r} patches no position; nothing would change: {allowed}")
    mask = torch.zeros(batch, seq, dtype=torch.long)
    for item in chosen:
        p = as_index(item)
        if p is None:
            raise PositionError(f"positions={given!r} holds {describe(item)}, which is not an integer index; {allowed}")
        if not -seq <= p < seq:
            raise PositionError(
                f"position {p} is outside the prompt: expected indices in -{seq}..{seq - 1} (the prompts have {seq} tokens)"
            )
        mask[:, p] = 1
    return mask


class _Blocks:
    """Selectors and masks over K stacked blocks of B examples."""

    def __init__(self, n_blocks: int, batch: int, source_pattern: torch.Tensor | None, source_input=1):
        self.k, self.b = n_blocks, batch
        self.pattern = source_pattern  # (B, T) mask of source positions, or None for all
        self.source = source_input  # an input index, or a LongTensor (B,) of one per example
        self._splits: dict[int, torch.Tensor] = {}  # split's answers, by their bits

    def select(self, blocks: list[int]):
        """Input index per row: the source in ``blocks`` (at the patched positions), else 0."""
        if not blocks:
            return 0
        if self.k == 1 and self.pattern is None:
            return self.source
        if self.pattern is None:
            chosen = torch.zeros(self.k, self.b, dtype=torch.long)
            chosen[blocks] = self.source
            return chosen.flatten()
        source = self.source[:, None] if torch.is_tensor(self.source) else self.source
        chosen = torch.zeros(self.k, *self.pattern.shape, dtype=torch.long)
        chosen[blocks] = self.pattern * source
        return chosen.flatten(0, 1)

    def split(self, needs: int, at_positions: int = 0, positions: torch.Tensor | None = None):
        """Where to split, block k's answer in bit k: True where ``needs`` has it, the (B, T) mask
        ``positions`` where ``at_positions`` has it, False elsewhere.  An answer that is the same for
        every block is True or False; the others are bool tensors (K * B,) or (K * B, T), those
        (K * B,) made once per set of bits."""
        if not at_positions:
            if needs == 0 or needs == (1 << self.k) - 1:
                return needs != 0
            found = self._splits.get(needs)
            if found is None:
                found = self._splits[needs] = torch.tensor(self._bools(needs)).repeat_interleave(self.b)
            return found
        chosen = torch.tensor(self._bools(needs))[:, None, None].repeat(1, *positions.shape)
        chosen[torch.tensor(self._bools(at_positions))] = positions
        return chosen.flatten(0, 1)

    def _bools(self, bits: int) -> list[bool]:
        return [bool(bits >> k & 1) for k in range(self.k)]


def activation_patch_functions(block_nodes: Sequence[frozenset], batch: int, pattern=None, source=1):
    """Block k: its nodes read input ``source`` (where ``pattern`` says), everything else input 0.
    ``source`` is an input index or a LongTensor (B,) of one per example.

    Where ``pattern`` leaves a patched node unpatched after a patched position, the node is what
    the run computes: a patched node below it in its block (the MLP 0 of ``["m0", "m1"]`` at
    position 5) changes it at the later positions (m1 at 6 and 7), so there it is recomputed, and
    read from the source at the patched positions (a split by position).  Before a row's first
    patched position nothing has changed yet: the base run is read there, and a pattern that
    patches a suffix of each row needs no split."""
    blocks = _Blocks(len(block_nodes), batch, pattern, source)
    by_name, own, around = _block_sets(block_nodes)
    earliest = [min((order(n) for n in nodes), default=float("inf")) for nodes in block_nodes]  # a block's first patched place
    after: dict[int, int] = {}  # place -> the blocks whose first patched place is earlier
    splits: dict[str, object] = {}

    def which(path):
        return blocks.select(by_name.get(path[-1], []))

    gaps = None if pattern is None else pattern.cummax(dim=1).values > pattern  # unpatched after a patched position
    if gaps is not None and not bool(gaps.any()):
        gaps = None

    def branch(path):
        last = path[-1]
        if last not in splits:  # split what follows a patched node, or contains one
            place = order(last)
            if place not in after:
                after[place] = _bits(k for k, first in enumerate(earliest) if place > first)
            patched = own.get(last, 0)  # patched: recomputed in the gaps, if a patch below it reaches it there
            needs = (after[place] | around.get(last, 0)) & ~patched
            regaps = after[place] & patched if gaps is not None else 0
            splits[last] = blocks.split(needs, regaps, gaps)
        return splits[last]

    return which, branch, constant_key


def _block_sets(block_nodes: Sequence[frozenset]) -> tuple[dict, dict, dict]:
    """By name: the blocks that name it (a list), the same as bits, and the bits of the blocks
    that name something strictly inside it (``a5`` for ``a5.h1.q``)."""
    by_name: dict[str, list[int]] = {}
    for k, nodes in enumerate(block_nodes):
        for node in nodes:
            by_name.setdefault(node, []).append(k)
    own = {name: _bits(ks) for name, ks in by_name.items()}
    around: dict[str, int] = {}
    for name, mask in own.items():
        for outer in enclosing(name):
            around[outer] = around.get(outer, 0) | mask
    return by_name, own, around


def _bits(blocks) -> int:
    """A set of block numbers as an int's bits."""
    mask = 0
    for k in blocks:
        mask |= 1 << k
    return mask


def path_patch_functions(block_senders: Sequence[frozenset], receivers: frozenset, batch: int, pattern=None):
    """Block k: paths entering a receiver directly from one of its senders read input 1.

    A receiver's input is its clean input plus the senders' direct changes, as in the
    two-run recipe of Wang et al.: inside it no other component is recomputed, not even
    a receiver that is upstream (a10.h7's changed output reaches a11.h10's keys through
    the recomputed downstream, but not a11.h10's query when that is a receiver too).
    """
    blocks = _Blocks(len(block_senders), batch, pattern)
    by_name, own, around = _block_sets(block_senders)
    inner = [r for r in receivers if r != OUT]
    to_out = OUT in receivers
    receiving: dict[str, bool] = {}
    splits: dict[tuple, object] = {}

    def is_receiver(name: str) -> bool:
        found = receiving.get(name)
        if found is None:
            found = receiving[name] = any(within(r, name) for r in inner)
        return found

    def state(path) -> tuple[bool, bool]:
        """(the path has entered a receiver's input, it did so at its last step)."""
        if len(path) == 1:
            return to_out, to_out
        entry = is_receiver(path[-2])
        return entry or to_out or any(is_receiver(name) for name in path[:-2]), entry

    def which(path):
        inside, entry = state(path)
        return blocks.select(by_name.get(path[-1], []) if entry else [])

    def branch(path):
        inside, entry = state(path)
        last = path[-1]
        if (inside, entry, last) not in splits:
            if not inside:  # toward the receivers: split what contains or follows one
                needs = any(within(last, r) or within(r, last) or order(last) > order(r) for r in inner)
                answers = (1 << blocks.k) - 1 if needs else 0
            else:  # in a receiver's input: split only to reach a sender inside a layer
                answers = around.get(last, 0) & ~own.get(last, 0) if entry else 0
            splits[(inside, entry, last)] = blocks.split(answers)
        return splits[(inside, entry, last)]

    return which, branch, state
