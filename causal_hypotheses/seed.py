"""The seed's forward pass: ``res, cache = model(inputs, which, branch)``, with the seed's numbers.

This is the calling convention *and the semantics* of nano-causal-interventions (the "seed"),
rewritten on the unmodified HF GPT-2 modules.  The engine (:mod:`causal_hypotheses.engine`)
reads the same ``which``/``branch`` functions in its own grammar and gives other numbers;
see the README ("The engine", "The seed's forward pass").

The forward is a recursion from the output down through the blocks in order: ``ln_final``,
then for each layer from the last the MLP block ``f{i}``, then the attention block ``a{i}``,
down to the embedding ``emb``.  The *path* handed to ``which`` and ``branch`` is the list of
names visited from the top, a fresh Python ``list`` of ``str`` on every call, e.g.
``['ln_final', 'a11', 'a10', ..., 'a1', 'a1.head', 'a0', 'emb']``.

- ``emb``: ``which(path)`` returns the index of the input this embedding reads.
- ``a{i}`` (``branch(path)`` asked with the path ending in ``a{i}``):

  - ``False``: the block's input is computed along ``path`` (so ``a{i}`` stays in every path
    below) and both the residual and the heads read it;
  - ``True``: the residual is computed along ``path`` without ``a{i}``, and the heads along
    ``path + ['a{i}.head']``, where ``branch`` is asked again:

    - ``False``: every head reads the input computed along that path;
    - ``True`` or ``'heads'``: head h reads its input along ``... 'a{i}.head', 'a{i}.head{h}'``;
      ``branch`` asked there returning ``True`` splits that head's query, key and value
      inputs along ``... 'a{i}.head{h}', 'a{i}.head{h}.q'`` (``.k``, ``.v``);
    - ``'positions'``: position p of the heads' input is taken from the computation along
      ``... 'a{i}.head', 'a{i}.head.pos{p}'``.

- ``f{i}``: the residual is always computed along ``path`` without ``f{i}``.  ``False``: the
  MLP reads that same residual (so an unsplit ``f{i}`` never appears in the paths below).
  ``True``: the MLP reads its input computed along ``path + ['f{i}.head']``; ``branch``
  asked there may return ``'positions'`` (position p along ``... 'f{i}.head.pos{p}'``);
  ``False`` or ``True`` leave that input whole (an MLP has no heads).

Each distinct computation is done once: a block's output depends only on the inputs chosen
below it, so it is cached on a canonical *signature*, ``(kind, layer, signatures it reads)``,
hash-consed down to ``('emb', input index)`` at the leaves.  Unsplit blocks above a split one
read the summed stream: splitting ``a1`` and sending the paths through ``a1`` to input 1 is
activation patching of attention layer 1's output.

Dropout is never applied (the eval-mode forward).  Attention runs as the HF model's own
does (``config._attn_implementation``: ``sdpa`` through ``scaled_dot_product_attention``,
anything else as ``eager``), so that a run whose every path reads input k reproduces the
plain HF forward on input k exactly.
"""
from __future__ import annotations

import operator
import os
from dataclasses import dataclass, field
from collections.abc import Mapping, Sequence
from typing import Callable

import torch

from .errors import InputError, SelectorError, UnsupportedModelError

Path = list  # list[str]: the names visited from the output down, e.g. ['ln_final', 'a1', 'a1.head', 'a0', 'emb']
Which = Callable[[list], int]
Branch = Callable[[list], object]

_BRANCH_EXAMPLE = "e.g. def branch(path): return path[-1] == 'a1'"
_WHICH_EXAMPLE = "e.g. def which(path): return 1 if 'a1' in path else 0"


# --------------------------------------------------------------------------- results
@dataclass(frozen=True)
class Node:
    """One cached computation: a block's output stream (B, T, D) for one choice of inputs below it.

    ``key`` is the signature the cache is keyed on: ``('emb', k)``, ``('mix', (id per position))``,
    ``('a', i, residual id, heads)`` with ``heads`` one id (every head reads it) or a tuple of
    ``(q id, k id, v id)`` per head, or ``('f', i, residual id, MLP input id)``.
    """

    id: int
    key: tuple
    label: str
    inputs: frozenset  # the input indices read somewhere below
    reads: tuple  # ((child id, role), ...) for drawing


