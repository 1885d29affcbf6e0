"""LightGBM's trees as flat arrays, walked by a compiled kernel: LightGBM's output, faster.

``Booster.predict`` spends most of its time around the trees rather than in them: every row
is copied into (index, value) pairs and back into a buffer before a tree sees it. A
:class:`Forest` reads the model text the bundle stores into flat NumPy arrays and walks them in
a numba-compiled loop over the rows (split across threads), giving LightGBM's output exactly:

- the same decisions: ``value <= threshold`` for numbers, with LightGBM's missing-value rules
  (``None``: NaN counts as 0; ``Zero``: |value| ≤ 1e-35 goes the default way; ``NaN``: NaN
  goes the default way), and its categorical bitsets (NaN and negative codes go right);
- inputs within LightGBM's zero threshold (1e-35) read as 0, as LightGBM's row copy does;
- leaf values summed tree by tree in model order, then the same link (sigmoid for binary,
  softmax for multiclass, identity for regression).

A model it cannot reproduce exactly (linear trees, averaged output, another objective) is
refused with ``ValueError``; the caller then keeps LightGBM.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

# LightGBM's kZeroThreshold is the float 1e-35f; as a double it reads 1.0000000180025095e-35
ZERO = float(np.float32(1e-35))
_CATEGORICAL, _DEFAULT_LEFT = 1, 2
_MISSING_NONE, _MISSING_ZERO = 0, 1
_MIN_ROWS_PER_THREAD = 4096


@dataclass(frozen=True)
class Forest:
    """A LightGBM model as flat arrays; build with :meth:`from_text`.

    The internal nodes of all trees are numbered together, then the leaves: slot ``s`` below
    ``n_internal`` is a node whose children are ``child[2 * s]`` (left) and ``child[2 * s + 1]``
    (right); slot ``n_internal + k`` is leaf ``k``.
    """

    n_features: int
    n_outputs: int
    link: str  # "sigmoid", "softmax" or "identity"
    sigmoid: float
    roots: np.ndarray  # per tree: its root slot
    tree_output: np.ndarray  # per tree: the output (class) it adds to
    feature: np.ndarray  # per node
    threshold: np.ndarray  # per node
    is_cat: np.ndarray  # per node: a categorical split
    nan_right: np.ndarray  # per node: where NaN goes (1: right)
    zero_right: np.ndarray  # per node: where 0 goes (1: right)
    child: np.ndarray  # two per node
    cat_start: np.ndarray  # per node: offset of its bitset in ``bits``
    cat_words: np.ndarray  # per node: bitset length in 32-bit words
    bits: np.ndarray  # uint32
    leaf_value: np.ndarray  # per leaf

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
        trees = body.split("\nend of trees")[0].split("\nTree=")
        parts: dict[str, list[np.ndarray]] = {k: [] for k in _NODE_KEYS}
        roots, leaves, bits = [], [], []
        n_nodes = n_leaves = n_bits = 0
        for tree in trees:
            f = _fields(tree)
            if f.get("is_linear", "0") != "0":
                raise ValueError("linear trees are not supported")
            leaf_value = _floats(f["leaf_value"])
            if int(f["num_leaves"]) == 1:
                roots.append(~n_leaves)
            else:
                node = _node_arrays(f, n_nodes, n_leaves, n_bits)
                for key in _NODE_KEYS:
                    parts[key].append(node[key])
                bits.append(node["bits"])
                roots.append(n_nodes)
                n_nodes += len(node["feature"])
                n_bits += len(node["bits"])
            leaves.append(leaf_value)
            n_leaves += len(leaf_value)

        def joined(key: str, dtype) -> np.ndarray:
            return np.concatenate(parts[key]).astype(dtype) if parts[key] else np.zeros(0, dtype)

        def slot(c: np.ndarray) -> np.ndarray:  # a leaf ~k becomes slot n_nodes + k
            return np.where(c >= 0, c, n_nodes + ~c).astype(np.int32)

        return cls(
            n_features=int(header["max_feature_idx"]) + 1,
            n_outputs=n_outputs,
            link=link,
            sigmoid=sigmoid,
            roots=slot(np.asarray(roots, dtype=np.int64)),
            tree_output=(np.arange(len(trees)) % n_outputs).astype(np.int32),
            feature=joined("feature", np.int32),
            threshold=joined("threshold", np.float64),
            is_cat=joined("is_cat", np.uint8),
            nan_right=joined("nan_right", np.int32),
            zero_right=joined("zero_right", np.int32),
            child=slot(np.stack([joined("left", np.int64), joined("right", np.int64)], 1).ravel()),
            cat_start=joined("cat_start", np.int32),
            cat_words=joined("cat_words", np.int32),
            bits=np.concatenate([*bits, [0]]).astype(np.uint32),
            leaf_value=np.concatenate(leaves).astype(np.float64),
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
            self.roots,
            self.tree_output,
            self.feature,
            self.threshold,
            self.is_cat,
            self.nan_right,
            self.zero_right,
            self.child,
            self.cat_start,
            self.cat_words,
            self.bits,
            self.leaf_value,
            _LINKS[self.link],
            self.sigmoid,
        )
        threads = max(1, min(num_threads, len(X) // _MIN_ROWS_PER_THREAD, os.cpu_count() or 1))
        if threads == 1:
            kernel(X, 0, len(X), out, *args)
        else:
            edges = np.linspace(0, len(X), threads + 1).astype(int)
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(lambda a, b: kernel(X, a, b, out, *args), edges[:-1], edges[1:]))
        return out if self.n_outputs > 1 else out[:, 0]


_NODE_KEYS = (
    "feature",
    "threshold",
    "is_cat",
    "nan_right",
    "zero_right",
    "left",
    "right",
    "cat_start",
    "cat_words",
)
_LINKS = {"identity": 0, "sigmoid": 1, "softmax": 2}


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


def _node_arrays(f: dict[str, str], n_nodes: int, n_leaves: int, n_bits: int) -> dict:
    """One tree's nodes, renumbered into the forest's shared numbering (leaves stay ~k)."""
    decision = _ints(f["decision_type"])
    threshold = _floats(f["threshold"])
    left, right = _ints(f["left_child"]), _ints(f["right_child"])
    is_cat = (decision & _CATEGORICAL) != 0
    missing = (decision >> 2) & 3
    default_right = (decision & _DEFAULT_LEFT) == 0
    as_zero = threshold < 0.0  # where a value read as 0 goes: 0 > threshold
    cat_start = np.zeros(len(decision), dtype=np.int64)
    cat_words = np.zeros(len(decision), dtype=np.int64)
    tree_bits = np.zeros(0, dtype=np.int64)
    if is_cat.any():
        bounds = _ints(f["cat_boundaries"])
        tree_bits = _ints(f["cat_threshold"])
        index = threshold[is_cat].astype(np.int64)
        cat_start[is_cat] = n_bits + bounds[index]
        cat_words[is_cat] = bounds[index + 1] - bounds[index]

    def renumber(child: np.ndarray) -> np.ndarray:
        return np.where(child >= 0, child + n_nodes, ~(~child + n_leaves))

    return {
        "feature": _ints(f["split_feature"]),
        "threshold": threshold,
        "is_cat": is_cat,
        # "None": NaN reads as 0; "Zero": NaN and 0 take the default; "NaN": NaN does
        "nan_right": np.where(missing == _MISSING_NONE, as_zero, default_right),
        "zero_right": np.where(missing == _MISSING_ZERO, default_right, as_zero),
        "left": renumber(left),
        "right": renumber(right),
        "cat_start": cat_start,
        "cat_words": cat_words,
        "bits": tree_bits,
    }


_COMPILED = None
_BLOCK = 64  # rows walked through one tree before the next tree


def _kernel():
    """The compiled kernel (compiled on first use, cached on disk by numba)."""
    global _COMPILED
    if _COMPILED is None:
        from numba import njit

        _COMPILED = njit(nogil=True, cache=True)(_walk)
    return _COMPILED


def _walk(
    X,
    start,
    stop,
    out,
    roots,
    tree_output,
    feature,
    threshold,
    is_cat,
    nan_right,
    zero_right,
    child,
    cat_start,
    cat_words,
    bits,
    slot_value,
    link,
    sigmoid,
):  # pragma: no cover - run compiled; its result is tested against LightGBM
    """Walk rows ``start:stop`` through every tree, ``_BLOCK`` rows at a time (the block's
    rows and the tree's nodes stay in the CPU's nearest cache while they meet)."""
    n_out = out.shape[1]
    n_features = X.shape[1]
    n_internal = feature.shape[0]
    row = np.empty((_BLOCK, n_features), dtype=np.float64)
    for first in range(start, stop, _BLOCK):
        n = min(_BLOCK, stop - first)
        for r in range(n):
            for j in range(n_features):
                v = X[first + r, j]
                row[r, j] = 0.0 if -ZERO <= v <= ZERO else v
        for t in range(roots.shape[0]):
            root = roots[t]
            o = tree_output[t]
            for r in range(n):
                s = root
                while s < n_internal:
                    v = row[r, feature[s]]
                    if is_cat[s]:
                        go_right = 1
                        if 0.0 <= v < 2147483648.0:  # False for NaN
                            code = int(v)
                            word = code >> 5
                            if word < cat_words[s]:
                                go_right = 1 - ((bits[cat_start[s] + word] >> (code & 31)) & 1)
                    else:
                        go_right = 1 if v > threshold[s] else 0
                        go_right = zero_right[s] if v == 0.0 else go_right
                        go_right = nan_right[s] if v != v else go_right
                    s = child[2 * s + go_right]
                out[first + r, o] += slot_value[s - n_internal]
        for r in range(n):
            i = first + r
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
