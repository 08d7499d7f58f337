"""The pytest plugin, run on small claim files through ``pytester``.

Claims here use the trained 2-layer induction model and the induction task, so that resampling
changes the loss (a claim on a random model would have no effect to explain), with hypotheses
whose verdict is certain: the hypothesis listing every writer of the final residual stream
recovers exactly 1, the empty hypothesis exactly 0.
"""
from __future__ import annotations

import math
import subprocess
import sys

import pandas as pd
import pytest

pytest_plugins = ["pytester"]

from plugin_support import PLUGIN  # noqa: E402,F401  (also loads what claims import)
TINY = 'model="induction-2l", task="induction", metric="loss", n=8, seed=3'
HEADER = f"""
import pytest
from causal_hypotheses import Hypothesis

TINY = dict({TINY})
NOTHING = Hypothesis({{}}, name="nothing")


def everything(claim):
    return Hypothesis({{(w,): None for w in claim.engine.graph.writers()}}, name="every writer")
"""


def run(pytester: pytest.Pytester, body: str, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_claims=HEADER + body)
    return pytester.runpytest(*PLUGIN, *args)


def latest(pytester: pytest.Pytester) -> pd.DataFrame:
    return pd.read_csv(pytester.path / "reports" / "latest.csv")


def test_importing_the_plugin_loads_no_torch_transformers_or_pandas():
    code = ("import sys, causal_hypotheses.plugin; "
            "print(sorted(m for m in ('torch', 'transformers', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_passing_claim_and_the_terminal_table(pytester):
    result = run(pytester, """
@pytest.mark.claim(**TINY, at_least=0.9)
def test_every_writer(claim):
    result = claim.scrub(everything(claim))
    assert result.fraction_recovered == pytest.approx(1.0)
""")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([
        "*= claims =*",
        "claim*model*metric*value [[]CI[]]*threshold*verdict*time",
        "test_claims.py::test_every_writer*induction-2l*loss*1.000 [[]1.000, 1.000[]] 95%*>= 0.9*pass*s",
        f"reports: {pytester.path / 'reports'}/claims-*.csv and *.html (also latest.csv, latest.html)",
    ])


def test_failing_claim_says_value_interval_threshold_n_and_seed(pytester):
    result = run(pytester, """
@pytest.mark.claim(**TINY, at_least=0.5)
def test_nothing_matters(claim):
    claim.scrub(NOTHING)
""")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "claim not met: recovered 0.000 (95% CI 0.000 to 0.000) lies entirely below at_least=0.5",
        "*hypothesis 'nothing' on model induction-2l, task induction, metric loss, resample ablation (independent resampling), n=8, seed=3*",
        "*metric means: clean *, ablated *, scrubbed *",
    ])
    assert "Traceback" not in result.stdout.str()
    assert latest(pytester)["verdict"].tolist() == ["fail"]


def test_negative_controls_use_at_most(pytester):
    result = run(pytester, """
@pytest.mark.claim(**TINY, at_most=0.1)
def test_nothing_recovers_nothing(claim):
    claim.scrub(NOTHING)

@pytest.mark.claim(**TINY, at_most=0.5)
def test_everything_is_not_a_control(claim):
    claim.scrub(everything(claim))
""")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["claim not met: recovered 1.000 (95% CI 1.000 to 1.000) lies entirely above at_most=0.5"])
    assert latest(pytester)["verdict"].tolist() == ["pass", "fail"]


