from pathlib import Path

import pytest

from shipyard.errors import SpecError
from shipyard.spec import Spec, load_spec


def test_defaults_follow_the_task():
    spec = Spec.from_dict({"project": {"target": "price", "task": "regression"}})
    assert spec.objective.metric == "rmse"
    assert spec.split.train + spec.split.dev + spec.split.test == pytest.approx(1.0)
    assert Spec.from_dict({"project": {"target": "y", "task": "multiclass"}}).objective.metric == (
        "log_loss"
    )


def test_full_spec_loads_every_section(tmp_path: Path):
    path = tmp_path / "shipyard.toml"
    path.write_text(
        """
[project]
name = "churn"
task = "binary"
target = "churn"
data = "churn.csv"
positive = "Yes"
[objective]
metric = "pr_auc"
min_improvement = 0.01
[constraints]
p99_latency_ms = 5
max_model_mb = 20.0
max_ece = 0.05
max_slice_gap = 0.1
max_data_age_days = 30
[features]
exclude = ["rownames"]
slices = ["contract"]
sensitive = ["senior_citizen"]
unknown = "hash"
hash_buckets = 256
[baseline]
rule = "tenure < 6"
[split]
strategy = "stratified"
train = 0.6
dev = 0.2
test = 0.2
eyeball = 0.25
seed = 3
[training]
threads = 1
max_rung_seconds = 120
[tracking]
experiment = "churn"
"""
    )
    spec = load_spec(path)
    assert spec.objective.metric == "pr_auc"
    assert spec.features.exclude == ("rownames",)
    assert spec.features.unknown == "hash" and spec.features.hash_buckets == 256
    assert spec.constraints.p99_latency_ms == 5
    assert spec.data_path == tmp_path / "churn.csv"
    assert spec.split.seed == 3
    assert spec.training.threads == 1 and spec.training.max_rung_seconds == 120
    assert spec.to_dict()["features"]["slices"] == ["contract"]
    # the hash does not depend on how the file was written, only on what it says
    assert spec.hash() == load_spec(path).hash()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"project": {"target": "y", "taks": "binary"}}, "unknown key 'project.taks'"),
        ({"project": {"target": "y", "taks": "binary"}}, "Did you mean 'task'?"),
        (
            {"project": {"target": "y", "task": "binary"}, "objectve": {}},
            "Did you mean 'objective'?",
        ),
        ({"project": {"target": "y", "task": "classify"}}, "'project.task' must be one of"),
        (
            {"project": {"target": "y", "task": "binary"}, "objective": {"metric": "rmse"}},
            "does not fit task 'binary'",
        ),
        (
            {"project": {"target": "y", "task": "binary"}, "split": {"train": 0.9}},
            "must add up to 1",
        ),
        (
            {"project": {"target": "y", "task": "binary"}, "split": {"dev": 1.5}},
            "'split.dev' must be a number between 0 and 1; got 1.5",
        ),
        (
            {"project": {"target": "y", "task": "binary"}, "constraints": {"max_model_mb": "big"}},
            "'constraints.max_model_mb' must be a number; got 'big'",
        ),
        (
            {"project": {"target": "y", "task": "binary"}, "features": {"slices": "contract"}},
            "'features.slices' must be a list of column names",
        ),
        ({"project": {"task": "binary"}}, "missing required key 'project.target'"),
        ({"objective": {"metric": "roc_auc"}}, "missing [project] section"),
        (
            {
                "project": {"target": "y", "task": "binary"},
                "split": {"train": 0.8, "dev": 0.0, "test": 0.2},
            },
            "'split.dev' and 'split.test' must each be greater than 0",
        ),
        (
            {"project": {"target": "y", "task": "binary"}, "split": {"seed": True}},
            "'split.seed' must be an integer; got True",
        ),
        (
            {"project": {"target": "y", "task": "binary"}, "training": {"threads": 0}},
            "'training.threads' must be a number greater than 0; got 0",
        ),
        (
            {"project": {"target": "y", "task": "binary"}, "training": {"threads": 1.5}},
            "'training.threads' must be an integer; got 1.5",
        ),
        (
            {"project": {"target": "y", "task": "binary"}, "training": {"max_rung_seconds": -5}},
            "'training.max_rung_seconds' must be a number greater than 0; got -5",
        ),
        (
            {"project": {"target": "y", "task": "binary"}, "training": {"max_rung_second": 5}},
            "Did you mean 'max_rung_seconds'?",
        ),
    ],
)
def test_invalid_specs_name_the_key_the_value_and_what_is_allowed(raw, expected):
    with pytest.raises(SpecError) as info:
        Spec.from_dict(raw)
    assert expected in str(info.value)


def test_every_problem_is_reported_at_once():
    with pytest.raises(SpecError) as info:
        Spec.from_dict({"project": {"target": "y", "task": "nope", "colour": 1}})
    message = str(info.value)
    assert "project.task" in message and "project.colour" in message


def test_malformed_toml_and_missing_file(tmp_path: Path):
    bad = tmp_path / "shipyard.toml"
    bad.write_text("[project\ntarget = 'y'\n")
    with pytest.raises(SpecError, match="not valid TOML"):
        load_spec(bad)
    with pytest.raises(SpecError, match="shipyard init"):
        load_spec(tmp_path / "nowhere.toml")
