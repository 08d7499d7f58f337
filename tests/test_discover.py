"""`python -m causal_hypotheses discover`: the written claims module passes under pytest as it is.

On the trained induction model: discover writes a module and its findings CSV to a temporary
directory (the command line in this process); a separate pytest process with the plugin then
runs the module, and every claim in it must pass, with the values the module states: discover
measured each claim before writing it and gave it the bar the rule of circuits/README.md sets for
its interval.  The bars' rule itself is checked on hand-made intervals.
"""
from __future__ import annotations

import ast
import re
import subprocess
import sys

import pandas as pd
import pytest

from causal_hypotheses.__main__ import main
from causal_hypotheses.discovery.check import Draft, Measured, choose_bar
from causal_hypotheses.discovery.write import discover
from causal_hypotheses.errors import InputError
from causal_hypotheses.trained import INDUCTION_HEADS, INDUCTION_KEY_READS

from plugin_support import PLUGIN


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("found") / "test_induction_found.py"
    code = main(["discover", "--model", "induction-2l", "--task", "induction", "--out", str(out), "--n", "16",
                 "--corruption", "resample", "--threshold", "0.005", "--max-nodes", "0", "--max-edges", "0", "--quiet"])
    assert code == 0
    return out


def test_the_written_module_names_the_circuit(written):
    tree = ast.parse(written.read_text())
    values = {node.targets[0].id: ast.literal_eval(node.value) for node in tree.body
              if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) and node.targets[0].id.isupper()}
    assert set(values["COMPONENTS"]) == set(INDUCTION_KEY_READS) | set(INDUCTION_HEADS)
    assert set(values["OUTPUTS"]) == set(INDUCTION_HEADS)
    assert all(path[-1] == "embed" for path in values["PATHS"])
    # the docstring gives the command that writes it again, with every option that matters
    command = next(line.strip() for line in written.read_text().splitlines() if line.strip().startswith("python -m"))
    assert command.startswith("python -m causal_hypotheses discover --model induction-2l --task induction --n 16 --seed 0")
    assert "--threshold 0.005" in command and "--corruption resample" in command and command.endswith(f"--out {written.as_posix()}")
    findings = pd.read_csv(written.with_name("test_induction_found_findings.csv"))
    assert list(findings.columns) == ["sender", "receiver", "score", "decision", "kept"]
    assert findings.kept.sum() >= len(values["PATHS"]) // 2


def _run_pytest(module):
    """Run ``module`` under pytest with the plugin in a separate process; its report's rows by test name."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", module.name, *PLUGIN, "-q"], cwd=module.parent, capture_output=True, text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = pd.read_csv(module.parent / "reports" / "latest.csv")
    return result.stdout, report.set_index(report.claim.str.split("::").str[-1])


def _stated(module) -> dict:
    """The module docstring's measured values: {claim key: (value, low, high)}."""
    found = re.findall(r"^  ([a-z ]+): .* (-?[0-9.]+) \[(-?[0-9.]+), (-?[0-9.]+)\] \(95% interval\)", module.read_text(), re.M)
    return {key.replace(" ", "_"): tuple(float(x) for x in numbers) for key, *numbers in found}


@pytest.mark.slow
def test_the_written_module_passes_under_pytest(written):
    stdout, report = _run_pytest(written)
    assert "4 claims: 4 pass" in stdout
    claims = {"found_paths": "test_found_paths_carry_the_behaviour", "found_outputs": "test_found_outputs_carry_the_change",
              "found_components": "test_found_components_are_faithful", "random_heads": "test_random_heads_carry_little"}
    assert set(report.index) == set(claims.values())
    # the values the module states are the ones pytest measures (to the 3 decimals stated)
    stated = _stated(written)
    assert set(stated) == set(claims)
    for key, name in claims.items():
        row = report.loc[name]
        assert stated[key] == tuple(round(float(x), 3) + 0.0 for x in (row.value, row.ci_low, row.ci_high)), key


