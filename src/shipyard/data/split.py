"""Leakage-safe splits: train, dev (eyeball + blackbox) and test.

Policies:

``random``      rows shuffled;
``stratified``  rows shuffled within each class, so every split keeps the class balance;
``group``       whole entities (``project.id``) shuffled: no entity on two sides;
``time``        by ``project.time``: train first, dev next, test strictly after both. With an
                entity key and ``split.purge_entities`` (the default), rows of an entity
                already seen in an earlier split are purged from the later one;
``auto``        time when a time column is declared, group when the entity key repeats,
                stratified for classification, random otherwise.

Under every policy, exact duplicate rows are moved as one unit, so a copy never sits on
two sides. The dev set is divided into an *eyeball* part, for reading errors by hand, and
a *blackbox* part, for model selection. Everything is deterministic for a seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from shipyard.data.dataset import Dataset
from shipyard.data.finding import Finding
from shipyard.errors import DataError

PARTS = ("train", "dev_eyeball", "dev_blackbox", "test")


@dataclass
class Splits:
    """Row positions (into the dataset's frame) of each part, and how they were made."""

    strategy: str
    train: np.ndarray
    dev_eyeball: np.ndarray
    dev_blackbox: np.ndarray
    test: np.ndarray
    dropped: dict[str, int] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def dev(self) -> np.ndarray:
        return np.sort(np.concatenate([self.dev_eyeball, self.dev_blackbox]))

    def parts(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in PARTS}

    def to_dict(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "dropped": self.dropped, "parts": self.report}


def resolve_strategy(ds: Dataset) -> str:
    """The policy ``auto`` stands for on this dataset (or the declared one)."""
    spec = ds.spec
    strategy = spec.split.strategy
    if strategy != "auto":
        return strategy
    if spec.project.time:
        return "time"
    key = spec.project.id
    if key and ds.frame[key].duplicated().any():
        return "group"
    return "stratified" if spec.is_classification else "random"


def _unit_codes(ds: Dataset, by_entity: bool) -> np.ndarray:
    """One code per row: rows sharing a code must land in the same part."""
    if by_entity:
        entity_codes, _ = pd.factorize(ds.frame[ds.spec.project.id])
        missing = np.flatnonzero(entity_codes < 0)
        if not len(missing):
            return entity_codes
        # rows without an entity fall back to their duplicate group (hashing only those rows)
        hashes = pd.util.hash_pandas_object(ds.frame.iloc[missing], index=False).to_numpy()
        codes = entity_codes.astype(np.int64)
        codes[missing] = entity_codes.max() + 1 + pd.factorize(hashes)[0]
        return pd.factorize(codes)[0]
    return pd.factorize(ds.row_hashes)[0]


def _assign_units(
    units: np.ndarray,
    fractions: list[float],
    rng: np.random.Generator,
    rows: np.ndarray | None = None,
) -> np.ndarray:
    """Part number (0, 1, 2, …) of each row, moving whole units to fill the fractions."""
    rows = np.arange(len(units)) if rows is None else rows
    sub_units, local = np.unique(units[rows], return_inverse=True)
    sizes = np.bincount(local)
    order = rng.permutation(len(sub_units))
    cum = np.cumsum(sizes[order]) - sizes[order] / 2  # a unit goes where its middle falls
    bounds = np.cumsum(fractions)[:-1] * len(rows)
    part_of_unit = np.empty(len(sub_units), dtype=np.int64)
    part_of_unit[order] = np.searchsorted(bounds, cum, side="right")
    return part_of_unit[local]


def make_splits(ds: Dataset) -> Splits:
    """Split a dataset under its spec's policy."""
    cfg = ds.spec.split
    strategy = resolve_strategy(ds)
    rng = np.random.default_rng(cfg.seed)
    n = len(ds.frame)
    dropped: dict[str, int] = {}
    fractions = [cfg.train, cfg.dev, cfg.test]
    if strategy in ("group",) and not ds.spec.project.id:
        raise DataError(
            "split.strategy = 'group' needs project.id (the entity key) in shipyard.toml"
        )
    if strategy == "time":
        part = _time_parts(ds, fractions, dropped)
    else:
        units = _unit_codes(ds, by_entity=strategy == "group")
        part = np.empty(n, dtype=np.int64)
        if strategy == "stratified" and ds.target.kind != "regression":
            for cls in np.unique(ds.target.y):
                rows = np.flatnonzero(ds.target.y == cls)
                part[rows] = _assign_units(units, fractions, rng, rows)
        else:
            part = _assign_units(units, fractions, rng)
    # dev is divided into eyeball and blackbox, again by whole units
    dev_rows = np.flatnonzero(part == 1)
    units = _unit_codes(ds, by_entity=bool(ds.spec.project.id))
    eyeball = np.zeros(n, dtype=bool)
    if len(dev_rows):
        sub = _assign_units(units, [cfg.eyeball, 1 - cfg.eyeball], rng, dev_rows)
        eyeball[dev_rows[sub == 0]] = True
    splits = Splits(
        strategy=strategy,
        train=np.flatnonzero(part == 0),
        dev_eyeball=np.flatnonzero((part == 1) & eyeball),
        dev_blackbox=np.flatnonzero((part == 1) & ~eyeball),
        test=np.flatnonzero(part == 2),
        dropped=dropped,
    )
    for name in ("train", "dev", "test"):
        if len(getattr(splits, name)) == 0:
            raise DataError(
                f"the {name} split is empty under strategy '{strategy}' ({n:,} rows"
                + (f", {sum(dropped.values()):,} dropped: {dropped}" if dropped else "")
                + "). Adjust [split] fractions, or set purge_entities = false for a time split "
                "whose entities recur."
            )
    splits.report = split_report(ds, splits)
    return splits


def _time_parts(ds: Dataset, fractions: list[float], dropped: dict[str, int]) -> np.ndarray:
    spec = ds.spec
    if not spec.project.time:
        raise DataError(
            "split.strategy = 'time' needs project.time (the time column) in shipyard.toml"
        )
    stamps = ds.stamps(spec.project.time)
    n = len(stamps)
    part = np.full(n, -1, dtype=np.int64)
    valid = stamps.notna().to_numpy()
    if not valid.any():
        raise DataError(f"time column '{spec.project.time}' holds no parseable dates")
    values = stamps.astype("int64").to_numpy()
    ordered = np.sort(values[valid])
    m = len(ordered)
    t1 = ordered[min(int(fractions[0] * m), m - 1)]
    t2 = ordered[min(int((fractions[0] + fractions[1]) * m), m - 1)]
    # a timestamp never straddles a boundary: ties go to the later part
    part[valid & (values < t1)] = 0
    part[valid & (values >= t1) & (values < t2)] = 1
    part[valid & (values >= t2)] = 2
    if (~valid).any():
        dropped["no_time"] = int((~valid).sum())
    key = spec.project.id
    if key and spec.split.purge_entities:
        codes, uniques = pd.factorize(ds.frame[key])
        seen = np.zeros(len(uniques) + 1, dtype=bool)  # last slot: missing key, never "seen"
        seen[codes[part == 0]] = True
        seen[-1] = False
        for later in (1, 2):
            rows = (part == later) & seen[codes]
            if rows.any():
                dropped[f"purged_from_{'dev' if later == 1 else 'test'}"] = int(rows.sum())
                part[rows] = -1
            seen[codes[part == later]] = True
            seen[-1] = False
    return part


def split_report(ds: Dataset, splits: Splits) -> dict[str, Any]:
    """Sizes, target balance and (time policy) time range of each part."""
    n = len(ds.frame)
    y = ds.target.y
    out = {}
    stamps = ds.stamps(ds.spec.project.time) if ds.spec.project.time else None
    for name, rows in splits.parts().items():
        entry: dict[str, Any] = {"rows": len(rows), "share": round(len(rows) / n, 4)}
        if len(rows):
            if ds.target.kind == "binary":
                entry["positive_rate"] = round(float(y[rows].mean()), 4)
            elif ds.target.kind == "multiclass":
                counts = np.bincount(y[rows], minlength=ds.target.n_classes)
                entry["class_shares"] = [round(float(c), 4) for c in counts / len(rows)]
            else:
                entry["target_mean"] = round(float(y[rows].mean()), 6)
            if stamps is not None:
                part_times = stamps.iloc[rows]
                entry["time_from"] = str(part_times.min())
                entry["time_to"] = str(part_times.max())
            if ds.spec.project.id:
                entry["entities"] = int(ds.frame[ds.spec.project.id].iloc[rows].nunique())
        out[name] = entry
    return out


def recurring_entity_share(ds: Dataset) -> float:
    """Share of rows after the train cut whose entity already appears before it.

    High values mean a time split that purges recurring entities would leave little to
    evaluate on (planes fly again, customers come back).
    """
    spec = ds.spec
    if not (spec.project.time and spec.project.id):
        return 0.0
    values = ds.stamps(spec.project.time).astype("int64").to_numpy()
    valid = ds.stamps(spec.project.time).notna().to_numpy()
    if not valid.any():
        return 0.0
    cut = np.sort(values[valid])[int(spec.split.train * (valid.sum() - 1))]
    codes, uniques = pd.factorize(ds.frame[spec.project.id])
    before = np.zeros(len(uniques) + 1, dtype=bool)
    before[codes[valid & (values < cut)]] = True
    before[-1] = False
    later = codes[valid & (values >= cut)]
    return float(before[later].mean()) if len(later) else 0.0


def split_findings(ds: Dataset, splits: Splits) -> list[Finding]:
    """What a user should know about how the split came out."""
    out = []
    spec = ds.spec
    key = spec.project.id
    purged = sum(v for k, v in splits.dropped.items() if k.startswith("purged"))
    intended = len(ds.frame) * (spec.split.dev + spec.split.test)
    if purged and purged > 0.5 * intended:
        out.append(
            Finding(
                "split_purge_heavy",
                "warning",
                f"the time split purged {purged:,} rows of entities ('{key}') already seen earlier, "
                f"leaving dev and test with {len(splits.dev) + len(splits.test):,} rows",
                "entities recur over time; if production scores entities it has seen before, set "
                '[split] purge_entities = false (recorded); otherwise use strategy = "group"',
                (key,) if key else (),
                {"purged_rows": purged, **splits.dropped},
                check="leakage",
            )
        )
    if splits.strategy == "time" and key and not spec.split.purge_entities:
        codes, uniques = pd.factorize(ds.frame[key])
        in_train = np.zeros(len(uniques) + 1, dtype=bool)
        in_train[codes[splits.train]] = True
        in_train[-1] = False
        share = float(in_train[codes[splits.test]].mean()) if len(splits.test) else 0.0
        out.append(
            Finding(
                "entities_shared_over_time",
                "info",
                f"{share:.1%} of test rows belong to an entity ('{key}') also seen in train; "
                "purge_entities = false allows this on purpose",
                "fine when production scores known entities; keep entity keys out of the features",
                (key,),
                {"test_rows_with_entity_in_train": round(share, 6)},
                check="leakage",
            )
        )
    if splits.strategy == "time" and len(splits.train):
        later = np.concatenate([splits.dev, splits.test])
        for col in ds.candidates:
            if ds.role[col] != "numeric" or not len(later):
                continue
            values = pd.to_numeric(ds.frame[col], errors="coerce").to_numpy(
                dtype=float, na_value=np.nan
            )
            seen = values[splits.train]
            seen = seen[np.isfinite(seen)]
            ahead = values[later]
            ahead = ahead[np.isfinite(ahead)]
            if not len(seen) or not len(ahead):
                continue
            outside = float(((ahead < seen.min()) | (ahead > seen.max())).mean())
            if outside > 0.5:
                out.append(
                    Finding(
                        "unseen_after_split",
                        "warning",
                        f"under the time split, {outside:.0%} of dev and test values of '{col}' lie "
                        f"outside its train range [{seen.min():g}, {seen.max():g}]: it tracks the "
                        "calendar, so a model can only memorize periods it will never see again",
                        f"exclude '{col}' (or encode what recurs, such as a season), so the model "
                        "learns patterns that carry forward in time",
                        (col,),
                        {
                            "share_outside_train_range": round(outside, 6),
                            "train_min": float(seen.min()),
                            "train_max": float(seen.max()),
                        },
                        check="leakage",
                    )
                )
    return out
