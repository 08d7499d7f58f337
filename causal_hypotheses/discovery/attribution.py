"""Attribution patching: a gradient's linear estimate of every node's and every edge's patching effect.

Node attribution (Nanda 2023), edge attribution patching, EAP (Syed et al. 2023), and EAP-IG
(Hanna et al. 2024).  One forward pass on the corrupt input records each sender's output; one
forward and one backward pass on the clean input (``steps`` of them for IG) give the gradient of
the metric at every node's output and every receiver's input.  Scores are named as the engine
names components: senders ``embed``, ``a9.h6``, ``m3``; receivers ``a9.h6.q`` (``.k``, ``.v``),
``m3`` and ``out`` (the final residual stream, read by the unembedding).

Direction: *noising*, as in ``activation_patch_sweep(engine, clean, corrupt, metric)`` and
``path_patch_sweep(engine, clean, corrupt, receivers, metric)``, where the patched components read
the corrupt input and everything else the clean one.  With M the batch mean of ``metric(logits)``::

    node score(n)            = (a_n(corrupt) - a_n(clean)) . dM/da_n              at clean
                             ~ M(clean, n read from corrupt) - M(clean)
    edge score(s -> r)       = (a_s(corrupt) - a_s(clean)) . dM/d(input of r)     at clean
                             ~ M(clean, only the direct path s -> r read from corrupt) - M(clean)

(a dot product over the model width and the positions, summed over the examples: dM/da already
carries M's 1/B, so a score is a change of the batch mean).  So a score
estimates the sweep's value minus the clean metric: negative where patching lowers the metric.
A node's score is the sum of its edges' scores into every receiver it writes to.

EAP-IG (``method="ig"``): the gradient is averaged over ``steps`` points on the straight line
between the clean and the corrupt *embeddings* (Hanna et al.'s variant that interpolates the
inputs, not each edge's activations), ``e_clean + (k / steps) (e_corrupt - e_clean)`` for
k = 0 .. steps-1: the paper's points counted from the clean end, so ``steps=1`` is EAP.  The
differences a(corrupt) - a(clean) stay those of the two real inputs.

The forward is rebuilt from the architecture adapter's per-head pieces (the table that says
where each architecture keeps its parts; no engine run), with each receiver reading its own
alias of the residual stream so that one backward pass separates every head's query, key and
value input, grouped-query attention included (a query head's key is its own).  The model is
not modified and no parameter gradient is accumulated.
"""
from __future__ import annotations

import numbers
import sys
from dataclasses import dataclass
from functools import partial
from typing import Callable

import pandas as pd
import torch

from ..engine.architectures import adapter_for
from ..engine.core import check_logit_vocab
from ..errors import InputError
from ..interventions.compile import OUT
from ..interventions.patching import _pair

METHODS = ("eap", "ig")


@dataclass(frozen=True)
class Attribution:
    """Attribution scores of one task (see the module docstring for their meaning and sign).

    ``nodes``: DataFrame, index the node names (``embed``, ``a0.h0``, ..., ``m0``, ...), one
    column per position 0..T-1 (the score of patching that node at that position alone).
    ``edges``: DataFrame with columns sender, receiver, score (positions summed); None when
    computed without edges.  ``clean`` and ``corrupt``: the metric on the two inputs.
    """

    nodes: pd.DataFrame
    edges: pd.DataFrame | None
    method: str
    steps: int
    clean: float
    corrupt: float

    def node_scores(self, position: int | None = None) -> pd.Series:
        """Each node's score: summed over positions, or at ``position`` (an index, -1 the last)."""
        if position is None:
            return self.nodes.sum(axis=1).rename("score")
        seq = self.nodes.shape[1]
        if isinstance(position, bool) or not isinstance(position, numbers.Integral) or not -seq <= position < seq:
            raise InputError(f"position={position!r}: expected an index in -{seq}..{seq - 1} (-1 for the last) or None for the sum")
        return self.nodes.iloc[:, int(position)].rename("score")

    def head_table(self, position: int | None = None) -> pd.DataFrame:
        """Heads' scores as a layer x head table, the layout of the sweeps' tables."""
        scores = self.node_scores(position)
        heads = [name for name in scores.index if ".h" in name]
        layers = 1 + max(int(name[1:].split(".")[0]) for name in heads)
        n_heads = 1 + max(int(name.split(".h")[1]) for name in heads)
        values = scores[heads].to_numpy().reshape(layers, n_heads)
        return pd.DataFrame(values, index=pd.RangeIndex(layers, name="layer"), columns=pd.RangeIndex(n_heads, name="head"))

    def edge_scores(self, receiver: str | None = None) -> pd.DataFrame:
        """The edge table, or the edges into one ``receiver``."""
        if self.edges is None:
            raise InputError("these scores were computed with edges=False; call attribute(..., edges=True)")
        if receiver is None:
            return self.edges
        chosen = self.edges[self.edges.receiver == receiver]
        if chosen.empty:
            raise InputError(f"no edges into receiver {receiver!r}; receivers are head inputs ('a1.h0.q'), MLPs ('m0') and 'out'")
        return chosen


