"""Benchmark: drift over 1,000,000 logged rows × 25 columns, shipyard beside Evidently.

**Data** (real): NYC flights 2013. The reference is January–April (109,119 flights); the
current window is May–December resampled with replacement to ``--rows`` (1,000,000) flights,
in time order, so there is real drift to find (summer delays, the schedule's changes). The
25 columns: 13 numeric ones of the table (month, day, dep_time, sched_dep_time, dep_delay,
arr_time, sched_arr_time, arr_delay, flight, air_time, distance, hour, minute), its 4
categorical ones (carrier, origin, dest, tailnum; the lists of ``drift_summaries.py``), and 8 derived: ``arr_delayed`` (boolean,
arr_delay > 15), ``route`` (origin-dest) and ``weekday`` (categorical), ``speed_mph``,
``gain`` (dep_delay - arr_delay), ``block_min`` (scheduled minutes gate to gate),
``sched_dep_min`` (minutes after midnight) and ``day_of_year`` (numeric).

**shipyard**: the :class:`~shipyard.monitoring.Reference` is learned on the reference rows;
the current rows are written once (not timed) as a prediction log by
:class:`~shipyard.serving.log.PredictionLog` with typed feature columns, 1,000-row files, as
the service writes them, and its closed days compacted (:func:`~shipyard.serving.compaction.
compact_log`, as the service does after each UTC midnight; its time is reported). Two
layouts of the same rows: ``spread`` at the flights' own times (245 days of ~4,000 rows:
a quiet service, one small file per day) and ``one_day`` evenly over one day (a service
answering ~12 requests a second: one file of a million rows). A fresh child process then
times, per repeat and layout: reading the log alone (every file into one Arrow table); the
drift a ``shipyard monitor`` run computes (:func:`~shipyard.monitoring.monitor.scan`, the
monitor's own reader, grouping and summaries of every feature and of the prediction, its
range checks and latency histogram, then ``compare`` → PSI, KS and normalized Wasserstein for
numbers, PSI, Jensen–Shannon and chi-square for categories, with their bounds) on its first
run, from the log, with an empty day store (a log no service summarized); the online
service's own step after its midnight compaction, which keeps each closed day's summaries
(:func:`~shipyard.monitoring.days.keep_closed_days`, off the monitor's path); and the
monitor run after it, which reads every closed day from its kept summaries
(:mod:`~shipyard.monitoring.days`): the first ``shipyard monitor`` run over a log the
service left, and every later one.

**Evidently** (in its own virtual environment, which this script creates on first use at
:data:`EVIDENTLY_ENV`, since Evidently 0.7 needs pandas < 3) reads the same reference and
current rows from Parquet and, in fresh child processes, times
``Report([...]).run(current, reference)`` for:

- ``statistics``: a ``ValueDrift`` per column and method shipyard also computes: ``psi``,
  ``ks``, ``wasserstein`` for numbers, ``psi``, ``jensenshannon``, ``chisquare`` for
  categories (18 × 3 + 7 × 3 = 75 metrics); the like-for-like comparison;
- ``preset``: its default ``DataDriftPreset()`` (one statistic per column, chosen by
  Evidently: normed Wasserstein and Jensen–Shannon at this size).

Reported, medians of ``--repeat`` runs: each side's times (and that the kept days give the
same statistics as the first run, and both layouts the same), each child's peak resident memory
(VmHWM, see ``_memory.py``), the ratios Evidently / shipyard, and per column the agreement of
shipyard's statistics with reference implementations on the raw data: PSI recomputed in NumPy
on shipyard's bins (to 1e-9), KS and Wasserstein against ``scipy.stats`` (inside shipyard's
stated bounds), Jensen–Shannon and chi-square against SciPy on shipyard's bins, and
Evidently's values beside them (on its own bins: Sturges histogram bins over both samples
for PSI, every seen value for categories, Wasserstein / the reference's standard deviation,
the KS p-value, a chi-square goodness-of-fit p-value).

    PYTHONPATH=src .venv/bin/python bench/drift_evidently.py [--rows 1000000] [--repeat 3] [--log DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from scipy import stats
from scipy.spatial.distance import jensenshannon

from _memory import PEAK_MB
from drift_summaries import CATEGORICAL as FLIGHT_CATEGORIES
from drift_summaries import NUMERIC as FLIGHT_NUMBERS
from shipyard.data.contract import Contract
from shipyard.demo import flights_frame
from shipyard.monitoring import CategoricalReference, NumericReference, Reference
from shipyard.serving.compaction import compact_log
from shipyard.serving.log import PredictionLog, log_files

EVIDENTLY_ENV = Path("/tmp/shipyard-bench-evidently")
LAYOUTS = ("spread", "one_day")
ONE_DAY = 1_764_460_800.0  # 2025-11-30 00:00 UTC: the one_day layout's day
EVIDENTLY_REQUIREMENTS = ["evidently", "pandas<3", "pyarrow"]

NUMERIC = [*FLIGHT_NUMBERS, "speed_mph", "gain", "block_min", "sched_dep_min", "day_of_year"]
CATEGORICAL = [*FLIGHT_CATEGORIES, "route", "weekday"]
BOOLEAN = ["arr_delayed"]
ROLES = (
    dict.fromkeys(NUMERIC, "numeric")
    | dict.fromkeys(CATEGORICAL, "categorical")
    | dict.fromkeys(BOOLEAN, "boolean")
)
LOG_TYPES = (  # the log's column kinds, as serving.log.feature_types gives them
    dict.fromkeys(NUMERIC, "number")
    | dict.fromkeys(CATEGORICAL, "string")
    | dict.fromkeys(BOOLEAN, "boolean")
)

SHIPYARD = """
import datetime as dt, json, shutil, sys, time
from pathlib import Path
from shipyard.data.contract import Contract
from shipyard.monitoring import Reference
from shipyard.monitoring.days import DayStore, keep_closed_days, scan_days
from shipyard.monitoring.monitor import Answering, parse_window
from shipyard.monitoring.summary import merge
from shipyard.serving.log import combine, log_files, read_raw

