"""The built-in logit_diff reads two vocabulary ids per example, so runs compute those logit
columns alone (the unembedding's rows for them), with no option to set.  Every number must equal
the full-vocabulary run (the same call with the metric behind a function of one's own, which the
library cannot see into) and the hook-based reference on the unmodified HF model; the runs must
really compute only those columns (the fast path is taken).  GPT-2, an untied Llama and a Llama
whose unembedding is tied to its embedding."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from causal_hypotheses import Engine, Hypothesis, activation_patch_sweep, path_patch_sweep, scrub
from causal_hypotheses.errors import InputError
from causal_hypotheses.interventions.criteria import faithfulness
from causal_hypotheses.interventions.effects import patch_effect
from causal_hypotheses.metrics import METRICS, logit_diff, metric_reads, metric_vocab
from causal_hypotheses.tasks import Task

import hf_reference as ref
import llama_reference as lref
from test_criteria import CIRCUIT, F, outside, toy_task
from test_llama import SHAPES, random_llama

ATOL = 1e-5
B, T = 6, 8


@pytest.fixture(scope="module", params=["gpt2", "llama", "llama-tied"])
def model(request, tiny_model):
    if request.param == "gpt2":
        return tiny_model
    shape = SHAPES["gqa"] if request.param == "llama" else SHAPES["mqa_bias"]  # mqa_bias: tied unembedding
    model = random_llama(seed=4, **shape)
    assert (model.lm_head.weight is model.model.embed_tokens.weight) == (request.param == "llama-tied")
    return model


def is_gpt2(model) -> bool:
    return model.config.model_type == "gpt2"


def task_of(model, shared: bool = True, seed: int = 0) -> Task:
    """Clean and corrupt prompts differing from position 2 on; ``shared``: one answer and one
    distractor for every example (2 vocabulary ids), else each example its own."""
    generator = torch.Generator().manual_seed(seed)
    vocab = model.config.vocab_size
    clean = torch.randint(0, vocab, (B, T), generator=generator)
    corrupt = clean.clone()
    corrupt[:, 2:] = torch.randint(0, vocab, (B, T - 2), generator=generator)
    if shared:
        answer, distractor = torch.full((B,), 17), torch.full((B,), 5)
    else:
        answer, distractor = torch.randint(0, vocab, (2, B), generator=generator)
    return Task("vocab", clean, corrupt, answer=answer, distractor=distractor, features={"example": torch.arange(B)})


class Spied:
    """Every run of an engine, to read what each computed once the experiment is done."""

    def __init__(self, engine) -> None:
        self.results = []
        run = engine.run

        def recording(*args, **kwargs):
            result = run(*args, **kwargs)
            self.results.append(result)
            return result

        engine.run = recording

    @property
    def columns(self) -> list[tuple[int, int]]:
        """Per run: the vocabulary columns it unembedded in all (``stats.logit_columns``: later
        reads of more ids included) and those its own logits hold."""
        return [(result.stats.logit_columns, result.logits.shape[-1]) for result in self.results]


def spied(model):
    """A fresh engine and the record of its runs."""
    engine = Engine.from_hf(model)
    return engine, Spied(engine)


def opaque(logits, task, clean_logits=None):
    """logit_diff behind a function of one's own: the library gives it every column."""
    return logit_diff(logits, task, clean_logits)


def hf_diff(logits: torch.Tensor, task: Task) -> torch.Tensor:
    """logit[answer] - logit[distractor] at the last position of full HF logits (B, T, V)."""
    rows = torch.arange(len(task))
    return (logits[rows, -1, task.answer] - logits[rows, -1, task.distractor]).double()


def hf_head_patched(model, base, source, layer, head):
    """HF logits with head layer.head's z read from ``source`` at every position."""
    if is_gpt2(model):
        return ref.patch_head_z(model, base, layer, head, ref.head_z(model, source, layer))
    return lref.patch_head_z(model, base, layer, head, lref.head_z(model, source, layer))