def test_an_interval_that_straddles_the_threshold_is_inconclusive(pytester):
    # Measure a partial hypothesis first, then claim the midpoint of its own interval:
    # the same seed gives the same interval, so the threshold lies strictly inside it.
    body = """
@pytest.mark.claim(**TINY, at_least={threshold})
def test_one_head(claim):
    claim.scrub(Hypothesis({{("a1.h1",): None}}, name="one head"))
"""
    run(pytester, body.format(threshold=-1e9)).assert_outcomes(passed=1)
    low, high = latest(pytester).loc[0, ["ci_low", "ci_high"]]
    assert low < high
    threshold = (low + high) / 2
    result = run(pytester, body.format(threshold=threshold))
    result.assert_outcomes(failed=1)
    estimate = latest(pytester).loc[0, "value"]
    half = (high - estimate) if threshold > estimate else (estimate - low)  # the side the threshold is on
    needed = math.ceil(8 * (half / abs(estimate - threshold)) ** 2)  # the half-width shrinks as 1/sqrt(n)
    result.stdout.fnmatch_lines([f"inconclusive — about {needed} examples would decide it if the effect holds (n=8 now; "
                                 f"set n= on the marker): recovered * (95% CI {low:.3f} to {high:.3f}) straddles at_least=*"])
    assert latest(pytester)["verdict"].tolist() == ["inconclusive"]
    skipped = run(pytester, body.format(threshold=threshold), "--claims-inconclusive=skip", "-rs")
    skipped.assert_outcomes(skipped=1)
    skipped.stdout.fnmatch_lines([f"SKIPPED*inconclusive — about {needed} examples would decide it*"])


@pytest.mark.parametrize("arguments, messages", [
    ('model="random-gpt2-tiny", task="induction", metric="los", at_least=0.8, colour="red", n=0',
     ["*unknown argument colour; allowed: model, task, metric, at_least, at_most, n, seed, draws, ablation, resampling, level*",
      "*metric='los': expected one of loss, logit_diff, kl, accuracy*", "*n=0: expected an integer >= 1*"]),
    ('model="no-such-model", task="nope", metric="loss"',
     ["*model='no-such-model' is not a registered model; registered: *random-gpt2-tiny*",
      "*task='nope' is not a registered task; registered: *induction*", "*no threshold: give at_least=*"]),
    ('"random-gpt2-tiny", task="induction", metric="loss", at_least=0.9, at_most=0.1, ablation="shuffle", level=95',
     ["*positional arguments ('random-gpt2-tiny',): the claim marker takes keyword arguments only*",
      "*at_least=0.9 is above at_most=0.1*", "*ablation='shuffle': expected one of resample, mean, zero*",
      "*level=95: expected a confidence level strictly between 0 and 1*"]),
])
def test_bad_marker_arguments_are_collection_errors(pytester, arguments, messages):
    result = run(pytester, f"""
@pytest.mark.claim({arguments})
def test_bad(claim):
    claim.scrub(NOTHING)
""")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*ERROR collecting test_claims.py*", "*test_claims.py::test_bad: bad claim marker:*", *messages])


@pytest.mark.parametrize("option, message", [
    ("--claims-profile=fast", "--claims-profile='fast': expected one of dev, ci, thorough*"),
    ("--claims-n=zero", "--claims-n='zero': expected an integer >= 1"),
    ("--claims-seed=-1", "--claims-seed='-1': expected an integer >= 0"),
    ("--claims-device=gpu", "--claims-device='gpu': expected cpu, cuda, cuda:N or mps"),
    ("--claims-dtype=float8", "--claims-dtype='float8': expected one of float32, float16, bfloat16"),
    ("--claims-inconclusive=ignore", "--claims-inconclusive='ignore': expected one of fail, skip"),
    ("--claims-save=a/b", "--claims-save='a/b': expected a name of letters, digits*"),
    ("--claims-compare=nope", "--claims-compare='nope': no such CSV file and no baseline of that name in *"),
])
def test_bad_option_values_are_usage_errors(pytester, option, message):
    result = run(pytester, "", option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: bad claims settings:", f"  {message}"])


def test_compare_fail_needs_a_field_a_limit_and_a_baseline(pytester):
    result = run(pytester, "", "--claims-compare-fail=speed:5,value:-1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        "*--claims-compare-fail='speed:5': expected FIELD:LIMIT (absolute) or FIELD:LIMIT% *FIELD one of value, ci_low, ci_high, target, base, intervened, seconds, LIMIT >= 0; e.g. value:0.05",
        "*--claims-compare-fail='value:-1': expected*",
        "*--claims-compare-fail needs a baseline to compare with: add --claims-compare=NAME_OR_PATH",
    ])


