"""Looking inside: a batch's activations, read from the engine's cache by name, and each
writer's direct contribution to a logit difference.

``acts = engine.activations(tokens)`` runs (or finds in the engine's activation cache) one
ordinary forward on ``tokens`` (B, T) and returns a :class:`CachedActivations`, a read-only
mapping from names to tensors.  Component names are the graph's (:mod:`causal_hypotheses.graph`);
a suffix names what is read inside a head; residual streams are named as the capture layout
(engine/adapter.py) names them::

    embed              (B, T, D)   token embedding (plus learned positions)
    resid_pre.{L}      (B, T, D)   the residual stream attention layer L reads
    resid_mid.{L}      (B, T, D)   the residual stream MLP L reads (resid_pre.{L} again where
                                   attention and MLP of a layer run in parallel)
    resid_post.{L}     (B, T, D)   the residual stream after layer L: resid_pre.{L+1}, and
                                   resid_final after the last layer
    resid_final        (B, T, D)   the residual stream the final norm reads
    a{L}               (B, T, D)   attention layer L's output, its output bias included
    a{L}.pattern       (B, H, T, T) every head's attention probabilities (a{L}.h{H}.pattern stacked)
    a{L}.h{H}          (B, T, D)   head H's write to the residual stream (no bias: the output
                                   bias belongs to no head); the heads of a{L} plus its bias sum to a{L}
    a{L}.h{H}.z        (B, T, dh)  head H's attention output, before the output projection
    a{L}.h{H}.q/.k/.v  (B, T, dh)  its query, key and value as attention uses them (after any rotary
                                   rotation; under grouped-query attention the key and value of its group)
    a{L}.h{H}.pattern  (B, T, T)   its attention probabilities, query x key: each row sums to 1,
                                   zero where the query may not read the key
    m{L}               (B, T, D)   MLP L's output

D is the model width, dh the head width.  An unknown name is an UnknownComponentError that
names the nearest valid ones.
"""
from __future__ import annotations

import difflib
import numbers
import re
from collections.abc import Iterator, Mapping

import torch

from ..errors import InputError, UnknownComponentError
from ..graph import CHANNELS, component

_RESID = re.compile(r"^resid_(pre|mid|post)\.(\d+)$")
_HEAD_PARTS = ("z", *CHANNELS, "pattern")


