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


def test_bad_arguments(tmp_path):
    with pytest.raises(InputError, match="starts with 'test_'"):
        discover(None, None, model="m", task_name="t", out=tmp_path / "found.py", n=8, seed=0)
    with pytest.raises(InputError, match="corruption='shuffle'"):
        discover(None, None, model="m", task_name="t", out=tmp_path / "test_x.py", n=8, seed=0, corruption="shuffle")
