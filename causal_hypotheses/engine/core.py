"""The path-selecting forward pass: ``Engine.run(inputs, which, branch)``.

A run has three steps: plan (walk the tree, asking ``branch`` where to split and
``which`` what each unsplit part reads), capture (one ordinary forward over the distinct
input rows the plan reads, reusing the engine's activation cache), and evaluate (each
distinct node once, in order, on the entries where its value differs from the captured
one and someone reads it, freeing values as soon as nothing needs them; see evaluate.py).
"""
from __future__ import annotations

import numbers
import time
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch

from ..errors import InputError, UnsupportedModelError
from ..graph import ModelGraph
from .cache import ActivationCache, check_cache_bytes, tree_map
from .evaluate import Evaluator, live_entries
from .flops import Costs
from .ir import Node, Op
from .plan import Planner, Selector

if TYPE_CHECKING:
    from .activations import CachedActivations
    from .lazy import Deferred

Which = Callable[..., object]
Branch = Callable[..., bool]


class MeanInput:
    """An input whose activations are, at every site and position, the mean over ``tokens``
    (M, T) examples: reading it is mean ablation."""

    def __init__(self, tokens: torch.Tensor) -> None:
        self.tokens = tokens
        self._mean = None  # (engine weakref, device, mean activations) once an engine has averaged them


class ZeroInput:
    """An input on which every component computes zero: reading it is zero ablation.

    The embedding, each head and each MLP output zero; an attention layer's constant output
    bias belongs to no head and stays (see ``Adapter.zero_activations``), so reading a whole
    layer from this input and reading each of its heads from it agree."""


@dataclass(frozen=True)
class RunStats:
    """Work counters of one run; benchmarks and tests read them."""

    forward_passes: int  # capturing forwards run (0 when every row was cached)
    rows_computed: int  # distinct input rows run through the model
    rows_from_cache: int  # distinct input rows served by the activation cache
    node_evaluations: int  # distinct computed nodes (split components, sums, final)
    gathers: int  # distinct reads of captured activations
    memo_hits: int  # times a node or subtree was found already planned
    paths_visited: int  # calls made to which() and branch()
    seconds: float
    # Work (see engine/flops.py): token positions recomputed per component kind ("qkv",
    # "attention", "out", "mlp", "unembed"; one per head for the attention kinds), and matmul FLOPs.
    rows: Mapping[str, int] = field(default_factory=dict)
    capture_flops: int = 0  # the capturing forwards (rows_computed rows, no unembedding)
    recomputed_flops: int = 0  # everything evaluated after capture, unembedding included
    needed_flops: int = 0  # of recomputed_flops, the entries the result reads and that may change
    logit_columns: int = 0  # vocabulary columns unembedded at each position (V unless logit_vocab; see Deferred)

    def with_more_columns(self, columns: int, flops: int) -> "RunStats":
        """These counters after ``columns`` more vocabulary columns were unembedded at the run's
        positions for ``flops`` (``Deferred``: a metric read columns the run lacked)."""
        return replace(self, logit_columns=self.logit_columns + columns, recomputed_flops=self.recomputed_flops + flops,
                       needed_flops=self.needed_flops + flops)

    @property
    def cache_hits(self) -> int:
        """Reused work: planned nodes found again plus input rows served from the cache."""
        return self.memo_hits + self.rows_from_cache

    @property
    def flops(self) -> int:
        """Matmul FLOPs this run computed: capture plus recomputation."""
        return self.capture_flops + self.recomputed_flops

    @property
    def floor_flops(self) -> int:
        """The floor of this run: one forward per distinct input row it captured, plus the
        recomputed components' FLOPs at the entries that the result reads and that may change
        (attention: those query positions alone).  ``flops / floor_flops`` is the overhead."""
        return self.capture_flops + self.needed_flops


