"""The task datasets: one token length per batch, answers that decode right, corruptions that
change only what they should, determinism under a seed, and clear errors for bad input."""
from __future__ import annotations

import warnings

import pytest
import torch

from causal_hypotheses.errors import InputError
from causal_hypotheses.models import gpt2_tokenizer
from causal_hypotheses.tasks import Task, factual, greater_than, greater_than_year_tokens, induction, ioi
from causal_hypotheses.tasks.factual import FACTS
from causal_hypotheses.tasks.greater_than import GREATER_THAN_NOUNS
from causal_hypotheses.tasks.ioi import IOI_NAMES, IOI_OBJECTS, IOI_PLACES, IOI_TEMPLATES


@pytest.fixture(scope="module")
def tok():
    return gpt2_tokenizer()


def enc(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def dec(tok, token_id):
    return tok.decode([int(token_id)])


def assert_same_task(a: Task, b: Task):
    for field in ("clean", "corrupt", "answer", "distractor", "targets"):
        x, y = getattr(a, field), getattr(b, field)
        assert (x is None) == (y is None)
        if x is not None:
            assert torch.equal(x, y), field
    assert a.features.keys() == b.features.keys()
    assert all(torch.equal(a.features[k], b.features[k]) for k in a.features)
    assert a.prompts == b.prompts


# --- the built-in word lists are clean for GPT-2 -------------------------------------------

def test_builtin_lists_are_single_tokens_and_templates_one_length(tok):
    for word in IOI_NAMES + IOI_PLACES + IOI_OBJECTS + GREATER_THAN_NOUNS:
        assert len(enc(tok, " " + word)) == 1, word
    for _, subject, obj in FACTS:
        assert len(enc(tok, " " + subject)) == 1 and len(enc(tok, " " + obj)) == 1, (subject, obj)
    lengths = {
        len(enc(tok, t.format(A="Mary", B="John", S="John", PLACE="store", OBJECT="drink"))) for t in IOI_TEMPLATES
    }
    assert lengths == {14}
    assert 10 <= len(IOI_TEMPLATES) <= 15 and len(IOI_NAMES) >= 40
    assert len({len(enc(tok, t.format("France"))) for t, _, _ in FACTS}) == 1


def test_builders_warn_nothing_with_gpt2(tok):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ioi(tok, 4)
        greater_than(tok, 4)
        factual(tok, 4)


# --- IOI -----------------------------------------------------------------------------------

def test_ioi_shapes_answers_and_positions(tok):
    task = ioi(tok, 60, seed=1)
    assert task.name == "ioi" and len(task) == 60 and task.position == -1
    assert task.clean.shape == task.corrupt.shape == (60, 14)
    assert task.clean.dtype == torch.long and task.answer.shape == (60,)
    assert set(task.features) >= {"template", "order", "io_pos", "s1_pos", "s2_pos", "io", "s"}
    assert task.features["order"].tolist() == [0, 1] * 30
    assert len(set(task.features["template"].tolist())) > 5
    rows = torch.arange(60)
    f = task.features
    assert torch.equal(task.clean[rows, f["io_pos"]], task.answer)
    assert torch.equal(task.clean[rows, f["s1_pos"]], task.distractor)
    assert torch.equal(task.clean[rows, f["s2_pos"]], task.distractor)
    assert torch.equal(task.answer, f["io"]) and torch.equal(task.distractor, f["s"])
    # ABBA: IO comes first; BABA: S comes first.
    abba = f["order"] == 0
    assert (f["io_pos"][abba] < f["s1_pos"][abba]).all()
    assert (f["io_pos"][~abba] > f["s1_pos"][~abba]).all()
    assert (f["s2_pos"] > torch.maximum(f["io_pos"], f["s1_pos"])).all()
    for i in range(0, 60, 7):
        prompt = task.prompts[i]
        io, s = dec(tok, task.answer[i]), dec(tok, task.distractor[i])
        assert io.startswith(" ") and s.startswith(" ") and io != s
        assert prompt.count(io.strip()) == 1 and prompt.count(s.strip()) == 2
        assert tok.decode(task.clean[i].tolist()) == prompt


def test_ioi_corrupt_differs_only_at_s2_with_a_third_name(tok):
    task = ioi(tok, 40, seed=2)
    differs = task.clean != task.corrupt
    expected = torch.zeros_like(differs)
    expected[torch.arange(40), task.features["s2_pos"]] = True
    assert torch.equal(differs, expected)
    c = task.corrupt[torch.arange(40), task.features["s2_pos"]]
    assert ((c != task.answer) & (c != task.distractor)).all()


def test_ioi_abc_corruption_replaces_all_three_names(tok):
    """Wang et al.'s pABC: the introduction's names and the second mention all replaced, by three
    names different from each other and from the clean prompt's; nothing else changes, and the
    clean prompts are those of the default corruption."""
    s2, abc = ioi(tok, 40, seed=3), ioi(tok, 40, seed=3, corruption="abc")
    assert torch.equal(s2.clean, abc.clean) and torch.equal(s2.corrupt[:, -1], abc.corrupt[:, -1])
    f = abc.features
    for i in range(40):
        changed = (abc.clean[i] != abc.corrupt[i]).nonzero().flatten().tolist()
        assert changed == sorted([int(f["io_pos"][i]), int(f["s1_pos"][i]), int(f["s2_pos"][i])])
        new = abc.corrupt[i, changed].tolist()
        assert len(set(new)) == 3 and not set(new) & {int(f["io"][i]), int(f["s"][i])}
        assert int(abc.corrupt[i, f["s2_pos"][i]]) == int(f["c"][i])
    with pytest.raises(InputError, match="corruption='abcd'.*'s2'.*'abc'"):
        ioi(tok, 4, corruption="abcd")


def test_ioi_template_sets(tok):
    assert (ioi(tok, 10, template_set="abba").features["order"] == 0).all()
    assert (ioi(tok, 10, template_set="baba").features["order"] == 1).all()
    with pytest.raises(InputError, match="template_set"):
        ioi(tok, 10, template_set="abc")


def test_ioi_is_deterministic(tok):
    assert_same_task(ioi(tok, 20, seed=5), ioi(tok, 20, seed=5))
    assert ioi(tok, 20, seed=5).prompts != ioi(tok, 20, seed=6).prompts


def test_ioi_drops_multi_token_names_with_a_warning(tok):
    with pytest.warns(UserWarning, match="Xylophonia"):
        task = ioi(tok, 10, names=["Mary", "John", "Alice", "Xylophonia"])
    assert set(task.features["io"].tolist()) <= {enc(tok, " " + n)[0] for n in ("Mary", "John", "Alice")}


def test_ioi_too_few_single_token_names_is_an_input_error(tok):
    with pytest.warns(UserWarning), pytest.raises(InputError) as caught:
        ioi(tok, 10, names=["Mary", "Xylophonia", "Quetzalcoatlus"])
    message = str(caught.value)
    assert "Xylophonia" in message and "Quetzalcoatlus" in message and "names=" in message


def test_ioi_templates_of_other_lengths_are_left_out(tok):
    templates = [IOI_TEMPLATES[0], IOI_TEMPLATES[1], "When {A} and {B} went to the {PLACE}, {S} gave a {OBJECT} back to"]
    with pytest.warns(UserWarning, match="different length"):
        task = ioi(tok, 12, templates=templates)
    assert set(task.features["template"].tolist()) <= {0, 1}
    with pytest.raises(InputError, match="exactly once"):
        ioi(tok, 4, templates=["When {A} and {B} went to the store, {S} gave a drink to"])


def test_bad_n_is_an_input_error(tok):
    for bad in (0, -3, 2.5):
        with pytest.raises(InputError, match="n="):
            ioi(tok, bad)
    with pytest.raises(InputError, match="n="):
        induction(0)


# --- greater-than ----------------------------------------------------------------------------

def test_greater_than_year_tokens(tok):
    years = greater_than_year_tokens(tok)
    assert years.shape == (100,) and years.dtype == torch.long
    assert [tok.decode([int(t)]) for t in years] == [f"{y:02d}" for y in range(100)]


def test_greater_than_prompts_answers_and_corruption(tok):
    task = greater_than(tok, 80, seed=3)
    assert task.clean.shape == task.corrupt.shape == (80, 12) and task.position == -1
    yy = task.features["yy"]
    assert ((yy >= 2) & (yy <= 98)).all()
    years = greater_than_year_tokens(tok)
    assert torch.equal(task.answer, years[yy + 1]) and torch.equal(task.distractor, years[yy - 1])
    for i in range(0, 80, 9):
        y = int(yy[i])
        assert task.prompts[i].endswith(f"from the year 17{y:02d} to the year 17")
        assert dec(tok, task.answer[i]) == f"{y + 1:02d}" and dec(tok, task.distractor[i]) == f"{y - 1:02d}"
        assert f" {GREATER_THAN_NOUNS[int(task.features['noun'][i])]} " in task.prompts[i]
        assert tok.decode(task.corrupt[i].tolist()) == task.prompts[i].replace(f"17{y:02d}", "1701", 1)
    differs = task.clean != task.corrupt
    expected = torch.zeros_like(differs)
    expected[torch.arange(80), task.features["yy_pos"]] = True
    assert torch.equal(differs, expected)
    assert (task.corrupt[:, task.features["yy_pos"][0]] == years[1]).all()


def test_greater_than_is_deterministic_and_without_replacement_when_possible(tok):
    a, b = greater_than(tok, 50, seed=4), greater_than(tok, 50, seed=4)
    assert_same_task(a, b)
    assert len(set(a.prompts)) == 50
    small = greater_than(tok, 5, nouns=["war"])  # 97 distinct prompts: repeats beyond that
    assert len(set(small.prompts)) == 5
    many = greater_than(tok, 200, nouns=["war"])
    assert len(set(many.prompts)) == 97


def test_greater_than_drops_multi_token_nouns(tok):
    with pytest.warns(UserWarning, match="Zorblaxian"):
        task = greater_than(tok, 5, nouns=["war", "Zorblaxian"])
    assert all(p.startswith("The war ") for p in task.prompts)
    with pytest.warns(UserWarning), pytest.raises(InputError, match="Zorblaxian"):
        greater_than(tok, 5, nouns=["Zorblaxian"])


# --- factual ---------------------------------------------------------------------------------

def test_factual_prompts_answers_and_corruption(tok):
    task = factual(tok, 60, seed=0)
    assert task.clean.shape == task.corrupt.shape == (60, 6) and task.position == -1
    assert set(task.features) >= {"relation", "subject"}
    assert len(set(task.features["relation"].tolist())) >= 3
    assert (task.answer != task.distractor).all()
    rows = torch.arange(60)
    assert torch.equal(task.clean[rows, task.features["subject_pos"]], task.features["subject"])
    differs = task.clean != task.corrupt
    expected = torch.zeros_like(differs)
    expected[rows, task.features["subject_pos"]] = True
    assert torch.equal(differs, expected)
    table = {(t.format(s)): o for t, s, o in FACTS}
    for i in range(60):
        assert " " + table[task.prompts[i]] == dec(tok, task.answer[i])
        corrupt_text = tok.decode(task.corrupt[i].tolist())
        assert " " + table[corrupt_text] == dec(tok, task.distractor[i])
    assert tok.decode(task.clean[0].tolist()) == task.prompts[0]


def test_factual_capital_example(tok):
    facts = [("The capital of {} is", "France", "Paris"), ("The capital of {} is", "Italy", "Rome")]
    task = factual(tok, 2, facts=facts)
    by_prompt = dict(zip(task.prompts, zip(task.answer.tolist(), task.distractor.tolist())))
    assert by_prompt["The capital of France is"] == (enc(tok, " Paris")[0], enc(tok, " Rome")[0])
    assert tok.decode(task.corrupt[task.prompts.index("The capital of France is")].tolist()) == "The capital of Italy is"


def test_factual_deterministic_and_errors(tok):
    assert_same_task(factual(tok, 100, seed=9), factual(tok, 100, seed=9))
    with pytest.warns(UserWarning, match="Zorblaxia"), pytest.raises(InputError, match="no relation"):
        factual(tok, 3, facts=[("The capital of {} is", "France", "Paris"), ("The capital of {} is", "Zorblaxia", "Rome")])
    with pytest.raises(InputError, match="template"):
        factual(tok, 3, facts=[("{} is the capital of", "Paris", "France")])


# --- induction -------------------------------------------------------------------------------

def test_induction_shapes_targets_and_corruption():
    task = induction(16, half_len=10, vocab_size=512, seed=0, bos=511)
    assert task.clean.shape == task.corrupt.shape == (16, 21)
    assert task.answer is None and task.distractor is None
    assert (task.clean[:, 0] == 511).all() and (task.clean[:, 1:] != 511).all() and (task.corrupt[:, 1:] != 511).all()
    assert torch.equal(task.clean[:, 1:11], task.clean[:, 11:])
    assert torch.equal(task.clean[:, :11], task.corrupt[:, :11])
    assert (task.clean[:, 11:] != task.corrupt[:, 11:]).all()
    for row in task.corrupt.tolist():  # r and r' are 20 distinct tokens
        assert len(set(row[1:])) == 20
    t = task.targets
    assert t.shape == (16, 21)
    assert (t[:, :11] == -100).all() and (t[:, -1] == -100).all()
    assert torch.equal(t[:, 11:-1], task.clean[:, 12:])
    assert task.features["seq"].tolist() == list(range(16))


def test_induction_range_determinism_and_errors():
    task = induction(8, half_len=5, vocab_size=100, first_token=50, seed=1)
    assert task.clean.shape == (8, 10) and (task.clean >= 50).all() and (task.corrupt < 100).all()
    assert_same_task(task, induction(8, half_len=5, vocab_size=100, first_token=50, seed=1))
    assert not torch.equal(task.clean, induction(8, half_len=5, vocab_size=100, first_token=50, seed=2).clean)
    default = induction(3)
    assert default.clean.shape == (3, 40) and (default.clean < 50257).all()
    with pytest.raises(InputError, match="half_len"):
        induction(4, half_len=10, vocab_size=15)
    with pytest.raises(InputError, match="half_len"):
        induction(4, half_len=1)


def test_registered_ioi_abc_is_ioi_with_all_names_replaced(tok):
    from causal_hypotheses.claims import LoadedModel, build_task
    from causal_hypotheses.models import random_gpt2

    from causal_hypotheses import Engine

    loaded = LoadedModel(name="test-small", engine=Engine.from_hf(random_gpt2("small", seed=0)), tokenizer=tok)
    built = build_task("ioi_abc", loaded, n=8, seed=2)
    expected = ioi(tok, 8, seed=2, corruption="abc")
    assert torch.equal(built.clean, expected.clean) and torch.equal(built.corrupt, expected.corrupt)
    assert torch.equal(build_task("ioi", loaded, n=8, seed=2).corrupt, ioi(tok, 8, seed=2).corrupt)
