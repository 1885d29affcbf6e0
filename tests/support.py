"""Helpers for tests: writing specs, grouping findings."""

from __future__ import annotations

import tomllib
from typing import Any

from shipyard.spec import Spec


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def toml_text(sections: dict[str, dict[str, Any]]) -> str:
    lines = []
    for name, table in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in table.items()]
        lines.append("")
    text = "\n".join(lines)
    tomllib.loads(text)  # the helper itself must write valid TOML
    return text


def make_spec(target: str, task: str = "binary", **sections: dict[str, Any]) -> Spec:
    project = {"target": target, "task": task, **sections.pop("project", {})}
    return Spec.from_dict({"project": project, **sections})


def codes(findings) -> dict[str, list]:
    """Findings grouped by code: {code: [finding, ...]}."""
    out: dict[str, list] = {}
    for f in findings:
        out.setdefault(f.code, []).append(f)
    return out
