"""Mergeable column summaries: what a window of live data looks like, in counts that add up.

A reference column (learned once, at ``train``, on the train split) fixes the bins; every
window of live data is then summarized over exactly those bins, so two windows' summaries
merge by addition (a day from its hours, a month from its days, Ray's partitions into one)
and the merged summary equals the summary of the union — the counts exactly, the sums to
floating-point rounding.

**Numbers.** :class:`NumericReference` keeps the reference's 1,000-quantile edges
``e_0 < … < e_{m-1}`` (its min and max included, ties collapsed, the contract's ten coarse
PSI edges added so that coarse bins are unions of fine ones). A :class:`NumericSummary`
counts values in ``2m + 1`` bins: each edge itself and each open interval between two::

    bin 0        x < e_0                  underflow (below the reference's minimum)
    bin 2k+1     x == e_k                 k = 0 … m-1 (ties and discrete values sit here)
    bin 2k+2     e_k < x < e_{k+1}        k = 0 … m-2
    bin 2m       x > e_{m-1}              overflow (above the reference's maximum)

so both the CDF and its left limit are known exactly at every edge, and data whose values
are all edges (discrete columns) is summarized without loss. It also keeps nulls (null,
non-finite or not a number), min, max, the sum and sum of squares, and the
sums of the underflow and overflow values (which make Wasserstein's tails exact). A column is
summarized with one ``np.sort`` and two ``np.searchsorted`` of the edges into the sorted
values: that is ~6× faster than searching each value among the edges (measured on 10^6
normal values and 1,001 edges: 11 ms against 71 ms), because a binary search of random
values misses the cache at every step while sorting streams.

**Categories.** :class:`CategoricalReference` keeps the reference's top categories (by
frequency, at most :data:`TOP_K`; booleans as ``"false"``/``"true"`` by the values
vocabulary); a :class:`CategoricalSummary` counts each of them, one ``other`` bin for
anything else (an unseen category when the reference's set was complete), and nulls.

>>> import numpy as np
>>> ref = NumericReference.learn("x", np.arange(100.0))
>>> a, b = summarize(np.array([1.5, 2.5, np.nan]), ref), summarize(np.array([500.0]), ref)
>>> both = merge(a, b)
>>> both.n, both.nulls, int(both.counts[-1]), both.max
(3, 1, 1, 500.0)
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from shipyard.data.contract import category_counts, category_key, drift_edges
from shipyard.data.values import parse_booleans, parse_numbers
from shipyard.errors import UsageError

N_FINE = 1000  # quantile levels of the fine edges: 0, 1/1000, …, 1
TOP_K = 200  # categories kept by name; the rest share the "other" bin
BOOLEAN_CATEGORIES = ("false", "true")


def _key(*parts: Any) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(
            np.ascontiguousarray(part).tobytes()
            if isinstance(part, np.ndarray)
            else repr(part).encode()
        )
    return digest.hexdigest()[:16]


def as_numbers(values: Any) -> tuple[np.ndarray, int]:
    """A column as float64 (NaN for null, non-finite or not a number; our own copy) and
    how many values were not numbers at all. NumPy and pandas numbers skip the parser."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "iuf":
        out = values.astype(np.float64)  # always a copy: it is sorted in place
        finite = np.isfinite(out)
        if not finite.all():
            out[~finite] = np.nan
        return out, 0
    numbers, invalid = parse_numbers(values)
    return numbers, int(invalid.sum())


@dataclass
class NumericSummary:
    """Counts of one numeric column over a reference's fine bins (see the module docstring)."""

    column: str
    key: str  # the reference bins' fingerprint: only summaries over the same bins merge
    counts: np.ndarray  # int64, 2m + 1 bins
    nulls: int = 0
    invalid: int = 0  # of the nulls, values that were not numbers at all
    min: float = float("nan")
    max: float = float("nan")
    total: float = 0.0
    total_sq: float = 0.0
    under_sum: float = 0.0
    over_sum: float = 0.0

    kind = "numeric"

    @property
    def n(self) -> int:
        """Non-null values summarized."""
        return int(self.counts.sum())

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "column": self.column,
            "key": self.key,
            "counts": self.counts.tolist(),
            "nulls": self.nulls,
            "invalid": self.invalid,
            "min": None if np.isnan(self.min) else self.min,
            "max": None if np.isnan(self.max) else self.max,
            "total": self.total,
            "total_sq": self.total_sq,
            "under_sum": self.under_sum,
            "over_sum": self.over_sum,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NumericSummary:
        return cls(
            column=data["column"],
            key=data["key"],
            counts=np.asarray(data["counts"], dtype=np.int64),
            nulls=int(data["nulls"]),
            invalid=int(data.get("invalid", 0)),
            min=float("nan") if data["min"] is None else float(data["min"]),
            max=float("nan") if data["max"] is None else float(data["max"]),
            total=float(data["total"]),
            total_sq=float(data["total_sq"]),
            under_sum=float(data["under_sum"]),
            over_sum=float(data["over_sum"]),
        )