folder, reference_file, contract_file, repeat = sys.argv[1:5]
types, store = json.loads(sys.argv[5]), Path(sys.argv[6])
reference = Reference.from_dict(json.loads(open(reference_file).read()))
answer = Answering(1, reference, Contract.load(contract_file), list(types), types)
year = parse_window("12mo")  # calendar years (UTC): the windows a year of traffic falls in
today = dt.date(2026, 12, 3)  # the logged days are over

def drift():
    store_ = DayStore(store)
    found = scan_days(log_files(folder), lambda v: answer, year, store_, since_us=None,
                      until_us=None, today=today)
    groups = list(found.groups.values())  # one per UTC calendar year: 2013, and 2014's first hours
    features = dict(groups[0].features)
    for group in groups[1:]:
        features = {n: merge(s, group.features[n]) for n, s in features.items()}
    return found, reference.compare(features)

runs = []
for _ in range(int(repeat)):
    start = time.perf_counter()
    files = log_files(folder)
    table = combine([read_raw(f, exclude=["entity_id"]) for f in files], exclude=["entity_id"])
    read = time.perf_counter()
    rows = table.num_rows
    del table
    shutil.rmtree(store, ignore_errors=True)
    first = time.perf_counter()
    found, results = drift()
    cold = time.perf_counter()
    shutil.rmtree(store, ignore_errors=True)  # the service keeps the closed days instead
    kept_days = keep_closed_days(files, lambda v: answer, DayStore(store), today=today)
    service = time.perf_counter()
    kept_found, kept = drift()
    warm = time.perf_counter()
    assert kept_days == kept_found.days_kept == len({f.parent.name for f in files}), kept_days
    assert [r.to_dict() for r in kept] == [r.to_dict() for r in results]
    runs.append({"read_log_s": read - start, "first_run_s": cold - first,
                 "service_keep_s": service - cold, "kept_days_s": warm - service})
print(json.dumps({"runs": runs, "peak_mb": peak_mb(), "rows": rows, "files": len(files),
                  "days": len({f.parent.name for f in files}),
                  "results": {r.column: r.to_dict() for r in results}}))
"""

EVIDENTLY = """
import json, sys, time, warnings
warnings.filterwarnings("ignore")
import pandas as pd
import evidently
from evidently import DataDefinition, Dataset, Report
from evidently.metrics import ValueDrift
from evidently.presets import DataDriftPreset

folder, mode, repeat = sys.argv[1], sys.argv[2], int(sys.argv[3])
numeric, categorical = json.loads(sys.argv[4]), json.loads(sys.argv[5])
if mode == "statistics":
    metrics = [ValueDrift(column=c, method=m) for c in numeric for m in ("psi", "ks", "wasserstein")]
    metrics += [ValueDrift(column=c, method=m) for c in categorical
                for m in ("psi", "jensenshannon", "chisquare")]
