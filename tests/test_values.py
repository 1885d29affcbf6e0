"""The value vocabulary (shipyard.data.values) and the places that type a value through it:
the readers' nulls, the contract, the rule language, roles and the transform's old plans."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from pandas._libs.parsers import STR_NA_VALUES

from shipyard import batch
from shipyard.data.contract import Contract
from shipyard.data.io import read_table
from shipyard.data.roles import infer_role
from shipyard.data.values import (
    NULL_STRINGS,
    ValueTypeError,
    bool_code,
    booleans,
    parse_booleans,
    parse_numbers,
    to_bool,
    to_number,
)
from shipyard.errors import BundleError, DataError, RuleError
from shipyard.features.transform import FORMAT_VERSION, Transform
from shipyard.models.expression import parse

TRUE = ["yes", "Yes", "YES", "y", "Y", "true", "True", "TRUE", "t", "T", "1", "1.0", " yes "]
TRUE += [True, np.bool_(True), 1, 1.0, np.int64(1), np.float32(1.0)]
FALSE = ["no", "No", "NO", "n", "N", "false", "False", "FALSE", "f", "F", "0", "0.0", "No "]
FALSE += [False, np.bool_(False), 0, 0.0, np.int64(0), np.float64(0.0)]
NULLS = [None, math.nan, np.nan, pd.NA, pd.NaT, "", "NA", "null", "None", "nan", "N/A"]


@pytest.mark.parametrize("value", TRUE)
def test_every_spelling_of_true_is_true(value):
    assert to_bool(value) is True and bool_code(value) == 1.0


@pytest.mark.parametrize("value", FALSE)
def test_every_spelling_of_false_is_false(value):
    assert to_bool(value) is False and bool_code(value) == 0.0


@pytest.mark.parametrize("value", NULLS)
def test_nulls_are_null_for_booleans_and_numbers(value):
    assert to_bool(value) is None
    assert math.isnan(to_number(value))


@pytest.mark.parametrize("value", ["maybe", "yess", 2, -1, 0.5, "2", [1], {"a": 1}])
def test_a_value_outside_the_boolean_vocabulary_is_an_error(value):
    with pytest.raises(ValueTypeError, match="is not a boolean; write yes/no") as info:
        to_bool(value)
    assert isinstance(info.value, DataError) and isinstance(info.value, ValueError)
    assert math.isnan(bool_code(value))  # the transform's lenient form: missing


def test_numbers_and_numbers_stored_as_text():
    assert [to_number(v) for v in (" 3.5 ", "7", 7, np.int32(-2), "1e3")] == [
        3.5,
        7.0,
        7.0,
        -2.0,
        1000.0,
    ]
    for bad in ("forty", True, np.bool_(False), "3,5"):
        with pytest.raises(ValueTypeError, match="is not a number"):
            to_number(bad)


def test_vectorized_forms_equal_the_scalar_forms_value_for_value():
    values = [*TRUE, *FALSE, *NULLS, "maybe", 2]
    codes, bad = parse_booleans(pd.Series(values, dtype=object))
    expected = [bool_code(v) for v in values]
    np.testing.assert_array_equal(codes, expected)
    assert bad.tolist() == [False] * (len(values) - 2) + [True, True]
    # an Arrow array (what the batch reader gives) types the same as a Series
    arrow = pa.array(["yes", "No", None, " 3.5 "])
    np.testing.assert_array_equal(parse_booleans(arrow)[0], [1.0, 0.0, np.nan, np.nan])
    numbers, nbad = parse_numbers(arrow)
    np.testing.assert_array_equal(numbers, [np.nan, np.nan, np.nan, 3.5])
    assert nbad.tolist() == [True, True, False, False]
    with pytest.raises(ValueTypeError, match=r"column 'owner' must be boolean; got 'maybe'"):
        booleans(pd.Series(["yes", "maybe"], name="owner"))


def test_null_spellings_are_pandas_defaults_and_both_csv_readers_agree(tmp_path):
    assert set(NULL_STRINGS) == set(STR_NA_VALUES)
    cells = [s for s in NULL_STRINGS if s] + ["x", " ", "none", "NONE"]
    text = "a,b\n" + "".join(f"{c},1\n" for c in cells)
    by_pandas = pd.read_csv(io.StringIO(text), keep_default_na=False, na_values=NULL_STRINGS)
    by_arrow = batch.read_csv_text(text.encode(), ["a", "b"])
    (tmp_path / "rows.csv").write_text(text)
    by_train = read_table(tmp_path / "rows.csv").frame  # as train reads a file
    assert by_pandas["a"].isna().tolist() == by_arrow.column("a").is_null().to_pylist()
    assert by_train["a"].isna().tolist() == by_arrow.column("a").is_null().to_pylist()
    assert by_pandas["a"].isna().sum() == len(NULL_STRINGS) - 1  # "" is its own blank line
    arrow_nulls = pacsv.ConvertOptions().null_values
    assert {"None", "<NA>"} - set(arrow_nulls)  # pyarrow's own default would differ


def test_roles_infer_boolean_from_any_spelling_mixed_or_not():
    assert infer_role(pd.Series(["yes", "no", "Yes", "N", None]), "owner") == "boolean"
    assert infer_role(pd.Series(["T", "F", "F"]), "flag") == "boolean"
    assert infer_role(pd.Series(["1.0", "0.0", "1.0"]), "flag") == "boolean"
    assert infer_role(pd.Series(["yes", "yes", "maybe"]), "owner") == "categorical"
    assert infer_role(pd.Series(["yes"] * 5 + [None]), "owner") == "constant"


def _contract() -> Contract:
    frame = pd.DataFrame({"owner": ["yes", "no", "yes", "no"], "income": [1.0, 2.0, 3.0, 4.0]})
    return Contract.learn(frame, {"owner": "boolean", "income": "numeric"})


def test_contract_checks_booleans_by_vocabulary_not_by_the_training_spellings():
    contract = _contract()
    assert contract.columns["owner"].categories == {"true": 0.5, "false": 0.5}
    for value in ("yes", "No", "Y", "true", True, False, 1, 0, "1.0"):
        assert contract.record_validator(contract.features)({"owner": value, "income": 2.0}) == []
    frame = pd.DataFrame({"owner": [True, "Y", "no", "maybe", "maybe"], "income": [1.0] * 5})
    (violation,) = contract.validate(frame)
    assert (violation.column, violation.reason, violation.severity) == (
        "owner",
        "wrong_type",
        "error",
    )
    assert violation.count == 2 and violation.first_row == 3 and violation.examples == ("maybe",)
    assert "yes/no, y/n, true/false, t/f or 1/0" in violation.message
    (null,) = contract.record_validator(contract.features)({"owner": "NA", "income": 2.0})
    assert (null.reason, null.severity) == ("unexpected_null", "warning")
    (bad,) = contract.record_validator(contract.features)({"owner": "maybe", "income": 2.0})
    assert bad.reason == "wrong_type"
    assert bad.message == (
        "field 'owner' must be a boolean: JSON true/false, or yes/no, y/n, true/false, t/f "
        "or 1/0 (any case); got 'maybe'"
    )


def test_contract_reads_numbers_stored_as_text_and_refuses_words():
    contract = _contract()
    assert contract.record_validator(contract.features)({"owner": "yes", "income": " 3.5 "}) == []
    (far,) = contract.record_validator(contract.features)({"owner": "yes", "income": "40"})
    assert far.reason == "out_of_range"
    (word,) = contract.record_validator(contract.features)({"owner": "yes", "income": "forty"})
    assert (word.reason, word.severity) == ("wrong_type", "error")
    (flag,) = contract.record_validator(contract.features)({"owner": "yes", "income": True})
    assert flag.reason == "wrong_type"
    (null,) = contract.record_validator(contract.features)({"owner": "yes", "income": "NA"})
    assert null.reason == "unexpected_null"
    frame = pd.DataFrame({"owner": ["yes"] * 3, "income": [" 2.5", "forty", "3"]})
    (v,) = contract.validate(frame)
    assert (v.reason, v.count, v.examples) == ("wrong_type", 1, ("forty",))


SPELLINGS = {
    "yes/no": ("yes", "no"),
    "Yes/No": ("Yes", "No"),
    "Y/N": ("Y", "N"),
    "true/false": ("true", "false"),
    "bool": (True, False),
    "0/1": (1, 0),
    "1.0/0.0": ("1.0", "0.0"),
}


@pytest.mark.parametrize("rule", ["partner == 'yes'", "partner == true", "partner == 1"])
@pytest.mark.parametrize("spelling", list(SPELLINGS))
def test_a_rule_on_a_boolean_means_the_same_whatever_the_spelling(rule, spelling):
    yes, no = SPELLINGS[spelling]
    roles = {"tenure": "numeric", "partner": "boolean"}
    expr = parse(f"tenure < 6 and {rule}", roles)
    frame = pd.DataFrame(
        {"tenure": [1, 2, 10, 3, 4], "partner": pd.Series([yes, no, yes, None, yes], dtype=object)}
    )
    assert expr.evaluate(frame).tolist() == [True, False, False, False, True]
    assert [expr.evaluate_one(r) for r in frame.to_dict("records")] == [
        True,
        False,
        False,
        False,
        True,
    ]
    neg = parse("partner in ['no'] or partner != 'Y'", roles)
    assert neg.evaluate(frame).tolist() == [False, True, False, False, False]


def test_a_rule_comparing_a_boolean_with_a_non_boolean_is_refused():
    with pytest.raises(RuleError, match="column 'partner' is boolean; compare it with"):
        parse("partner == 'maybe'", {"partner": "boolean"})
    with pytest.raises(RuleError, match="is boolean"):
        parse("partner in ['yes', 2]", {"partner": "boolean"})


OLD_PLAN = Path(__file__).parent / "data" / "transform_v1_creditcard.json"


def test_a_version_1_transform_scores_as_it_did_and_reads_every_spelling():
    saved = json.loads(OLD_PLAN.read_text())
    assert saved["transform"]["format_version"] == 1
    t = Transform.from_dict(saved["transform"])
    rows = pd.DataFrame(saved["rows"])
    expected = np.array(saved["features"])
    np.testing.assert_array_equal(t.transform(rows), expected)  # as version 1 scored them
    records = rows.to_dict("records")
    np.testing.assert_allclose([t.transform_one(r) for r in records], expected, atol=1e-12)
    np.testing.assert_array_equal(
        t.transform_records(records), [t.transform_one(r) for r in records]
    )
    spelled = rows.assign(
        owner=rows["owner"].map({"yes": True, "no": False}),
        selfemp=rows["selfemp"].str.upper(),
        majorcards=rows["majorcards"].map({1: "y", 0: "n"}),
    )
    np.testing.assert_array_equal(t.transform(spelled), expected)
    assert t.to_dict()["format_version"] == FORMAT_VERSION  # saved again in the current form
    np.testing.assert_array_equal(Transform.from_dict(t.to_dict()).transform(rows), expected)


def test_a_version_1_plan_over_keys_that_are_not_booleans_keeps_its_exact_keys():
    plan = {"kind": "boolean", "column": "tier", "median": 0.0, "center": 0.0, "scale": 1.0}
    plan.update(indicator=False, outputs=["tier"], true_key="gold", known=["gold", "silver"])
    data = {
        "format_version": 1,
        "settings": {"min_frequency": 1},
        "plans": [plan],
        "feature_names": ["tier"],
        "categorical_indices": [],
    }
    t = Transform.from_dict(data)
    frame = pd.DataFrame({"tier": ["gold", "silver", "bronze", None]})
    assert t.transform(frame)[:, 0].tolist() == [1.0, 0.0, 0.0, 0.0]  # unknown → median 0.0
    assert [t.transform_one({"tier": v})[0] for v in frame["tier"]] == [1.0, 0.0, 0.0, 0.0]
    with pytest.raises(BundleError, match="transform format version 9 is not supported"):
        Transform.from_dict({**data, "format_version": 9})