class CachedActivations(Mapping):
    """A batch's activations by name (see the module docstring for names and shapes).

    Tensors are views of the engine's captured activations, on the engine's device: clone one
    before changing it in place.  Iterating gives every name; ``acts.shape(name)`` the shape
    without computing anything."""

    def __init__(self, adapter, tokens: torch.Tensor, captured: dict) -> None:
        self.adapter = adapter
        self.tokens = tokens  # (B, T)
        self._acts = captured
        self._names: list[str] | None = None
        self._known: frozenset[str] = frozenset()

    # ------------------------------------------------------------------ names
    def names(self) -> list[str]:
        """Every valid name, in the order of the residual stream."""
        if self._names is None:
            adapter = self.adapter
            names = ["embed"]
            for layer in range(adapter.n_layers):
                names += [f"resid_pre.{layer}", f"a{layer}", f"a{layer}.pattern"]
                for head in range(adapter.n_heads):
                    names += [f"a{layer}.h{head}"] + [f"a{layer}.h{head}.{part}" for part in _HEAD_PARTS]
                names += [f"resid_mid.{layer}", f"m{layer}", f"resid_post.{layer}"]
            self._names = names + ["resid_final"]
            self._known = frozenset(self._names)
        return self._names

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __contains__(self, name: object) -> bool:
        self.names()
        return isinstance(name, str) and name in self._known

    def get(self, name, default=None):
        return self[name] if name in self else default

    def _unknown(self, name) -> UnknownComponentError:
        shown = name if isinstance(name, str) else str(name)
        near = difflib.get_close_matches(shown, self.names(), n=3, cutoff=0.6)
        hint = f"nearest valid names: {', '.join(map(repr, near))}; " if near else ""
        adapter = self.adapter
        return UnknownComponentError(
            f"{name!r} is not an activation name of this {adapter.n_layers}-layer, {adapter.n_heads}-head model; {hint}names are "
            "'embed', 'resid_pre.{L}', 'resid_mid.{L}', 'resid_post.{L}', 'resid_final', 'a{L}', 'a{L}.pattern', "
            "'a{L}.h{H}', 'a{L}.h{H}.z', "
            f"'a{{L}}.h{{H}}.q' (.k, .v), 'a{{L}}.h{{H}}.pattern', 'm{{L}}' with L in 0..{adapter.n_layers - 1} and H in "
            f"0..{adapter.n_heads - 1} (list(acts) gives them all)"
        )

    # ------------------------------------------------------------------ reading
    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self:
            raise self._unknown(name)
        acts, adapter = self._acts, self.adapter
        if name == "embed":
            return acts["embed"]
        if name == "resid_final":
            return acts["resid_final"]
        match = _RESID.match(name)
        if match:
            where, layer = match.group(1), int(match.group(2))
            if where == "post":
                return acts["resid_final"] if layer == adapter.n_layers - 1 else acts["resid_pre"][layer + 1]
            return acts["resid_pre" if where == "pre" else "resid_mid"][layer]
        parsed = component(name.rsplit(".", 1)[0] if name.endswith((".z", ".pattern")) else name)
        layer, head = parsed.layer, parsed.head
        if parsed.kind == "mlp":
            return acts["mlp_out"][layer]
        if head is None and name.endswith(".pattern"):
            qkv = acts["qkv"][layer]  # (B, T, 3, H, dh)
            with torch.no_grad():
                return adapter.pattern(layer, qkv[:, :, 0].transpose(1, 2), qkv[:, :, 1].transpose(1, 2))
        if head is None:
            return acts["attn_out"][layer]
        if name.endswith(".z"):
            return acts["z"][layer][:, :, head]
        if name.endswith(".pattern"):
            qkv = acts["qkv"][layer]  # (B, T, 3, H, dh)
            q, k = qkv[:, :, 0, head].unsqueeze(1), qkv[:, :, 1, head].unsqueeze(1)  # (B, 1, T, dh)
            with torch.no_grad():
                return adapter.pattern(layer, q, k)[:, 0]
        if parsed.channel is not None:
            return acts["qkv"][layer][:, :, CHANNELS.index(parsed.channel), head]
        with torch.no_grad():
            return adapter.head_from_core(layer, head, acts["z"][layer])

    def shape(self, name: str) -> tuple[int, ...]:
        """The shape ``acts[name]`` has (see the module docstring)."""
        if name not in self:
            raise self._unknown(name)
        B, T = self.tokens.shape
        adapter = self.adapter
        if name.endswith(".pattern"):
            return (B, T, T) if ".h" in name else (B, adapter.n_heads, T, T)
        if name.endswith((".z", ".q", ".k", ".v")):
            return (B, T, adapter.d_head)
        return (B, T, adapter.d_model)

    # ------------------------------------------------------------------ direct logit attribution
    def direct_contributions(self, answer, distractor, position: int = -1) -> tuple[list[str], torch.Tensor]:
        """Each writer's direct contribution to logit[answer] - logit[distractor] at ``position``.

        Returns the writers' names and a float32 tensor (B, W): ``embed``, then per layer each
        head ``a{L}.h{H}``, the layer's output bias ``a{L} bias`` (which belongs to no head; zero
        for layers without one) and ``m{L}``, and last ``final bias`` (the final norm's shift and
        the unembedding's bias, read along the direction).  A writer's output c at the position
        goes through the final norm with the norm's scale *frozen* at its value in this run (the
        standard convention: the norm is otherwise not linear) and through the unembedding,
        projected on W_U[answer] - W_U[distractor].  With the scale frozen the map is linear, so
        the row sums to the logit difference of this run (up to float error).

        ``answer`` and ``distractor``: token ids, an int each or a LongTensor (B,) (one per example).
        """
        adapter = self.adapter
        B, T = self.tokens.shape
        p = _position(position, T)
        answer, distractor = (_token_ids(x, label, B, adapter.vocab_size) for x, label in ((answer, "answer"), (distractor, "distractor")))
        acts = self._acts
        device = acts["embed"].device
        unembed = adapter.model.get_output_embeddings()
        W = unembed.weight.detach().float()  # (V, D)
        answer, distractor = answer.to(device), distractor.to(device)
        direction = W[answer] - W[distractor]  # (B, D)
        scale, gain, shift, centred = adapter.frozen_final_norm(acts["resid_final"][:, p])
        read = direction * gain  # what the final norm's output is read along, per example (B, D)
        if centred:  # (c - mean c) . r == c . (r - mean r)
            read = read - read.mean(-1, keepdim=True)
        read = read / scale  # (B, D)

        def along(written: torch.Tensor) -> torch.Tensor:  # (B, D) -> (B,)
            return (written.float() * read).sum(-1)

        names, columns = ["embed"], [along(acts["embed"][:, p])]
        with torch.no_grad():
            for layer in range(adapter.n_layers):
                z = acts["z"][layer][:, p : p + 1]  # (B, 1, H, dh)
                for head in range(adapter.n_heads):
                    names.append(f"a{layer}.h{head}")
                    columns.append(along(adapter.head_from_core(layer, head, z)[:, 0]))
                bias = adapter.layer_from_core(layer, torch.zeros_like(z[:1]))[0, 0]  # (D,): the output bias alone
                names.append(f"a{layer} bias")
                columns.append(along(bias.expand(B, -1)))
                names.append(f"m{layer}")
                columns.append(along(acts["mlp_out"][layer][:, p]))
            constant = torch.zeros(B, device=device)
            if shift is not None:
                constant = constant + (direction * shift).sum(-1)
            if getattr(unembed, "bias", None) is not None:
                b = unembed.bias.detach().float()
                constant = constant + b[answer] - b[distractor]
            names.append("final bias")
            columns.append(constant)
        return names, torch.stack(columns, dim=1)