class RunResult:
    """What ``Engine.run`` returns: outputs, counters and the plan for drawing."""

    def __init__(self, logits, hidden_states, stats: RunStats, root: Node, planner: Planner, n_inputs: int):
        self.logits = logits  # (B, T, V); (B, P, K) with logit_positions and logit_vocab
        self.hidden_states = hidden_states  # (B, T, D) after the final norm; (B, P, D) with logit_positions
        self.stats = stats
        self.root = root
        self._planner = planner
        self.n_inputs = n_inputs

    @property
    def forward_passes(self) -> int:
        return self.stats.forward_passes

    @property
    def node_evaluations(self) -> int:
        return self.stats.node_evaluations

    @property
    def cache_hits(self) -> int:
        return self.stats.cache_hits

    def visualise(self, *, depth="auto"):
        """The treeified computation as a ``graphviz.Digraph``, nodes coloured by input read;
        ``depth=`` as in :func:`causal_hypotheses.engine.drawing.plan_to_digraph` (by default a
        plan of more than 150 nodes is cut at the deepest depth that keeps it within 150)."""
        from .drawing import plan_to_digraph

        return plan_to_digraph(self.root, self._planner.selectors, self.n_inputs, depth=depth)

    visualise_path = visualise  # the seed's name

    def __repr__(self) -> str:
        return f"RunResult(logits={tuple(self.logits.shape)}, {self.stats})"


