"""Counting the work of a run: token positions recomputed per component kind, and FLOPs.

FLOPs are matmul FLOPs (2 per multiply-add) of projections, attention scores and values, MLPs
and the unembedding; norms, activations, biases, additions and softmax are not counted.
Attention is counted causally: a query at position t reads its t + 1 keys (fewer under a
sliding window), whatever kernel ran it.

Kinds (the keys of ``RunStats.rows``), each counted in token positions:

    "qkv"        q, k or v vectors projected, one per head (key/value heads under grouped-query attention)
    "attention"  query positions attended, one per head
    "out"        head outputs multiplied by the output projection, one per head
    "mlp"        positions through an MLP
    "unembed"    positions unembedded (each at ``RunStats.logit_columns`` vocabulary columns)
"""
from __future__ import annotations

from collections import Counter

import torch


class Costs:
    """Matmul FLOPs per token position of one adapter's components."""

    def __init__(self, adapter) -> None:
        D, dh = adapter.d_model, adapter.d_head
        self.n_layers, self.n_heads, self.n_kv_heads, self.d_head = adapter.n_layers, adapter.n_heads, adapter.n_kv_heads, dh
        self.vector = 2 * D * dh  # one head's q, k or v; also one head through the output projection
        self.mlp = [2 * adapter.mlp_macs(layer) for layer in range(adapter.n_layers)]
        self.d_model, self.vocab_size = D, adapter.vocab_size
        self.unembed = 2 * D * adapter.vocab_size  # one position, every vocabulary column
        self.windows = tuple(getattr(adapter, "_windows", ()) or ())

    def attention(self, layer: int, positions) -> int:
        """Scores and weighted values of one head for queries at ``positions`` (a LongTensor
        or an iterable of ints)."""
        keys = torch.as_tensor(positions, dtype=torch.long).flatten() + 1
        window = self.windows[layer] if self.windows else None
        if window is not None:
            keys = keys.clamp(max=window)
        return 4 * self.d_head * int(keys.sum())

    def unembedding(self, vocab=None) -> int:
        """One position unembedded at the vocabulary ids ``vocab`` (a sequence; None: all V)."""
        return self.unembed if vocab is None else 2 * self.d_model * len(vocab)

    def forward(self, rows: int, seq: int) -> int:
        """One ordinary forward of ``rows`` sequences of ``seq`` tokens, up to the final residual
        stream (no unembedding): what capturing them costs."""
        per_row = 0
        for layer in range(self.n_layers):
            per_row += seq * (self.n_heads + 2 * self.n_kv_heads) * self.vector  # q, k, v
            per_row += self.n_heads * self.attention(layer, range(seq))
            per_row += seq * self.n_heads * self.vector  # output projection
            per_row += seq * self.mlp[layer]
        return rows * per_row


class Work:
    """What one run computed, and of that what its result needed (the floor's share)."""

    def __init__(self, costs: Costs) -> None:
        self.costs = costs
        self.rows: Counter = Counter()
        self.flops = 0  # everything computed
        self.needed = 0  # the computed entries that some consumer reads and that may change

    def add(self, kind: str, rows: int, flops: int, needed: int | None = None) -> None:
        """``rows`` positions of ``kind`` computed for ``flops``; ``needed`` of those FLOPs
        belong to the floor (default: all of them)."""
        if rows:
            self.rows[kind] += int(rows)
        self.flops += int(flops)
        self.needed += int(flops if needed is None else needed)


def forward_flops(adapter, batch: int, seq: int) -> int:
    """Matmul FLOPs of one HF forward of ``batch`` sequences of ``seq`` tokens, unembedding included."""
    costs = Costs(adapter)
    return costs.forward(batch, seq) + batch * seq * costs.unembed