@dataclass
class CategoricalSummary:
    """Counts of one categorical column over a reference's categories, plus ``other``."""

    column: str
    key: str
    counts: np.ndarray  # int64: one per reference category, then "other"
    nulls: int = 0

    kind = "categorical"

    @property
    def n(self) -> int:
        return int(self.counts.sum())

    @property
    def other(self) -> int:
        """Values outside the reference's kept categories."""
        return int(self.counts[-1])

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "column": self.column,
            "key": self.key,
            "counts": self.counts.tolist(),
            "nulls": self.nulls,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CategoricalSummary:
        return cls(
            column=data["column"],
            key=data["key"],
            counts=np.asarray(data["counts"], dtype=np.int64),
            nulls=int(data["nulls"]),
        )


Summary = NumericSummary | CategoricalSummary


def summary_from_dict(data: Mapping[str, Any]) -> Summary:
    """A stored summary back (either kind, by its ``kind`` field)."""
    if data.get("kind") == "categorical":
        return CategoricalSummary.from_dict(data)
    return NumericSummary.from_dict(data)


@dataclass
class NumericReference:
    """The fine bins of one numeric column and the reference's own summary over them."""

    name: str
    edges: np.ndarray  # float64, strictly increasing; edges[0] = min, edges[-1] = max
    coarse_edges: np.ndarray  # the contract's PSI edges, a subset of ``edges``
    scale: float  # what normalized Wasserstein divides by
    scale_name: str  # "iqr", "std" or "none"
    summary: NumericSummary

    kind = "numeric"

    @property
    def key(self) -> str:
        return self.summary.key

    @classmethod
    def learn(
        cls, name: str, values: Any, coarse_edges: Sequence[float] | None = None
    ) -> NumericReference:
        """Learn the fine edges (and the coarse ones, when the contract has none) from data.

        The wasserstein scale is the reference's interquartile range: robust to the long
        tails that make a standard deviation swing, and in the units a quantile sketch
        already knows. A column whose IQR is 0 (mostly one value) falls back to its
        standard deviation, and a constant column to 1 (``scale_name`` says which)."""
        numbers, _ = as_numbers(values)
        finite = numbers[~np.isnan(numbers)]
        if finite.size == 0:
            raise ValueError(f"column '{name}' has no numeric values to learn a reference from")
        if coarse_edges is None:
            coarse = drift_edges(finite)
        else:
            coarse = np.asarray(coarse_edges, dtype=np.float64)
        fine = np.quantile(finite, np.linspace(0, 1, N_FINE + 1), method="lower")  # data values
        edges = np.unique(np.concatenate([fine, coarse]))
        q1, q3 = np.quantile(finite, [0.25, 0.75])
        std = float(finite.std())
        if q3 > q1:
            scale, scale_name = float(q3 - q1), "iqr"
        elif std > 0:
            scale, scale_name = std, "std"
        else:
            scale, scale_name = 1.0, "none"
        key = _key(name, edges)
        placeholder = NumericSummary(name, key, np.zeros(2 * len(edges) + 1, np.int64))
        ref = cls(name, edges, coarse, scale, scale_name, placeholder)
        ref.summary = _summarize_numbers(values, ref)
        return ref

    def coarse_index(self) -> np.ndarray:
        """For each fine bin, the coarse (contract) bin that contains it."""
        lower = np.concatenate([[-np.inf], np.repeat(self.edges, 2)])  # each bin's lower end
        return np.searchsorted(self.coarse_edges, lower, side="right")

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "edges": self.edges.tolist(),
            "coarse_edges": self.coarse_edges.tolist(),
            "scale": self.scale,
            "scale_name": self.scale_name,
            "summary": self.summary.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NumericReference:
        return cls(
            name=data["name"],
            edges=np.asarray(data["edges"], dtype=np.float64),
            coarse_edges=np.asarray(data["coarse_edges"], dtype=np.float64),
            scale=float(data["scale"]),
            scale_name=data["scale_name"],
            summary=NumericSummary.from_dict(data["summary"]),
        )