@dataclass
class SeedStats:
    computations: int = 0  # block computations (one per distinct signature) = len(cache)
    cache_hits: int = 0  # blocks reached again with a signature already computed
    paths_visited: int = 0  # paths the recursion walked (names appended)


@dataclass
class SeedResult:
    """What ``GPT2(...)(inputs, which, branch)`` returns first (the second value is the cache)."""

    hidden_states: torch.Tensor  # (B, T, D) after ln_f
    logits: torch.Tensor | None  # (B, T, V); None when the model has no LM head (a GPT2Model)
    nodes: list[Node]  # every computation, in the order it ran (children first)
    root: int  # id of the final residual stream (the input to ln_final)
    stats: SeedStats = field(default_factory=SeedStats)
    n_inputs: int = 1

    @property
    def computations(self) -> int:
        return self.stats.computations

    @property
    def cache_hits(self) -> int:
        return self.stats.cache_hits

    def visualise_path(self):
        """The computation as a ``graphviz.Digraph``: one node per computed block (the seed's
        drawing), filled with the colour of the input it reads, striped when several inputs
        meet below it; edges point toward the output and say what reads what."""
        import graphviz

        from .engine.drawing import PALETTE

        def colour(inputs: frozenset) -> dict:
            colours = [PALETTE[i % len(PALETTE)] for i in sorted(inputs)]
            if len(colours) == 1:
                return {"fillcolor": colours[0], "style": "filled"}
            return {"fillcolor": ":".join(colours), "style": "striped"}

        dot = graphviz.Digraph("seed", graph_attr={"rankdir": "BT"}, node_attr={"fontname": "Helvetica", "shape": "box"})
        for node in self.nodes:
            dot.node(str(node.id), node.label, **colour(node.inputs))
            for child, role in node.reads:
                dot.edge(str(child), str(node.id), label=role)
        top = self.nodes[self.root]
        dot.node("ln_final", "ln_final" + ("\nlogits" if self.logits is not None else ""), **colour(top.inputs))
        dot.edge(str(top.id), "ln_final")
        legend = ", ".join(f"input {i}: {PALETTE[i % len(PALETTE)]}" for i in range(self.n_inputs))
        dot.attr(label=f"colours: {legend}; striped = reads several inputs below", fontsize="10")
        return dot

    visualise = visualise_path

    def __repr__(self) -> str:
        return f"SeedResult(hidden_states={tuple(self.hidden_states.shape)}, {self.stats})"


