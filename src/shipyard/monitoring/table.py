"""Rows of the shared results table, as the monitoring functions build them.

A row holds ``section``, ``column``, ``statistic``, ``value``, ``lower``, ``upper``,
``pvalue``, ``level`` and ``note``; the monitor adds the :data:`WINDOW` keys
(``window_start``, ``window_end``, ``model_version``, ``arm``). The input checks here are the
ones every producer of rows from arrays shares.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from shipyard.errors import DataError

WINDOW = ("window_start", "window_end", "model_version", "arm")


def result_row(
    section: str,
    column: str,
    statistic: str,
    value: float | None,
    *,
    lower: float | None = None,
    upper: float | None = None,
    pvalue: float | None = None,
    level: str = "ok",
    note: str = "",
) -> dict[str, Any]:
    """One row; a ``value`` of None is NaN (not computable), and ``lower``, ``upper`` and
    ``pvalue`` stay None where there is none."""
    return {
        "section": section,
        "column": column,
        "statistic": statistic,
        "value": float("nan") if value is None else float(value),
        "lower": None if lower is None else float(lower),
        "upper": None if upper is None else float(upper),
        "pvalue": None if pvalue is None else float(pvalue),
        "level": level,
        "note": note,
    }


def probabilities(p: Any, name: str) -> np.ndarray:
    """``p`` as float64, refused (naming ``name`` and the first bad row) unless every value
    is a probability in [0, 1]."""
    out = np.asarray(p, dtype=float)
    bad = ~np.isfinite(out) | (out < 0) | (out > 1)
    if bad.any():
        first = int(np.flatnonzero(bad.reshape(len(out), -1).any(axis=1))[0])
        raise DataError(
            f"'{name}' must hold probabilities in [0, 1]; {int(bad.sum())} of {out.size} "
            f"values are not (first at row {first}: {out[first]!r}). Pass the model's "
            "probabilities as served, not labels or logits."
        )
    return out


def check_length(n: int, **arrays: Any) -> None:
    """Refuse any of ``arrays`` (by its name) that is not one value per prediction."""
    for name, values in arrays.items():
        if values is not None and len(values) != n:
            raise DataError(
                f"'{name}' has {len(values)} rows but the predictions have {n}; pass one "
                "value per prediction of the window, in the same order."
            )
