"""Bad inputs to the engine and to patching raise the project's errors, naming the bad value
and the fix; odd but meaningful spellings (numpy scalars, 0-d tensors) are accepted."""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import torch

from causal_hypotheses import Engine
from causal_hypotheses.engine import drawing
from causal_hypotheses.engine.core import MeanInput, ZeroInput
from causal_hypotheses.errors import CausalHypothesesError, InputError, SelectorError, UnknownComponentError
from causal_hypotheses.interventions import activation_patch, activation_patch_sweep, path_patch, path_patch_sweep

B, T = 2, 5
_generator = torch.Generator().manual_seed(11)
CLEAN = torch.randint(0, 512, (B, T), generator=_generator)
CORRUPT = torch.randint(0, 512, (B, T), generator=_generator)


def metric(logits):
    return logits[:, -1, 0]


def run(engine, **options):
    return engine.run([CLEAN, CORRUPT], lambda p: 1 if "a0" in p else 0, lambda p: p[-1] == "a0", **options)


def branch_answer(answer):
    return lambda engine: engine.run([CLEAN, CORRUPT], lambda p: 1 if "a0" in p else 0, lambda p: answer)


def ap(**options):
    options.setdefault("nodes", "a0.h1")
    nodes = options.pop("nodes")
    base, source = options.pop("base", CLEAN), options.pop("source", CORRUPT)
    return lambda engine: activation_patch(engine, base, source, nodes, **options)


def pp(**options):
    senders, receivers = options.pop("senders", ["a0.h1"]), options.pop("receivers", ["a1.h0.q"])
    clean, corrupt = options.pop("clean", CLEAN), options.pop("corrupt", CORRUPT)
    return lambda engine: path_patch(engine, clean, corrupt, senders, receivers, **options)


def aps(**options):
    nodes, chosen = options.pop("nodes", ["a0.h1"]), options.pop("metric", metric)
    source = options.pop("source", CORRUPT)
    return lambda engine: activation_patch_sweep(engine, CLEAN, source, chosen, nodes, **options)


def pps(**options):
    receivers, chosen = options.pop("receivers", ["a1.h0.q"]), options.pop("metric", metric)
    return lambda engine: path_patch_sweep(engine, CLEAN, CORRUPT, receivers, chosen, **options)


def mean_input(tokens):
    return lambda engine: engine.run([CLEAN, MeanInput(tokens)], lambda p: 1 if "m0" in p else 0)


ALLOWED_POSITIONS = "pass an index in -5..4 (e.g. positions=-1 for the last position)"
ALLOWED_LOGIT_POSITIONS = "pass an index or a list of indices in -5..4, e.g. logit_positions=-1"
BRANCH_FIX = "expected True (split the computation here), False, or a bool tensor (2,)"

