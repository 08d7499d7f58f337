"""The claim record: its columns come from the dataclass, make_record reads any result through the
measurement interface (checked against the hand-made results' known numbers), and a record
survives the trip from a pytest-xdist worker as plain JSON."""
from __future__ import annotations

import io
import json
import math
from dataclasses import fields
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from causal_hypotheses import reports
from causal_hypotheses.claims import ClaimRecord, as_record, empty_record, make_record
from causal_hypotheses.claims import record as record_module

import record_support as support

NAN = float("nan")


def test_the_csv_columns_are_the_record_fields_marked_as_columns():
    names = [f.name for f in fields(ClaimRecord)]
    extras = ("paths", "controls", "per_example", "details", "order", "baseline_notes")
    assert reports.COLUMNS == record_module.COLUMNS == tuple(name for name in names if name not in extras)
    assert reports.COLUMNS[reports.COLUMNS.index("statistic"):reports.COLUMNS.index("effect_high") + 1] == (
        "statistic", "value", "ci_low", "ci_high", "level", "unit", "target", "base", "intervened", "effect_low", "effect_high")
    assert reports.COLUMNS[-3:] == reports.COMPARISON == ("baseline_value", "change", "drift")
    for old in ("clean", "ablated", "scrubbed", "recovered", "baseline_recovered"):
        assert old not in reports.COLUMNS
    assert reports.EXAMPLE_COLUMNS == ("claim", "kind", "draw", "example", "target", "base", "intervened")


def test_a_scrub_is_recorded_with_its_clean_ablated_and_scrubbed_runs_as_target_base_intervened():
    record = make_record("t.py::test_s", support.spec(), support.scrub_result(), "induction heads", [[["a1.h2"], None]],
                         "pass", 1.5, "holds")
    assert (record.kind, record.statistic, record.hypothesis) == ("scrub", "fraction recovered", "induction heads")
    assert (record.value, record.ci_low, record.ci_high, record.level) == (0.75, 0.6, 0.9, 0.95)
    assert (record.target, record.base, record.intervened) == (3.0, 1.0, 2.5)
    assert (record.effect_low, record.effect_high, record.unit) == (1.5, 2.5, "4 examples")
    assert (record.ablation, record.resampling, record.n, record.draws, record.seed) == ("resample", "independent", 4, 1, 3)
    assert (record.node_evaluations, record.forward_passes, record.cache_hits) == (7, 3, 2)
    assert record.per_example == {"draw": [0] * 4, "example": [0, 1, 2, 3], "target": [3.0] * 4, "base": [1.0] * 4,
                                  "intervened": [2.0, 3.0, 2.0, 3.0]}
    assert record.details == [] and record.paths == [[["a1.h2"], None]] and record.run_names == ("clean", "ablated", "scrubbed")
    assert record.at_least == 0.5 and math.isnan(record.at_most) and math.isnan(record.control_p)


def test_a_patch_takes_ablation_and_resampling_from_its_spec_and_names_its_direction():
    result = support.patch_result("path_patch", "denoising")
    assert not hasattr(result, "ablation")
    record = make_record("t.py::test_p", support.spec(ablation="mean", resampling="shared"), result, result.description,
                         [], "pass", 0.1, "holds")
    assert record.kind == "path_patch (denoising)" and record.base_kind == "path_patch"
    assert (record.statistic, record.value, record.hypothesis) == ("fraction moved", 0.5, "a1.h2 patched")
    assert (record.target, record.base, record.intervened) == (2.0, 0.0, 1.0)
    assert (record.ablation, record.resampling) == ("mean", "shared")
    assert record.run_names == ("target", "base", "patched")
    assert record.per_example["intervened"] == [0.5, 1.5, 0.5, 1.5]