def test_ini_values_are_checked_too(pytester):
    pytester.makeini("[pytest]\nclaims_profile = fast\n")
    result = run(pytester, "")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    # The message names the ini key and file the value came from, not the command-line option.
    result.stderr.fnmatch_lines([f"*claims_profile = 'fast' in {pytester.path / 'tox.ini'}: expected one of dev, ci, thorough*"])


def test_profiles_scale_n_and_command_line_overrides_win(pytester):
    body = """
pytestmark = pytest.mark.claim(model="induction-2l", task="induction", metric="loss", seed=1)

@pytest.mark.claim(n=48, at_most=0.1)
def test_nothing(claim):
    claim.scrub(NOTHING)

@pytest.mark.claim(n=16, at_most=0.1)
def test_small(claim):
    claim.scrub(NOTHING)
"""
    result = run(pytester, body, "--claims-profile=dev")
    result.assert_outcomes(passed=2)
    frame = latest(pytester)
    assert frame[["n", "seed"]].values.tolist() == [[12, 1], [8, 1]]  # dev: a quarter of the claim's n, at least 8
    assert "profile 'dev' would scale n=16 to 4; using 8" in frame.loc[1, "message"]
    run(pytester, body, "--claims-n=5", "--claims-seed=7").assert_outcomes(passed=2)
    assert latest(pytester)[["n", "seed"]].values.tolist() == [[5, 7], [5, 7]]


def test_heavy_claims_run_under_the_thorough_profile_only(pytester):
    body = """
pytestmark = pytest.mark.claim(model="induction-2l", task="induction", metric="loss", seed=1, n=8)

@pytest.mark.claim(at_most=0.1, heavy=True)
def test_heavy(claim):
    claim.scrub(NOTHING)

@pytest.mark.claim(at_most=0.1)
def test_light(claim):
    claim.scrub(NOTHING)
"""
    result = run(pytester, body)
    result.assert_outcomes(passed=1, skipped=1)
    frame = latest(pytester).set_index("claim")
    heavy = frame.loc[[c for c in frame.index if c.endswith("test_heavy")][0]]
    assert heavy["verdict"] == "skipped"
    assert "runs under --claims-profile thorough or with --claims-heavy=run" in heavy["message"]
    run(pytester, body, "--claims-profile=thorough", "--claims-n=8").assert_outcomes(passed=2)
    run(pytester, body, "--claims-profile=thorough", "--claims-n=8", "-m", "heavy").assert_outcomes(passed=1, deselected=1)
    # --claims-heavy=run: under the default profile, with the claim's own n (not the thorough profile's scaled one).
    run(pytester, body, "--claims-heavy=run", "-m", "heavy").assert_outcomes(passed=1, deselected=1)
    assert latest(pytester)["n"].tolist() == [8]
    run(pytester, body, "--claims-profile=thorough", "--claims-heavy=skip").assert_outcomes(passed=1, skipped=1)
    wrong = run(pytester, body, "--claims-heavy=yes")
    wrong.stderr.fnmatch_lines(["*--claims-heavy='yes': expected one of auto, run, skip*"])
    bad = run(pytester, body.replace("heavy=True", "heavy='yes'"))
    bad.stdout.fnmatch_lines(["*heavy='yes': expected True*"])


def test_fixture_and_marker_must_go_together(pytester):
    result = run(pytester, """
def test_fixture_without_marker(claim):
    pass

@pytest.mark.claim(**TINY, at_least=0.5)
def test_marker_without_experiment():
    pass
""")
    result.assert_outcomes(failed=1, errors=1)
    result.stdout.fnmatch_lines([
        "*test_fixture_without_marker uses the claim fixture without @pytest.mark.claim*",
        "*the claim ran no experiment: use the claim fixture*",
    ])