# --------------------------------------------------------------------------- the model
class GPT2(torch.nn.Module):
    """The seed's path-selecting GPT-2: ``res, cache = GPT2(config, model)(inputs, which, branch)``.

    ``model`` is an HF ``GPT2LMHeadModel`` (``res.logits`` is then filled) or ``GPT2Model``;
    ``config`` its config.  ``verbose=True`` prints every path visited, the input each
    embedding reads, and every cache hit.
    """

    def __init__(self, config, model, verbose: bool = False) -> None:
        super().__init__()
        transformer = getattr(model, "transformer", model)
        if not all(hasattr(transformer, name) for name in ("wte", "wpe", "h", "ln_f")):
            raise UnsupportedModelError(
                f"GPT2 wraps an HF GPT2LMHeadModel or GPT2Model, got {type(model).__name__}; load one with "
                "create_gpt2('/path/to/checkpoint') or transformers.GPT2LMHeadModel.from_pretrained(...)"
            )
        if getattr(config, "add_cross_attention", False):
            raise UnsupportedModelError("GPT-2 with cross-attention (config.add_cross_attention=True) is not supported")
        self.config = config
        self.model = model
        self.transformer = transformer
        self.lm_head = getattr(model, "lm_head", None)
        self.verbose = verbose
        self.n_layer = len(transformer.h)
        self.n_head = transformer.h[0].attn.num_heads
        self.d_model = transformer.wte.embedding_dim
        self.d_head = self.d_model // self.n_head

    def attention_implementation(self) -> str:
        """The HF model's own (its config, not the one passed in, says what HF runs)."""
        for config in (getattr(self.transformer, "config", None), self.config):
            implementation = getattr(config, "_attn_implementation", None)
            if implementation:
                return implementation
        return "eager"

    def forward(self, inputs: Sequence, which: Which, branch: Branch | None = None):
        """Returns ``(res, cache)``: ``res`` a :class:`SeedResult`; ``cache`` a dict from each
        computation's signature (see :class:`Node`) to its output stream (B, T, D)."""
        for name, function in (("which", which), ("branch", branch)):
            if not callable(function) and not (name == "branch" and function is None):
                example = _WHICH_EXAMPLE if name == "which" else _BRANCH_EXAMPLE
                raise InputError(f"{name}={function!r} is a {type(function).__name__}; {name} must be a function of a path, {example}")
        tokens = _token_batches(inputs, self.config, self.transformer)
        device = self.transformer.wte.weight.device
        run = _Run(self, [t.to(device) for t in tokens], which, branch or (lambda path: False))
        with torch.no_grad():
            root = run.final_stream()
            final = run.values[run.nodes[root].key]
            hidden_states = self.transformer.ln_f(final)  # (B, T, D)
            logits = self.lm_head(hidden_states) if self.lm_head is not None else None  # (B, T, V)
        result = SeedResult(hidden_states, logits, run.nodes, root, run.stats, len(tokens))
        return result, run.values


