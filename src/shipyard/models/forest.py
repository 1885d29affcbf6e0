"""LightGBM's trees as lookup tables, scored by a compiled kernel: LightGBM's output, faster.

Walking a tree is a chain of unpredictable branches and dependent loads; ``Booster.predict``
adds a copy of every row into (index, value) pairs on top. A :class:`Forest` instead reads the
model text the bundle stores and turns it into tables in the spirit of QuickScorer (Lucchese
et al., SIGIR 2015), so that scoring a row is a few table lookups and bitwise ANDs:

- the leaves of each tree are numbered left to right, and a row's state in that tree is a bit
  per leaf (≤ 64 leaves). A split the row does not take to the left rules out the leaves of
  its left subtree; the row's exit leaf is the lowest bit still set after every such split;
- all splits on one feature depend on the row only through that feature's value, and only
  through which *class* it falls in: between two consecutive thresholds of the feature, zero,
  NaN (numeric features); a category code, or "none of them" (categorical features). For each
  class the table holds the AND of the masks of every split that value sends right, for every
  tree at once. A row is then one binary search (or code lookup) and one vector AND per feature,
  and one lowest-bit lookup per tree.

The output is LightGBM's exactly:

- the same decisions: ``value <= threshold`` for numbers, with LightGBM's missing-value rules
  (``None``: NaN counts as 0; ``Zero``: |value| ≤ 1e-35 goes the default way; ``NaN``: NaN
  goes the default way), and its categorical bitsets (NaN and negative codes go right);
- inputs within LightGBM's zero threshold (1e-35) read as 0, as LightGBM's row copy does;
- leaf values summed tree by tree in model order, then the same link (sigmoid for binary,
  softmax for multiclass, identity for regression).

A model it cannot reproduce exactly (linear trees, averaged output, another objective), trees
of more than 64 leaves, or tables beyond :data:`MAX_TABLE_BYTES` are refused with
``ValueError``; the caller then keeps LightGBM.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from shipyard.cores import available_cores

# LightGBM's kZeroThreshold is the float 1e-35f; as a double it reads 1.0000000180025095e-35
ZERO = float(np.float32(1e-35))
MAX_TABLE_BYTES = 256 << 20
MAX_LEAVES = 64
_CATEGORICAL, _DEFAULT_LEFT = 1, 2
_MISSING_NONE, _MISSING_ZERO = 0, 1
_UNUSED, _NUMERIC, _CODES = 0, 1, 2
_MIN_ROWS_PER_THREAD = 4096


def one_thread(rows: int) -> bool:
    """Whether ``rows`` are too few to share between threads (a served batch): scored on
    the caller's thread, with no thread grant to ask for."""
    return rows < 2 * _MIN_ROWS_PER_THREAD


_LINKS = {"identity": 0, "sigmoid": 1, "softmax": 2}

# lowest set bit of a 64-bit word: isolate it, multiply by a de Bruijn constant, look up
_DE_BRUIJN = 0x03F79D71B4CB0A89
_BIT_INDEX = np.zeros(64, dtype=np.int32)
_BIT_INDEX[[((1 << i) * _DE_BRUIJN % 2**64) >> 58 for i in range(64)]] = np.arange(64)