else:
    metrics = [DataDriftPreset()]
runs = []
for _ in range(repeat):
    start = time.perf_counter()
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    reference = Dataset.from_pandas(pd.read_parquet(folder + "/reference.parquet"),
                                    data_definition=definition)
    current = Dataset.from_pandas(pd.read_parquet(folder + "/current.parquet"),
                                  data_definition=definition)
    loaded = time.perf_counter()
    snapshot = Report(metrics).run(current, reference)
    end = time.perf_counter()
    runs.append({"load_s": loaded - start, "report_s": end - loaded})
    del reference, current
values = {}
for metric in snapshot.dict()["metrics"]:
    config = metric["config"]
    if "column" in config:
        values.setdefault(config["column"], {})[config["method"]] = metric["value"]
print(json.dumps({"runs": runs, "peak_mb": peak_mb(), "values": values,
                  "version": evidently.__version__}))
"""


def flights_columns() -> pd.DataFrame:
    """NYC flights with the 25 benchmark columns (see the module docstring) and ``time``."""
    f = flights_frame()
    dates = pd.to_datetime(f[["year", "month", "day"]])

    def clock_minutes(hhmm: pd.Series) -> pd.Series:
        return hhmm // 100 * 60 + hhmm % 100

    derived = {
        "route": f["origin"] + "-" + f["dest"],
        "weekday": dates.dt.day_name(),
        "speed_mph": f["distance"] / f["air_time"] * 60,
        "gain": f["dep_delay"] - f["arr_delay"],
        "block_min": (clock_minutes(f["sched_arr_time"]) - clock_minutes(f["sched_dep_time"]))
        % 1440,
        "sched_dep_min": f["hour"] * 60 + f["minute"],
        "day_of_year": dates.dt.day_of_year,
    }
    frame = pd.concat([f, pd.DataFrame(derived)], axis=1)
    frame[NUMERIC] = frame[NUMERIC].astype(np.float64)
    frame["time"] = pd.to_datetime(frame["time_hour"], utc=True)
    return frame[["time", *ROLES]]


def ensure_evidently() -> Path:
    """The Evidently environment's interpreter, created (venv + pip) when missing."""
    python = EVIDENTLY_ENV / "bin" / "python"
    if python.exists() and _run([str(python), "-c", "import evidently, pyarrow"]).returncode == 0:
        return python
    print(f"creating {EVIDENTLY_ENV} with {' '.join(EVIDENTLY_REQUIREMENTS)} ...", flush=True)
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--clear", str(EVIDENTLY_ENV)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", *EVIDENTLY_REQUIREMENTS],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return python


def _run(command: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, env=env, check=False)