class _Run:
    """One call's recursion: asks which/branch along paths, hash-conses signatures, computes each once."""

    def __init__(self, gpt2: GPT2, tokens: list[torch.Tensor], which: Which, branch: Branch) -> None:
        self.gpt2 = gpt2
        self.tokens = tokens  # one (B, T) LongTensor per input
        self.T = tokens[0].shape[1]
        self.which, self.branch = which, branch
        self.verbose = gpt2.verbose
        self.ids: dict[tuple, int] = {}  # signature -> node id
        self.nodes: list[Node] = []
        self.values: dict[tuple, torch.Tensor] = {}  # signature -> output stream (B, T, D): the cache
        self.stats = SeedStats()

    # ----------------------------------------------------------------- asking the user
    def visit(self, path: tuple) -> None:
        self.stats.paths_visited += 1
        if self.verbose:
            print(" ".join(path))

    def ask_which(self, path: tuple) -> int:
        answer = self.which(list(path))
        n = len(self.tokens)
        if isinstance(answer, bool) or not _is_int(answer):
            raise SelectorError(
                f"which({list(path)!r}) returned {answer!r} ({type(answer).__name__}); it must return the index of an "
                f"input, an int from 0 to {n - 1}, {_WHICH_EXAMPLE}"
            )
        index = operator.index(answer)
        if not 0 <= index < n:
            raise SelectorError(
                f"which({list(path)!r}) returned {index}, but there {'is' if n == 1 else 'are'} {n} input"
                f"{'' if n == 1 else 's'}; return an int from 0 to {n - 1}, or pass more inputs"
            )
        if self.verbose:
            print(f"    -> input {index}")
        return index

    def ask_branch(self, path: tuple, allowed: tuple) -> object:
        """``branch(path)``, checked against the answers that mean something at ``path[-1]``."""
        answer = self.branch(list(path))
        if isinstance(answer, bool) or (type(answer).__module__ == "numpy" and type(answer).__name__ in ("bool_", "bool")):
            return bool(answer)
        if isinstance(answer, str) and answer in allowed:
            return answer
        where = path[-1]
        expected = " or ".join(["True", "False", *(repr(a) for a in allowed)])
        if isinstance(answer, str) and answer in ("heads", "positions"):
            applies = "'a{i}.head'" + (" and 'f{i}.head'" if answer == "positions" else "")
            fix = f"{answer!r} splits the input at {applies} only; at {where!r} return {expected}"
        elif answer is None:
            fix = f"return {expected}, not None (a function that ends without `return` gives None)"
        else:
            fix = f"at {where!r} return {expected}"
        raise InputError(f"branch({list(path)!r}) returned {answer!r} ({type(answer).__name__}); {fix}; {_BRANCH_EXAMPLE}")

    # ----------------------------------------------------------------- the recursion
    def final_stream(self) -> int:
        path = ("ln_final",)
        self.visit(path)
        return self.mlp_block(self.gpt2.n_layer - 1, path)

    def stream_into(self, i: int, path: tuple) -> int:
        """The residual stream entering layer i: the output of MLP block i-1, or the embedding."""
        return self.embedding(path) if i == 0 else self.mlp_block(i - 1, path)

    def embedding(self, path: tuple) -> int:
        path = path + ("emb",)
        self.visit(path)
        index = self.ask_which(path)
        return self.node(("emb", index), f"emb\ninput {index}", frozenset([index]), ())

    def attention_block(self, i: int, path: tuple) -> int:
        name = f"a{i}"
        path = path + (name,)
        self.visit(path)
        if not self.ask_branch(path, ()):
            stream = self.stream_into(i, path)  # a{i} stays in every path below
            return self.attention_node(i, stream, stream)
        residual = self.stream_into(i, path[:-1])  # the residual's paths skip a{i}
        heads = self.attention_heads(i, path + (f"{name}.head",))
        return self.attention_node(i, residual, heads)

    def attention_heads(self, i: int, path: tuple):
        """What the heads of layer i read: one stream id, or a (q, k, v) triple of ids per head."""
        self.visit(path)
        how = self.ask_branch(path, ("heads", "positions"))
        if how is False:
            return self.stream_into(i, path)
        if how == "positions":
            return self.mix([self.stream_into(i, path + (f"a{i}.head.pos{p}",)) for p in range(self.T)])
        per_head = []
        for h in range(self.gpt2.n_head):
            head_path = path + (f"a{i}.head{h}",)
            self.visit(head_path)
            if self.ask_branch(head_path, ()):
                per_head.append(tuple(self.stream_into(i, head_path + (f"a{i}.head{h}.{c}",)) for c in "qkv"))
            else:
                per_head.append((self.stream_into(i, head_path),) * 3)
        streams = {s for triple in per_head for s in triple}
        return streams.pop() if len(streams) == 1 else tuple(per_head)  # canonical: one id when all agree

    def mlp_block(self, i: int, path: tuple) -> int:
        name = f"f{i}"
        path = path + (name,)
        self.visit(path)
        split = self.ask_branch(path, ())
        residual = self.attention_block(i, path[:-1])  # f{i} is never in the residual's paths
        if not split:
            return self.mlp_node(i, residual, residual)
        head_path = path + (f"{name}.head",)
        self.visit(head_path)
        how = self.ask_branch(head_path, ("positions",))
        if how == "positions":
            mlp_input = self.mix([self.attention_block(i, head_path + (f"{name}.head.pos{p}",)) for p in range(self.T)])
        else:
            mlp_input = self.attention_block(i, head_path)
        return self.mlp_node(i, residual, mlp_input)

    # ----------------------------------------------------------------- signatures and the cache
    def node(self, key: tuple, label: str, inputs: frozenset, reads: tuple, compute: Callable | None = None) -> int:
        """The id of the computation with signature ``key``, computing it on first sight."""
        if key in self.ids:
            self.stats.cache_hits += 1
            if self.verbose:
                print(f"    cache hit: {label.splitlines()[0]} (node {self.ids[key]})")
            return self.ids[key]
        value = self.compute_embedding(key[1]) if compute is None else compute()
        node = Node(len(self.nodes), key, label, inputs, reads)
        self.ids[key] = node.id
        self.nodes.append(node)
        self.values[key] = value
        self.stats.computations += 1
        return node.id

    def value(self, node_id: int) -> torch.Tensor:
        return self.values[self.nodes[node_id].key]

    def inputs_of(self, *ids: int) -> frozenset:
        return frozenset().union(*(self.nodes[n].inputs for n in ids))

    def mix(self, per_position: list[int]) -> int:
        """A stream whose position p comes from ``per_position[p]`` (one id when all agree)."""
        if len(set(per_position)) == 1:
            return per_position[0]
        key = ("mix", tuple(per_position))
        reads = tuple((child, "pos " + ",".join(str(p) for p, c in enumerate(per_position) if c == child))
                      for child in dict.fromkeys(per_position))

        def compute() -> torch.Tensor:
            stream = self.value(per_position[0]).clone()  # (B, T, D); never write into a cached value
            for p, child in enumerate(per_position):
                stream[:, p] = self.value(child)[:, p]
            return stream

        return self.node(key, "positions", self.inputs_of(*per_position), reads, compute)

    def attention_node(self, i: int, residual: int, heads) -> int:
        key = ("a", i, residual, heads)
        if isinstance(heads, int):
            head_ids = (heads,)
            reads = ((residual, ""),) if heads == residual else ((residual, "resid"), (heads, "heads"))
        else:
            head_ids = tuple(s for triple in heads for s in triple)
            reads = ((residual, "resid"),) + _head_roles(heads)
        return self.node(key, f"a{i}", self.inputs_of(residual, *head_ids), reads,
                         lambda: self.value(residual) + self.attention(i, heads))

    def mlp_node(self, i: int, residual: int, mlp_input: int) -> int:
        key = ("f", i, residual, mlp_input)
        reads = ((residual, ""),) if mlp_input == residual else ((residual, "resid"), (mlp_input, "mlp"))
        block = self.gpt2.transformer.h[i]
        return self.node(key, f"f{i}", self.inputs_of(residual, mlp_input), reads,
                         lambda: self.value(residual) + block.mlp(block.ln_2(self.value(mlp_input))))

    # ----------------------------------------------------------------- the math (HF modules, unmodified)
    def compute_embedding(self, index: int) -> torch.Tensor:
        transformer = self.gpt2.transformer
        tokens = self.tokens[index]  # (B, T)
        positions = torch.arange(tokens.shape[1], device=tokens.device)  # (T,)
        return transformer.wte(tokens) + transformer.wpe(positions)  # (B, T, D)

    def attention(self, i: int, heads) -> torch.Tensor:
        """Attention layer i's output (B, T, D), c_proj bias included, before the residual add.

        ``heads`` is one stream id (every head reads it) or a (q, k, v) triple of ids per head.
        c_attn's output (B, T, 3D) is ``[q | k | v]``, each D wide with head h in columns
        ``h*dh:(h+1)*dh``; a head's query, key or value is that slice of c_attn applied to the
        stream it reads.  c_proj's rows ``h*dh:(h+1)*dh`` carry head h to the residual stream.
        """
        gpt2 = self.gpt2
        block = gpt2.transformer.h[i]
        attn = block.attn
        D, H, dh = gpt2.d_model, gpt2.n_head, gpt2.d_head
        if isinstance(heads, int):
            qkv = attn.c_attn(block.ln_1(self.value(heads)))  # (B, T, 3D)
        else:
            projected: dict[int, torch.Tensor] = {}  # stream id -> c_attn(ln_1(stream)), once per stream
            qkv = None
            for h, triple in enumerate(heads):
                for c, stream in enumerate(triple):  # c: 0 query, 1 key, 2 value
                    if stream not in projected:
                        projected[stream] = attn.c_attn(block.ln_1(self.value(stream)))  # (B, T, 3D)
                    if qkv is None:
                        qkv = torch.empty_like(projected[stream])
                    columns = slice(c * D + h * dh, c * D + (h + 1) * dh)
                    qkv[..., columns] = projected[stream][..., columns]
        B, T, _ = qkv.shape
        query, key, value = qkv.split(D, dim=2)  # each (B, T, D)
        query = query.view(B, T, H, dh).transpose(1, 2)  # (B, H, T, dh)
        key = key.view(B, T, H, dh).transpose(1, 2)
        value = value.view(B, T, H, dh).transpose(1, 2)
        z = self.attend(attn, query, key, value)  # (B, H, T, dh)
        z = z.transpose(1, 2).contiguous().reshape(B, T, D).contiguous()  # (B, T, D): head h in columns h*dh:(h+1)*dh
        return attn.c_proj(z)  # (B, T, D)

    def attend(self, attn, query, key, value) -> torch.Tensor:
        """Causal softmax attention (B, H, T, dh) -> (B, H, T, dh), as HF computes it."""
        T, dh = query.shape[2], query.shape[3]
        scaling = getattr(attn, "scaling", None)
        if scaling is None:  # older transformers: the same factor, from the config
            scaling = dh**-0.5 if attn.scale_attn_weights else 1.0
            if attn.scale_attn_by_inverse_layer_idx:
                scaling /= float(attn.layer_idx + 1)
        if self.gpt2.attention_implementation() == "sdpa":
            return torch.nn.functional.scaled_dot_product_attention(query, key, value, scale=scaling, is_causal=T > 1)
        scores = torch.matmul(query, key.transpose(-1, -2)) * scaling  # (B, H, T, T): query t, key s
        future = torch.ones(T, T, dtype=torch.bool, device=scores.device).triu(1)  # s > t
        scores = scores.masked_fill(future, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=-1).type(value.dtype)  # (B, H, T, T)
        return torch.matmul(weights, value)


