"""What the model report reads: one bundle's documents, and the small pieces its sections share.

:class:`Documents` loads a verified bundle's JSON documents on demand (a document this run did
not write is None) beside what the caller passed (the data check's report, test rows to
explain); the helpers write the fragments every section uses (a note, a table row, a list of
facts, a pass or fail badge, an interval). Every string from data is escaped here.

>>> value_text(0.123456), value_text(None), value_text(["a", "b"]), bounds(0.1, 0.25)
('0.1235', '–', 'a, b', '[0.1, 0.25]')
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from html import escape
from typing import Any

import numpy as np
import pandas as pd

from shipyard.bundle import Bundle
from shipyard.evaluation.metrics import HIGHER_IS_BETTER
from shipyard.reports.markup import badge, finite, number

__all__ = [
    "BAD",
    "CHOSEN",
    "NOT_COMPUTED",
    "OTHER",
    "RANKED",
    "Documents",
    "bounds",
    "fact_list",
    "note",
    "pass_badge",
    "plain",
    "table_row",
    "value_text",
]

NOT_COMPUTED = "not computed for this run"
RANKED = 15  # bars in a ranking (importance, perturbations, error slices)
CHOSEN, OTHER, BAD = "#1f4e79", "#90a4ae", "#c62828"


def note(text: str) -> str:
    return f'<p class="note">{escape(text)}</p>'


def table_row(cells: Sequence[str]) -> str:
    return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def fact_list(facts: Mapping[str, Any]) -> str:
    items = "".join(
        f"<div><dt>{escape(k)}</dt><dd>{escape(str(v))}</dd></div>" for k, v in facts.items()
    )
    return f'<dl class="facts">{items}</dl>'


def value_text(value: Any) -> str:
    """A cell from a document: numbers formatted, lists joined, the rest as text."""
    if isinstance(value, bool) or value is None:
        return "–" if value is None else str(value).lower()
    if isinstance(value, int | float):
        return number(value)
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value) or "–"
    return str(value)


def pass_badge(passed: Any) -> str:
    return badge("ok", "pass") if passed else badge("alert", "fail")


def bounds(lower: Any, upper: Any) -> str:
    return f"[{number(lower)}, {number(upper)}]" if finite(lower) or finite(upper) else ""


def plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


class Documents:
    """One bundle's documents, what the caller passed (the check's report, rows to
    explain) and what every section reads from them."""

    def __init__(
        self,
        bundle: Bundle,
        version: int | None,
        check: Mapping[str, Any] | None,
        rows: pd.DataFrame | None,
        rows_note: str,
    ) -> None:
        self.bundle = bundle
        self.version = version
        self.check = check
        self.rows = rows
        self.rows_note = rows_note
        self.manifest = bundle.manifest
        self._read: dict[str, Any] = {}
        self.spec_doc: dict[str, Any] = self.document("spec.json") or {}
        self.evaluation: dict[str, Any] = self.document("evaluation.json") or {}
        self.metric = str(self.evaluation.get("metric", ""))
        project = self.spec_doc.get("project", {})
        self.target = str(project.get("target") or "model")
        name = str(project.get("name") or "shipyard project")
        self.title = f"{name} v{version}" if version is not None else name

    def document(self, name: str) -> Any:
        """A JSON document of the bundle (read once), or None when this run did not write
        it."""
        if name not in self._read:
            path = self.bundle.path / name
            self._read[name] = json.loads(path.read_text()) if path.is_file() else None
        return self._read[name]

    def higher(self) -> bool:
        return HIGHER_IS_BETTER.get(self.metric, True)

    def header(self, generated: datetime) -> str:
        test = self.evaluation.get("test", {})
        readiness = self.document("readiness.json")
        verdict = "–" if readiness is None else ("ready" if readiness["passed"] else "not ready")
        facts = {
            "version": f"v{self.version}" if self.version is not None else "not registered",
            "run": self.manifest.get("run_id") or "untracked",
            "model": str(self.manifest.get("family")),
            "task": str(self.manifest.get("task")),
            f"test {self.metric}": number(test.get(self.metric)),
            "readiness": verdict,
            "trained": str(self.manifest.get("created", "–"))[:19].replace("T", " "),
            "generated": generated.strftime("%Y-%m-%d %H:%M UTC"),
        }
        items = "".join(
            f"<div><dt>{escape(k)}</dt><dd>{escape(v)}</dd></div>" for k, v in facts.items()
        )
        return f"<header><h1>Model report · {escape(self.title)}</h1><dl>{items}</dl></header>"

    def readiness_items(self) -> dict[str, dict[str, Any]]:
        """The readiness checklist's items by name (empty when it was not computed)."""
        doc = self.document("readiness.json") or {}
        return {i["name"]: i for i in doc.get("items", [])}
