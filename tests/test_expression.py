import numpy as np
import pandas as pd
import pytest

from shipyard.errors import RuleError
from shipyard.models.expression import parse

ROLES = {
    "tenure": "numeric",
    "contract": "categorical",
    "senior_citizen": "boolean",
    "total_charges": "numeric",
    "internet service": "categorical",
}


def test_rule_on_churn_matches_pandas(churn):
    rule = parse("tenure < 6 and contract == 'Month-to-month' or senior_citizen == 1", ROLES)
    expected = ((churn.tenure < 6) & (churn.contract == "Month-to-month")) | (
        churn.senior_citizen == 1
    )
    np.testing.assert_array_equal(rule.evaluate(churn), expected.to_numpy())
    records = churn.to_dict("records")
    assert [rule.evaluate_one(r) for r in records] == expected.tolist()


def test_in_not_null_and_quoted_names(churn):
    rule = parse("contract in ['One year', \"Two year\"] and not total_charges is null", ROLES)
    expected = churn.contract.isin(["One year", "Two year"]) & churn.total_charges.notna()
    np.testing.assert_array_equal(rule.evaluate(churn), expected.to_numpy())
    quoted = parse("`internet service` != 'DSL'", ROLES)
    assert quoted.evaluate_one({"internet service": "Fiber optic"}) is True
    assert quoted.evaluate_one({"internet service": None}) is False  # missing: false


def test_missing_values_make_comparisons_false():
    rule = parse("total_charges > 100", ROLES)
    frame = pd.DataFrame({"total_charges": [50.0, None, 150.0]})
    assert rule.evaluate(frame).tolist() == [False, False, True]
    assert rule.evaluate_one({"total_charges": float("nan")}) is False


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        ("tenure < ", "expected a number", 10),
        ("tenure << 6", "expected a number", 9),
        ("tenur < 6", "unknown column 'tenur'; did you mean 'tenure'?", 1),
        ("tenure < 'six'", "column 'tenure' is numeric", 10),
        ("contract > 'One year'", "use == or != or in, not >", 12),
        ("tenure < 6 contract == 'x'", "join conditions with 'and' / 'or'", 12),
        ("(tenure < 6", "expected ')'", 12),
        ("__import__('os').system('x')", "unexpected character '.'", 17),
    ],
)
def test_bad_rules_report_the_position(text, message, column):
    with pytest.raises(RuleError) as info:
        parse(text, ROLES)
    assert message in str(info.value)
    assert f"at position {column}:" in str(info.value)


def test_true_and_false_match_yes_no_booleans():
    rule = parse("paperless == true", {"paperless": "boolean"})
    frame = pd.DataFrame({"paperless": ["Yes", "No", None, "yes"]})
    assert rule.evaluate(frame).tolist() == [True, False, False, True]
    assert [rule.evaluate_one(r) for r in frame.to_dict("records")] == [True, False, False, True]