class Engine:
    """A transformer whose forward pass can send different inputs down different paths.

    ``which(path)`` says what a path reads: an input index, a LongTensor (B,) of input
    indices (one per example), or (B, T) (one per example and position).
    ``branch(path)`` says where to split: an unsplit prefix is one ordinary forward on
    ``which(prefix)``.  It answers True, False, a bool tensor (B,) to split some examples only,
    or (B, T) to split some entries only (the rest read ``which(path)``).  Paths and names are described in :mod:`causal_hypotheses.graph`.
    """

    def __init__(self, model, *, cache_bytes: int = 2 * 1024**3, max_paths: int = 200_000) -> None:
        cache_bytes = check_cache_bytes(cache_bytes)
        if isinstance(max_paths, bool) or not isinstance(max_paths, numbers.Integral) or max_paths < 1:
            raise InputError(
                f"max_paths={max_paths!r}: expected a positive int, the most paths a plan may visit, "
                "e.g. 200_000 (the default)"
            )
        self.model = model.eval()
        self.adapter = _adapter_for(model)
        self.graph: ModelGraph = self.adapter.graph
        self.cache = ActivationCache(cache_bytes)
        self.max_paths = int(max_paths)
        self.costs = Costs(self.adapter)  # FLOPs per position of each component (work counters)

    @classmethod
    def from_hf(cls, model, **options) -> "Engine":
        """Wrap a loaded ``transformers`` model (random or pretrained weights); puts it in eval mode."""
        return cls(model, **options)

    @classmethod
    def from_pretrained(cls, name_or_path: str, *, dtype: torch.dtype = torch.float32, device: str = "cpu", **options) -> "Engine":
        """Load a checkpoint by hub name (when cached locally) or directory, then wrap it.

        Its config is read first: a model type the engine does not support is an
        UnsupportedModelError naming the supported ones, before any weights load."""
        from transformers import AutoConfig, AutoModelForCausalLM

        from .architectures import architecture_of

        try:
            config = AutoConfig.from_pretrained(name_or_path)
            architecture_of(getattr(config, "model_type", None), f"the checkpoint {name_or_path!r}")
            model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=dtype)
        except OSError as error:
            raise InputError(
                f"could not load {name_or_path!r}: {error}. Without network access a model loads only "
                "from a local directory or the local Hugging Face cache; pass a directory that holds "
                "config.json and the weights"
            ) from error
        return cls(model.to(device), **options)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def run(
        self,
        inputs: Sequence,
        which: Which,
        branch: Branch | None = None,
        *,
        key: Callable | None = None,
        logit_positions: int | Sequence[int] | None = None,
        logit_vocab: int | Sequence[int] | None = None,
    ) -> RunResult:
        """Run the path-selecting forward pass.

        ``key(path)``, optional, returns a hashable summary of a path such that two paths
        with equal keys (and equal last names) have identical ``which``/``branch`` answers
        on themselves and every extension: their subtrees are planned once.  Without it,
        the planner still merges identical computations, but walks every path.  Where the
        answers depend on a path's last name only, pass ``key=constant_key`` (engine/plan.py:
        0 for every path): the planner knows it is constant, so it never calls it and plans
        each residual stream once.

        ``logit_positions`` (an index or list of indices into T) computes the output at
        those positions only: ``logits`` is then (B, P, V) and ``hidden_states`` (B, P, D).
        Everything that only later positions read is skipped, which saves time and
        memory when a metric reads one position of a large batch.

        ``logit_vocab`` (a token id or a list of ids in 0..V-1) computes the logits of those
        vocabulary ids only: ``logits`` is then (B, P, K), column k the logit of ``logit_vocab[k]``,
        and the unembedding costs K x D multiply-adds per position instead of V x D.  A metric
        that reads a few ids (a logit difference) needs no more; one that reads whole rows (a
        softmax, an argmax) needs every column.
        """
        started = time.perf_counter()
        for name, function, optional in (("which", which, False), ("branch", branch, True), ("key", key, True)):
            if not callable(function) and not (optional and function is None):
                raise InputError(
                    f"{name}={function!r} is a {type(function).__name__}; {name} must be a function of a path"
                    + (", e.g. lambda path: 1 if 'a1' in path else 0" if name == "which" else
                       ", e.g. lambda path: path[-1] == 'a1', or None" if name == "branch" else " returning a hashable summary, or None")
                )
        tokens = _as_token_batches(inputs, self.adapter)
        B, T = next(t for t in tokens if torch.is_tensor(t)).shape
        positions = _logit_positions(logit_positions, T)
        vocab = check_logit_vocab(logit_vocab, self.adapter.vocab_size)
        planner = Planner(self.graph, len(tokens), B, T, which, branch, key, self.max_paths)
        root = planner.root(positions, vocab)

        synthetic = {i: item for i, item in enumerate(tokens) if not torch.is_tensor(item)}
        placeholder = torch.zeros(B, T, dtype=torch.long)
        flat = torch.cat([placeholder if i in synthetic else t for i, t in enumerate(tokens)]).to(self.device)  # (N*B, T)
        order = _reachable(root)
        gathers = [node for node in order if node.op in (Op.GATHER, Op.DELTA)]
        used = [planner.selectors[key] for node in order for key in node.spec.reads]
        rows_for, rows_tokens = _distinct_rows(flat, B, used, sorted(synthetic))
        misses_before, hits_before = self.cache.stats.misses, self.cache.stats.hits
        acts, forwards = self.cache.activations(rows_tokens, self.adapter.capture, copy=False)  # only read
        extras = []
        for i in sorted(synthetic):  # one extra row each, after the distinct token rows
            item = synthetic[i]
            if isinstance(item, MeanInput):
                extra, more = self._mean_row(item)
                forwards += more
            else:
                extra = self.adapter.zero_activations(acts)
            extras.append(extra)
        if extras:  # one concatenation for all of them
            acts = tree_map(lambda *parts: torch.cat(parts), acts, *extras)

        with torch.no_grad():
            (hidden, logits), work = self._evaluate(order, acts, planner, rows_for)
        rows_computed = self.cache.stats.misses - misses_before
        stats = RunStats(
            forward_passes=forwards,
            rows_computed=rows_computed,
            rows_from_cache=self.cache.stats.hits - hits_before,
            node_evaluations=len(order) - len(gathers),
            gathers=len(gathers),
            memo_hits=planner.memo_hits,
            paths_visited=planner.paths_visited,
            seconds=time.perf_counter() - started,
            rows=dict(work.rows),
            capture_flops=self.costs.forward(rows_computed, T),
            recomputed_flops=work.flops,
            needed_flops=work.needed,
            logit_columns=self.adapter.vocab_size if vocab is None else len(vocab),
        )
        return RunResult(logits, hidden, stats, root, planner, len(tokens))

    def _mean_row(self, item: MeanInput) -> tuple[dict, int]:
        """The mean activations of a MeanInput's examples, (1, ...) per site, and the forwards run.
        Kept on the MeanInput (for this engine's model and device), so that experiments which
        reuse one MeanInput across runs average its examples once."""
        if item._mean is not None and item._mean[0]() is self and item._mean[1] == self.device:
            return item._mean[2], 0
        rows, forwards = self.cache.activations(item.tokens.to(self.device), self.adapter.capture)
        mean = tree_map(lambda t: t.mean(0, keepdim=True), rows)
        item._mean = (weakref.ref(self), self.device, mean)  # a weak reference: an id could be another engine's later
        return mean, forwards

    def activations(self, tokens) -> "CachedActivations":
        """The activations of one ordinary forward on ``tokens`` (B, T), by name: ``acts["a9.h9"]``
        (B, T, D), ``acts["a9.h9.pattern"]`` (B, T, T), ``acts["resid_pre.9"]``, ``acts["m3"]``; see
        engine/activations.py for every name and shape.  Rows already in the engine's activation
        cache are read from it; new rows are captured and kept there."""
        from .activations import read_activations

        return read_activations(self, tokens)

    def deferred(self, inputs: Sequence, which: Which, branch: Branch | None = None, *, key: Callable | None = None) -> "Deferred":
        """``run(inputs, which, branch, key=key)``, made only when its logits are read, at the
        positions and vocabulary ids read: ``deferred(...).blocks(k)`` are k
        :class:`~causal_hypotheses.engine.lazy.LazyLogits` of shape (B / k, T, V), see engine/lazy.py."""
        from .lazy import Deferred  # lazy.py reads core's index helpers

        tokens = _as_token_batches(inputs, self.adapter)
        B, T = next(t for t in tokens if torch.is_tensor(t)).shape
        unembed = self.model.get_output_embeddings().weight  # (V, D): the logits' size and dtype

        def run(positions, vocab):
            return self.run(inputs, which, branch, key=key, logit_positions=positions, logit_vocab=vocab)

        def more_columns(result: RunResult, vocab) -> torch.Tensor:
            """The logits of ``result``'s positions at more vocabulary ids (None: all), from its
            hidden states, counted in its stats."""
            with torch.no_grad():
                logits = self.adapter.unembed(result.hidden_states, vocab)
            entries = result.hidden_states.shape[0] * result.hidden_states.shape[1]
            result.stats = result.stats.with_more_columns(logits.shape[-1], entries * self.costs.unembedding(vocab))
            return logits

        return Deferred(run, more_columns, (B, T, unembed.shape[0]), unembed.dtype, self.device)

    def __call__(self, inputs: Sequence, which: Which, branch: Branch | None = None, **options):
        """``res, cache = engine(inputs, which, branch)``: ``Engine.run``'s result and the engine's
        activation cache, in the seed's calling form.  Paths follow the engine's grammar (the
        writers a signal passes through), not the seed's, so the seed README's example computes
        only the direct path from ``a1`` here; for the seed's semantics and numbers use
        ``causal_hypotheses.seed.GPT2``."""
        return self.run(inputs, which, branch, **options), self.cache

    def _evaluate(self, order: list[Node], acts: dict, planner: Planner, rows_for) -> tuple:
        uses: dict[int, int] = {}
        for node in order:
            for child in node.children:
                uses[child.id] = uses.get(child.id, 0) + 1
        evaluator = Evaluator(self.adapter, acts, rows_for, planner, live_entries(order, planner), self.device, self.costs)
        values: dict[int, object] = {}
        for node in order:
            values[node.id] = evaluator.evaluate(node, [values[child.id] for child in node.children])
            for child in node.children:
                uses[child.id] -= 1
                if uses[child.id] == 0:
                    del values[child.id]
        return values[order[-1].id], evaluator.work


