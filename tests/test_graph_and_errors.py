"""Names, paths and the errors users see for bad input."""
from __future__ import annotations

import pytest
import torch

from causal_hypotheses import Engine, InputError, ModelGraph, Path, SelectorError, UnknownComponentError
from causal_hypotheses.errors import PlanTooLargeError, UnsupportedModelError

GRAPH = ModelGraph(n_layers=12, n_heads=12)


@pytest.mark.parametrize("name", ["embed", "a0", "a11", "a3.h11", "a9.h9.q", "a9.h9.k", "a0.h0.v", "m0", "m11"])
def test_valid_names_round_trip(name):
    assert GRAPH.parse(name).name == name


@pytest.mark.parametrize(
    "name,fragment",
    [
        ("a12", "names layer 12"),
        ("m12", "use a layer between 0 and 11"),
        ("a1.h12", "names head 12"),
        ("a1.h2.x", "is not a component name"),
        ("attn1", "is not a component name"),
        ("", "is not a component name"),
    ],
)
def test_unknown_names_are_rejected_with_the_valid_ones(name, fragment):
    with pytest.raises(UnknownComponentError) as error:
        GRAPH.parse(name)
    assert fragment in str(error.value) and repr(name) in str(error.value)
    assert "a0..a11" in str(error.value)


def test_path_membership_is_hierarchical():
    path = Path(("a9.h9.q", "a5.h1", "m2"), GRAPH)
    assert "a9" in path and "a9.h9" in path and "a9.h9.q" in path
    assert "a9.h9.k" not in path and "a9.h1" not in path
    assert "a5" in path and "a5.h1" in path and "m2" in path and "m5" not in path
    assert "a1" not in Path(("a10", "a11.h1"), GRAPH)  # no prefix confusion between a1 and a10/a11
    assert "a1.h1" not in Path(("a1.h10",), GRAPH)
    assert path[-1] == "m2" and isinstance(path[:2], Path) and path[:2] == ("a9.h9.q", "a5.h1")


def test_enclosing_names_are_those_that_strictly_contain_a_name():
    from causal_hypotheses.graph import enclosing, within

    names = ["embed", "a1", "a11", "a1.h2", "a1.h21", "a11.h2", "a1.h2.q", "a1.h2.k", "a11.h2.q", "m1", "m11"]
    assert enclosing("a11.h2.q") == ["a11", "a11.h2"]
    for name in names:
        assert set(enclosing(name)) == {outer for outer in names if outer != name and within(outer, name)}


def test_path_membership_rejects_names_the_model_lacks():
    """A typo in which() must raise, not silently never match."""
    with pytest.raises(UnknownComponentError, match="'a12' names layer 12"):
        "a12" in Path(("a1",), GRAPH)


def test_which_naming_a_missing_component_fails_the_run(tiny_engine, tiny_tokens):
    with pytest.raises(UnknownComponentError, match="'a2' names layer 2"):
        tiny_engine.run(list(tiny_tokens), lambda path: 1 if "a2" in path else 0, lambda path: path[-1] == "a1")


def test_unequal_input_shapes(tiny_engine):
    with pytest.raises(InputError, match=r"inputs\[1\] has shape \(2, 5\) but inputs\[0\] has \(2, 4\)"):
        tiny_engine.run([torch.zeros(2, 4, dtype=torch.long), torch.zeros(2, 5, dtype=torch.long)], lambda p: 0)


@pytest.mark.parametrize(
    "inputs,fragment",
    [
        (torch.zeros(2, 4, dtype=torch.long), "wrap a single input in a list"),
        ([], "inputs is empty"),
        ([torch.zeros(2, 4)], "dtype torch.float32"),
        ([[1, 2, 3]], "inputs[0] is a list"),
        ([torch.full((1, 3), 512)], "token id 512; valid ids are 0..511"),
        ([torch.zeros(1, 65, dtype=torch.long)], "at most 64"),
        ([{"input_ids": torch.zeros(1, 3, dtype=torch.long), "attention_mask": torch.tensor([[1, 1, 0]])}], "padding"),
    ],
)
def test_malformed_inputs(tiny_engine, inputs, fragment):
    with pytest.raises(InputError) as error:
        tiny_engine.run(inputs, lambda p: 0)
    assert fragment in str(error.value)


@pytest.mark.parametrize(
    "answer,fragment",
    [
        (2, "returned 2, out of range: there are 2 inputs"),
        (-1, "returned -1, out of range"),
        (torch.tensor([0, 1, 2, 0]), "containing 2, out of range"),
        (torch.tensor([0, 1]), "shape (2,); expected (4,)"),
        (torch.zeros(4, 3, dtype=torch.long), "shape (4, 3); expected (4,)"),
        (torch.zeros(4), "dtype torch.float32"),
        ("clean", "of type str"),
        (None, "of type NoneType"),
        (True, "of type bool"),
    ],
)
def test_bad_which_answers_name_the_path_and_the_value(tiny_engine, tiny_tokens, answer, fragment):
    with pytest.raises(SelectorError) as error:
        tiny_engine.run(list(tiny_tokens), lambda path: answer)
    assert fragment in str(error.value) and "which(('embed',))" in str(error.value)


def test_bad_branch_answer(tiny_engine, tiny_tokens):
    with pytest.raises(SelectorError, match=r"branch\(\('a0',\)\) returned 'yes'"):
        tiny_engine.run(list(tiny_tokens), lambda p: 0, lambda p: "yes")


def test_exponential_tree_stops_with_advice(small_engine):
    tokens = torch.zeros(1, 3, dtype=torch.long)
    engine = Engine.from_hf(small_engine.model, max_paths=5_000)
    with pytest.raises(PlanTooLargeError, match="Pass key="):
        engine.run([tokens], lambda p: 0, lambda p: p[-1] != "embed")


def test_unsupported_model_is_named():
    with pytest.raises(UnsupportedModelError, match="cannot run a Linear"):
        Engine.from_hf(torch.nn.Linear(2, 2))


def test_from_pretrained_without_local_weights_says_how_to_fix(tmp_path):
    with pytest.raises(InputError, match="pass a directory that holds"):
        Engine.from_pretrained(str(tmp_path / "missing"))


def test_from_pretrained_loads_a_local_directory(tiny_model, tmp_path, tiny_tokens):
    tiny_model.save_pretrained(tmp_path)
    engine = Engine.from_pretrained(str(tmp_path))
    clean, _ = tiny_tokens
    with torch.no_grad():
        expected = tiny_model(clean).logits
    torch.testing.assert_close(engine.run([clean], lambda p: 0).logits, expected, atol=1e-5, rtol=0)