@dataclass
class CategoricalReference:
    """The kept categories of one column and the reference's own counts of them."""

    name: str
    categories: list[str]
    boolean: bool  # read by the boolean vocabulary (any spelling of true/false)
    summary: CategoricalSummary

    kind = "categorical"

    @property
    def key(self) -> str:
        return self.summary.key

    @property
    def closed(self) -> bool:
        """Every reference value is a kept category, so ``other`` means unseen."""
        return self.summary.other == 0

    @classmethod
    def learn(cls, name: str, values: Any, *, boolean: bool = False) -> CategoricalReference:
        if boolean:
            categories = list(BOOLEAN_CATEGORIES)
        else:
            series = values if isinstance(values, pd.Series) else pd.Series(values, dtype=object)
            categories = [str(k) for k in category_counts(series).index[:TOP_K]]
        key = _key(name, boolean, categories)
        placeholder = CategoricalSummary(name, key, np.zeros(len(categories) + 1, np.int64))
        ref = cls(name, categories, boolean, placeholder)
        ref.summary = _summarize_categories(values, ref)
        return ref

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "categories": self.categories,
            "boolean": self.boolean,
            "summary": self.summary.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CategoricalReference:
        return cls(
            name=data["name"],
            categories=list(data["categories"]),
            boolean=bool(data["boolean"]),
            summary=CategoricalSummary.from_dict(data["summary"]),
        )


ColumnReference = NumericReference | CategoricalReference


def column_reference_from_dict(data: Mapping[str, Any]) -> ColumnReference:
    if data.get("kind") == "categorical":
        return CategoricalReference.from_dict(data)
    return NumericReference.from_dict(data)


def summarize(values: Any, reference: ColumnReference) -> Summary:
    """Summarize a window of one column over ``reference``'s bins.

    ``values`` is anything column-like: a NumPy array, a pandas Series, a pyarrow array,
    a list. Numbers go through the one value parser (numeric text is a number, a boolean
    or a word is not); categories are known by :func:`~shipyard.data.contract.category_key`.
    """
    if isinstance(reference, NumericReference):
        return _summarize_numbers(values, reference)
    return _summarize_categories(values, reference)


def _summarize_numbers(values: Any, ref: NumericReference) -> NumericSummary:
    numbers, invalid = as_numbers(values)
    numbers.sort()  # NaN sorts last
    n_valid = int(np.searchsorted(numbers, np.inf, side="right"))
    valid = numbers[:n_valid]
    edges = ref.edges
    cumulative = np.empty(2 * len(edges) + 2, np.int64)
    cumulative[0], cumulative[-1] = 0, n_valid
    cumulative[1:-1:2] = np.searchsorted(valid, edges, side="left")  # count(x < e_k)
    cumulative[2:-1:2] = np.searchsorted(valid, edges, side="right")  # count(x <= e_k)
    counts = np.diff(cumulative)
    n_under, n_over = int(counts[0]), int(counts[-1])
    return NumericSummary(
        column=ref.name,
        key=ref.key,
        counts=counts,
        nulls=len(numbers) - n_valid,
        invalid=invalid,
        min=float(valid[0]) if n_valid else float("nan"),
        max=float(valid[-1]) if n_valid else float("nan"),
        total=float(valid.sum()),
        total_sq=float(np.dot(valid, valid)),
        under_sum=float(valid[:n_under].sum()),
        over_sum=float(valid[n_valid - n_over :].sum()),
    )