def _adapter_for(model):
    """The adapter of ``model``'s architecture (the table in architectures.py); an
    UnsupportedModelError naming the supported model types otherwise."""
    from .architectures import adapter_for

    return adapter_for(model)


def as_index(value) -> int | None:
    """``value`` as an int when it is an integer index (an int, a numpy integer or a 0-d
    integer tensor), else None.  Bools are not indices, although Python's bool is an int."""
    if isinstance(value, torch.Tensor):
        if value.dim() != 0 or value.dtype.is_floating_point or value.dtype.is_complex or value.dtype == torch.bool:
            return None
        return int(value)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        return None
    return int(value)


def describe(value) -> str:
    """A short description of a value for error messages: its repr and type (shape and dtype for arrays)."""
    if isinstance(value, (torch.Tensor, np.ndarray)) and value.ndim == 0:
        return f"{value!r} (a 0-d {type(value).__name__} of dtype {value.dtype})"
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return f"a {type(value).__name__} of shape {tuple(value.shape)} and dtype {value.dtype}"
    return f"{value!r} ({type(value).__name__})"


def is_boolean(value) -> bool:
    """A Python, numpy or 0-d tensor bool: not an index, although Python counts True as 1."""
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return value.ndim == 0 and value.dtype in (torch.bool, np.bool_)
    return isinstance(value, (bool, np.bool_))