def hf_query_path_patched(model, clean, corrupt, sender, layer, head):
    """HF logits when head layer.head's query reads clean + (corrupt - clean) of head ``sender``."""
    l, h = sender
    if is_gpt2(model):
        delta = ref.head_output(model, corrupt, l, h) - ref.head_output(model, clean, l, h)
        return ref.path_patch_channel(model, clean, delta, layer, head, 0)
    delta = lref.head_output(model, corrupt, l, h) - lref.head_output(model, clean, l, h)
    return lref.patch_head_input(model, clean, layer, head, 0, lref.layer_input(model, clean, layer) + delta)


def close(got, expected, atol=ATOL) -> None:
    def as_tensor(x):  # tables give read-only arrays: copy them
        return x.double() if torch.is_tensor(x) else torch.tensor(np.array(x, dtype=np.float64))

    torch.testing.assert_close(as_tensor(got), as_tensor(expected), atol=atol, rtol=0, equal_nan=True)


# ----------------------------------------------------------------------------- what logit_diff reads

def test_metric_vocab_names_the_ids_logit_diff_reads_and_reindexes_the_task(tiny_model):
    task = task_of(tiny_model, shared=False)
    ids, reindexed = metric_vocab("logit_diff", task)
    assert ids == sorted(set(task.answer.tolist()) | set(task.distractor.tolist()))
    assert [ids[i] for i in reindexed.answer.tolist()] == task.answer.tolist()
    assert [ids[i] for i in reindexed.distractor.tolist()] == task.distractor.tolist()
    assert metric_vocab(logit_diff, task)[0] == ids  # the function itself, not only its name
    assert metric_vocab("logit_diff", task_of(tiny_model))[0] == [5, 17]
    for name in ("loss", "kl", "accuracy"):  # a softmax or an argmax over every id: whole rows
        assert metric_vocab(name, task) == (None, task)
    assert metric_vocab(opaque, task) == (None, task)  # a metric of one's own sees what it always saw
    assert metric_vocab("logit_diff", task, vocab_size=int(task.answer.max())) == (None, task)  # not token ids
    read, both = metric_reads("logit_diff", task)
    assert read == {"logit_positions": [T - 1], "logit_vocab": ids} and both.position == 0
    assert torch.equal(both.answer, reindexed.answer)
    assert metric_reads("accuracy", task)[0] == {"logit_positions": [T - 1], "logit_vocab": None}
    assert metric_reads(opaque, task) == ({"logit_positions": None, "logit_vocab": None}, task)


# ----------------------------------------------------------------------------- Engine.run(logit_vocab=)

def test_run_at_some_vocabulary_ids_equals_the_hf_logits_there_and_counts_those_columns(model):
    engine = Engine.from_hf(model)
    task = task_of(model)
    ids = [40, 3, 200, 3]  # any order, repeats allowed: column k is id ids[k]
    result = engine.run([task.clean], lambda path: 0, logit_positions=[2, -1], logit_vocab=ids)
    expected = ref.logits(model, task.clean)[:, [2, T - 1]][:, :, ids]
    assert result.logits.shape == (B, 2, 4)
    close(result.logits, expected)
    D = model.config.hidden_size
    assert result.stats.logit_columns == 4 and result.stats.rows == {"unembed": 2 * B}
    assert result.stats.recomputed_flops == 2 * B * 2 * D * 4  # an all-clean run recomputes the unembedding alone
    full = engine.run([task.clean], lambda path: 0, logit_positions=[2, -1]).stats
    assert full.logit_columns == model.config.vocab_size
    assert full.recomputed_flops == 2 * B * 2 * D * model.config.vocab_size
    one = engine.run([task.clean], lambda path: 0, logit_vocab=torch.tensor(7))
    close(one.logits, ref.logits(model, task.clean)[:, :, [7]])