def _head_roles(heads: tuple) -> tuple:
    """Edge labels for the streams a split attention layer reads: 'h0 h1' for whole heads, 'h2.q' for one input."""
    roles: dict[int, list[str]] = {}
    for h, triple in enumerate(heads):
        if len(set(triple)) == 1:
            roles.setdefault(triple[0], []).append(f"h{h}")
        else:
            for c, stream in zip("qkv", triple):
                roles.setdefault(stream, []).append(f"h{h}.{c}")
    return tuple((stream, " ".join(names)) for stream, names in roles.items())


def _is_int(value) -> bool:
    try:
        operator.index(value)
    except TypeError:
        return False
    return not (torch.is_tensor(value) and value.dtype == torch.bool)


# --------------------------------------------------------------------------- inputs
def _token_batches(inputs, config, transformer) -> list[torch.Tensor]:
    """One LongTensor (B, T) per input, all of one shape, unpadded, within the vocabulary."""
    if isinstance(inputs, (torch.Tensor, Mapping, str)) or not isinstance(inputs, Sequence):
        raise InputError(
            f"inputs must be a list of inputs (tokenizer outputs or LongTensors (B, T)), got {type(inputs).__name__}; "
            "wrap a single input in a list: [tokenizer(text, return_tensors='pt')]"
        )
    inputs = list(inputs)
    if not inputs:
        raise InputError("inputs is empty; pass at least one input, e.g. [tokenizer(clean, ...), tokenizer(corrupt, ...)]")
    vocab = transformer.wte.num_embeddings
    n_positions = transformer.wpe.num_embeddings
    batches: list[torch.Tensor] = []
    for i, item in enumerate(inputs):
        ids = item
        if isinstance(item, Mapping):  # a tokenizer output (BatchEncoding) or a dict
            if "input_ids" not in item:
                raise InputError(f"inputs[{i}] is a mapping without 'input_ids' (keys {sorted(map(str, item.keys()))}); "
                                 "pass tokenizer(text, return_tensors='pt')")
            ids, mask = item["input_ids"], item.get("attention_mask")
            if mask is not None and torch.is_tensor(mask) and not bool((mask == 1).all()):
                raise InputError(
                    f"inputs[{i}] has padding (its attention_mask contains zeros); this forward uses no attention mask, "
                    "so padding would be read as tokens: use prompts of equal token length, without padding"
                )
        if not torch.is_tensor(ids):
            hint = " (tokenize with return_tensors='pt')" if isinstance(ids, (list, tuple)) else ""
            raise InputError(f"inputs[{i}] holds a {type(ids).__name__}; expected a LongTensor of token ids (B, T){hint}")
        if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
            raise InputError(f"inputs[{i}] has dtype {ids.dtype}; expected integer token ids: convert with .long()")
        if ids.dim() == 1:
            ids = ids[None]
        if ids.dim() != 2 or 0 in ids.shape:
            raise InputError(f"inputs[{i}] has shape {tuple(ids.shape)}; expected token ids (B, T) with B, T > 0")
        if batches and ids.shape != batches[0].shape:
            raise InputError(
                f"inputs[{i}] has shape {tuple(ids.shape)} but inputs[0] has {tuple(batches[0].shape)}; all inputs must "
                "share one shape (B, T), because a block may read position p of one input and position p of another: "
                "use prompts of equal token length and equal batch size"
            )
        if ids.shape[1] > n_positions:
            raise InputError(f"inputs[{i}] has {ids.shape[1]} tokens; the model has {n_positions} positions: shorten the prompt")
        low, high = int(ids.min()), int(ids.max())
        if low < 0 or high >= vocab:
            bad = low if low < 0 else high
            raise InputError(f"inputs[{i}] holds token id {bad}, outside the vocabulary 0..{vocab - 1}: "
                             "tokenize with this model's tokenizer")
        batches.append(ids.long())
    return batches


