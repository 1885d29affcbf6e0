"""The leakage audit: features that would inflate offline metrics and fail in production.

It looks for, with the computed evidence behind each finding:

- target-derived columns: one column that (nearly) determines the target on its own;
- too-good-to-be-true columns: near-perfect alone, or far above every other column;
- post-event combinations: two columns that together nearly determine the target although
  neither does alone (``arr_time`` and ``sched_arr_time``: their difference is the delay);
- a model on all columns that scores near-perfectly, naming the columns responsible;
- post-event timestamps: a date column that comes after the moment of prediction;
- group leakage: an entity key repeated across rows (a random split would put one entity on
  both sides), an undeclared key that repeats, a key that itself predicts the target;
- row-order leakage: a row number, or the file order, that predicts the target;
- exact duplicate rows that a naive split would place on both sides.

``[features] known_at_prediction`` records the user's verdict that a strong column is
available when predicting: its ``too_good`` and ``model_too_good`` findings become
information, with ``known_at_prediction`` in their evidence, and it is not flagged. The time
column (``project.time``) is the moment of prediction itself and the model sees only its
calendar, so findings on its raw value alone are information too.

Power is measured out of fold (see :mod:`shipyard.data.association`), so a column that only
memorizes rows earns nothing.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pandas as pd

from shipyard.cores import LEDGER, requested_threads
from shipyard.data.association import Power, Target, _bin, auc, difference_power, joint_power
from shipyard.data.association import power_of_codes as _power_of_codes
from shipyard.data.dataset import Dataset
from shipyard.data.finding import Finding, finding_factory
from shipyard.data.roles import epoch_seconds

TARGET_DERIVED = 0.98  # power (2·AUC − 1, or R²) of one column that nearly determines the target
TOO_GOOD = 0.90  # near-perfect alone
FAR_ABOVE = 0.25  # ... or this much more power than the next best column, and at least:
FAR_ABOVE_FLOOR = 0.5
PAIR_GAIN = 0.25  # a pair must beat its best member by this much to count as a combination
MODEL_TOO_GOOD = 0.95
MAX_ELIMINATION_STEPS = 8
PREDICTIVE_ID = 0.2
PREDICTIVE_ORDER = 0.1


_f = finding_factory("leakage")
CONFIRMED = (
    " — confirmed known at the moment of prediction ([features] known_at_prediction): "
    "strong, not a leak"
)
MOMENT = (
    " — it is the moment of prediction (project.time): the model sees its calendar (month, "
    "weekday …), never this value or its trend"
)


def _power_evidence(p: Power) -> dict:
    return {
        "metric": p.metric,
        "value": round(p.value, 4),
        "power": round(p.power, 4),
        "how": p.how,
    }


class LeakageAudit:
    """Runs every leakage check on a dataset and remembers which columns it flagged."""

    def __init__(self, ds: Dataset) -> None:
        self.ds = ds
        self.flagged: set[str] = set()
        # the user's verdict: strong, and available when predicting (not flagged); the time
        # column is the moment of prediction itself, and the model sees only its calendar
        self.known = set(ds.spec.features.known_at_prediction)
        if ds.spec.project.time:
            self.known.add(ds.spec.project.time)
        self.findings: list[Finding] = []

    def run(self) -> list[Finding]:
        self.single_columns()
        self.combinations()
        self.whole_model()
        self.post_event_times()
        self.groups()
        self.row_order()
        self.duplicates()
        return self.findings

    def _confirmed(self, col: str) -> str:
        if col == self.ds.spec.project.time:
            return MOMENT
        return CONFIRMED

    def _add(self, finding: Finding) -> None:
        self.findings.append(finding)

    # --- one column, pairs, and the whole table -----------------------------------------

    def single_columns(self) -> None:
        ds = self.ds
        target = ds.spec.project.target
        powers = {c: p for c, p in ds.powers.items() if ds.role[c] not in ("index", "constant")}
        moment = ds.spec.project.time
        for col, p in powers.items():
            if p.power >= TARGET_DERIVED:
                if col != moment:
                    self.flagged.add(col)
                similar = _similar_names(col, target)
                self._add(
                    _f(
                        "target_derived",
                        "info" if col == moment else "error",
                        f"column '{col}' determines the target '{target}' almost exactly "
                        f"({p.describe()})"
                        + ("; its name matches the target's" if similar else "")
                        + (MOMENT if col == moment else ""),
                        (
                            "nothing to do for the features: read it as a strong trend the "
                            "split's later rows may not follow"
                            if col == moment
                            else f"drop '{col}' from the features ([features] exclude): it is "
                            "the target, or is computed from it, and will not exist when predicting"
                        ),
                        [col],
                        **_power_evidence(p),
                        name_matches_target=similar,
                    )
                )
        rest = [
            (c, p) for c, p in powers.items() if c not in self.flagged and p.power < TARGET_DERIVED
        ]
        for i, (col, p) in enumerate(rest):
            others = [q.power for c, q in rest[i + 1 :]]
            next_best = max(others, default=0.0)
            near_perfect = p.power >= TOO_GOOD
            far_above = p.power >= FAR_ABOVE_FLOOR and p.power - next_best >= FAR_ABOVE
            if not (near_perfect or far_above):
                break  # sorted by power: nothing further down can qualify
            confirmed = col in self.known
            if not confirmed:
                self.flagged.add(col)
            why = (
                "near-perfect on its own"
                if near_perfect
                else f"far above every other column (next best power {next_best:.2f})"
            )
            self._add(
                _f(
                    "too_good",
                    "info" if confirmed else "error" if near_perfect else "warning",
                    f"column '{col}' is too good to be true: {p.describe()}, {why}"
                    + (self._confirmed(col) if confirmed else ""),
                    f"if '{col}' is known at the moment of prediction, list it in [features] "
                    "known_at_prediction (this becomes information); if it is recorded later "
                    "(an outcome, a delay, a status), exclude it",
                    [col],
                    **_power_evidence(p),
                    next_best_power=round(next_best, 4),
                    known_at_prediction=confirmed,
                )
            )

    def combinations(self) -> None:
        """Pairs of columns that together nearly determine the target, though neither alone."""
        ds = self.ds
        cols = [c for c in ds.candidates if c not in self.flagged]
        numeric = [c for c in cols if ds.role[c] in ("numeric", "datetime", "boolean")]
        sample, target = ds.sample, ds.sample_target
        single = {c: ds.powers[c].power for c in cols}
        hits: list[Power] = []
        for a, b in itertools.combinations(cols, 2):
            tries = [joint_power((a, b), ds.sample_codes(a, 10), ds.sample_codes(b, 10), target)]
            if a in numeric and b in numeric and ds.role[a] == ds.role[b] != "boolean":
                tries.append(
                    difference_power(
                        _numeric(sample[a], ds.role[a]), _numeric(sample[b], ds.role[b]), target
                    )
                )
            best = max(tries, key=lambda p: p.power)
            gain = best.power - max(single[a], single[b])
            if gain >= PAIR_GAIN and (
                best.power >= TOO_GOOD
                or (
                    best.power >= FAR_ABOVE_FLOOR and best.power - max(single.values()) >= FAR_ABOVE
                )
            ):
                hits.append(best)
        for p in sorted(hits, key=lambda p: -p.power)[:5]:
            a, b = p.columns
            near = p.power >= TOO_GOOD
            self.flagged.update(p.columns)
            self._add(
                _f(
                    "leaky_combination",
                    "error" if near else "warning",
                    f"columns '{a}' and '{b}' together {'nearly determine' if near else 'strongly predict'}"
                    f" the target ({p.describe()}), far beyond either alone "
                    f"(power {single[a]:.2f} and {single[b]:.2f})",
                    "one of them is probably recorded after the moment of prediction (like an actual "
                    "time beside a scheduled one); exclude it, or both",
                    p.columns,
                    **_power_evidence(p),
                    alone={a: round(single[a], 4), b: round(single[b], 4)},
                )
            )

    def whole_model(self) -> None:
        """A gradient-boosted model on every column; if near-perfect, find who is responsible."""
        ds = self.ds
        cols = [
            c
            for c in ds.frame.columns
            if c != ds.spec.project.target and ds.role[c] not in ("index", "constant", "text")
        ]
        if not cols:
            return
        X = _model_frame(ds.sample, cols, ds.role)
        target = ds.sample_target
        threads = requested_threads(ds.spec.training.threads)
        first = _model_power(X, target, ds.spec.split.seed, threads)
        if first[0] < MODEL_TOO_GOOD:
            return
        steps: list[dict[str, Any]] = []
        responsible: list[str] = []
        power = first
        remaining = list(cols)
        while power[0] >= TOO_GOOD and len(steps) < MAX_ELIMINATION_STEPS and len(remaining) > 1:
            top = power[2]
            responsible.append(top)
            remaining.remove(top)
            power = _model_power(X[remaining], target, ds.spec.split.seed, threads)
            steps.append(
                {
                    "dropped": top,
                    "power_after": round(power[0], 4),
                    f"{target.metric}_after": round(power[1], 4),
                }
            )
        unconfirmed = [c for c in responsible if c not in self.known]
        self.flagged.update(unconfirmed)
        self._add(
            _f(
                "model_too_good",
                "warning" if unconfirmed else "info",
                f"a model on all {len(cols)} columns scores near-perfectly ({target.metric} "
                f"{first[1]:.3f}); the columns responsible: {', '.join(responsible)} (without them: "
                f"{target.metric} {power[1]:.3f})"
                + (
                    ""
                    if unconfirmed
                    else self._confirmed(responsible[0])
                    if len(responsible) == 1
                    else CONFIRMED.replace("confirmed", "each confirmed")
                ),
                "real problems are rarely this easy: exclude the responsible columns, or list "
                "those known at the moment of prediction in [features] known_at_prediction"
                + (f" (not yet confirmed: {', '.join(unconfirmed)})" if unconfirmed else ""),
                responsible,
                metric=target.metric,
                value=round(first[1], 4),
                steps=steps,
                rows_used=len(X),
                known_at_prediction=[c for c in responsible if c in self.known],
            )
        )

    # --- time, entities, order, copies ------------------------------------------------------

    def post_event_times(self) -> None:
        ds = self.ds
        time_col = ds.spec.project.time
        if not time_col:
            return
        moment = ds.stamps(time_col)
        for col, role in ds.role.items():
            if role != "datetime" or col == time_col:
                continue
            other = ds.stamps(col)
            both = moment.notna() & other.notna()
            if not both.any():
                continue
            after = float((other[both] > moment[both]).mean())
            at_or_after = float((other[both] >= moment[both]).mean())
            if at_or_after >= 0.95 and after >= 0.5:
                self._add(
                    _f(
                        "post_event_time",
                        "warning",
                        f"column '{col}' is later than the prediction time '{time_col}' in "
                        f"{after:.1%} of rows: it is recorded after the moment of prediction",
                        f"exclude '{col}', and any feature computed from it",
                        [col],
                        share_after=round(after, 6),
                    )
                )

    def groups(self) -> None:
        ds = self.ds
        key = ds.spec.project.id
        keys = [key] if key else []
        keys += [c for c, r in ds.role.items() if r == "id" and c != key]
        for col in keys:
            values = ds.frame[col]
            counts = values.value_counts()
            if not (counts > 1).any():
                continue
            share_repeated = float(values.map(counts).gt(1).mean())
            crossing = _random_split_crossing(values, ds.spec.split.seed)
            declared = col == key
            self._add(
                _f(
                    "entity_repeated" if declared else "possible_entity_key",
                    "warning",
                    f"{'entity key' if declared else 'id-like column'} '{col}' repeats across rows "
                    f"({len(counts):,} entities over {len(values):,} rows; {share_repeated:.1%} of rows "
                    f"share their entity with another row): a random split would put "
                    f"{crossing:.1%} of test rows beside rows of the same entity in train",
                    (
                        "shipyard splits by group (or by time) when project.id is set; keep it set"
                        if declared
                        else f"if '{col}' identifies an entity, set project.id = \"{col}\" so "
                        "splits keep each entity on one side; leave it out of the features"
                    ),
                    [col],
                    entities=len(counts),
                    rows=len(values),
                    share_rows_repeated=round(share_repeated, 6),
                    random_split_test_rows_with_entity_in_train=round(crossing, 6),
                )
            )
            p = ds.powers.get(col)
            if p is not None and p.power >= PREDICTIVE_ID:
                self._add(
                    _f(
                        "predictive_id",
                        "warning",
                        f"the key '{col}' predicts the target by itself ({p.describe()}, out of fold): "
                        "a model could memorize entities instead of learning patterns",
                        f"keep '{col}' out of the features, and split by group or time",
                        [col],
                        **_power_evidence(p),
                    )
                )

    def row_order(self) -> None:
        ds = self.ds
        for col, role in ds.role.items():
            if role != "index":
                continue
            p = ds.powers[col]
            if p.power >= PREDICTIVE_ORDER:
                self._add(
                    _f(
                        "row_order",
                        "warning",
                        f"the row-number column '{col}' predicts the target ({p.describe()}): rows are "
                        "ordered in a way that carries the target, by time or by label",
                        f"keep '{col}' out of the features (shipyard does), and never split by row "
                        "position",
                        [col],
                        **_power_evidence(p),
                    )
                )
        position = pd.Series(np.arange(len(ds.frame), dtype=float))
        power, value = _power_of_codes(_bin(position.to_numpy(), 32), ds.target)
        if power >= PREDICTIVE_ORDER:
            by_time = bool(ds.spec.project.time)
            self._add(
                _f(
                    "row_order",
                    "info" if by_time else "warning",
                    f"the order of rows in the file predicts the target ({ds.target.metric} "
                    f"{value:.3f} from row position alone)"
                    + (", consistent with rows sorted by time" if by_time else ""),
                    "shuffle within splits and never take the first rows as train and the last as "
                    "test unless that is a deliberate time split",
                    power=round(power, 4),
                    value=round(value, 4),
                    metric=ds.target.metric,
                )
            )

    def duplicates(self) -> None:
        ds = self.ds
        hashes = pd.Series(ds.row_hashes)
        sizes = hashes.map(hashes.value_counts())
        in_groups = int((sizes > 1).sum())
        if not in_groups:
            return
        n_groups = int(hashes[sizes > 1].nunique())
        # A random split with test share t keeps a pair together with probability
        # (1 - t)^2 + t^2; estimate directly on the groups.
        rng = np.random.default_rng(ds.spec.split.seed)
        side = pd.Series(rng.random(len(hashes)) < ds.spec.split.test)
        straddle = side.groupby(hashes.to_numpy()).nunique()
        crossing = int(straddle[straddle > 1].shape[0])
        share = in_groups / len(hashes)
        self._add(
            _f(
                "duplicates_across_split",
                "warning" if share > 0.01 else "info",
                f"{in_groups:,} rows belong to {n_groups:,} groups of exact copies; a naive random "
                f"split would place about {crossing:,} of those groups on both sides of train and test",
                "shipyard's splits keep exact copies on one side; deduplicate if the copies are "
                "artifacts",
                rows=in_groups,
                groups=n_groups,
                groups_straddling_random_split=crossing,
            )
        )


def _similar_names(col: str, target: str) -> bool:
    a, b = col.lower(), target.lower()
    return len(a) >= 3 and len(b) >= 3 and (a in b or b in a)


def _numeric(series: pd.Series, role: str = "datetime") -> pd.Series:
    if role == "numeric":
        return pd.to_numeric(series, errors="coerce").astype(float)
    if pd.api.types.is_datetime64_any_dtype(series) or not pd.api.types.is_numeric_dtype(series):
        return pd.Series(epoch_seconds(series), index=series.index, name=series.name)
    return series.astype(float)


def _model_frame(frame: pd.DataFrame, cols: list[str], roles: dict[str, str]) -> pd.DataFrame:
    out = {}
    for col in cols:
        s = frame[col]
        if roles[col] == "numeric":
            out[col] = _numeric(s, "numeric")
        elif roles[col] == "datetime":
            out[col] = _numeric(s)
        else:
            codes, _ = pd.factorize(s, use_na_sentinel=True)
            out[col] = pd.Categorical(np.where(codes < 0, np.nan, codes))
    return pd.DataFrame(out)


def _model_power(
    X: pd.DataFrame, target: Target, seed: int, requested: int | None = None
) -> tuple[float, float, str]:
    """(power, metric value, most important column) of LightGBM, on a held-out fold, with
    the threads the free cores allow (or the ``requested`` count)."""
    import lightgbm as lgb  # imported here: only this check needs it, and it is slow to import

    valid = target.folds == 0
    params: dict[str, Any] = {
        "verbose": -1,
        "seed": seed,
        "learning_rate": 0.15,
        "num_leaves": 15,
        "min_data_in_leaf": 20,
        "max_bin": 63,
        "deterministic": True,
    }
    if target.kind == "binary":
        params["objective"] = "binary"
    elif target.kind == "multiclass":
        params.update(objective="multiclass", num_class=target.n_classes)
    else:
        params["objective"] = "regression"
    names = list(X.columns)  # LightGBM refuses some characters in names: give it positions
    X = X.set_axis([f"c{i}" for i in range(X.shape[1])], axis=1)
    train = lgb.Dataset(X[~valid], target.y[~valid], free_raw_data=True)
    with LEDGER.threads("leakage audit", requested=requested) as threads:
        booster = lgb.train({**params, "num_threads": threads}, train, num_boost_round=50)
    pred = np.asarray(booster.predict(X[valid]))  # lightgbm types it as ndarray | list | sparse
    y = target.y[valid]
    if target.kind == "binary":
        value = auc(y, pred)
        power = max(0.0, 2 * value - 1)
    elif target.kind == "multiclass":
        value = float(
            np.mean([auc((y == k).astype(np.int8), pred[:, k]) for k in range(target.n_classes)])
        )
        power = max(0.0, 2 * value - 1)
    else:
        sst = float(((y - y.mean()) ** 2).sum())
        value = 1 - float(((y - pred) ** 2).sum()) / sst if sst > 0 else 0.0
        power = max(0.0, value)
    gains = booster.feature_importance(importance_type="gain")
    return power, value, names[int(np.argmax(gains))]


def _random_split_crossing(values: pd.Series, seed: int, test_share: float = 0.2) -> float:
    """Share of test rows whose entity also has rows in train, under a random row split."""
    codes, uniques = pd.factorize(values)
    rng = np.random.default_rng(seed)
    is_test = rng.random(len(values)) < test_share
    in_train = np.zeros(len(uniques) + 1, dtype=bool)
    in_train[codes[~is_test]] = True
    in_train[-1] = False  # code -1 (missing key) is never an entity
    test_codes = codes[is_test]
    test_codes = test_codes[test_codes >= 0]
    return float(in_train[test_codes].mean()) if len(test_codes) else 0.0


def leakage_findings(ds: Dataset) -> tuple[list[Finding], set[str]]:
    """Every leakage finding on a dataset, and the set of columns it flagged."""
    audit = LeakageAudit(ds)
    return audit.run(), audit.flagged