def test_a_kind_without_runs_or_effect_gets_nan_columns():
    record = make_record("t.py::test_iia", support.spec(), support.iia_result(), "alignment", [], "pass", 0.1, "holds")
    assert (record.kind, record.statistic, record.value) == ("iia", "interchange accuracy", 0.75)
    assert all(math.isnan(x) for x in (record.target, record.base, record.intervened, record.effect_low, record.effect_high))
    assert (record.ablation, record.resampling) == ("", "")  # the result says they do not apply
    assert record.per_example["intervened"] == [1.0, 1.0, 0.0, 1.0]
    assert all(math.isnan(x) for x in record.per_example["target"] + record.per_example["base"])
    assert record.run_names == ("—", "unpatched hits", "hits")
    examples = pd.read_csv(io.StringIO(reports.examples_text([record])))
    assert examples["target"].isna().all() and examples["intervened"].tolist() == [1.0, 1.0, 0.0, 1.0]


def test_a_result_without_statistic_details_or_per_example_still_records():
    bare = SimpleNamespace(kind="custom", value=0.4, ci=(0.1, 0.7), level=0.9, n=3, units=3, unit="example")
    record = make_record("t.py::test_c", support.spec(), bare, "c", [], "fail", 0.1, "m")
    assert (record.statistic, record.details, record.per_example) == ("value", [], {})
    assert record.level == 0.9 and record.draws == 2 and record.ablation == "resample"  # the spec's, where absent
    assert record.measured and record.node_evaluations == 0


def test_details_become_plain_values():
    result = support.minimality_result()
    numpy_rows = [{"component": "a1.h2", "drop": np.float32(0.25), "needed": np.bool_(True), "rank": np.int64(1),
                   "pair": ("a", "b")}]
    record = make_record("t.py::test_m", support.spec(), SimpleNamespace(**{**vars(result), "details": numpy_rows}),
                         "m", [], "pass", 0.1, "m")
    row = record.details[0]
    assert [type(row[k]) for k in ("component", "drop", "needed", "rank", "pair")] == [str, float, bool, int, list]
    assert row["drop"] == 0.25 and row["pair"] == ["a", "b"]


@pytest.mark.parametrize("index", range(len(support.RESULTS)))
def test_a_record_survives_the_trip_as_json(index):
    record = support.every_kind()[index]
    text = json.dumps(record.to_dict())
    back = ClaimRecord.from_dict(json.loads(text))
    assert json.dumps(back.to_dict()) == text  # NaN != NaN, so compare the texts
    assert as_record(record) is record and json.dumps(as_record(record.to_dict()).to_dict()) == text


def test_from_dict_rejects_a_field_it_does_not_know():
    with pytest.raises(ValueError, match="not fields of a claim record: 'recovered'; expected some of claim, kind"):
        ClaimRecord.from_dict({"claim": "t.py::test_a", "recovered": 0.5})


def test_an_empty_record_holds_what_the_spec_says_and_nothing_measured():
    record = empty_record("t.py::test_a", support.spec(), "skipped", "why")
    assert (record.model, record.n, record.seed, record.draws, record.level) == ("induction-2l", 4, 3, 2, 0.95)
    assert not record.measured and math.isnan(record.value) and record.statistic == ""
    assert reports.claim_figures(record) == ""
    assert empty_record("t.py::test_b", None, "error", "m").model == ""


def test_every_experiment_result_exposes_the_interface():
    interface = ("kind", "statistic", "value", "ci", "level", "target", "base", "intervened", "effect_ci", "n", "draws",
                 "seed", "units", "unit", "description", "per_example", "details", "node_evaluations", "forward_passes",
                 "cache_hits")
    scrub, patch = support.scrub_result(), support.patch_result("activation_patch", "noising")
    for result in (scrub, patch):
        missing = [name for name in interface if not hasattr(result, name)]
        assert missing == [], (type(result).__name__, missing)
    assert (scrub.kind, scrub.statistic, scrub.value, scrub.target, scrub.base, scrub.intervened) == (
        "scrub", "fraction recovered", 0.75, 3.0, 1.0, 2.5)
    assert scrub.description == "induction heads" and scrub.details == []
    assert (patch.statistic, patch.value, patch.target, patch.base, patch.intervened) == ("fraction moved", 0.5, 2.0, 0.0, 1.0)
    # The old names stay.
    assert (scrub.fraction_recovered, scrub.clean, scrub.ablated, scrub.scrubbed) == (0.75, 3.0, 1.0, 2.5)
    assert (patch.fraction_recovered, patch.clean, patch.ablated, patch.scrubbed) == (0.5, 2.0, 0.0, 1.0)