def _adapter(model):
    """The architecture adapter of an HF model, or of the model an ``Engine`` wraps."""
    adapter = getattr(model, "adapter", None)
    return adapter if adapter is not None else adapter_for(model)


def _logit_positions(logit_positions, seq: int) -> tuple[int, ...] | None:
    if logit_positions is None:
        return None
    given = [logit_positions] if isinstance(logit_positions, numbers.Integral) and not isinstance(logit_positions, bool) else logit_positions
    try:
        chosen = [int(p) for p in given if not isinstance(p, bool)]
    except TypeError:
        chosen = []
    if not chosen or len(chosen) != len(list(given)) or not all(-seq <= p < seq for p in chosen):
        raise InputError(
            f"logit_positions={logit_positions!r}: expected an index or a list of indices in -{seq}..{seq - 1} "
            "(the positions whose logits the metric reads, e.g. -1), or None for every position"
        )
    return tuple(p % seq for p in chosen)


def _check(method: str, steps, metric) -> int:
    if method not in METHODS:
        raise InputError(f"method={method!r}: expected one of {METHODS} ('eap': gradients at clean; 'ig': EAP-IG)")
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
        raise InputError(f"steps={steps!r}: expected a positive int, the interpolation points of EAP-IG (e.g. 5)")
    if not callable(metric):
        raise InputError(
            f"metric={metric!r} is not a function; pass a differentiable function of the logits, "
            "e.g. lambda logits: logits[:, -1, answer] - logits[:, -1, distractor]"
        )
    return 1 if method == "eap" else int(steps)


def _mean_metric(metric: Callable, logits: torch.Tensor, differentiable: bool) -> torch.Tensor:
    value = metric(logits)
    if not torch.is_tensor(value) or value.numel() == 0 or not value.dtype.is_floating_point:
        raise InputError(
            f"metric returned {value!r}; attribution needs a floating tensor computed from the logits (one value "
            "per example, or their mean), e.g. lambda logits: logits[:, -1, answer] - logits[:, -1, distractor]"
        )
    if differentiable and not value.requires_grad:
        raise InputError("metric's value does not depend on the logits (no gradient flows to it); compute it from the logits it is given")
    return value.mean()


class _Senders:
    """Every sender's corrupt-minus-clean output (B, T, D), flattened into one matrix in stream
    order (embed, a0.h0 .. a0.h{H-1}, m0, a1.h0, ...), and which prefix of it writes into each receiver."""

    def __init__(self, adapter, clean_acts, corrupt_acts) -> None:
        L, H = adapter.n_layers, adapter.n_heads
        self.names = ["embed"]
        rows = [corrupt_acts["embed"] - clean_acts["embed"]]
        for layer in range(L):
            dz = corrupt_acts["z"][layer] - clean_acts["z"][layer]  # (B, T, H, dh)
            for head in range(H):
                rows.append(dz[:, :, head] @ adapter.w_out(layer, head))
                self.names.append(f"a{layer}.h{head}")
            rows.append(corrupt_acts["mlp_out"][layer] - clean_acts["mlp_out"][layer])
            self.names.append(f"m{layer}")
        self.matrix = torch.stack([row.flatten() for row in rows])  # (S, B*T*D)
        self.H, self.parallel = H, adapter.parallel_attn_mlp

    def before_attention(self, layer: int) -> int:
        """How many senders write into attention layer ``layer``'s input."""
        return 1 + layer * (self.H + 1)

    def before_mlp(self, layer: int) -> int:
        return self.before_attention(layer) + (0 if self.parallel else self.H)


