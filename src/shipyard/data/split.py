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

:func:`split_findings` says what a user should know about how the split came out: entities
purged or shared over time, columns that track the calendar, a target whose distribution
moves between the parts (``target_shift``), and a blackbox dev part too small to select
models on (``small_dev_split``).
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
# target_shift: a shift is reported when it is both significant and not negligible in size
SHIFT_P_VALUE = 0.01
SHIFT_EFFECT = 0.2  # Cohen's d (regression, in train standard deviations) or h (class rates)
# small_dev_split: the 95% interval of the dev metric, half-width above which ranking models
# on dev is mostly noise (AUC units; for regression a fraction of the dev RMSE)
DEV_HALF_WIDTH = 0.05
N_BOOT = 200


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
    out = [*target_shift_findings(ds, splits), *dev_size_findings(ds, splits)]
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


def _cohen_h(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Cohen's h between two sets of proportions: 2·asin√p − 2·asin√q."""
    return 2 * np.arcsin(np.sqrt(p)) - 2 * np.arcsin(np.sqrt(q))


def _class_labels(ds: Dataset) -> list[str]:
    """Class names in the order of the encoded target (binary: negative, positive)."""
    labels = [str(v) for v in pd.factorize(ds.frame[ds.spec.project.target], sort=True)[1]]
    if ds.target.kind != "binary":
        return labels
    positive = str(ds.positive) if ds.positive is not None else labels[-1]
    others = [v for v in labels if v != positive]
    return [others[0] if others else f"not {positive}", positive]


def target_shift_findings(ds: Dataset, splits: Splits) -> list[Finding]:
    """A target whose distribution moves from train to dev or test.

    The rule: a later part (dev, test) differs from train both significantly (two-sided
    p < ``SHIFT_P_VALUE``: Mann–Whitney U on the values for regression, χ² on the class
    counts for classification) and by at least a small effect (``SHIFT_EFFECT``: Cohen's d,
    the difference in means over the train standard deviation, or Cohen's h on the class
    rates, the largest over classes). A model fitted on train then meets a target level it
    never saw: a regression under- or over-predicts on average, a classifier's rates are off.
    """
    from scipy import stats  # imported here: scipy.stats alone costs a second at start-up

    y = ds.target.y
    target = ds.spec.project.target
    train = y[splits.train]
    parts = {"train": train, "dev": y[splits.dev], "test": y[splits.test]}
    summary: dict[str, dict[str, Any]]
    shifted: dict[str, float] = {}
    if ds.target.kind == "regression":
        sd = float(train.std())
        summary = {
            name: {
                "rows": len(v),
                "mean": float(v.mean()),
                "median": float(np.median(v)),
                "sd": float(v.std()),
            }
            for name, v in parts.items()
            if len(v)
        }
        for name in ("dev", "test"):
            v = parts[name]
            if len(v) < 2 or len(train) < 2 or sd == 0:
                continue
            d = (float(v.mean()) - float(train.mean())) / sd
            p = float(stats.mannwhitneyu(train, v).pvalue)
            summary[name].update(effect_d=round(d, 4), p_value=p)
            if abs(d) >= SHIFT_EFFECT and p < SHIFT_P_VALUE:
                shifted[name] = d
        if not shifted:
            return []
        worst = max(shifted, key=lambda k: abs(shifted[k]))
        a, b = summary["train"], summary[worst]
        text = (
            f"target '{target}' moves between splits: mean {a['mean']:.4g} (median "
            f"{a['median']:.4g}) in train vs {b['mean']:.4g} (median {b['median']:.4g}) in "
            f"{worst}, {shifted[worst]:+.2f} train standard deviations (Mann–Whitney "
            f"p = {b['p_value']:.1e})"
        )
        effect = "a model fitted on train will be off by about the difference on average"
    else:
        k = ds.target.n_classes
        labels = _class_labels(ds)
        counts = {name: np.bincount(v, minlength=k) for name, v in parts.items() if len(v)}
        rates = {name: c / c.sum() for name, c in counts.items()}
        summary = {
            name: {
                "rows": int(c.sum()),
                "class_rates": dict(zip(labels, rates[name].round(6).tolist(), strict=True)),
            }
            for name, c in counts.items()
        }
        for name in ("dev", "test"):
            if name not in counts or "train" not in counts:
                continue
            table = np.vstack([counts["train"], counts[name]])
            table = table[:, table.sum(axis=0) > 0]
            p = float(stats.chi2_contingency(table)[1]) if table.shape[1] > 1 else 1.0
            h = _cohen_h(rates[name], rates["train"])
            at = 1 if k == 2 else int(np.argmax(np.abs(h)))  # binary: the positive class
            summary[name].update(effect_h=round(float(h[at]), 4), p_value=p, class_moved=labels[at])
            if abs(h[at]) >= SHIFT_EFFECT and p < SHIFT_P_VALUE:
                shifted[name] = float(h[at])
        if not shifted:
            return []
        worst = max(shifted, key=lambda n: abs(shifted[n]))
        cls = summary[worst]["class_moved"]
        text = (
            f"target '{target}' class rates move between splits: '{cls}' is "
            f"{summary['train']['class_rates'][cls]:.1%} of train vs "
            f"{summary[worst]['class_rates'][cls]:.1%} of {worst} (Cohen's h "
            f"{shifted[worst]:+.2f}, χ² p = {summary[worst]['p_value']:.1e})"
        )
        effect = "a classifier fitted on train carries train's class rates into its scores"
    return [
        Finding(
            "target_shift",
            "warning",
            text + f" under the {splits.strategy} split",
            f"{effect}: find out why (a trend over time, a change in how the target was "
            "recorded); model the trend with features that carry forward, retrain more "
            "often, or recalibrate on recent data, and read test metrics as a forecast of "
            "that shift",
            (target,),
            {
                "strategy": splits.strategy,
                "parts": summary,
                "shifted": sorted(shifted),
                "rule": f"p < {SHIFT_P_VALUE:g} and |effect| >= {SHIFT_EFFECT:g}",
            },
            check="split",
        )
    ]


def auc_half_width(auc: float, n_pos: int, n_neg: int) -> float:
    """Half-width of the 95% interval of an AUC from ``n_pos`` and ``n_neg`` rows
    (Hanley & McNeil, 1982).

    >>> round(auc_half_width(0.8, 37, 249), 3)
    0.088
    """
    if n_pos < 1 or n_neg < 1:
        return float("inf")
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc**2) + (n_neg - 1) * (q2 - auc**2)) / (
        n_pos * n_neg
    )
    return float(1.96 * np.sqrt(max(var, 0.0)))