def _logit_positions(value, seq: int) -> tuple | None:
    if value is None:
        return None
    allowed = f"pass an index or a list of indices in -{seq}..{seq - 1}, e.g. logit_positions=-1 for the last position"
    given = value  # as passed, for messages
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    single = as_index(value)
    if single is not None:
        positions = (single,)
    elif is_boolean(value):
        raise InputError(f"logit_positions={given!r} is a bool, not a position (Python counts True as 1); {allowed}")
    elif isinstance(value, (torch.Tensor, np.ndarray)) and value.ndim == 1 and value.dtype in (torch.bool, np.bool_):
        raise InputError(
            f"logit_positions is a bool mask ({describe(given)}); {allowed}: for a mask, "
            "logit_positions=mask.nonzero().flatten().tolist()"
        )
    elif isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable) or getattr(value, "ndim", 1) != 1:
        raise InputError(f"logit_positions={given!r} is {describe(given)}, not an index or a list of indices; {allowed}")
    else:
        items = list(value)
        if not items:
            raise InputError(f"logit_positions={given!r} selects no position; {allowed}, or None for every position")
        positions = []
        for item in items:
            index = as_index(item)
            if index is None:
                raise InputError(f"logit_positions={given!r} holds {describe(item)}, which is not an integer index; {allowed}")
            positions.append(index)
        positions = tuple(positions)
    for p in positions:
        if not -seq <= p < seq:
            raise InputError(f"logit_positions={given!r}: position {p} is outside the prompt of {seq} tokens; {allowed}")
    return tuple(p % seq for p in positions)


def check_logit_vocab(value, vocab_size: int) -> tuple | None:
    """``logit_vocab`` as a tuple of token ids in 0..V-1 (None: every id); an InputError otherwise."""
    if value is None:
        return None
    allowed = f"pass a token id or a list of ids in 0..{vocab_size - 1}, e.g. logit_vocab=[answer_id, distractor_id]"
    given = value  # as passed, for messages
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    single = as_index(value)
    if single is not None:
        ids = (single,)
    elif is_boolean(value) or isinstance(value, torch.Tensor) and value.dtype == torch.bool:
        raise InputError(f"logit_vocab={given!r} is a bool or a bool mask, not token ids; {allowed}")
    elif isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable) or getattr(value, "ndim", 1) != 1:
        raise InputError(f"logit_vocab={given!r} is {describe(given)}, not a token id or a list of ids; {allowed}")
    else:
        items = list(value)
        if not items:
            raise InputError(f"logit_vocab={given!r} selects no token id; {allowed}, or None for every id")
        ids = tuple(as_index(item) for item in items)
        if None in ids:
            bad = items[ids.index(None)]
            raise InputError(f"logit_vocab={given!r} holds {describe(bad)}, which is not an integer token id; {allowed}")
    for i in ids:
        if not 0 <= i < vocab_size:
            raise InputError(f"logit_vocab={given!r}: token id {i} is outside the vocabulary of {vocab_size} ids; {allowed}")
    return ids


def _reachable(root: Node) -> list[Node]:
    """Every node the root depends on, children before parents (ids are topological)."""
    seen: dict[int, Node] = {}
    stack = [root]
    while stack:
        node = stack.pop()
        if node.id not in seen:
            seen[node.id] = node
            stack.extend(node.children)
    return [seen[i] for i in sorted(seen)]


def _as_token_batches(inputs, adapter) -> list[torch.Tensor]:
    """Validate ``inputs`` and return one LongTensor (B, T) per input."""
    if isinstance(inputs, (torch.Tensor, Mapping, str)) or not isinstance(inputs, Sequence):
        raise InputError(
            f"inputs must be a list of inputs (LongTensors of shape (B, T) or tokenizer outputs), got "
            f"{type(inputs).__name__}; wrap a single input in a list: [x]"
        )
    if len(inputs) == 0:
        raise InputError("inputs is empty; pass at least one input, e.g. [clean, corrupt]")
    batches = []
    for i, item in enumerate(inputs):
        if isinstance(item, ZeroInput):
            batches.append(item)
            continue
        if isinstance(item, MeanInput):
            if not torch.is_tensor(item.tokens) or item.tokens.dim() != 2:
                shown = f"a tensor of shape {tuple(item.tokens.shape)}" if torch.is_tensor(item.tokens) else type(item.tokens).__name__
                raise InputError(f"inputs[{i}] is a MeanInput over {shown}; give it a LongTensor (M, T) of token ids")
            _check_ids(item.tokens, f"inputs[{i}] (a MeanInput)", adapter, "(M, T) with M, T > 0: the mean of no example is undefined")
            batches.append(item)
            continue
        ids = item
        if isinstance(item, Mapping):
            if "input_ids" not in item:
                raise InputError(f"inputs[{i}] is a mapping without 'input_ids'; pass tokenizer(..., return_tensors='pt') outputs")
            ids, mask = item["input_ids"], item.get("attention_mask")
            if mask is not None and torch.is_tensor(mask) and not bool((mask == 1).all()):
                raise InputError(
                    f"inputs[{i}] has padding (attention_mask contains zeros); the engine runs unpadded "
                    "batches only: choose prompts of equal token length"
                )
        if not torch.is_tensor(ids):
            raise InputError(f"inputs[{i}] is a {type(ids).__name__}; expected a LongTensor of token ids (B, T)")
        if ids.dim() == 1:
            ids = ids[None]
        _check_ids(ids, f"inputs[{i}]", adapter, "(B, T) with B, T > 0")
        first = next((b for b in batches if torch.is_tensor(b)), None)
        if first is not None and ids.shape != first.shape:
            raise InputError(
                f"inputs[{i}] has shape {tuple(ids.shape)} but inputs[{_index_of(batches, first)}] has {tuple(first.shape)}; "
                "all inputs must share one shape (B, T): use prompts of equal token length and equal batch size"
            )
        batches.append(ids.long())
    real = [b for b in batches if torch.is_tensor(b)]
    if not real:
        raise InputError("inputs hold no token batch; a MeanInput or ZeroInput needs a token input beside it to set (B, T)")
    for i, item in enumerate(batches):
        if isinstance(item, MeanInput) and item.tokens.shape[1] != real[0].shape[1]:
            raise InputError(f"inputs[{i}] is a MeanInput over {item.tokens.shape[1]} positions; the other inputs have {real[0].shape[1]}")
    return batches