# (id, call(engine), error class, fragments of the message: the bad value, what is allowed, the fix)
CASES = [
    # ------------------------------------------------------------ engine construction
    ("cache_bytes str", lambda e: Engine.from_hf(e.model, cache_bytes="1GB"), InputError,
     ["cache_bytes='1GB'", "expected a number of bytes as an int, e.g. 2 * 1024**3 (0 disables caching)"]),
    ("cache_bytes negative", lambda e: Engine.from_hf(e.model, cache_bytes=-1), InputError, ["cache_bytes=-1", ">= 0", "e.g. 2 * 1024**3"]),
    ("cache_bytes float", lambda e: Engine.from_hf(e.model, cache_bytes=1.5e9), InputError, ["cache_bytes=1500000000.0", "int(1500000000.0)"]),
    ("cache_bytes bool", lambda e: Engine.from_hf(e.model, cache_bytes=True), InputError, ["cache_bytes=True", "not a bool"]),
    ("max_paths zero", lambda e: Engine.from_hf(e.model, max_paths=0), InputError, ["max_paths=0", "positive int", "200_000"]),
    ("max_paths str", lambda e: Engine.from_hf(e.model, max_paths="many"), InputError, ["max_paths='many'", "positive int"]),
    # ------------------------------------------------------------ run: functions
    ("branch not callable", lambda e: e.run([CLEAN], lambda p: 0, 5), InputError, ["branch=5", "must be a function of a path", "or None"]),
    ("key not callable", lambda e: e.run([CLEAN], lambda p: 0, None, key=5), InputError, ["key=5", "key must be a function of a path"]),
    ("which not callable", lambda e: e.run([CLEAN], 0), InputError, ["which=0", "lambda path:"]),
    # ------------------------------------------------------------ run: branch answers
    ("branch returns 2", branch_answer(2), SelectorError, ["returned 2 (int)", BRANCH_FIX, "path[-1] == 'a1'"]),
    ("branch returns -1", branch_answer(-1), SelectorError, ["returned -1 (int)", BRANCH_FIX]),
    ("branch returns numpy 3", branch_answer(np.int64(3)), SelectorError, ["returned np.int64(3)", BRANCH_FIX]),
    ("branch returns tensor(2)", branch_answer(torch.tensor(2)), SelectorError, ["returned 2 (int)", BRANCH_FIX]),
    ("branch returns float tensor", branch_answer(torch.tensor(0.5)), SelectorError, ["tensor(0.5000)", "torch.float32", BRANCH_FIX]),
    ("branch returns float", branch_answer(1.0), SelectorError, ["returned 1.0 (float)", BRANCH_FIX]),
    ("branch returns None", branch_answer(None), SelectorError, ["returned None (NoneType)", BRANCH_FIX]),
    ("branch returns str", branch_answer("False"), SelectorError, ["returned 'False' (str)", BRANCH_FIX]),
    ("branch returns list", branch_answer([True, False]), SelectorError, ["returned [True, False] (list)", BRANCH_FIX]),
    ("branch returns ndarray", branch_answer(np.array([True, False])), SelectorError, ["(ndarray)", BRANCH_FIX]),
    ("branch returns (1,) tensor", branch_answer(torch.tensor([True])), SelectorError, ["tensor of shape (1,)", BRANCH_FIX]),
    ("branch returns long mask", branch_answer(torch.tensor([1, 0])), SelectorError, ["dtype torch.int64", "bool tensor (2,)", "(answer != 0)"]),
    ("branch returns long position mask", branch_answer(torch.eye(B, T, dtype=torch.long)), SelectorError,
     ["dtype torch.int64", f"per-position answer must be a bool tensor ({B}, {T})", "(answer != 0)"]),
    ("branch returns (B, T + 1) mask", branch_answer(torch.ones(B, T + 1, dtype=torch.bool)), SelectorError,
     [f"tensor of shape ({B}, {T + 1})", f"or ({B}, {T}) to split some positions only"]),
    # ------------------------------------------------------------ run: which answers
    ("which returns numpy bool", lambda e: e.run([CLEAN, CORRUPT], lambda p: np.True_), SelectorError, ["np.True_", "expected an input index 0..1"]),
    ("which returns float", lambda e: e.run([CLEAN, CORRUPT], lambda p: 1.0), SelectorError, ["returned 1.0", "expected an input index 0..1"]),
    ("which returns ndarray", lambda e: e.run([CLEAN, CORRUPT], lambda p: np.array([0, 1])), SelectorError, ["ndarray", "LongTensor of shape (2,)"]),
    # ------------------------------------------------------------ run: logit_positions
    ("logit_positions True", lambda e: run(e, logit_positions=True), InputError, ["logit_positions=True is a bool", ALLOWED_LOGIT_POSITIONS]),
    ("logit_positions False", lambda e: run(e, logit_positions=False), InputError, ["logit_positions=False is a bool", ALLOWED_LOGIT_POSITIONS]),
    ("logit_positions numpy bool", lambda e: run(e, logit_positions=np.True_), InputError, ["logit_positions=np.True_ is a bool"]),
    ("logit_positions bool tensor", lambda e: run(e, logit_positions=torch.tensor(True)), InputError, ["logit_positions=tensor(True) is a bool"]),
    ("logit_positions [True]", lambda e: run(e, logit_positions=[True]), InputError, ["holds True (bool)", ALLOWED_LOGIT_POSITIONS]),
    ("logit_positions empty", lambda e: run(e, logit_positions=[]), InputError, ["logit_positions=[] selects no position", "None for every position"]),
    ("logit_positions float", lambda e: run(e, logit_positions=1.5), InputError, ["logit_positions=1.5", ALLOWED_LOGIT_POSITIONS]),
    ("logit_positions [float]", lambda e: run(e, logit_positions=[1.0]), InputError, ["holds 1.0 (float)", ALLOWED_LOGIT_POSITIONS]),
    ("logit_positions str", lambda e: run(e, logit_positions="-1"), InputError, ["logit_positions='-1'", ALLOWED_LOGIT_POSITIONS]),
    ("logit_positions too large", lambda e: run(e, logit_positions=5), InputError, ["position 5 is outside the prompt of 5 tokens", ALLOWED_LOGIT_POSITIONS]),
    ("logit_positions too negative", lambda e: run(e, logit_positions=[0, -6]), InputError, ["position -6 is outside", ALLOWED_LOGIT_POSITIONS]),
    ("logit_positions bool mask", lambda e: run(e, logit_positions=torch.tensor([True, False, False, False, True])), InputError,
     ["bool mask", "mask.nonzero().flatten().tolist()"]),
    ("logit_positions 2-d tensor", lambda e: run(e, logit_positions=torch.zeros(2, 2, dtype=torch.long)), InputError,
     ["shape (2, 2)", ALLOWED_LOGIT_POSITIONS]),
    # ------------------------------------------------------------ run: mean inputs
    ("MeanInput float tokens", mean_input(torch.zeros(3, T)), InputError, ["inputs[1] (a MeanInput) has dtype torch.float32", "torch.long"]),
    ("MeanInput no rows", mean_input(torch.zeros(0, T, dtype=torch.long)), InputError, ["shape (0, 5)", "M, T > 0"]),
    ("MeanInput id out of vocabulary", mean_input(torch.full((3, T), 600)), InputError, ["token id 600", "valid ids are 0..511"]),
    ("MeanInput 1-d", mean_input(torch.zeros(T, dtype=torch.long)), InputError, ["shape (5,)", "LongTensor (M, T)"]),
    # ------------------------------------------------------------ activation_patch
    ("ap positions True", ap(positions=True), InputError, ["positions=True is a bool", ALLOWED_POSITIONS]),
    ("ap positions False", ap(positions=False), InputError, ["positions=False is a bool", ALLOWED_POSITIONS]),
    ("ap positions numpy bool", ap(positions=np.True_), InputError, ["positions=np.True_ is a bool"]),
    ("ap positions 0-d bool tensor", ap(positions=torch.tensor(True)), InputError, ["positions=tensor(True) is a bool"]),
    ("ap positions [numpy bool]", ap(positions=[np.True_]), InputError, ["holds np.True_", ALLOWED_POSITIONS]),
    ("ap positions empty list", ap(positions=[]), InputError, ["positions=[] patches no position; nothing would change", ALLOWED_POSITIONS]),
    ("ap positions empty tuple", ap(positions=()), InputError, ["positions=() patches no position"]),
    ("ap positions all-False mask", ap(positions=torch.zeros(B, T, dtype=torch.bool)), InputError,
     ["all-False (2, 5) mask", "patches no position; nothing would change", "positions=None"]),
    ("ap positions mask (T,)", ap(positions=torch.ones(T, dtype=torch.bool)), InputError, ["shape (5,)", "(B, T) = (2, 5)", "mask.expand(2, 5)"]),
    ("ap positions mask wrong B", ap(positions=torch.ones(3, T, dtype=torch.bool)), InputError, ["shape (3, 5)", "(B, T) = (2, 5)"]),
    ("ap positions 0/1 long mask", ap(positions=torch.ones(B, T, dtype=torch.long)), InputError, ["shape (2, 5) and dtype torch.int64", "mask.bool()"]),
    ("ap positions float tensor", ap(positions=torch.tensor([1.0])), InputError, ["torch.float32", "not an integer index", ALLOWED_POSITIONS]),
    ("ap positions float", ap(positions=1.0), InputError, ["positions=1.0", ALLOWED_POSITIONS]),
    ("ap positions str", ap(positions="-1"), InputError, ["positions='-1'", ALLOWED_POSITIONS]),
    ("ap positions [None]", ap(positions=[None]), InputError, ["holds None", ALLOWED_POSITIONS]),
    ("ap position too large", ap(positions=5), UnknownComponentError, ["position 5 is outside the prompt", "-5..4"]),
    ("ap position too negative", ap(positions=[-6]), InputError, ["position -6 is outside the prompt", "-5..4"]),
    ("ap nodes None", ap(nodes=None), InputError, ["nodes=None", "e.g. nodes=['a9.h9']"]),
    ("ap nodes empty", ap(nodes=[]), InputError, ["nodes is empty", "e.g. nodes=['a9.h9']"]),
    ("ap nodes int", ap(nodes=3), InputError, ["nodes=3 (int)", "e.g. nodes=['a9.h9']"]),
    ("ap nodes [int]", ap(nodes=[3]), UnknownComponentError, ["3", "is not a component name"]),
    ("ap source shorter", ap(source=CORRUPT[:, :4]), InputError, ["source has shape (2, 4) but base has (2, 5)", "equal token length"]),
    ("ap source fewer rows", ap(source=CORRUPT[:1]), InputError, ["source has shape (1, 5) but base has (2, 5)", "equal batch size"]),
    ("ap base 1-d", ap(base=CLEAN[0], source=CORRUPT[0]), InputError, ["base must be a LongTensor", "shape (5,)", "base[None]"]),
    ("ap base float", ap(base=CLEAN.float()), InputError, ["base has dtype torch.float32", "base.long()"]),
    ("ap base list", ap(base=CLEAN.tolist()), InputError, ["base must be a LongTensor of token ids (B, T)", "got list"]),
    ("ap base None", ap(base=None), InputError, ["base must be a LongTensor", "got NoneType"]),
    ("ap base padded", ap(base={"input_ids": CLEAN, "attention_mask": torch.tensor([[1, 1, 1, 1, 0], [1] * 5])}), InputError,
     ["base has padding", "equal token length"]),
    ("ap base without input_ids", ap(base={"ids": CLEAN}), InputError, ["base is a mapping without 'input_ids'", "keys ['ids']", "tokenizer("]),
    ("ap logit_positions True", ap(logit_positions=True), InputError, ["logit_positions=True is a bool"]),
    # ------------------------------------------------------------ path_patch
    ("pp senders None", pp(senders=None), InputError, ["senders=None", "e.g. senders=['a5.h5']"]),
    ("pp receivers None", pp(receivers=None), InputError, ["receivers=None", "e.g. receivers=['a9.h9.q']", "'out'"]),
    ("pp receivers empty", pp(receivers=[]), InputError, ["receivers is empty", "e.g. receivers="]),
    ("pp senders dict", pp(senders={"a0.h1": 1}), InputError, ["senders={'a0.h1': 1} (dict)", "e.g. senders=['a5.h5']"]),
    ("pp positions True", pp(positions=True), InputError, ["positions=True is a bool", ALLOWED_POSITIONS]),
    ("pp positions empty", pp(positions=[]), InputError, ["positions=[] patches no position"]),
    ("pp positions all-False", pp(positions=torch.zeros(B, T, dtype=torch.bool)), InputError, ["all-False", "nothing would change"]),
    ("pp corrupt shorter", pp(corrupt=CORRUPT[:, :4]), InputError, ["corrupt has shape (2, 4) but clean has (2, 5)", "equal token length"]),
    ("pp sender after receiver", pp(senders=["a1.h0"], receivers=["a1.h0"]), UnknownComponentError,
     ["sender 'a1.h0' has no direct path", "add 'out'"]),
    ("pp receiver OUT", pp(receivers=["OUT"]), UnknownComponentError, ["'OUT' is not a component name"]),
    # ------------------------------------------------------------ sweeps
    ("aps nodes empty", aps(nodes=[]), InputError, ["nodes is empty", "e.g. nodes=['a9.h9']"]),
    ("aps positions True", aps(positions=True), InputError, ["positions=True is a bool"]),
    ("aps positions empty", aps(positions=[]), InputError, ["positions=[] patches no position"]),
    ("aps positions all-False", aps(positions=np.zeros((B, T), dtype=bool)), InputError, ["all-False", "nothing would change"]),
    ("aps chunk_size zero", aps(chunk_size=0), InputError, ["chunk_size=0", "positive int", "None"]),
    ("aps chunk_size negative", aps(chunk_size=-1), InputError, ["chunk_size=-1", "positive int"]),
    ("aps max_tokens zero", aps(max_tokens=0), InputError, ["max_tokens=0", "positive int", "8192"]),
    ("aps metric str", aps(metric="logit_diff"), InputError, ["metric='logit_diff' (str) is not a function", "lambda logits"]),
    ("aps metric returns str", aps(metric=lambda logits: "x"), InputError, ["metric returned 'x' (str)", "lambda logits"]),
    ("aps metric returns empty", aps(metric=lambda logits: []), InputError, ["metric returned an empty list", "lambda logits"]),
    ("aps source fewer rows", aps(source=CORRUPT[:1]), InputError, ["source has shape (1, 5) but base has (2, 5)"]),
    ("pps senders empty", pps(senders=[]), InputError, ["senders is empty", "e.g. senders=['a5.h5']"]),
    ("pps no default sender", pps(receivers=["a0.h0.q"]), InputError, ["receivers=['a0.h0.q']", "no head comes before", "senders=['embed']"]),
    ("pps receivers None", pps(receivers=None), InputError, ["receivers=None", "e.g. receivers="]),
    ("pps bad receiver default senders", pps(receivers=["x"]), UnknownComponentError, ["'x' is not a component name"]),
    ("pps positions True", pps(positions=True), InputError, ["positions=True is a bool"]),
    ("pps positions all-False", pps(positions=torch.zeros(B, T, dtype=torch.bool)), InputError, ["all-False", "nothing would change"]),
    ("pps chunk_size float", pps(chunk_size=2.0), InputError, ["chunk_size=2.0", "positive int"]),
]


