"""``shipyard monitor --engine ray`` on a real local Ray instance: the churn champion's log
(drift planted, a shadow beside it, a foreign, a truncated and a damaged file, a version
without a bundle) monitored by both engines gives the same results rows, alerts and warnings."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from shipyard.cli import app
from shipyard.monitoring.results import KEY
from shipyard.monitoring.watch import monitor
from test_monitor import DAY, project, trained, write_log  # noqa: F401  (fixtures)

NUMBERS = ("value", "lower", "upper", "pvalue")


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def _damage(path, column):
    """Overwrite the start of one column's pages in a Parquet file: the file's other columns
    still read, a read of every column fails."""
    import pyarrow.parquet as pq

    group = pq.ParquetFile(path).metadata.row_group(0)
    (chunk,) = [
        group.column(i)
        for i in range(group.num_columns)
        if group.column(i).path_in_schema == column
    ]
    start = chunk.dictionary_page_offset or chunk.data_page_offset
    data = bytearray(path.read_bytes())
    data[start : start + 40] = b"\xff" * 40
    path.write_bytes(bytes(data))


def _keyed(rows):
    return {tuple(r[k] for k in KEY): r for r in rows}


def _same_rows(local, ray):
    mine, theirs = _keyed(local.rows), _keyed(ray.rows)
    assert len(mine) == len(local.rows) and set(mine) == set(theirs)
    for key, row in mine.items():
        other = theirs[key]
        for column, value in row.items():
            if column in NUMBERS and value is not None and other[column] is not None:
                np.testing.assert_allclose(
                    other[column], value, rtol=1e-12, atol=1e-12, err_msg=str((key, column))
                )
            else:
                assert other[column] == value, (key, column)


def test_the_ray_engine_computes_the_local_engines_results(trained, project, ray_local):  # noqa: F811
    _, bundle, version, live = trained
    shifted = live.copy()
    shifted["monthly_charges"] = shifted["monthly_charges"] + 25.0
    write_log(project, bundle, version, shifted)  # files of 2,000, 2,000 and 1,543 rows
    # the census reads the second one's time and version; the scan cannot read it whole, so
    # the rows after it (in file-name order: the first rows' times) are numbered again
    damaged = sorted(project.workspace.logs.rglob("part-*.parquet"))[1]
    _damage(damaged, "f.monthly_charges")
    scores = bundle.predict(shifted.head(2500))
    flipped = np.where(np.arange(2500) < 300, 1 - scores, scores)
    write_log(project, bundle, version, shifted.head(2500), arm="shadow", predictions=flipped)
    write_log(project, bundle, 99, live.head(40), start=1_780_020_000.0)  # no bundle
    (partition,) = project.workspace.logs.glob("date=*")
    whole = next(partition.glob("part-*.parquet"))
    (partition / "part-truncated.parquet").write_bytes(whole.read_bytes()[:300])
    (partition / "part-zforeign.parquet").write_bytes(b"not parquet at all")

    def run(**options):  # at a fixed time: the hours since the last request are the same
        return monitor(project.spec, project.workspace, now=DAY + 86_400, **options)

    done = {}
    for window in ("6h", "1500 rows"):
        local, ray = run(window=window), run(window=window, engine="ray")
        done[window] = ray
        _same_rows(local, ray)
        assert ray.alerts == local.alerts and ray.exit_code == local.exit_code == 1
        assert ("feature_drift", "monthly_charges") in {
            (a["section"], a["column"]) for a in ray.alerts
        }
        assert ray.warnings == local.warnings and len(ray.warnings) == 4
        assert any("rows of version 99 were skipped" in w for w in ray.warnings)
        expected = (2000 + 1543 + 2500 + 40, local.windows, [version])
        assert (ray.rows_read, ray.windows, ray.versions) == expected
        assert ray.files == local.files
    agreement = [r["value"] for r in done["6h"].rows if r["statistic"] == "agreement"]
    changed = ((scores[:300] >= 0.5) != (flipped[:300] >= 0.5)).sum()
    # the champion's requests 2,000 to 3,999 were in the damaged file
    assert agreement[0] == pytest.approx(1 - changed / 2000) and np.isnan(agreement[1])
    since = run(window="1500 rows", since="2026-05-29T02:00:00", engine="ray")
    _same_rows(run(window="1500 rows", since="2026-05-29T02:00:00"), since)


def test_engines_are_checked_and_a_missing_ray_says_which_extra(trained, project, monkeypatch):  # noqa: F811
    _, bundle, version, live = trained
    write_log(project, bundle, version, live.head(100))
    spec = str(project.spec.root / "shipyard.toml")
    runner = CliRunner()
    for args, message in [
        (["--engine", "spark"], "--engine 'spark' is not an engine"),
        (["--ray-address", "ray://head:10001"], "only --engine ray uses"),
    ]:
        refused = runner.invoke(app, ["monitor", "--spec", spec, *args])
        assert refused.exit_code == 2 and message in " ".join(refused.stderr.split())
        assert "Traceback" not in refused.output
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    missing = runner.invoke(app, ["monitor", "--spec", spec, "--engine", "ray", "--json"])
    assert missing.exit_code == 2 and "Traceback" not in missing.output
    assert "pip install 'shipyard[ray]'" in json.loads(missing.stdout)["error"]
