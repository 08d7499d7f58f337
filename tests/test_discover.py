"""`python -m causal_hypotheses discover`: the written claims module passes under pytest as it is.

On the trained induction model: discover writes a module and its findings CSV to a temporary
directory (the command line in this process); a separate pytest process with the plugin then
runs the module, and every claim in it must pass.
"""
from __future__ import annotations

import ast
import subprocess
import sys

import pandas as pd
import pytest

from causal_hypotheses.__main__ import main
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


@pytest.mark.slow
def test_the_written_module_passes_under_pytest(written):
    result = subprocess.run(
        [sys.executable, "-m", "pytest", written.name, *PLUGIN, "-q"], cwd=written.parent, capture_output=True, text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "4 claims: 4 pass" in result.stdout
    for claim in ("test_found_paths_carry_the_behaviour", "test_found_outputs_carry_the_change",
                  "test_found_components_are_faithful", "test_random_heads_carry_little"):
        assert claim in result.stdout


def test_a_repaired_graph_is_written_without_a_faithfulness_claim(tmp_path):
    """Restored receivers read the whole model, so the components alone are not the stated circuit:
    the module scrubs the paths (some ending at a restored receiver) and drops faithfulness."""
    import torch

    from causal_hypotheses import Engine, random_gpt2
    from causal_hypotheses.discovery import attribute, prune
    from causal_hypotheses.discovery.write import write_claims

    def metric(logits):
        return logits[:, -1, 3] - logits[:, -1, 7]

    model = random_gpt2("tiny", seed=1, std=0.1)
    generator = torch.Generator().manual_seed(0)
    clean, corrupt = (torch.randint(0, 512, (3, 6), generator=generator) for _ in range(2))
    engine = Engine.from_hf(model)
    scores = attribute(engine, clean, corrupt, metric)
    change = abs(scores.clean - scores.corrupt)
    found = prune(engine, clean, corrupt, metric, 0.1 * change, budget=0.1 * change, scores=scores, progress=False)
    assert found.restored
    out = write_claims(tmp_path / "test_tiny_found.py", found, model="m", task="t", metric="logit_diff", n=3, seed=0, check_n=7)
    text = out.read_text()
    tree = ast.parse(text)
    paths = next(ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign) and node.targets[0].id == "PATHS")
    assert {path[-1] for path in paths if path[-1] != "embed"} <= set(found.restored)
    assert any(path[-1] in found.restored for path in paths)
    assert "faithfulness" not in "".join(ast.unparse(node) for node in tree.body if isinstance(node, ast.FunctionDef))
    assert "n=7, seed=1" in text and "restored " + ", ".join(found.restored) in text


def test_bad_arguments(tmp_path):
    with pytest.raises(InputError, match="starts with 'test_'"):
        discover(None, None, model="m", task_name="t", out=tmp_path / "found.py", n=8, seed=0)
    with pytest.raises(InputError, match="corruption='shuffle'"):
        discover(None, None, model="m", task_name="t", out=tmp_path / "test_x.py", n=8, seed=0, corruption="shuffle")
    with pytest.raises(InputError, match="check_n=0"):
        discover(None, None, model="m", task_name="t", out=tmp_path / "test_x.py", n=8, seed=0, check_n=0)
