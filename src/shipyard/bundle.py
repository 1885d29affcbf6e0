"""Bundles: a saved, verified, pickle-free candidate — model, transform, contract, signature.

A bundle is a folder::

    manifest.json      format version, SHA-256 of every other file, run id, data snapshot,
                       spec hash, created time, family, task and classes
    model/             the family's files (JSON; LightGBM's text model for trees)
    contract.json      the data contract learned on the train split
    signature.json     input columns with their roles and dtypes, and the outputs
    calibration.json   the dev-fitted calibrator, when one is kept
    reference.json     the reference statistics monitoring compares against (format 2;
                       see :mod:`shipyard.monitoring.reference`)
    evaluation.json    the evaluation summary
    spec.json          the spec the candidate was trained under
    robustness.json    robustness, invariance and directional tests (added after saving)
    readiness.json     the readiness checklist (added after saving)
    report.html        the model report (:mod:`shipyard.reports.model`), written last

:func:`load_bundle` reads the manifest first, checks the format version and every file's
hash, and only then reads anything else; a changed, missing or extra file refuses to load.
Format 1 bundles (before reference statistics) still load; monitoring tells their user to
retrain.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shipyard import __version__
from shipyard.data.contract import Contract
from shipyard.errors import BundleError
from shipyard.evaluation.calibration import Calibrator
from shipyard.files import atomic_write, fsync_folder
from shipyard.models import FAMILIES, Family
from shipyard.models.explanation import Explanation

FORMAT_VERSION = 2  # 2: reference.json; 1 (no reference statistics) is still read
READABLE_VERSIONS = (1, 2)
MANIFEST = "manifest.json"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


class Bundle:
    """A loaded, verified candidate: ``predict(frame)`` and ``predict_one(record)``."""

    def __init__(
        self,
        path: Path,
        manifest: dict[str, Any],
        model: Family,
        contract: Contract,
        calibrator: Calibrator | None,
        signature: dict[str, Any],
    ) -> None:
        self.path = path
        self.manifest = manifest
        self.model = model
        self.contract = contract
        self.calibrator = calibrator
        self.signature = signature

    @property
    def task(self) -> str:
        return self.manifest["task"]

    @property
    def classes(self) -> list[Any]:
        return self.manifest["classes"]

    @property
    def features(self) -> list[str]:
        return [c["name"] for c in self.signature["inputs"]]

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Model output for every row: P(positive), class probabilities, or values."""
        out = self.model.predict(frame)
        return self.calibrator.apply(out) if self.calibrator is not None else out

    def predict_one(self, record: Mapping[str, Any]) -> Any:
        """The same for one record (a dict), through the one-record path."""
        out = self.model.predict_one(record)
        return self.calibrator.apply(out) if self.calibrator is not None else out

    def predict_records(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """``predict_one`` of many records (dicts) as one array, scored together and without
        pandas (the shadow's batches)."""
        out = self.model.predict_records(records)
        return self.calibrator.apply(out) if self.calibrator is not None else out

    @property
    def explains(self) -> bool:
        """Whether the model can say why it gave a score (``explain``)."""
        return self.model.explains

    def explain(self, frame: pd.DataFrame) -> Explanation:
        """Attributions per feature of every row (:mod:`shipyard.models.explanation`): they
        add up to the model's raw score, before the calibrator (which only re-maps it)."""
        return self.model.explain(frame).over(self.features)

    def explain_records(self, records: Sequence[Mapping[str, Any]]) -> Explanation:
        """The same for records (dicts), through the one-record path (serving)."""
        return self.model.explain_records(records).over(self.features)

    def evaluation(self) -> dict[str, Any]:
        return json.loads((self.path / "evaluation.json").read_text())


def save_bundle(
    folder: Path | str,
    *,
    model: Family,
    contract: Contract,
    spec: dict[str, Any],
    spec_hash: str,
    features: list[str],
    roles: Mapping[str, str],
    classes: list[Any],
    calibrator: Calibrator | None,
    evaluation: dict[str, Any],
    run_id: str | None,
    snapshot_id: str,
    fallback: Family | None = None,
    reference: dict[str, Any] | None = None,
) -> Path:
    """Write a bundle atomically (a temporary folder renamed into place)."""
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    model.save(tmp / "model")
    if fallback is not None:  # a simpler rung to fall back to (readiness item 9)
        fallback.save(tmp / "fallback")
    contract.save(tmp / "contract.json")
    cols = contract.columns
    signature = {
        "inputs": [
            {
                "name": f,
                "role": roles[f],
                "dtype": cols[f].dtype if f in cols else None,
                "nullable": bool(cols[f].nullable) if f in cols else True,
            }
            for f in features
        ],
        "outputs": _outputs(model.task, classes),
    }
    documents = {"signature.json": signature, "evaluation.json": evaluation, "spec.json": spec}
    if calibrator is not None:
        documents["calibration.json"] = calibrator.to_dict()
    if reference is not None:
        documents["reference.json"] = reference
    for name, doc in documents.items():
        atomic_write(tmp / name, json.dumps(doc, indent=1, sort_keys=True, default=_json_default))
    manifest = {
        "format_version": FORMAT_VERSION,
        "shipyard_version": __version__,
        "created": datetime.now(UTC).isoformat(),
        "run_id": run_id,
        "snapshot_id": snapshot_id,
        "spec_hash": spec_hash,
        "contract_hash": contract.hash(),
        "family": model.name,
        "fallback": None if fallback is None else fallback.name,
        "task": model.task,
        "classes": [_plain(c) for c in classes],
        "files": {name: _sha256(tmp / name) for name in _files(tmp)},
    }
    atomic_write(tmp / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)  # the whole bundle appears at once
    fsync_folder(folder.parent)
    return folder


def add_document(path: Path | str, name: str, document: Any) -> None:
    """Add a JSON document to a verified bundle and re-sign its manifest (atomic replace)."""
    add_file(path, name, json.dumps(document, indent=1, sort_keys=True, default=_json_default))


def add_file(path: Path | str, name: str, data: bytes | str) -> None:
    """Add a file (text is UTF-8) to a verified bundle and re-sign its manifest (atomic
    replace): worst_predictions.csv and the model report (``report.html``) are added so."""
    path = Path(path)
    manifest = verify(path)
    target = path / name
    atomic_write(target, data)
    manifest["files"][name] = _sha256(target)
    atomic_write(path / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))