@pytest.mark.parametrize("value,message", [
    (True, "is a bool"),
    (torch.tensor([True, False]), "bool mask"),
    ([], "selects no token id"),
    ([3, 1.5], "holds 1.5"),
    ([-1], "token id -1 is outside"),
    ([512], "token id 512 is outside"),
    ("17", "not a token id"),
    (torch.zeros(2, 2, dtype=torch.long), "not a token id"),
])
def test_bad_logit_vocab_is_refused_naming_the_value_and_the_fix(tiny_model, value, message):
    engine = Engine.from_hf(tiny_model)
    with pytest.raises(InputError, match=message) as raised:
        engine.run([torch.zeros(1, 3, dtype=torch.long)], lambda path: 0, logit_vocab=value)
    assert "logit_vocab=" in str(raised.value) and "0..511" in str(raised.value)


# ----------------------------------------------------------------------------- the experiments

def test_patch_effect_computes_two_columns_and_equals_the_full_run_and_hf(model):
    task = task_of(model)
    clean_hf, corrupt_hf = ref.logits(model, task.clean), ref.logits(model, task.corrupt)
    V = model.config.vocab_size
    for options, patched_hf in (
        (dict(kind="activation_patch", nodes=["a1.h2"]), hf_head_patched(model, task.clean, task.corrupt, 1, 2)),
        (dict(kind="path_patch", senders=["a0.h1"], receivers=["a1.h3.q"]),
         hf_query_path_patched(model, task.clean, task.corrupt, (0, 1), 1, 3)),
    ):
        engine, fast_runs = spied(model)
        fast = patch_effect(engine, task, "logit_diff", **options)
        reference, full_runs = spied(model)
        slow = patch_effect(reference, task, opaque, **options)
        assert set(fast_runs.columns) == {(2, 2)} and set(full_runs.columns) == {(V, V)}
        for column, hf in (("clean", corrupt_hf), ("ablated", clean_hf), ("scrubbed", patched_hf)):  # noising
            close(fast.per_example[column].values, slow.per_example[column].values)
            close(fast.per_example[column].values, hf_diff(hf, task))
        assert (fast.per_example["scrubbed"] - fast.per_example["ablated"]).abs().max() > 1e-3  # the patch shows


def test_path_patch_sweep_with_a_metric_indexing_ids_computes_those_and_equals_hf(model):
    task = task_of(model, shared=False)
    rows = torch.arange(B)

    def metric(logits):
        return logits[rows, -1, task.answer] - logits[rows, -1, task.distractor]

    engine, runs = spied(model)
    fast = path_patch_sweep(engine, task.clean, task.corrupt, ["a1.h3.q"], metric, chunk_size=3)
    answers = len(set(task.answer.tolist()))
    ids = len(set(task.answer.tolist()) | set(task.distractor.tolist()))
    # 4 senders in runs of 3: each run computed the answers' ids, then the distractors' from its final stream
    assert runs.columns == [(ids, answers)] * 2 and ids < model.config.vocab_size
    tuned = path_patch_sweep(Engine.from_hf(model), task.clean, task.corrupt, ["a1.h3.q"],
                             lambda logits: logits[rows, 0, task.answer] - logits[rows, 0, task.distractor],
                             chunk_size=3, logit_positions=-1)  # real logits (B, 1, V): every column
    close(fast.values, tuned.values)
    for head in range(4):
        hf = hf_query_path_patched(model, task.clean, task.corrupt, (0, head), 1, 3)
        close(fast.loc[0, head], float(hf_diff(hf, task).mean()))