def child(command: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run a child script (``PEAK_MB`` + code) and return the JSON it prints last."""
    done = _run(command, env)
    if done.returncode != 0:
        raise SystemExit(f"child failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def write_log(folder: Path, current: pd.DataFrame, layout: str) -> dict[str, Any]:
    """The current rows as a prediction log, as the service writes it (1,000-row files),
    then its closed days compacted, as the service does after midnight. ``layout``:
    ``spread`` at the flights' own times, ``one_day`` evenly over one day (a service
    answering ~12 requests a second)."""
    start = time.perf_counter()
    log = PredictionLog(folder, batch_rows=1000, flush_seconds=60, max_queue=60_000)
    if layout == "spread":
        seconds = current["time"].to_numpy("datetime64[us]").astype(np.int64) / 1e6
    else:
        seconds = ONE_DAY + np.arange(len(current)) * (86_400 / len(current))
    features = current[list(ROLES)].astype(object)
    features = features.where(features.notna(), None)
    step = 50_000
    for first in range(0, len(current), step):
        chunk = features.iloc[first : first + step].to_dict("records")
        for offset, values in enumerate(chunk):
            i = first + offset
            log.append(
                {
                    "request_id": f"r{i}",
                    "time": float(seconds[i]) + (i % 3600 / 1e4 if layout == "spread" else 0),
                    "entity_id": None,
                    "model_version": 1,
                    "arm": "champion",
                    "features": values,
                    "types": LOG_TYPES,
                    "prediction": 0.5,  # this benchmark measures feature drift only
                    "latency_ms": 1.0,
                    "warnings": [],
                    "error": None,
                }
            )
        log.flush()
    log.close()
    if log.dropped or log.errors or log.written != len(current):
        raise SystemExit(f"the log lost rows: {log.dropped} dropped, {log.errors} errors")
    written = time.perf_counter()
    parts = len(log_files(folder))
    compact_log(folder, before=dt.date(2026, 12, 3))
    return {
        "layout": layout,
        "write_s": round(written - start, 1),
        "part_files": parts,
        "compact_s": round(time.perf_counter() - written, 2),
        "files": len(log_files(folder)),
    }


def write_parquet(frame: pd.DataFrame, path: Path) -> None:
    """Parquet without pandas metadata, so pandas 2 reads what pandas 3 wrote."""
    table = pa.Table.from_pandas(frame[list(ROLES)], preserve_index=False)
    pq.write_table(table.replace_schema_metadata(None), path)


def _counts(ref: NumericReference | CategoricalReference, values: pd.Series) -> np.ndarray:
    """Raw values counted over shipyard's PSI bins: the coarse edges' intervals
    [e_k-1, e_k) for numbers; the kept categories, then everything else, for categories."""
    if isinstance(ref, NumericReference):
        x = values.to_numpy(np.float64)
        x = x[np.isfinite(x)]
        bins = np.searchsorted(ref.coarse_edges, x, side="right")
        return np.bincount(bins, minlength=len(ref.coarse_edges) + 1)
    x = values.dropna()
    keys = x.map({False: "false", True: "true"}) if ref.boolean else x.astype(str)
    tally = keys.value_counts()
    kept = np.array([int(tally.get(c, 0)) for c in ref.categories])
    return np.append(kept, len(keys) - kept.sum())


def _direct_psi(p_counts: np.ndarray, q_counts: np.ndarray) -> float:
    p, q = p_counts / p_counts.sum(), q_counts / q_counts.sum()
    p[p == 0], q[q == 0] = 1e-4, 1e-4  # shipyard's PSI_EPSILON, restated
    return float(np.sum((q - p) * np.log(q / p)))


def agreement(
    reference: Reference,
    ref_rows: pd.DataFrame,
    cur_rows: pd.DataFrame,
    results: dict[str, dict[str, Any]],
    evidently: dict[str, dict[str, float]],
) -> dict[str, dict[str, Any]]:
    """Per column: shipyard's statistics beside NumPy / SciPy on the raw data and Evidently."""
    out: dict[str, dict[str, Any]] = {}
    for name, ref in reference.features.items():
        ours, theirs = results[name], evidently.get(name, {})
        p_counts, q_counts = _counts(ref, ref_rows[name]), _counts(ref, cur_rows[name])
        row: dict[str, Any] = {
            "psi": ours["psi"],
            "psi_numpy_same_bins": _direct_psi(p_counts, q_counts),
            "psi_evidently": theirs.get("psi"),
            "level": ours["level"],
        }
        row["psi_abs_diff"] = abs(row["psi"] - row["psi_numpy_same_bins"])
        if isinstance(ref, NumericReference):
            a = ref_rows[name].dropna().to_numpy(np.float64)
            b = cur_rows[name].dropna().to_numpy(np.float64)
            ks = stats.ks_2samp(a, b)
            w = stats.wasserstein_distance(a, b) / ref.scale
            std = max(float(np.std(a)), 0.001)  # Evidently's norm
            row |= {
                "ks": [ours["ks"], ours["ks_upper"]],
                "ks_scipy": float(ks.statistic),
                "ks_within_bound": ours["ks"] - 1e-12 <= ks.statistic <= ours["ks_upper"] + 1e-12,
                "ks_pvalue": ours["pvalue"],
                "ks_pvalue_scipy": float(ks.pvalue),
                "ks_pvalue_evidently": theirs.get("ks"),
                "wasserstein": [ours["wasserstein_lower"], ours["wasserstein_upper"]],
                "wasserstein_scipy": w,
                "wasserstein_within_bound": ours["wasserstein_lower"] - 1e-9
                <= w
                <= ours["wasserstein_upper"] + 1e-9,
                "wasserstein_per_std": ours["wasserstein"] * ref.scale / std,
                "wasserstein_per_std_scipy": w * ref.scale / std,
                "wasserstein_per_std_evidently": theirs.get("wasserstein"),
            }
        else:
            chi2 = stats.chi2_contingency(
                np.vstack([p_counts, q_counts])[:, (p_counts + q_counts) > 0], correction=False
            )
            row |= {
                "jensen_shannon": ours["jensen_shannon"],
                "jensen_shannon_scipy": float(jensenshannon(p_counts, q_counts, base=2)),
                "jensen_shannon_natural_log": ours["jensen_shannon"] * math.sqrt(math.log(2)),
                "jensen_shannon_evidently": theirs.get("jensenshannon"),
                "chi2": ours["chi2"],
                "chi2_scipy": float(chi2.statistic),
                "chi2_pvalue": ours["pvalue"],
                "chi2_gof_pvalue_evidently": theirs.get("chisquare"),
                "categories_kept": len(ref.categories),
            }
            row["jensen_shannon_abs_diff"] = abs(
                row["jensen_shannon"] - row["jensen_shannon_scipy"]
            )
            row["chi2_rel_diff"] = abs(row["chi2"] - row["chi2_scipy"]) / max(row["chi2_scipy"], 1)
        out[name] = row
    return out


