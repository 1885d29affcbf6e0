"""Plots for the tracked run: reliability diagram, ROC curve, residuals (matplotlib, Agg)."""

from __future__ import annotations

from typing import Any

import numpy as np


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(5, 4), dpi=100)


def reliability_figure(curve: list[dict[str, float]], title: str) -> Any:
    fig, ax = _figure()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect")
    ax.plot(
        [b["predicted"] for b in curve], [b["observed"] for b in curve], marker="o", label="model"
    )
    ax.set(
        xlabel="predicted probability",
        ylabel="observed frequency",
        title=title,
        xlim=(0, 1),
        ylim=(0, 1),
    )
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig


def roc_figure(y: np.ndarray, p: np.ndarray, title: str) -> Any:
    order = np.argsort(-p, kind="mergesort")
    ys = y[order]
    tpr = np.r_[0, np.cumsum(ys) / max(ys.sum(), 1)]
    fpr = np.r_[0, np.cumsum(1 - ys) / max((1 - ys).sum(), 1)]
    fig, ax = _figure()
    ax.plot(fpr, tpr)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title)
    fig.tight_layout()
    return fig


def residuals_figure(y: np.ndarray, pred: np.ndarray, title: str) -> Any:
    fig, ax = _figure()
    ax.scatter(pred, y - pred, s=4, alpha=0.4)
    ax.axhline(0, color="grey", linestyle="--")
    ax.set(xlabel="predicted", ylabel="residual (actual − predicted)", title=title)
    fig.tight_layout()
    return fig


def close(fig: Any) -> None:
    import matplotlib.pyplot as plt

    plt.close(fig)