def test_unavailable_gpt2_is_skipped_with_how_to_enable_it(pytester, monkeypatch, tmp_path):
    monkeypatch.setenv("CAUSAL_HYPOTHESES_GPT2", str(tmp_path / "no-checkpoint-here"))
    result = run(pytester, """
@pytest.mark.claim(model="gpt2", task="induction", metric="loss", at_least=0.5)
def test_on_gpt2(claim):
    claim.scrub(NOTHING)
""", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED*model 'gpt2' is unavailable:*set CAUSAL_HYPOTHESES_GPT2 to a local checkpoint directory*"])
    assert latest(pytester)["verdict"].tolist() == ["skipped"]


def test_models_and_tasks_registered_in_a_conftest(pytester):
    pytester.makeconftest("""
from causal_hypotheses.claims import ModelBundle, register_model, register_task

@register_model("counted-tiny")
def load():
    from causal_hypotheses.trained import induction_model
    with open("loads.txt", "a") as counter:
        counter.write("loaded\\n")
    return ModelBundle(induction_model(), task_options={"short-induction": {"half_len": 3}})

@register_task("short-induction")
def build(model, n, seed):
    from causal_hypotheses.tasks import induction
    return induction(n, vocab_size=model.vocab_size, seed=seed, **model.task_options["short-induction"])
""")
    result = run(pytester, """
CLAIM = dict(model="counted-tiny", task="short-induction", metric="loss", n=6, seed=0)

@pytest.mark.claim(**CLAIM, at_least=0.9)
def test_first(claim):
    assert claim.task.clean.shape == (6, 6)
    claim.scrub(everything(claim))

@pytest.mark.claim(**CLAIM, at_most=0.1)
def test_second_shares_the_engine(claim):
    claim.scrub(NOTHING)
""")
    result.assert_outcomes(passed=2)
    assert (pytester.path / "loads.txt").read_text() == "loaded\n"  # once for both claims
    frame = latest(pytester)
    assert frame["model"].tolist() == ["counted-tiny"] * 2 and (frame["cache_hits"] > 0).all()


def test_builtin_names_are_protected():
    from causal_hypotheses.claims import ClaimSpecError, register_model

    with pytest.raises(ClaimSpecError, match="model 'gpt2' is built in"):
        register_model("gpt2", lambda: None)


def test_junit_xml_carries_the_claim_properties(pytester):
    result = run(pytester, """
@pytest.mark.claim(**TINY, at_least=0.9)
def test_every_writer(claim):
    claim.scrub(everything(claim))
""", "--junitxml=junit.xml")
    result.assert_outcomes(passed=1)
    xml = (pytester.path / "junit.xml").read_text()
    for expected in ('name="claim_value" value="1.0"', 'name="claim_statistic" value="fraction recovered"',
                     'name="claim_verdict" value="pass"', 'name="claim_n" value="8"',
                     'name="claim_seed" value="3"', 'name="claim_model" value="induction-2l"'):
        assert expected in xml


def test_runs_without_claims_write_no_reports(pytester):
    run(pytester, "\ndef test_plain():\n    pass\n").assert_outcomes(passed=1)
    assert not (pytester.path / "reports").exists()


def test_claims_model_overrides_every_claim(pytester):
    body = """
@pytest.mark.claim(task="induction", metric="loss", n=8, at_most=0.1)
def test_no_model_named(claim):
    claim.scrub(NOTHING)
"""
    run(pytester, body, "--claims-model=induction-2l").assert_outcomes(passed=1)
    assert latest(pytester)["model"].tolist() == ["induction-2l"]
    missing = run(pytester, body)
    missing.stdout.fnmatch_lines(["*model is missing; name a registered model (*) or pass --claims-model*"])
    unknown = run(pytester, body, "--claims-model=nope")
    unknown.stdout.fnmatch_lines(["*--claims-model='nope' is not a registered model; registered: *"])