class _Scores:
    """Gradient hooks that turn each gradient into scores as the backward pass reaches it."""

    def __init__(self, adapter, senders: _Senders | None, deltas: dict, weight: float) -> None:
        self.adapter, self.senders, self.deltas, self.weight = adapter, senders, deltas, weight
        self.nodes: dict[str, torch.Tensor] = {}  # name -> (T,)
        self.edges: dict[str, torch.Tensor] = {}  # receiver -> (senders writing into it,) scores
        self._pending: dict[int, dict[str, torch.Tensor]] = {}

    def _add_node(self, name: str, per_position: torch.Tensor) -> None:
        value = per_position.detach().double() * self.weight
        self.nodes[name] = self.nodes[name] + value if name in self.nodes else value

    def node(self, name: str, grad: torch.Tensor) -> None:
        """Embedding or MLP output: grad (B, T, D)."""
        self._add_node(name, (self.deltas[name] * grad).sum(-1).sum(0))

    def heads(self, layer: int, grad: torch.Tensor) -> None:
        """A layer's z: grad (B, T, H, dh) -> one node per head."""
        per_head = (self.deltas[f"a{layer}"] * grad).sum(-1).sum(0)  # (T, H)
        for head in range(per_head.shape[1]):
            self._add_node(f"a{layer}.h{head}", per_head[:, head])

    def _add_edges(self, receivers: list[str], grads: torch.Tensor, count: int) -> None:
        """grads (R, B*T*D) of ``receivers``' inputs against the first ``count`` senders."""
        if count == 0:
            return
        scores = (self.senders.matrix[:count] @ grads.T).double() * self.weight  # (count, R)
        for j, receiver in enumerate(receivers):
            self.edges[receiver] = self.edges[receiver] + scores[:, j] if receiver in self.edges else scores[:, j]

    def receiver(self, name: str, count: int, grad: torch.Tensor) -> None:
        self._add_edges([name], grad.flatten()[None], count)

    def head_input(self, layer: int, name: str, grad: torch.Tensor) -> None:
        """Collect a layer's 3H head-input gradients; score them together when all have arrived."""
        pending = self._pending.setdefault(layer, {})
        pending[name] = grad.flatten()
        if len(pending) == 3 * self.adapter.n_heads:
            names = sorted(pending)
            self._add_edges(names, torch.stack([pending[n] for n in names]), self.senders.before_attention(layer))
            del self._pending[layer]


def _forward_backward(adapter, embedding: torch.Tensor, metric: Callable, read: tuple, scores: _Scores | None, edges: bool) -> float:
    """One forward from ``embedding`` (B, T, D) and, with ``scores``, one backward whose hooks score
    every node and (with ``edges``) every receiver's input; the logits at ``read`` = (positions,
    vocabulary ids), each None for all.  Returns the metric's batch mean."""
    L, H = adapter.n_layers, adapter.n_heads
    grad_needed = scores is not None
    with torch.set_grad_enabled(grad_needed):
        start = embedding.detach().requires_grad_(grad_needed)
        x = start
        for layer in range(L):
            if edges and grad_needed:
                channels = []
                for c, channel in enumerate("qkv"):
                    per_head = []
                    for head in range(H):
                        alias = x.view_as(x)  # this head input's own copy of the stream: its gradient is the receiver's
                        alias.register_hook(partial(scores.head_input, layer, f"a{layer}.h{head}.{channel}"))
                        per_head.append(adapter.ln1_proj(layer, head, c, alias))  # (B, T, dh)
                    channels.append(torch.stack(per_head, dim=2))  # (B, T, H, dh)
                qkv = torch.stack(channels, dim=2)  # (B, T, 3, H, dh)
            else:
                qkv = adapter.qkv(layer, x)
            z = adapter.core_from_qkv(layer, qkv)  # (B, T, H, dh)
            if grad_needed:
                z.register_hook(partial(scores.heads, layer))
            attn_out = adapter.layer_from_core(layer, z)
            mid = x if adapter.parallel_attn_mlp else x + attn_out
            mlp_in = mid.view_as(mid)
            if edges and grad_needed:
                mlp_in.register_hook(partial(scores.receiver, f"m{layer}", scores.senders.before_mlp(layer)))
            mlp_out = adapter.mlp(layer, mlp_in)
            if grad_needed:
                mlp_out.register_hook(partial(scores.node, f"m{layer}"))
            x = x + attn_out + mlp_out if adapter.parallel_attn_mlp else mid + mlp_out
        final = x.view_as(x)
        if edges and grad_needed:
            final.register_hook(partial(scores.receiver, OUT, len(scores.senders.names)))
        _, logits = adapter.final(final, *read)
        value = _mean_metric(metric, logits, grad_needed)
        if grad_needed:
            (grad,) = torch.autograd.grad(value, start)  # parameters' gradients are never computed
            scores.node("embed", grad)
    return float(value.detach())