def _position(position, T: int) -> int:
    if isinstance(position, bool) or not isinstance(position, numbers.Integral) or not -T <= position < T:
        raise InputError(f"position={position!r}: expected an int index into the {T} positions of the prompt, e.g. -1 (the last)")
    return int(position) % T


def _token_ids(value, label: str, batch: int, vocab: int) -> torch.Tensor:
    """One token id per example, (B,) LongTensor, from an int or a tensor of B ids."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        ids = torch.full((batch,), int(value), dtype=torch.long)
    elif torch.is_tensor(value) and not value.dtype.is_floating_point and value.dtype != torch.bool and value.dim() <= 1:
        ids = value.long().reshape(-1)
        if ids.numel() == 1:
            ids = ids.expand(batch)
        if ids.numel() != batch:
            raise InputError(f"{label} has {ids.numel()} token ids for {batch} examples; give one per example, or an int for all")
    else:
        raise InputError(f"{label}={value!r}: expected a token id (an int) or a LongTensor of one id per example (B,)")
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or high >= vocab:
        raise InputError(f"{label} holds token id {low if low < 0 else high}; valid ids are 0..{vocab - 1}")
    return ids


def read_activations(engine, tokens) -> CachedActivations:
    """``engine.activations(tokens)``: one forward on tokens (B, T) (a 1-D prompt, or a tokenizer
    output), served from the engine's activation cache where its rows are there already."""
    from .core import _as_token_batches

    batch = _as_token_batches([tokens], engine.adapter)[0]
    if not torch.is_tensor(batch):
        raise InputError("activations() reads token ids (B, T), not a MeanInput or ZeroInput; pass the tokens")
    batch = batch.to(engine.device)
    captured, _ = engine.cache.activations(batch, engine.adapter.capture)
    return CachedActivations(engine.adapter, batch, captured)