def _median(runs: list[dict[str, float]], key: str) -> float:
    return round(statistics.median(run[key] for run in runs), 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--log",
        type=Path,
        help="keep the prediction log in this folder, and reuse it when it already holds "
        "--rows rows (the log is written the same way every time: seed 0)",
    )
    args = parser.parse_args()
    evidently_python = ensure_evidently()

    flights = flights_columns()
    ref_rows = flights[flights["month"] <= 4].reset_index(drop=True)
    later = flights[flights["month"] >= 5]
    pick = np.sort(np.random.default_rng(0).integers(0, len(later), args.rows))
    cur_rows = later.iloc[pick].sort_values("time", kind="stable").reset_index(drop=True)
    contract = Contract.learn(ref_rows[list(ROLES)])
    reference = Reference.learn(  # the model's output is not what this benchmark measures
        ref_rows[list(ROLES)],
        ROLES,
        contract=contract,
        task="binary",
        classes=[False, True],
        test_output=np.full(1000, 0.5),
    )

    with tempfile.TemporaryDirectory(prefix="shipyard-bench-") as tmp:
        folder = Path(tmp)
        write_parquet(ref_rows, folder / "reference.parquet")
        write_parquet(cur_rows, folder / "current.parquet")
        (folder / "reference.json").write_text(json.dumps(reference.to_dict()))
        contract.save(folder / "contract.json")
        env = os.environ | {"PYTHONPATH": str(Path(__file__).parents[1] / "src")}
        layouts, runs = {}, {}
        for layout in LAYOUTS:
            logs = (args.log or folder / "logs") / layout
            print(f"writing {len(cur_rows):,} rows as a prediction log ({layout}) ...", flush=True)
            shutil.rmtree(logs, ignore_errors=True)
            layouts[layout] = write_log(logs, cur_rows, layout)
            runs[layout] = child(
                [
                    sys.executable,
                    "-c",
                    PEAK_MB + SHIPYARD,
                    str(logs),
                    str(folder / "reference.json"),
                    str(folder / "contract.json"),
                    str(args.repeat),
                    json.dumps(LOG_TYPES),
                    str(folder / f"days-{layout}"),
                ],
                env,
            )
        shipyard = runs["spread"]
        kinds = [json.dumps(NUMERIC), json.dumps(CATEGORICAL + BOOLEAN)]
        evidently = {
            mode: child(
                [
                    str(evidently_python),
                    "-c",
                    PEAK_MB + EVIDENTLY,
                    tmp,
                    mode,
                    str(args.repeat),
                    *kinds,
                ]
            )
            for mode in ("statistics", "preset")
        }

    columns = agreement(
        reference, ref_rows, cur_rows, shipyard["results"], evidently["statistics"]["values"]
    )
    ours = {
        layout: {
            **{key: _median(out["runs"], key) for key in out["runs"][0]},
            "peak_mb": round(out["peak_mb"], 1),
            "log": layouts[layout],
            "days": out["days"],
        }
        for layout, out in runs.items()
    }
    for out in runs.values():  # the layouts hold the same rows: the same statistics
        for name, stats_ in out["results"].items():
            for key, value in stats_.items():
                same = shipyard["results"][name][key]
                if isinstance(value, float) and isinstance(same, float):
                    assert math.isclose(value, same, rel_tol=1e-9, abs_tol=1e-12), (name, key)
                else:
                    assert value == same, (name, key)
    theirs = {
        mode: {
            "load_s": _median(out["runs"], "load_s"),
            "report_s": _median(out["runs"], "report_s"),
            "peak_mb": round(out["peak_mb"], 1),
        }
        for mode, out in evidently.items()
    }
    numeric = [c for c in columns.values() if "ks_scipy" in c]
    categorical = [c for c in columns.values() if "chi2_scipy" in c]
    result = {
        "rows_current": shipyard["rows"],
        "rows_reference": len(ref_rows),
        "columns": {"numeric": NUMERIC, "categorical": CATEGORICAL, "boolean": BOOLEAN},
        "repeat": args.repeat,
        "machine": f"{os.cpu_count()} cores; load average at the end {os.getloadavg()[0]:.1f}",
        "shipyard": ours,
        "evidently": {"version": evidently["statistics"]["version"], **theirs},
        "ratios": {
            f"evidently_{mode}_report_vs_shipyard_{layout}_{run}": round(
                theirs[mode]["report_s"] / ours[layout][f"{run}_s"], 1
            )
            for mode in ("statistics", "preset")
            for layout in LAYOUTS
            for run in ("first_run", "kept_days")
        }
        | {
            f"evidently_statistics_peak_vs_shipyard_{layout}_peak": round(
                theirs["statistics"]["peak_mb"] / ours[layout]["peak_mb"], 1
            )
            for layout in LAYOUTS
        },
        "agreement": {
            "psi_max_abs_diff_same_bins": max(c["psi_abs_diff"] for c in columns.values()),
            "ks_within_bound": all(c["ks_within_bound"] for c in numeric),
            "ks_max_bound_width": max(c["ks"][1] - c["ks"][0] for c in numeric),
            "wasserstein_within_bound": all(c["wasserstein_within_bound"] for c in numeric),
            "jensen_shannon_max_abs_diff": max(c["jensen_shannon_abs_diff"] for c in categorical),
            "chi2_max_rel_diff": max(c["chi2_rel_diff"] for c in categorical),
            "alerts": sorted(name for name, c in columns.items() if c["level"] == "alert"),
        },
        "per_column": columns,
    }
    _print(result)
    target = Path(__file__).parent / "results" / "drift_evidently.json"
    target.write_text(json.dumps(result, indent=1, default=float) + "\n")