def _check_ids(ids: torch.Tensor, label: str, adapter, shape: str) -> None:
    """Token ids: an integer tensor of two non-empty dimensions, ids in the vocabulary."""
    if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
        raise InputError(f"{label} has dtype {ids.dtype}; expected integer token ids (torch.long)")
    if ids.dim() != 2 or ids.shape[1] == 0 or ids.shape[0] == 0:
        raise InputError(f"{label} has shape {tuple(ids.shape)}; expected {shape}")
    if ids.shape[1] > adapter.n_positions:
        raise InputError(f"{label} has {ids.shape[1]} positions; the model allows at most {adapter.n_positions}")
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or high >= adapter.vocab_size:
        raise InputError(f"{label} holds token id {low if low < 0 else high}; valid ids are 0..{adapter.vocab_size - 1}")


def _index_of(items: list, target) -> int:
    return next(i for i, item in enumerate(items) if item is target)


def _distinct_rows(flat: torch.Tensor, batch: int, selectors: list[Selector], synthetic: list[int] = ()):
    """The distinct token rows the plan reads, and each selector's rows into them.

    Returns ``{selector.key: (rows, positions)}`` (positions None unless per-position) and
    the (U, T) tokens of those rows.  Rows of the ``synthetic`` inputs (mean or zero) map
    to rows U, U+1, ... in that order, appended by the caller.
    """
    arange = torch.arange(batch)
    used: dict[tuple, torch.Tensor] = {}
    for selector in selectors:
        if selector.key in used:
            continue
        index = torch.as_tensor(selector.index)
        if selector.kind == "position":
            used[selector.key] = index * batch + arange[:, None]  # (B, T) flat row ids
        else:
            used[selector.key] = index * batch + arange  # (B,)
    read = torch.zeros(flat.shape[0], dtype=torch.bool)  # marks, not a sort of every selector's rows
    for rows in used.values():
        read[rows.flatten()] = True
    needed = read.nonzero().flatten()  # sorted, each once
    is_synthetic = torch.zeros(flat.shape[0], dtype=torch.bool)
    for i in synthetic:
        is_synthetic[i * batch : (i + 1) * batch] = True
    needed = needed[~is_synthetic[needed]]
    if needed.numel() == 0:  # only mean/zero inputs are read: capture one row for the shapes
        needed = (~is_synthetic).nonzero()[:1].flatten()
    distinct, inverse = torch.unique(flat[needed.to(flat.device)].cpu(), dim=0, return_inverse=True)
    lookup = torch.full((flat.shape[0],), -1, dtype=torch.long)
    lookup[needed] = inverse
    for extra, i in enumerate(synthetic):
        lookup[i * batch : (i + 1) * batch] = distinct.shape[0] + extra
    device = flat.device
    positions = torch.arange(flat.shape[1], device=device)
    rows_for = {}
    for key, flat_rows in used.items():
        rows = lookup[flat_rows].to(device)
        rows_for[key] = (rows, positions.expand_as(rows) if rows.dim() == 2 else None)
    return rows_for, distinct.to(device)
