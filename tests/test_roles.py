import pandas as pd

from shipyard.data.roles import infer_role, profile


def test_roles_on_flights(flights_sample: pd.DataFrame):
    roles = {name: p.role for name, p in profile(flights_sample).items()}
    assert roles["rownames"] == "index"
    assert roles["year"] == "constant"
    assert roles["tailnum"] == "id"
    assert roles["time_hour"] == "datetime"
    assert roles["carrier"] == roles["origin"] == roles["dest"] == "categorical"
    assert roles["dep_delay"] == roles["distance"] == "numeric"
    assert roles["arr_delayed"] == "boolean"


def test_roles_on_churn(churn: pd.DataFrame):
    roles = {name: p.role for name, p in profile(churn).items()}
    assert roles["female"] == roles["partner"] == roles["churn"] == "boolean"
    assert roles["contract"] == "categorical"
    assert roles["total_charges"] == roles["tenure"] == "numeric"
    assert roles["rownames"] == "index"


def test_text_numbers_as_strings_and_empty_columns():
    notes = pd.Series(
        [f"customer called about the bill number {i} and was upset" for i in range(50)]
    )
    assert infer_role(notes, "notes") == "text"
    assert infer_role(pd.Series(["1.5", "2", "3.25", "4"] * 10), "amount") == "numeric"
    assert infer_role(pd.Series([None, None], dtype=object), "empty") == "constant"
    assert infer_role(pd.Series(["2024-01-01", "2024-02-03"] * 5), "day") == "datetime"