def test_a_metric_that_converts_the_logits_first_still_reads_only_what_it_indexes(model):
    """``logits.float().cpu().detach()`` (as GPU code writes it) stays lazy: the runs compute the ids
    indexed after it, at the last position, and the values equal HF's; ``.double()`` gives float64
    values, as the full run's (within float32 rounding of the smaller products)."""
    task = task_of(model, shared=False)
    rows = torch.arange(B)

    def diff(logits):
        return logits[rows, -1, task.answer] - logits[rows, -1, task.distractor]

    engine, runs = spied(model)
    converted = path_patch_sweep(engine, task.clean, task.corrupt, ["a1.h3.q"], lambda logits: diff(logits.float().cpu().detach()),
                                 chunk_size=3)
    answers = len(set(task.answer.tolist()))
    ids = len(set(task.answer.tolist()) | set(task.distractor.tolist()))
    assert runs.columns == [(ids, answers)] * 2 and ids < model.config.vocab_size
    assert all(result.logits.shape[1] == 1 for result in runs.results)  # the last position only
    for head in range(4):
        hf = hf_query_path_patched(model, task.clean, task.corrupt, (0, head), 1, 3)
        close(converted.loc[0, head], float(hf_diff(hf, task).mean()))
    seen = {}

    def in_double(logits):
        seen["dtype"] = logits.double().dtype
        return diff(logits.double())

    doubled = path_patch_sweep(Engine.from_hf(model), task.clean, task.corrupt, ["a1.h3.q"], in_double, chunk_size=3)
    with pytest.warns(UserWarning, match="every run computed and unembedded all"):  # numpy reads it whole: the hint says so
        whole = path_patch_sweep(Engine.from_hf(model), task.clean, task.corrupt, ["a1.h3.q"],
                                 lambda logits: diff(torch.as_tensor(logits.numpy()).double()), chunk_size=3)
    assert seen["dtype"] == torch.float64
    close(doubled.values, whole.values, atol=1e-5)  # the fewer products round differently, as above


def test_sweep_work_counts_the_columns_unembedded_later(tiny_model):
    """A run made for the answers' ids, then read at the distractors': its FLOPs hold both, and
    nothing else differs from the run of every column."""
    task = task_of(tiny_model, shared=False)
    rows = torch.arange(B)

    def sweep(**options):
        return activation_patch_sweep(Engine.from_hf(tiny_model), task.clean, task.corrupt,
                                      lambda logits: logits[rows, 0 if options else -1, task.answer]
                                      - logits[rows, 0 if options else -1, task.distractor],
                                      ["a1.h0", "a1.h2"], **options)

    fast, full = sweep(), sweep(logit_positions=-1)
    ids = len(set(task.answer.tolist()) | set(task.distractor.tolist()))
    per_column = 2 * B * 2 * tiny_model.config.n_embd  # 2 blocks of B examples, the last position
    assert fast.attrs["stats"]["runs"] == 1 and fast.attrs["stats"]["rows"] == full.attrs["stats"]["rows"]
    assert full.attrs["stats"]["flops"] - fast.attrs["stats"]["flops"] == per_column * (tiny_model.config.vocab_size - ids)
    close(fast.values, full.values)


def test_activation_patch_sweep_with_logit_diff_in_a_lambda_equals_hf_per_head(model):
    task = task_of(model)
    engine, runs = spied(model)
    table = activation_patch_sweep(engine, task.clean, task.corrupt, lambda logits: logit_diff(logits, task),
                                   ["a0.h1", "a1.h0", "a1.h3"])
    assert runs.columns == [(2, 1)]  # logit_diff's own indexing: the answer's id, then the distractor's
    for name in ("a0.h1", "a1.h0", "a1.h3"):
        layer, head = int(name[1]), int(name[-1])
        hf = hf_head_patched(model, task.clean, task.corrupt, layer, head)
        close(table.loc[layer, head], float(hf_diff(hf, task).mean()))