@pytest.mark.slow
def test_the_check_measures_what_pytest_measures_and_writes_only_bars_that_hold(tmp_path):
    """A circuit pruned hard (threshold 0.1) and checked on 8 prompts: its outputs' direct paths move
    0.72 [0.67, 0.78] of the change, which does not clear 0.75, so they are claimed to matter
    (at_least=0.1) and not to carry it; the random heads drawn (pruned induction heads) recover
    0.61, so there is no negative control and the module says so in a comment.  Every number
    discover measured is the number pytest measures for the written claim, exactly."""
    import causal_hypotheses.claims.builtins  # noqa: F401
    from causal_hypotheses.claims.registry import build_task, load_model

    loaded = load_model("induction-2l")
    task, check = build_task("induction", loaded, 16, 0), build_task("induction", loaded, 8, 1)
    out = tmp_path / "test_hard_found.py"
    found = discover(loaded.engine, task, model="induction-2l", task_name="induction", out=out, n=16, seed=0, check_n=8,
                     metric="loss", threshold=0.1, check_task=check, progress=False)
    text = out.read_text()
    assert "@pytest.mark.claim(at_least=0.1)\ndef test_found_outputs_matter(claim):" in text
    assert "def test_found_outputs_carry" not in text and "def test_random_heads" not in text
    assert "# Not claimed. Negative control" in text and "#     claim.scrub(Hypothesis({(head,): None" in text
    assert found.claimed == ["found_paths", "found_outputs"]
    outputs = found.measured["found_outputs"]
    assert outputs.low < 0.75 and outputs.low >= 0.1
    assert found.measured["random_heads"].high > 0.1
    stdout, report = _run_pytest(out)
    assert "2 claims: 2 pass" in stdout
    for key, name in (("found_paths", "test_found_paths_carry_the_behaviour"), ("found_outputs", "test_found_outputs_matter")):
        measured, row = found.measured[key], report.loc[name]
        assert (measured.value, measured.low, measured.high) == (row.value, row.ci_low, row.ci_high), key


def test_the_command_line_without_the_check_says_the_bars_were_not_measured(tmp_path, capsys):
    out = tmp_path / "test_unchecked.py"
    code = main(["discover", "--model", "induction-2l", "--task", "induction", "--out", str(out), "--n", "16",
                 "--threshold", "0.005", "--no-check", "--quiet"])
    assert code == 0
    text = out.read_text()
    assert "Their bars were NOT measured" in text and "--no-check" in text
    assert "checking" not in capsys.readouterr().err
    # each claim gets the bar of what it says, and its comment says it is unchecked
    assert text.count("@pytest.mark.claim(at_least=0.75)") == 3 and text.count("@pytest.mark.claim(at_most=0.1)") == 1
    assert text.count("# not measured: the bar the rule sets") == 4


def _draft(says="carries", patching=False):
    return Draft("x", {}, says, patching, "", "", lambda *args: None)


def _measured(low, high, effect=(1.0, 2.0)):
    return Measured((low + high) / 2, low, high, effect, "fraction")


@pytest.mark.parametrize("draft, low, high, bars", [
    (_draft(), 0.76, 0.9, (0.75, None, "carries")),
    (_draft(), 0.74, 0.9, (None, None, "")),  # holds 0.75: neither carries nor shown not to
    (_draft(), 0.3, 0.75, (None, 0.75, "wrong")),  # a found circuit's scrub gets no "matters" bar
    (_draft(patching=True), 0.3, 0.75, (0.1, 0.75, "matters")),
    (_draft(patching=True), 0.3, 0.8, (0.1, None, "matters")),
    (_draft(patching=True), 0.05, 0.8, (None, None, "")),
    (_draft(patching=True), 0.75, 0.8, (0.75, None, "carries")),
    (_draft("nothing"), -0.05, 0.1, (None, 0.1, "nothing")),
    (_draft("nothing"), -0.05, 0.11, (None, None, "")),
    (_draft("nothing"), -0.25, -0.06, (None, 0.1, "nothing")),  # the rule's bar; the comment says it reaches below -0.1
])
def test_the_bar_is_the_rules_for_the_whole_interval(draft, low, high, bars):
    bar = choose_bar(draft, _measured(low, high))
    assert (bar.at_least, bar.at_most, bar.says) == bars
    # whatever is claimed, the measured interval clears it (the claim passes as written)
    assert bar.at_least is None or low >= bar.at_least
    assert bar.at_most is None or high <= bar.at_most
    assert ("work against" in bar.why) == (bar.says == "nothing" and low < -0.1)