def _print(result: dict[str, Any]) -> None:
    ours, theirs, ratios = result["shipyard"], result["evidently"], result["ratios"]
    print(f"{result['rows_current']:,} rows x 25 columns (median of {result['repeat']})")
    print(f"{'':44}{'seconds':>10}{'peak MB':>10}")
    for layout, out in ours.items():
        log = out["log"]
        print(
            f"shipyard, log {layout}: {log['part_files']:,} part files -> {log['files']:,} "
            f"after compaction ({log['compact_s']} s, untimed), {out['days']} days"
        )
        print(f"{'  read the log alone':44}{out['read_log_s']:>10.3f}")
        print(
            f"{'  drift, first run (from the log)':44}{out['first_run_s']:>10.3f}"
            f"{out['peak_mb']:>10.0f}"
        )
        print(f"{'  the service keeps the closed days (after)':44}{out['service_keep_s']:>10.3f}")
        print(f"{'  drift, from the kept days':44}{out['kept_days_s']:>10.3f}")
    for mode in ("statistics", "preset"):
        name = f"Evidently {theirs['version']} {mode}"
        print(f"{name:44}{theirs[mode]['report_s']:>10.3f}{theirs[mode]['peak_mb']:>10.0f}")
    for key, value in ratios.items():
        print(f"  {key}: x{value}")
    print(json.dumps(result["agreement"], indent=1))
    print(f"{'column':16}{'psi':>9}{'numpy':>9}{'evidently':>10}  ks / scipy / wass / scipy")
    for name, c in result["per_column"].items():
        line = f"{name:16}{c['psi']:>9.4f}{c['psi_numpy_same_bins']:>9.4f}"
        line += f"{c['psi_evidently'] or math.nan:>10.4f}  "
        if "ks_scipy" in c:
            line += f"{c['ks'][0]:.4f}-{c['ks'][1]:.4f} / {c['ks_scipy']:.4f} / "
            line += f"{c['wasserstein'][0]:.4f}-{c['wasserstein'][1]:.4f} / "
            line += f"{c['wasserstein_scipy']:.4f}"
        else:
            line += f"js {c['jensen_shannon']:.4f} / {c['jensen_shannon_scipy']:.4f}"
        print(line)


if __name__ == "__main__":
    main()