# --------------------------------------------------------------------------- loading
def create_gpt2(name_or_path: str | os.PathLike | None = None, *, name: str | os.PathLike | None = None):
    """``(config, tokenizer, model)`` from a local checkpoint: the seed's loader, offline.

    ``name_or_path`` (or the seed's keyword ``name=``) is a directory holding ``config.json``
    and the weights, or a hub name already in the local Hugging Face cache; nothing is
    downloaded.  The tokenizer comes from the same place, or, when it has no tokenizer files,
    from :func:`causal_hypotheses.models.gpt2_tokenizer` (GPT-2's BPE, offline).  The model
    is a ``GPT2LMHeadModel`` in eval mode, so ``res.logits`` is filled.
    """
    if name_or_path is not None and name is not None and str(name_or_path) != str(name):
        raise InputError(f"create_gpt2 got {name_or_path!r} and name={name!r}; pass one checkpoint")
    source = name_or_path if name_or_path is not None else name
    if source is None:
        raise InputError("create_gpt2() needs a checkpoint: create_gpt2('/path/to/gpt2'), a local directory holding "
                         "config.json and the weights (nothing is downloaded)")
    from transformers import GPT2Config, GPT2LMHeadModel

    source = os.fspath(source)
    advice = ("nothing is downloaded: pass a local directory holding config.json and the weights "
              "(e.g. one written by model.save_pretrained(path)), or a hub name already in the local cache")
    try:
        config = GPT2Config.from_pretrained(source, local_files_only=True)
        model = GPT2LMHeadModel.from_pretrained(source, config=config, local_files_only=True)
    except (OSError, ValueError) as error:
        raise InputError(f"could not load a GPT-2 checkpoint from {source!r} ({error.__class__.__name__}); {advice}") from error
    return model.config, _tokenizer_for(source), model.eval()


def _tokenizer_for(source: str):
    from .models import gpt2_tokenizer

    names = ("tokenizer.json", "vocab.json", "tokenizer_config.json")
    if os.path.isdir(source) and not any(os.path.exists(os.path.join(source, n)) for n in names):
        return gpt2_tokenizer()
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(source, local_files_only=True)
    except (OSError, ValueError):
        return gpt2_tokenizer()


__all__ = ["GPT2", "Node", "SeedResult", "SeedStats", "create_gpt2"]
