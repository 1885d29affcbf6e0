import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from shipyard.evaluation.plots import ROC_POINTS, close, roc_figure, roc_points


def test_the_drawn_roc_curve_is_exact_points_of_the_curve(flights_sample):
    """Departure delay (whole minutes: many ties) scoring an arrival delay on 40,000
    flights: every drawn point is a point of scikit-learn's ROC curve, ties move together,
    at most ROC_POINTS + 1 points, and their area is the AUC's to the third decimal."""
    rows = flights_sample.dropna(subset=["dep_delay"])
    y = rows["arr_delayed"].to_numpy().astype(int)
    score = rows["dep_delay"].to_numpy(dtype=float)
    fpr, tpr = roc_points(y, score)
    exact_fpr, exact_tpr, _ = roc_curve(y, score, drop_intermediate=False)
    on_curve = {(round(a, 12), round(b, 12)) for a, b in zip(exact_fpr, exact_tpr, strict=True)}
    assert all((round(a, 12), round(b, 12)) in on_curve for a, b in zip(fpr, tpr, strict=True))
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    distinct = len(np.unique(score))
    assert len(fpr) == min(distinct, ROC_POINTS) + 1
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert abs(np.trapezoid(tpr, fpr) - roc_auc_score(y, score)) < 1e-3
    # a continuous score: many more thresholds than drawn points
    noisy = score + np.random.default_rng(3).random(len(score))
    fpr, tpr = roc_points(y, noisy)
    assert len(fpr) == ROC_POINTS + 1
    assert abs(np.trapezoid(tpr, fpr) - roc_auc_score(y, noisy)) < 1e-3
    figure = roc_figure(y, noisy, "ROC")
    assert len(figure.axes[0].lines[0].get_xdata()) == ROC_POINTS + 1
    close(figure)