def _outputs(task: str, classes: list[Any]) -> dict[str, Any]:
    if task == "binary":
        return {"prediction": "probability of the positive class", "positive": _plain(classes[1])}
    if task == "multiclass":
        return {"prediction": "probability per class", "classes": [_plain(c) for c in classes]}
    return {"prediction": "predicted value"}


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def verify(path: Path | str) -> dict[str, Any]:
    """Audit a bundle without loading it: the manifest, its version, every file's hash."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise BundleError(f"'{path}' is not a shipyard bundle: it has no {MANIFEST}.")
    try:
        manifest = json.loads(manifest_path.read_text())
    except ValueError as exc:
        raise BundleError(f"the manifest of bundle '{path}' is not valid JSON: {exc}") from exc
    version = manifest.get("format_version")
    if version not in READABLE_VERSIONS:
        readable = " and ".join(str(v) for v in READABLE_VERSIONS)
        raise BundleError(
            f"bundle '{path}' has format version {version!r}; this shipyard ({__version__}) reads "
            f"versions {readable}. Re-train, or load it with the shipyard version that wrote it."
        )
    expected = manifest.get("files", {})
    present = set(_files(path)) - {MANIFEST}
    problems = []
    for name in sorted(set(expected) | present):
        if name not in present:
            problems.append(f"'{name}' is missing")
        elif name not in expected:
            problems.append(f"'{name}' is not listed in the manifest")
        elif _sha256(path / name) != expected[name]:
            problems.append(f"'{name}' changed since the bundle was written (SHA-256 mismatch)")
    if problems:
        raise BundleError(
            f"bundle '{path}' failed verification and was not loaded: "
            + "; ".join(problems)
            + ". Re-train or restore the bundle; never edit one by hand."
        )
    return manifest


def load_bundle(path: Path | str) -> Bundle:
    """Verify, then load a bundle. Raises :class:`BundleError` for anything it cannot trust."""
    path = Path(path)
    manifest = verify(path)
    family = FAMILIES.get(manifest["family"])
    if family is None:
        raise BundleError(f"bundle '{path}' holds an unknown model family '{manifest['family']}'.")
    model = family.load(path / "model")
    contract = Contract.load(path / "contract.json")
    calibration = path / "calibration.json"
    calibrator = (
        Calibrator.from_dict(json.loads(calibration.read_text())) if calibration.exists() else None
    )
    signature = json.loads((path / "signature.json").read_text())
    return Bundle(path, manifest, model, contract, calibrator, signature)