def dev_size_findings(ds: Dataset, splits: Splits) -> list[Finding]:
    """A blackbox dev part too small to select models on.

    The ladder picks its rung on blackbox dev, so the dev metric's noise decides between
    rungs. Before anything is fitted the width of its 95% interval is known from the part's
    size: for classification, the interval of ROC AUC (Hanley & McNeil) at the strongest
    single feature's out-of-fold AUC (at least 0.6), the rarer class against the rest; for
    regression, the bootstrap interval of the RMSE of the train mean on dev, relative to that
    RMSE. Over ``DEV_HALF_WIDTH`` (±0.05 AUC, or ±5% of the RMSE), differences the ladder acts
    on are mostly noise. ``train`` reports the chosen model's actual dev interval.
    """
    rows = splits.dev_blackbox if len(splits.dev_blackbox) else splits.dev_eyeball
    y = ds.target.y[rows]
    n = len(y)
    if not n:
        return []
    evidence: dict[str, Any] = {"rows": n, "limit_half_width": DEV_HALF_WIDTH}
    if ds.target.kind == "regression":
        centre = float(ds.target.y[splits.train].mean())
        rng = np.random.default_rng(ds.spec.split.seed)
        base = float(np.sqrt(np.mean((y - centre) ** 2)))
        boots = [
            float(np.sqrt(np.mean((y[b] - centre) ** 2)))
            for b in (rng.integers(0, n, n) for _ in range(N_BOOT))
        ]
        low, high = (float(q) for q in np.quantile(boots, [0.025, 0.975]))
        half = (high - low) / 2 / base if base else 0.0
        evidence.update(
            metric="rmse of the train mean", value=base, ci_low=low, ci_high=high, half_width=half
        )
        what = (
            f"the RMSE of the train mean on it is {base:.4g} with a 95% interval "
            f"[{low:.4g}, {high:.4g}] (±{half:.1%})"
        )
    else:
        counts = np.bincount(y, minlength=ds.target.n_classes)
        rare = int(np.argmin(counts))
        minority = int(counts[rare])
        candidates = [p.value for c, p in ds.powers.items() if c in ds.candidates]
        reference = float(np.clip(max(candidates, default=0.6), 0.6, 0.99))
        half = auc_half_width(reference, minority, n - minority)
        label = _class_labels(ds)[rare]
        evidence.update(
            metric="roc_auc",
            minority_class=label,
            minority_rows=minority,
            reference_auc=round(reference, 4),
            half_width=half,
        )
        what = (
            f"{minority:,} of its rows are of the rarer class '{label}', so an AUC near "
            f"{reference:.2f} (the strongest single feature's) is known only to ±{half:.3f} "
            "(95% interval)"
        )
    if half <= DEV_HALF_WIDTH:
        return []
    return [
        Finding(
            "small_dev_split",
            "warning",
            f"the blackbox dev part that selects the model has {n:,} rows: {what}; the ladder "
            "picks between rungs on differences smaller than that",
            "give dev a larger share ([split] dev, or a smaller eyeball share), or collect more "
            "data; read rung differences on dev as noise unless they exceed the interval, and "
            "judge the chosen model on test",
            (),
            evidence,
            check="split",
        )
    ]