@pytest.mark.parametrize("call,error,fragments", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_input_raises_and_says_how_to_fix(tiny_engine, call, error, fragments):
    with pytest.raises(error) as raised:
        call(tiny_engine)
    assert isinstance(raised.value, CausalHypothesesError)
    message = str(raised.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_position_errors_are_input_errors_and_still_unknown_component_errors(tiny_engine):
    """Out-of-range positions raised UnknownComponentError before; they are InputErrors now too."""
    for positions in (7, True, []):
        with pytest.raises(InputError) as raised:
            activation_patch(tiny_engine, CLEAN, CORRUPT, "a0.h1", positions=positions)
        assert isinstance(raised.value, UnknownComponentError)


# --------------------------------------------------------------------------- accepted
@pytest.mark.parametrize(
    "yes,no",
    [(np.True_, np.False_), (torch.tensor(True), torch.tensor(False)), (1, 0), (torch.tensor(1), torch.tensor(0)), (np.int64(1), np.int64(0))],
    ids=["numpy bool", "0-d bool tensor", "int", "0-d int tensor", "numpy int"],
)
def test_branch_accepts_numpy_and_tensor_bools(tiny_engine, yes, no):
    assert type(np.True_).__name__ in ("bool", "bool_")  # "bool" under numpy 2
    which = lambda p: 1 if "a0" in p else 0
    expected = tiny_engine.run([CLEAN, CORRUPT], which, lambda p: p[-1] == "a0").logits
    got = tiny_engine.run([CLEAN, CORRUPT], which, lambda p: yes if p[-1] == "a0" else no).logits
    assert torch.equal(got, expected)


def test_branch_accepts_a_per_example_mask_of_a_single_example(tiny_engine):
    which = lambda p: 1 if "a0" in p else 0
    expected = tiny_engine.run([CLEAN[:1], CORRUPT[:1]], which, lambda p: p[-1] == "a0").logits
    got = tiny_engine.run([CLEAN[:1], CORRUPT[:1]], which, lambda p: torch.tensor([p[-1] == "a0"])).logits
    assert torch.equal(got, expected)


@pytest.mark.parametrize(
    "value,read",
    [(np.int64(-1), [4]), (torch.tensor(3), [3]), ([np.int32(0), torch.tensor(-1)], [0, 4]), (torch.tensor([1, 2]), [1, 2]),
     (np.array([4, 0]), [4, 0]), ([2, 2], [2, 2])],
    ids=["numpy int", "0-d tensor", "mixed list", "1-d tensor", "ndarray", "duplicates"],
)
def test_logit_positions_accept_numpy_and_tensor_indices(tiny_engine, value, read):
    full = run(tiny_engine).logits
    torch.testing.assert_close(run(tiny_engine, logit_positions=value).logits, full[:, read], atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "positions",
    [np.int64(-1), torch.tensor(4), [torch.tensor(-1)], np.array([4]), [4, -1, 4], torch.tensor([4, 4])],
    ids=["numpy int", "0-d tensor", "list of 0-d tensor", "ndarray", "duplicates", "1-d tensor"],
)
def test_positions_accept_numpy_and_tensor_indices(tiny_engine, positions):
    expected = activation_patch(tiny_engine, CLEAN, CORRUPT, "a0.h1", positions=-1)
    assert torch.equal(activation_patch(tiny_engine, CLEAN, CORRUPT, "a0.h1", positions=positions), expected)
    expected = path_patch(tiny_engine, CLEAN, CORRUPT, ["a0.h1"], ["a1.h0.q"], positions=-1)
    assert torch.equal(path_patch(tiny_engine, CLEAN, CORRUPT, ["a0.h1"], ["a1.h0.q"], positions=positions), expected)


def test_positions_accept_a_numpy_bool_mask(tiny_engine):
    mask = np.zeros((B, T), dtype=bool)
    mask[0, 2] = mask[1, 4] = True
    expected = activation_patch(tiny_engine, CLEAN, CORRUPT, "a0.h1", positions=torch.from_numpy(mask))
    assert torch.equal(activation_patch(tiny_engine, CLEAN, CORRUPT, "a0.h1", positions=mask), expected)
    assert not torch.equal(expected, activation_patch(tiny_engine, CLEAN, CORRUPT, "a0.h1", positions=None))


def test_sweeps_accept_one_name_as_a_string(tiny_engine):
    table = activation_patch_sweep(tiny_engine, CLEAN, CORRUPT, metric, "a0.h1")
    single = float(metric(activation_patch(tiny_engine, CLEAN, CORRUPT, "a0.h1")).mean())
    assert table.notna().sum().sum() == 1 and table.loc[0, 1] == pytest.approx(single, abs=1e-5)
    table = path_patch_sweep(tiny_engine, CLEAN, CORRUPT, "a1.h0.q", metric, senders="a0.h1")
    single = float(metric(path_patch(tiny_engine, CLEAN, CORRUPT, "a0.h1", "a1.h0.q")).mean())
    assert table.loc[0, 1] == pytest.approx(single, abs=1e-5)


def test_sweep_defaults_still_mean_every_head(tiny_engine):
    table = path_patch_sweep(tiny_engine, CLEAN, CORRUPT, ["a1.h0.q"], metric)  # senders=None: heads before a1
    assert table.loc[0].notna().all() and table.loc[1].isna().all()
    table = activation_patch_sweep(tiny_engine, CLEAN, CORRUPT, metric, positions=-1)  # nodes=None: every head
    assert table.notna().all().all()


def test_mean_and_zero_inputs_still_run(tiny_engine):
    result = tiny_engine.run([CLEAN, MeanInput(CORRUPT), ZeroInput()], lambda p: 1 if "m0" in p else 2 if "a1" in p else 0)
    assert torch.isfinite(result.logits).all()


# --------------------------------------------------------------------------- rendering without PATH
def test_dot_program_is_found_beside_the_interpreter_without_path(tmp_path, monkeypatch):
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    program = bin_dir / "graphviz-pure"
    program.write_text("#!/bin/sh\nexit 0\n")
    program.chmod(0o755)
    monkeypatch.setenv("PATH", "")
    monkeypatch.setattr(sys, "executable", str(bin_dir / "python"))
    assert drawing.dot_program() == str(program)
    dot = bin_dir / "dot"
    dot.write_text("#!/bin/sh\nexit 0\n")
    dot.chmod(0o755)
    assert drawing.dot_program() == str(dot)  # dot first, as on PATH
    monkeypatch.setattr(sys, "executable", str(tmp_path / "elsewhere" / "python"))
    assert drawing.dot_program() is None


def test_render_uses_the_venv_renderer_when_path_is_empty(tiny_engine, tmp_path, monkeypatch):
    beside = os.path.dirname(sys.executable)
    if not any(os.access(os.path.join(beside, name), os.X_OK) for name in ("dot", "graphviz-pure")):
        pytest.skip("no dot or graphviz-pure beside the interpreter (pip install graphviz-pure)")
    monkeypatch.setenv("PATH", "")
    dot = run(tiny_engine).visualise()
    written = drawing.render(dot, str(tmp_path / "plan"))
    assert written.suffix == ".svg" and "<svg" in written.read_text()