@dataclass(frozen=True)
class Forest:
    """A LightGBM model as per-feature tables; build with :meth:`from_text`.

    ``states`` is a flat ``(rows, n_trees)`` table of leaf bitmasks (``uint32``, or ``uint64``
    when a tree has more than 32 leaves). Row 0 is all ones. Feature ``k`` owns the rows from
    ``base[k]``: for a numeric feature, ``n + 1`` intervals between its ``n`` sorted thresholds
    ``cuts[cut_start[k]:][:n]``, then zero, then NaN; for a categorical one, codes ``0 … n-1``,
    then every other value.
    """

    n_features: int
    n_outputs: int
    link: str  # "sigmoid", "softmax" or "identity"
    sigmoid: float
    tree_output: np.ndarray  # per tree: the output (class) it adds to
    kind: np.ndarray  # per feature: unused, numeric or codes
    base: np.ndarray  # per feature: its first row in ``states``
    cut_start: np.ndarray  # per feature: offset of its thresholds in ``cuts``
    n_classes: np.ndarray  # per feature: thresholds (numeric) or codes (categorical)
    cuts: np.ndarray
    states: np.ndarray
    leaf_start: np.ndarray  # per tree: offset of its leaves (left to right) in leaf_value
    leaf_value: np.ndarray

    @classmethod
    def from_text(cls, text: str) -> Forest:
        """Parse LightGBM's model text format (``Booster.model_to_string``)."""
        head, _, body = text.partition("\nTree=")
        header = _fields(head)
        objective = header.get("objective", "").split()
        n_outputs = int(header.get("num_tree_per_iteration", "1"))
        if "average_output" in head.split():
            raise ValueError("averaged (random forest) output is not supported")
        link, sigmoid = _link(objective, n_outputs)
        trees = [_Tree.parse(block) for block in body.split("\nend of trees")[0].split("\nTree=")]
        widest = max(len(t.leaf_value) for t in trees)
        if widest > MAX_LEAVES:
            raise ValueError(f"trees of more than {MAX_LEAVES} leaves ({widest}) are not supported")
        splits = _Splits.of(trees, np.uint32 if widest <= 32 else np.uint64)
        n_features = int(header["max_feature_idx"]) + 1
        kind = np.zeros(n_features, np.int8)
        base = np.zeros(n_features, np.int64)
        cut_start = np.zeros(n_features, np.int64)
        n_classes = np.zeros(n_features, np.int64)
        blocks: list[np.ndarray] = [np.full((1, len(trees)), splits.full, splits.dtype)]
        cuts: list[np.ndarray] = []
        rows = 1
        for k in range(n_features):
            on = np.flatnonzero(splits.feature == k)
            if not len(on):
                continue
            if splits.is_cat[on].all():
                block, n = splits.code_table(on, len(trees))
                kind[k] = _CODES
            elif not splits.is_cat[on].any():
                block, thresholds = splits.numeric_table(on, len(trees))
                kind[k], n = _NUMERIC, len(thresholds)
                cut_start[k] = sum(len(c) for c in cuts)
                cuts.append(thresholds)
            else:
                raise ValueError(f"feature {k} has both numeric and categorical splits")
            base[k], n_classes[k] = rows, n
            blocks.append(block)
            rows += len(block)
            if rows * len(trees) * block.itemsize > MAX_TABLE_BYTES:
                raise ValueError(f"the model's tables would exceed {MAX_TABLE_BYTES >> 20} MB")
        return cls(
            n_features=n_features,
            n_outputs=n_outputs,
            link=link,
            sigmoid=sigmoid,
            tree_output=(np.arange(len(trees)) % n_outputs).astype(np.int32),
            kind=kind,
            base=base,
            cut_start=cut_start,
            n_classes=n_classes,
            cuts=np.concatenate(cuts) if cuts else np.zeros(0),
            states=np.concatenate(blocks).ravel(),
            leaf_start=np.cumsum([0] + [len(t.leaf_value) for t in trees[:-1]]).astype(np.int64),
            leaf_value=np.concatenate([t.leaf_value[t.leaf_order] for t in trees]),
        )

    def predict(self, X: np.ndarray, *, num_threads: int = 1) -> np.ndarray:
        """Scores of a 2-D float matrix: ``(n,)``, or ``(n, k)`` for multiclass.

        Rows are split across up to ``num_threads`` threads (the kernel releases the GIL).
        """
        X = np.ascontiguousarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"expected a matrix of {self.n_features} columns, got {X.shape}")
        out = np.zeros((len(X), self.n_outputs), dtype=np.float64)
        kernel = _kernel()
        args = (
            self.kind,
            self.base,
            self.cut_start,
            self.n_classes,
            self.cuts,
            self.states,
            self.leaf_start,
            self.leaf_value,
            self.tree_output,
            _BIT_INDEX,
            _LINKS[self.link],
            self.sigmoid,
        )

        def score(start: int, stop: int) -> None:
            workspace = np.empty(len(self.tree_output), dtype=self.states.dtype)
            kernel(X, start, stop, out, *args, workspace)

        threads = max(1, min(num_threads, len(X) // _MIN_ROWS_PER_THREAD))
        if threads > 1:  # the cores are looked up only when there are rows for two threads
            threads = min(threads, available_cores())
        if threads == 1:
            score(0, len(X))
        else:
            edges = np.linspace(0, len(X), threads + 1).astype(int)
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(score, edges[:-1], edges[1:]))
        return out if self.n_outputs > 1 else out[:, 0]


@dataclass(frozen=True)
class _Tree:
    """One tree of the model text, its leaves numbered left to right."""

    decision: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    cat_bounds: np.ndarray
    cat_bits: np.ndarray
    leaf_value: np.ndarray
    leaf_order: np.ndarray  # leaf indices, left to right
    left_leaves: np.ndarray  # per node: (first, count) of the leaves of its left subtree

    @classmethod
    def parse(cls, block: str) -> _Tree:
        f = _fields(block)
        if f.get("is_linear", "0") != "0":
            raise ValueError("linear trees are not supported")
        leaf_value = _floats(f["leaf_value"])
        if len(leaf_value) == 1:  # a tree that never split: one leaf, no nodes
            f.update(decision_type="", split_feature="", threshold="", left_child="")
            f.update(right_child="")
        left, right = _ints(f["left_child"]), _ints(f["right_child"])
        order: list[int] = []
        left_leaves = np.zeros((len(left), 2), np.int64)
        stack: list[int] = []
        node = 0 if len(left) else ~0  # in-order: a node's left subtree is done when popped
        while True:
            while node >= 0:
                left_leaves[node, 0] = len(order)
                stack.append(node)
                node = int(left[node])
            order.append(~node)
            if not stack:
                break
            parent = stack.pop()
            left_leaves[parent, 1] = len(order) - left_leaves[parent, 0]
            node = int(right[parent])
        has_cats = "cat_boundaries" in f
        return cls(
            decision=_ints(f["decision_type"]),
            feature=_ints(f["split_feature"]),
            threshold=_floats(f["threshold"]),
            cat_bounds=_ints(f["cat_boundaries"]) if has_cats else np.zeros(1, np.int64),
            cat_bits=_ints(f["cat_threshold"]) if has_cats else np.zeros(0, np.int64),
            leaf_value=leaf_value,
            leaf_order=np.asarray(order, np.int64),
            left_leaves=left_leaves,
        )


@dataclass(frozen=True)
class _Splits:
    """Every split of every tree, with where it sends zero and NaN, and its leaf mask."""

    dtype: type
    full: int
    tree: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    is_cat: np.ndarray
    zero_right: np.ndarray
    nan_right: np.ndarray
    mask: np.ndarray  # the tree's leaves minus the split's left subtree
    codes: list[np.ndarray | None]  # categorical: the codes that go left

    @classmethod
    def of(cls, trees: list[_Tree], dtype: type) -> _Splits:
        full = (1 << (8 * np.dtype(dtype).itemsize)) - 1
        tree: list[np.ndarray] = []
        masks: list[list[int]] = []
        codes: list[np.ndarray | None] = []
        for t, tr in enumerate(trees):
            tree.append(np.full(len(tr.feature), t))
            first, count = tr.left_leaves[:, 0].tolist(), tr.left_leaves[:, 1].tolist()
            masks.append([full & ~(((1 << c) - 1) << a) for a, c in zip(first, count, strict=True)])
            for node, decision in enumerate(tr.decision.tolist()):
                if not decision & _CATEGORICAL:
                    codes.append(None)
                    continue
                i = int(tr.threshold[node])
                words = tr.cat_bits[tr.cat_bounds[i] : tr.cat_bounds[i + 1]].astype("<u4")
                bits = np.unpackbits(words.view(np.uint8), bitorder="little")
                codes.append(np.flatnonzero(bits))
        decision = np.concatenate([t.decision for t in trees])
        threshold = np.concatenate([t.threshold for t in trees])
        missing = (decision >> 2) & 3
        default_right = (decision & _DEFAULT_LEFT) == 0
        as_zero = threshold < 0.0  # where a value read as 0 goes: 0 > threshold
        return cls(
            dtype=dtype,
            full=full,
            tree=np.concatenate(tree).astype(np.int64),
            feature=np.concatenate([t.feature for t in trees]),
            threshold=threshold,
            is_cat=(decision & _CATEGORICAL) != 0,
            # "None": NaN reads as 0; "Zero": NaN and 0 take the default; "NaN": NaN does
            zero_right=np.where(missing == _MISSING_ZERO, default_right, as_zero),
            nan_right=np.where(missing == _MISSING_NONE, as_zero, default_right),
            mask=np.asarray([m for ms in masks for m in ms], dtype=dtype),
            codes=codes,
        )

    def numeric_table(self, on: np.ndarray, n_trees: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows for the intervals between the feature's thresholds, then zero, then NaN."""
        thresholds = np.unique(self.threshold[on])
        n = len(thresholds)
        table: np.ndarray = np.full((n + 3, n_trees), self.full, self.dtype)
        # a split with threshold cuts[i] sends right every value in interval i + 1 and beyond
        first = np.searchsorted(thresholds, self.threshold[on]) + 1
        np.bitwise_and.at(table, (first, self.tree[on]), self.mask[on])
        table[: n + 1] = np.bitwise_and.accumulate(table[: n + 1], axis=0)
        for row, goes_right in ((n + 1, self.zero_right), (n + 2, self.nan_right)):
            right = on[goes_right[on]]
            np.bitwise_and.at(table, (np.full(len(right), row), self.tree[right]), self.mask[right])
        return table, thresholds

    def code_table(self, on: np.ndarray, n_trees: int) -> tuple[np.ndarray, int]:
        """Rows for codes 0 … n-1 (n covers every bitset), then every other value."""
        n = max(int(self.codes[i].max()) + 1 if len(self.codes[i]) else 0 for i in on)
        table: np.ndarray = np.full((n + 1, n_trees), self.full, self.dtype)
        for i in on:
            right = np.ones(n + 1, dtype=bool)
            right[self.codes[i]] = False
            table[right, self.tree[i]] &= self.mask[i]
        return table, n


def _fields(block: str) -> dict[str, str]:
    out = {}
    for line in block.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def _floats(value: str) -> np.ndarray:
    # Python's float() reads LightGBM's 17-digit numbers exactly
    return np.array([float(v) for v in value.split()], dtype=np.float64)


def _ints(value: str) -> np.ndarray:
    return np.array([int(v) for v in value.split()], dtype=np.int64)


def _link(objective: list[str], n_outputs: int) -> tuple[str, float]:
    name = objective[0] if objective else ""
    options = dict(o.split(":", 1) for o in objective[1:] if ":" in o)
    if name == "binary" and n_outputs == 1:
        return "sigmoid", float(options.get("sigmoid", "1"))
    if name == "multiclass" and n_outputs > 1:
        return "softmax", 1.0
    if name in ("regression", "regression_l2") and n_outputs == 1 and len(objective) == 1:
        return "identity", 1.0
    raise ValueError(f"objective {' '.join(objective)!r} is not supported")


_COMPILED = None


def _kernel():
    """The compiled kernel (compiled on first use, cached on disk by numba)."""
    global _COMPILED
    if _COMPILED is None:
        from numba import njit

        _COMPILED = njit(nogil=True, cache=True)(_score)
    return _COMPILED


def _score(
    X,
    start,
    stop,
    out,
    kind,
    base,
    cut_start,
    n_classes,
    cuts,
    states,
    leaf_start,
    leaf_value,
    tree_output,
    bit_index,
    link,
    sigmoid,
    alive,
):  # pragma: no cover - run compiled; its result is tested against LightGBM
    """Score rows ``start:stop``; ``alive`` (one word per tree) is the workspace."""
    n_trees = alive.shape[0]
    n_out = out.shape[1]
    for i in range(start, stop):
        for t in range(n_trees):
            alive[t] = states[t]
        for k in range(X.shape[1]):
            if kind[k] == _UNUSED:
                continue
            v = X[i, k]
            n = n_classes[k]
            if kind[k] == _NUMERIC:
                if v != v:
                    row = n + 2
                elif -ZERO <= v <= ZERO:
                    row = n + 1
                else:  # the number of thresholds below v
                    lo, hi, first = 0, n, cut_start[k]
                    while lo < hi:
                        mid = (lo + hi) >> 1
                        if cuts[first + mid] < v:
                            lo = mid + 1
                        else:
                            hi = mid
                    row = lo
            else:
                v = 0.0 if -ZERO <= v <= ZERO else v
                row = int(v) if 0.0 <= v < n else n  # False for NaN
            offset = (base[k] + row) * n_trees
            for t in range(n_trees):
                alive[t] &= states[offset + t]
        for t in range(n_trees):
            word = np.uint64(alive[t])
            lowest = word & (~word + np.uint64(1))
            leaf = bit_index[(lowest * np.uint64(_DE_BRUIJN)) >> np.uint64(58)]
            out[i, tree_output[t]] += leaf_value[leaf_start[t] + leaf]
        if link == 1:
            out[i, 0] = 1.0 / (1.0 + math.exp(-sigmoid * out[i, 0]))
        elif link == 2:
            top = out[i, 0]
            for c in range(1, n_out):
                top = max(top, out[i, c])
            total = 0.0
            for c in range(n_out):
                out[i, c] = math.exp(out[i, c] - top)
                total += out[i, c]
            for c in range(n_out):
                out[i, c] /= total