def _receivers(adapter) -> list[str]:
    """Every receiver in stream order: a0.h0.q .. a0.h{H-1}.v, m0, a1.h0.q, ..., out."""
    names = []
    for layer in range(adapter.n_layers):
        names += [f"a{layer}.h{head}.{channel}" for head in range(adapter.n_heads) for channel in "qkv"]
        names.append(f"m{layer}")
    return names + [OUT]


def attribute(
    model,
    clean,
    corrupt,
    metric: Callable[[torch.Tensor], torch.Tensor],
    *,
    method: str = "eap",
    steps: int = 5,
    edges: bool = True,
    logit_positions=None,
    logit_vocab=None,
    progress: bool = False,
) -> Attribution:
    """Attribution scores of every node and (with ``edges``) every edge for patching ``clean`` with ``corrupt``.

    ``model``: an HF ``*ForCausalLM`` of a supported architecture, or an ``Engine`` (its model is
    used; no engine run is made).  ``clean``, ``corrupt``: token ids (B, T) of one shape.
    ``metric(logits)``: a differentiable function of the logits (B, T, V) (or (B, P, V) at
    ``logit_positions``; (B, P, K) at the K vocabulary ids ``logit_vocab``, whose unembedding alone
    is then computed, forward and backward), one value per example or their mean; the scores estimate changes of its
    batch mean.  ``method``: "eap" (gradients at the clean input) or "ig" (EAP-IG, ``steps``
    points).  Sign and meaning: the module docstring.  ``progress``: a tqdm bar (with its ETA)
    over the forward-backward passes, on stderr.
    """
    clean, corrupt = _pair(clean, corrupt, ("clean", "corrupt"))
    steps = _check(method, steps, metric)
    adapter = _adapter(model)
    positions = _logit_positions(logit_positions, clean.shape[1])
    vocab = check_logit_vocab(logit_vocab, adapter.vocab_size)
    with torch.no_grad():
        clean_acts, corrupt_acts = adapter.capture(clean), adapter.capture(corrupt)
    deltas = {"embed": corrupt_acts["embed"] - clean_acts["embed"]}
    for layer in range(adapter.n_layers):
        deltas[f"a{layer}"] = corrupt_acts["z"][layer] - clean_acts["z"][layer]
        deltas[f"m{layer}"] = corrupt_acts["mlp_out"][layer] - clean_acts["mlp_out"][layer]
    senders = _Senders(adapter, clean_acts, corrupt_acts) if edges else None
    scores = _Scores(adapter, senders, deltas, 1.0 / steps)
    clean_value = None
    from tqdm.auto import tqdm

    for k in tqdm(range(steps), desc=f"attribution ({method})", unit="pass", disable=not progress, file=sys.stderr):
        embedding = clean_acts["embed"] + (k / steps) * deltas["embed"]
        value = _forward_backward(adapter, embedding, metric, (positions, vocab), scores, edges)
        clean_value = value if k == 0 else clean_value
    corrupt_value = _forward_backward(adapter, corrupt_acts["embed"], metric, (positions, vocab), None, False)
    order = ["embed"] + [n for layer in range(adapter.n_layers) for n in [f"a{layer}.h{h}" for h in range(adapter.n_heads)] + [f"m{layer}"]]
    nodes = pd.DataFrame(
        torch.stack([scores.nodes[name] for name in order]).numpy(),
        index=pd.Index(order, name="node"),
        columns=pd.RangeIndex(clean.shape[1], name="position"),
    )
    edge_table = None
    if edges:
        rows = [(senders.names[i], receiver, float(v)) for receiver in _receivers(adapter) for i, v in enumerate(scores.edges[receiver].tolist())]
        edge_table = pd.DataFrame(rows, columns=["sender", "receiver", "score"])
    return Attribution(nodes, edge_table, method, steps, clean_value, corrupt_value)