def _summarize_categories(values: Any, ref: CategoricalReference) -> CategoricalSummary:
    k = len(ref.categories)
    counted = _arrow_counts(values, ref)
    if counted is not None:
        return counted
    if ref.boolean:
        codes_f, _ = parse_booleans(values)  # 1.0, 0.0, NaN for null or not a boolean
        index = np.where(np.isnan(codes_f), k + 1, np.nan_to_num(codes_f)).astype(np.intp)
    else:
        if hasattr(values, "to_pandas"):
            values = values.to_pandas()
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
        position = {c: i for i, c in enumerate(ref.categories)}
        lookup = np.array([position.get(category_key(u), k) for u in uniques] + [k + 1], np.intp)
        index = lookup[codes]  # the NA sentinel -1 picks the last entry: the null bin
    counts = np.bincount(index, minlength=k + 2).astype(np.int64)
    return CategoricalSummary(ref.name, ref.key, counts[: k + 1], nulls=int(counts[k + 1]))


def _arrow_counts(values: Any, ref: CategoricalReference) -> CategoricalSummary | None:
    """An Arrow column of text or booleans counted by Arrow's hash table (one Python step
    per distinct value, not per row); None for anything else."""
    import pyarrow as pa
    import pyarrow.compute as pc

    positions = category_positions(values, ref)
    if positions is not None:
        return positions_summary(positions, ref)
    k = len(ref.categories)
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not ref.boolean or not isinstance(values, pa.Array) or not pa.types.is_boolean(values.type):
        return None  # text booleans ("yes", "Y") go through the one value parser
    counts = np.zeros(k + 1, np.int64)
    tally = pc.value_counts(values)
    position = {c: i for i, c in enumerate(ref.categories)}
    for value, count in zip(
        tally.field("values").to_pylist(), tally.field("counts").to_pylist(), strict=True
    ):
        if value is not None:
            counts[position.get("true" if value else "false", k)] += count
    return CategoricalSummary(ref.name, ref.key, counts, nulls=int(values.null_count))


def positions_summary(positions: np.ndarray, ref: CategoricalReference) -> CategoricalSummary:
    """The summary of values at :func:`category_positions` ``positions``."""
    k = len(ref.categories)
    counts = np.bincount(positions, minlength=k + 2).astype(np.int64)
    return CategoricalSummary(ref.name, ref.key, counts[: k + 1], nulls=int(counts[k + 1]))


def category_positions(values: Any, ref: CategoricalReference) -> np.ndarray | None:
    """Per value of an Arrow text column, its position among ``ref``'s categories (``k``
    for any other value, ``k + 1`` for null), by Arrow's dictionary encoding: one step per
    distinct value, none per row (text is its own category key). None for anything else,
    and for boolean columns (their text goes through the one value parser)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if ref.boolean or not isinstance(values, pa.Array):
        return None
    kind = values.type.value_type if pa.types.is_dictionary(values.type) else values.type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        return None
    k = len(ref.categories)
    encoded = values if pa.types.is_dictionary(values.type) else values.dictionary_encode()
    known = pc.index_in(encoded.dictionary, value_set=pa.array(ref.categories, kind))
    lookup = np.append(known.fill_null(k).to_numpy(zero_copy_only=False), k + 1)
    codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False)
    return lookup[codes].astype(np.intp)  # the null code -1 picks the last entry: k + 1


def merge(a: Summary, b: Summary) -> Summary:
    """The summary of two windows together (exact for counts; sums to rounding)."""
    if a.kind != b.kind or a.key != b.key or a.column != b.column:
        raise UsageError(
            f"cannot merge the summary of column '{a.column}' ({a.kind}, bins {a.key}) with "
            f"that of '{b.column}' ({b.kind}, bins {b.key}): summaries merge only over the "
            "same reference's bins. Summarize both windows against the same bundle."
        )
    if isinstance(a, NumericSummary) and isinstance(b, NumericSummary):
        return NumericSummary(
            column=a.column,
            key=a.key,
            counts=a.counts + b.counts,
            nulls=a.nulls + b.nulls,
            invalid=a.invalid + b.invalid,
            min=float(np.fmin(a.min, b.min)),
            max=float(np.fmax(a.max, b.max)),
            total=a.total + b.total,
            total_sq=a.total_sq + b.total_sq,
            under_sum=a.under_sum + b.under_sum,
            over_sum=a.over_sum + b.over_sum,
        )
    assert isinstance(a, CategoricalSummary) and isinstance(b, CategoricalSummary)
    return CategoricalSummary(a.column, a.key, a.counts + b.counts, a.nulls + b.nulls)