def test_scrub_computes_two_columns_and_equals_the_full_run_and_hf(model):
    task = task_of(model)
    hypothesis = Hypothesis({("a1.h0",): None, ("a1.h2.k", "a0.h1"): None}, name="some paths")
    V = model.config.vocab_size
    for ablation in ("resample", "mean"):
        engine, fast_runs = spied(model)
        fast = scrub(engine, hypothesis, task, "logit_diff", seed=0, draws=2, ablation=ablation)
        reference, full_runs = spied(model)
        slow = scrub(reference, hypothesis, task, opaque, seed=0, draws=2, ablation=ablation)
        assert set(fast_runs.columns) == {(2, 2)} and set(full_runs.columns) == {(V, V)}
        for column in ("clean", "ablated", "scrubbed"):
            close(fast.per_example[column].values, slow.per_example[column].values)
        first = fast.per_example[fast.per_example["draw"] == 0]
        close(first["clean"].values, hf_diff(ref.logits(model, task.clean), task))
    # mean ablation reads the mean activations everywhere: the final stream's mean, unembedded by hand
    norm = model.transformer.ln_f if is_gpt2(model) else model.model.norm
    final = ref.record(model, task.clean, norm, kind="in").mean(0, keepdim=True)
    with torch.no_grad():
        logits = model.lm_head(norm(final)).expand(B, -1, -1)
    close(fast.ablated, float(hf_diff(logits, task).mean()))


def test_faithfulness_computes_the_ids_read_and_equals_the_hook_knockout(tiny_model):
    task = toy_task(tiny_model)  # each example its own answer
    V = tiny_model.config.vocab_size
    engine, fast_runs = spied(tiny_model)
    result = faithfulness(engine, CIRCUIT, task, "logit_diff", normalise="ablated")
    ids = len(set(task.answer.tolist()) | set(task.distractor.tolist()))
    assert set(fast_runs.columns) == {(ids, ids)} and ids < V
    reference, full_runs = spied(tiny_model)
    slow = faithfulness(reference, CIRCUIT, task, opaque, normalise="ablated")  # a metric of one's own: not a ratio metric
    assert set(full_runs.columns) == {(V, V)}
    f_c = F(tiny_model, task, outside(tiny_model, CIRCUIT))
    f_m = logit_diff(ref.logits(tiny_model, task.clean), task).double()
    close(result.intervened, float(f_c.mean()))
    close(result.target, float(f_m.mean()))
    f_none = F(tiny_model, task, [(l, h) for l in range(2) for h in range(4)])  # every head knocked out
    close(result.base, float(f_none.mean()))
    for field in ("intervened", "target", "base", "value"):
        close(getattr(result, field), getattr(slow, field))


def test_every_builtin_but_logit_diff_reads_whole_rows(tiny_model):
    task = task_of(tiny_model)
    V = tiny_model.config.vocab_size
    for name in METRICS:
        if name != "logit_diff":
            engine, runs = spied(tiny_model)
            patch_effect(engine, task, name, kind="activation_patch", nodes=["a1.h2"])
            assert set(runs.columns) == {(V, V)}


def test_discovery_with_logit_diffs_ids_scores_and_prunes_as_with_every_id(model):
    """Attribution (forward and backward through two unembedding rows) and exact pruning give what
    they give with every vocabulary id; discover() passes metric_reads' ids to both."""
    from causal_hypotheses.discovery.attribution import attribute
    from causal_hypotheses.discovery.prune import prune

    task = task_of(model)
    read, measured = metric_reads("logit_diff", task, model.config.vocab_size)
    assert read["logit_vocab"] == [5, 17]
    engine = Engine.from_hf(model)
    fast = attribute(engine, task.clean, task.corrupt, lambda logits: logit_diff(logits, measured), **read)
    full = attribute(engine, task.clean, task.corrupt, lambda logits: logit_diff(logits, task))
    close(fast.nodes.values, full.nodes.values)
    close(fast.edges.score.values, full.edges.score.values)
    close(fast.clean, full.clean)
    assert fast.nodes.abs().values.max() > 1e-3  # the scores are not all zero
    engine, runs = spied(model)
    found = prune(engine, task.clean, task.corrupt, lambda logits: logit_diff(logits, measured), 0.05, scores=full,
                  progress=False, **read)
    assert set(runs.columns) == {(2, 2)}
    every = prune(Engine.from_hf(model), task.clean, task.corrupt, lambda logits: logit_diff(logits, task), 0.05,
                  scores=full, progress=False)
    assert found.paths == every.paths