def test_no_effect_or_no_measurement():
    # the ablation does not change the metric distinguishably: nothing to recover, nothing claimed
    assert not choose_bar(_draft(), _measured(0.9, 1.0, effect=(-0.1, 0.2))).claimed
    assert not choose_bar(_draft(), _measured(float("nan"), float("nan"))).claimed
    assert not choose_bar(_draft(), _measured(0.9, 1.0, effect=(float("nan"), float("nan")))).claimed
    unmeasured = choose_bar(_draft(), None)
    assert (unmeasured.at_least, unmeasured.at_most) == (0.75, None) and "not measured" in unmeasured.why
    assert choose_bar(_draft("nothing"), None).at_most == 0.1


def tiny_repaired_graph():
    """A graph pruned on a tiny random GPT-2 whose repair restored receivers."""
    import torch

    from causal_hypotheses import Engine, random_gpt2
    from causal_hypotheses.discovery import attribute, prune

    def metric(logits):
        return logits[:, -1, 3] - logits[:, -1, 7]

    model = random_gpt2("tiny", seed=1, std=0.1)
    generator = torch.Generator().manual_seed(0)
    clean, corrupt = (torch.randint(0, 512, (3, 6), generator=generator) for _ in range(2))
    engine = Engine.from_hf(model)
    scores = attribute(engine, clean, corrupt, metric)
    change = abs(scores.clean - scores.corrupt)
    return prune(engine, clean, corrupt, metric, 0.1 * change, budget=0.1 * change, scores=scores, progress=False)


def test_a_repaired_graph_is_written_without_a_faithfulness_claim(tmp_path):
    """Restored receivers read the whole model, so the components alone are not the stated circuit:
    the module scrubs the paths (some ending at a restored receiver) and drops faithfulness."""
    from causal_hypotheses.discovery.write import write_claims

    found = tiny_repaired_graph()
    assert found.restored
    out = write_claims(tmp_path / "test_tiny_found.py", found, model="m", task="t", metric="logit_diff", n=3, seed=0, check_n=7)
    text = out.read_text()
    tree = ast.parse(text)
    paths = next(ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign) and node.targets[0].id == "PATHS")
    assert {path[-1] for path in paths if path[-1] != "embed"} <= set(found.restored)
    assert any(path[-1] in found.restored for path in paths)
    assert "faithfulness" not in "".join(ast.unparse(node) for node in tree.body if isinstance(node, ast.FunctionDef))
    assert "n=7, seed=1" in text and "restored " + ", ".join(found.restored) in text


def test_a_claim_whose_check_was_slow_is_written_heavy(tmp_path):
    """A claim whose check took over HEAVY_SECONDS of CPU is marked heavy=True (the default run skips
    it, --claims-heavy=run runs it), and its comment says how long it took; the others are not."""
    from causal_hypotheses.discovery.check import HEAVY_SECONDS
    from causal_hypotheses.discovery.write import drafts, write_claims

    found = tiny_repaired_graph()
    measured = {draft.key: Measured(0.9, 0.8, 0.95, (1.0, 2.0), "fraction", 1.0) for draft in drafts(found)}
    measured["found_paths"] = Measured(0.9, 0.8, 0.95, (1.0, 2.0), "fraction", HEAVY_SECONDS + 30)
    text = write_claims(tmp_path / "test_tiny_found.py", found, model="m", task="t", metric="logit_diff", n=3, seed=0,
                        measured=measured).read_text()
    assert "@pytest.mark.claim(at_least=0.75, heavy=True)\ndef test_found_paths_carry_the_behaviour" in text
    assert f"Heavy: its check took {HEAVY_SECONDS + 30:.0f} s CPU" in text
    assert text.count("heavy=True") == 1 and "@pytest.mark.claim(at_least=0.75)\ndef test_found_outputs_carry" in text


def test_bad_arguments(tmp_path):
    with pytest.raises(InputError, match="starts with 'test_'"):
        discover(None, None, model="m", task_name="t", out=tmp_path / "found.py", n=8, seed=0)
    with pytest.raises(InputError, match="corruption='shuffle'"):
        discover(None, None, model="m", task_name="t", out=tmp_path / "test_x.py", n=8, seed=0, corruption="shuffle")
    with pytest.raises(InputError, match="check_n=0"):
        discover(None, None, model="m", task_name="t", out=tmp_path / "test_x.py", n=8, seed=0, check_n=0)

    class Prompts:
        clean = [[1, 2]] * 5

    with pytest.raises(InputError, match="check_task has 5 prompts, but the written claims run on check_n=8"):
        discover(None, None, model="m", task_name="t", out=tmp_path / "test_x.py", n=8, seed=0, check_task=Prompts())
