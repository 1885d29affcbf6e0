"""The online experiment's statistics: champion against challenger, arm by arm.

Everything here is pure NumPy/SciPy on the outcomes of two arms, in arrival order:

- :func:`summarize_arm`: sample size, outcome rate or mean, variance.
- :func:`fixed_horizon`: the two-proportion z-test (pooled standard error for the test,
  unpooled for the interval) or Welch's t-test, the lift (treatment minus control) with its
  confidence interval, the relative lift (delta method), the power against a minimum
  detectable effect (MDE) and the sample size per arm that power calculation requires.
  Valid only when looked at once, at a horizon fixed in advance.
- :func:`always_valid`: the mixture sequential probability ratio test (mSPRT) of Johari,
  Pekelis and Walsh (2017, "Always valid inference") for a difference of means with a normal
  mixing distribution ``N(0, tau^2)`` and the variance estimated from the data; its p-value is
  the running minimum of ``1 / Lambda_n`` over the peeks. Its dual, the two-sided
  normal-mixture confidence sequence (Howard, Ramdas, McAuliffe and Sekhon 2021), is the set of
  differences the mixture does not reject, intersected over the peeks. Either may be watched
  after every observation without raising the false-positive rate above ``alpha``.
- :func:`sample_ratio`: the chi-square goodness-of-fit test of the arms' sizes against the
  configured split; below ``p = 0.001`` it blocks any verdict (the assignment is broken).
- :func:`analyze`: all of the above and the verdict, which acts on the always-valid test:
  ``launch`` (the mSPRT p-value is at or below ``alpha`` and the lift is a gain), ``stop:
  harm`` (significant and a loss, or the confidence sequence holds only losses), ``stop:
  futile`` (the sequence's largest gain is below the MDE: the lift cannot reach it), ``keep
  running`` (with the samples per arm the fixed-horizon power calculation still asks for), or
  ``blocked: sample ratio mismatch``. A gain is a positive lift, or a negative one when a lower
  outcome is the better one.
- :func:`logged_outcomes`: each arm's outcomes from the prediction log joined with the labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from scipy import stats

from shipyard.errors import DataError

if TYPE_CHECKING:
    from shipyard.workspace import Workspace

Kind = Literal["proportion", "mean"]

#: below this p-value the arms' sizes do not fit the configured split and no verdict is given
SRM_ALPHA = 0.001
#: peeks start once each arm holds this many outcomes (the variance estimate needs them)
MIN_PER_ARM = 50
#: the default power of the fixed-horizon sample-size calculation
POWER = 0.8


@dataclass(frozen=True)
class ArmSummary:
    """One arm: its name, sample size, outcome rate (or mean) and sample variance."""

    name: str
    n: int
    mean: float
    variance: float


@dataclass(frozen=True)
class FixedHorizon:
    """A test looked at once: statistic, p-value, lift with interval, power, required n."""

    test: str
    statistic: float
    p_value: float
    lift: float
    ci: tuple[float, float]
    relative_lift: float | None
    relative_ci: tuple[float, float] | None
    power: float
    required_per_arm: int


@dataclass(frozen=True)
class AlwaysValid:
    """The mSPRT p-value and the confidence sequence for the lift, valid at every peek."""

    p_value: float
    ci: tuple[float, float]
    mixing_sd: float
    peeks: int


@dataclass(frozen=True)
class SampleRatio:
    """The arms' sizes against the configured split."""

    counts: tuple[int, int]
    expected_share: tuple[float, float]
    p_value: float
    blocked: bool


@dataclass(frozen=True)
class Experiment:
    """The whole analysis of one experiment and its verdict."""

    kind: Kind
    alpha: float
    mde: float
    control: ArmSummary
    treatment: ArmSummary
    fixed: FixedHorizon
    sequential: AlwaysValid
    srm: SampleRatio
    verdict: str
    reason: str
    samples_needed_per_arm: int
    higher_is_better: bool = True
    acting_on: str = "always-valid (mSPRT p-value and its confidence sequence)"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary of every number."""
        return asdict(self)


def _outcomes(values: Sequence[float] | np.ndarray, name: str, kind: Kind) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim != 1 or array.size == 0:
        raise DataError(
            f"arm '{name}' has no outcomes; an experiment needs outcomes in both arms "
            "(wait for traffic and labels, or check the arm names)"
        )
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise DataError(
            f"arm '{name}' has {bad} missing or infinite outcomes of {array.size}; "
            "drop the rows without a label before the analysis"
        )
    if kind == "proportion":
        not_binary = (array != 0) & (array != 1)
        if not_binary.any():
            first = array[not_binary][0]
            raise DataError(
                f"a proportion test needs outcomes that are 0 or 1; arm '{name}' has "
                f"{int(not_binary.sum())} others (first {first:g}). Use the mean test "
                "(Welch t) for a numeric outcome"
            )
    return array


def summarize_arm(values: Sequence[float] | np.ndarray, name: str, kind: Kind) -> ArmSummary:
    """Sample size, mean (the rate for 0/1 outcomes) and variance of one arm.

    The variance is ``p (1 - p)`` for a proportion and the unbiased sample variance for a mean.
    """
    array = _outcomes(values, name, kind)
    mean = float(array.mean())
    if kind == "proportion":
        variance = mean * (1 - mean)
    else:
        variance = float(array.var(ddof=1)) if array.size > 1 else 0.0
    return ArmSummary(name=name, n=int(array.size), mean=mean, variance=variance)


def required_per_arm(
    variance_control: float, variance_treatment: float, mde: float, alpha: float, power: float
) -> int:
    """The sample size per arm a two-sided fixed-horizon test needs to detect ``mde`` with
    ``power``: ``(z_{1-alpha/2} + z_power)^2 (s0^2 + s1^2) / mde^2``.

    >>> required_per_arm(0.25, 0.25, 0.1, 0.05, 0.8)
    393
    """
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return int(np.ceil(z**2 * (variance_control + variance_treatment) / mde**2))


def fixed_horizon(
    control: ArmSummary,
    treatment: ArmSummary,
    kind: Kind,
    *,
    alpha: float = 0.05,
    mde: float,
    power: float = POWER,
) -> FixedHorizon:
    """The two-proportion z-test or Welch's t-test of ``treatment - control``.

    The interval of the lift uses the unpooled standard error (and Welch's degrees of freedom
    for a mean); the z-test's statistic uses the pooled one. The relative lift's interval is
    the delta method's. Power is that of the test at the current sizes against ``mde``; the
    required size per arm is for ``power`` at the arms' variances (a proportion's treatment
    variance taken at ``rate + mde``).
    """
    lift = treatment.mean - control.mean
    se = float(np.sqrt(control.variance / control.n + treatment.variance / treatment.n))
    if kind == "proportion":
        pooled = (control.mean * control.n + treatment.mean * treatment.n) / (
            control.n + treatment.n
        )
        se_test = float(np.sqrt(pooled * (1 - pooled) * (1 / control.n + 1 / treatment.n)))
        statistic = lift / se_test if se_test > 0 else 0.0
        p_value = float(2 * stats.norm.sf(abs(statistic)))
        quantile = float(stats.norm.ppf(1 - alpha / 2))
        test = "two-proportion z"
        shifted = min(max(control.mean + mde, 0.0), 1.0)
        variances = (control.variance, shifted * (1 - shifted))
    else:
        statistic = lift / se if se > 0 else 0.0
        a, b = control.variance / control.n, treatment.variance / treatment.n
        denominator = a**2 / max(control.n - 1, 1) + b**2 / max(treatment.n - 1, 1)
        df = (a + b) ** 2 / denominator if denominator > 0 else float(control.n + treatment.n - 2)
        p_value = float(2 * stats.t.sf(abs(statistic), df))
        quantile = float(stats.t.ppf(1 - alpha / 2, df))
        test = "Welch t"
        variances = (control.variance, treatment.variance)
    ci = (lift - quantile * se, lift + quantile * se)
    relative: float | None = None
    relative_ci: tuple[float, float] | None = None
    if control.mean != 0:
        relative = lift / control.mean
        ratio = treatment.mean / control.mean
        se_ratio = float(
            np.sqrt(
                treatment.variance / treatment.n / control.mean**2
                + ratio**2 * control.variance / control.n / control.mean**2
            )
        )
        relative_ci = (relative - quantile * se_ratio, relative + quantile * se_ratio)
    z_alpha = stats.norm.ppf(1 - alpha / 2)
    achieved = float(stats.norm.cdf(abs(mde) / se - z_alpha)) if se > 0 else 1.0
    return FixedHorizon(
        test=test,
        statistic=float(statistic),
        p_value=p_value,
        lift=float(lift),
        ci=(float(ci[0]), float(ci[1])),
        relative_lift=None if relative is None else float(relative),
        relative_ci=None if relative_ci is None else (float(relative_ci[0]), float(relative_ci[1])),
        power=achieved,
        required_per_arm=required_per_arm(variances[0], variances[1], mde, alpha, power),
    )


def mixture_ratio(
    difference: np.ndarray | float, variance: np.ndarray | float, mixing_sd: float
) -> np.ndarray:
    """The mixture likelihood ratio ``Lambda_n`` of ``H0: lift = 0`` (Johari et al. 2017).

    With ``d`` the observed difference of means, ``V`` its variance (``s0^2/n0 + s1^2/n1``) and
    the mixing distribution ``N(0, tau^2)``::

        Lambda_n = sqrt(V / (V + tau^2)) * exp(tau^2 d^2 / (2 V (V + tau^2)))

    ``1 / Lambda_n`` bounds the p-value at that peek (Ville's inequality).
    """
    d = np.asarray(difference, dtype=float)
    v = np.asarray(variance, dtype=float)
    tau2 = mixing_sd**2
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_ratio = 0.5 * np.log(v / (v + tau2)) + tau2 * d**2 / (2 * v * (v + tau2))
        return np.where(v > 0, np.exp(np.minimum(log_ratio, 700.0)), 1.0)


def msprt_p_values(difference: np.ndarray, variance: np.ndarray, mixing_sd: float) -> np.ndarray:
    """Always-valid p-values over peeks (the last axis): the running minimum of
    ``min(1, 1 / Lambda_n)``. Works on one experiment's peeks or a matrix of experiments."""
    ratio = mixture_ratio(difference, variance, mixing_sd)
    return np.minimum.accumulate(np.minimum(1.0, 1.0 / ratio), axis=-1)


def confidence_sequence(
    difference: np.ndarray, variance: np.ndarray, mixing_sd: float, alpha: float
) -> tuple[np.ndarray, np.ndarray]:
    """The two-sided normal-mixture confidence sequence for the lift over peeks (last axis),
    intersected over time: the lifts ``theta`` with ``Lambda_n(theta) < 1/alpha``::

        d ± sqrt(V (V + tau^2) / tau^2 * (2 log(1/alpha) + log((V + tau^2) / V)))

    It excludes zero exactly when the mSPRT p-value is at or below ``alpha``.
    """
    d = np.asarray(difference, dtype=float)
    v = np.asarray(variance, dtype=float)
    tau2 = mixing_sd**2
    with np.errstate(divide="ignore", invalid="ignore"):
        radius = np.sqrt(v * (v + tau2) / tau2 * (2 * np.log(1 / alpha) + np.log((v + tau2) / v)))
    radius = np.where(v > 0, radius, np.inf)
    lower = np.maximum.accumulate(d - radius, axis=-1)
    upper = np.minimum.accumulate(d + radius, axis=-1)
    return lower, upper


def _peeks(
    control: np.ndarray,
    treatment: np.ndarray,
    every: int,
    kind: Kind,
    arrivals: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Difference of means and its variance after every ``every`` observations of the two arms
    together, and at the end, once each arm holds :data:`MIN_PER_ARM`.

    ``arrivals`` are the outcomes' increasing positions in the shared order of arrival (the
    log's rows); without them each arm's outcomes are spread evenly over the experiment.
    """
    if arrivals is None:
        arrivals = (
            (np.arange(control.size) + 0.5) / control.size,
            (np.arange(treatment.size) + 0.5) / treatment.size,
        )
    merged = np.sort(np.concatenate(arrivals))
    points = np.unique(np.append(np.arange(every, merged.size + 1, every), merged.size))
    counts = [np.searchsorted(a, merged[points - 1], side="right") for a in arrivals]
    ready = (counts[0] >= min(MIN_PER_ARM, control.size)) & (
        counts[1] >= min(MIN_PER_ARM, treatment.size)
    )
    columns = []
    for values, n in zip((control, treatment), counts, strict=True):
        n = np.maximum(n[ready], 1)
        mean = np.cumsum(values)[n - 1] / n
        if kind == "proportion":
            var = mean * (1 - mean)
        else:
            squares = np.cumsum(values**2)[n - 1]
            var = np.maximum(squares - n * mean**2, 0.0) / np.maximum(n - 1, 1)
        columns.append((mean, var / n))
    (m0, v0), (m1, v1) = columns
    return m1 - m0, v0 + v1


def always_valid(
    control: np.ndarray,
    treatment: np.ndarray,
    kind: Kind,
    *,
    alpha: float = 0.05,
    mixing_sd: float,
    every: int = 100,
    arrivals: tuple[np.ndarray, np.ndarray] | None = None,
) -> AlwaysValid:
    """The mSPRT p-value of ``treatment - control`` (the running minimum over peeks every
    ``every`` observations, see :func:`_peeks`) and the confidence sequence at the last peek,
    which counts every outcome. The sequence is the one at the current time rather than the
    running intersection: with the variance estimated, the intersection can shrink past the
    estimate on heavy-tailed outcomes."""
    d, v = _peeks(control, treatment, every, kind, arrivals)
    p = msprt_p_values(d, v, mixing_sd)
    lower, upper = confidence_sequence(d[-1:], v[-1:], mixing_sd, alpha)
    return AlwaysValid(
        p_value=float(p[-1]),
        ci=(float(lower[-1]), float(upper[-1])),
        mixing_sd=float(mixing_sd),
        peeks=int(d.size),
    )


def sample_ratio(
    n_control: int, n_treatment: int, split: tuple[float, float] = (0.5, 0.5)
) -> SampleRatio:
    """Chi-square goodness of fit of the arms' sizes against the configured split; a p-value
    below :data:`SRM_ALPHA` blocks the verdict.

    >>> sample_ratio(600, 400).blocked
    True
    """
    total = float(sum(split))
    if total <= 0 or min(split) <= 0:
        raise DataError(f"the configured split must be two positive shares; got {split}")
    share = (split[0] / total, split[1] / total)
    n = n_control + n_treatment
    expected = [n * share[0], n * share[1]]
    p_value = float(stats.chisquare([n_control, n_treatment], expected).pvalue)
    return SampleRatio(
        counts=(int(n_control), int(n_treatment)),
        expected_share=share,
        p_value=p_value,
        blocked=p_value < SRM_ALPHA,
    )


def analyze(
    control: Sequence[float] | np.ndarray,
    treatment: Sequence[float] | np.ndarray,
    *,
    kind: Kind = "proportion",
    names: tuple[str, str] = ("champion", "canary"),
    alpha: float = 0.05,
    mde: float,
    split: tuple[float, float] = (0.5, 0.5),
    mixing_sd: float | None = None,
    every: int = 100,
    power: float = POWER,
    units: tuple[int, int] | None = None,
    higher_is_better: bool = True,
    arrivals: tuple[np.ndarray, np.ndarray] | None = None,
) -> Experiment:
    """The experiment's analysis and verdict; outcomes in arrival order, ``control`` first.

    Parameters
    ----------
    control, treatment
        Each arm's outcomes (0/1 for ``kind="proportion"``, numbers for ``"mean"``).
    mde
        The minimum detectable effect, an absolute lift (``0.02`` is two points of rate).
    split
        The configured traffic shares of the two arms, for the sample-ratio check.
    mixing_sd
        The standard deviation ``tau`` of the mSPRT's normal mixing distribution; the MDE
        by default (the effect size the test is tuned to find fastest).
    every
        Peek every this many observations of both arms together.
    arrivals
        Each outcome's position in the shared order of arrival, for the peeks (see
        :func:`_peeks`); evenly interleaved arms by default.
    units
        The arms' assignment units for the sample-ratio check (entities, when traffic is
        split by entity); the arms' sample sizes by default.
    higher_is_better
        Whether a higher outcome is the better one (a conversion); ``False`` for a delay or a
        cost, and then ``launch`` needs the lift below zero.
    """
    if mde <= 0:
        raise DataError(f"the minimum detectable effect must be positive; got {mde}")
    if not 0 < alpha < 1:
        raise DataError(f"alpha must be between 0 and 1; got {alpha}")
    a = _outcomes(control, names[0], kind)
    b = _outcomes(treatment, names[1], kind)
    first, second = summarize_arm(a, names[0], kind), summarize_arm(b, names[1], kind)
    if first.variance == 0 and second.variance == 0:
        raise DataError(
            f"every outcome is {first.mean:g} in arm '{names[0]}' and {second.mean:g} in arm "
            f"'{names[1]}'; with no variation there is nothing to test. "
            "Check that labels or outcomes have been ingested"
        )
    fixed = fixed_horizon(first, second, kind, alpha=alpha, mde=mde, power=power)
    sequential = always_valid(
        a, b, kind, alpha=alpha, mixing_sd=mixing_sd or mde, every=every, arrivals=arrivals
    )
    srm = sample_ratio(*(units or (first.n, second.n)), split)
    lower, upper = sequential.ci
    # the gain is the lift, or its negative when lower is better
    sign = 1.0 if higher_is_better else -1.0
    gain = sign * fixed.lift
    high = max(sign * lower, sign * upper)  # the largest gain the sequence holds
    significant = sequential.p_value <= alpha
    interval = (
        f"the always-valid p-value {sequential.p_value:.3g} and confidence sequence of the "
        f"lift [{lower:.4g}, {upper:.4g}]"
    )
    needed = max(0, fixed.required_per_arm - min(first.n, second.n))
    if srm.blocked:
        verdict = "blocked: sample ratio mismatch"
        reason = (
            f"the arms hold {srm.counts[0]:,} and {srm.counts[1]:,} units, not the configured "
            f"{srm.expected_share[0]:.0%}/{srm.expected_share[1]:.0%} split "
            f"(chi-square p = {srm.p_value:.2g} < {SRM_ALPHA}); fix the assignment first"
        )
    elif significant and gain > 0:
        verdict = "launch"
        reason = f"{interval}: the lift {fixed.lift:+.4g} is a gain"
    elif (significant and gain < 0) or high < 0:
        verdict = "stop: harm"
        reason = f"{interval}: the lift {fixed.lift:+.4g} is a loss"
    elif high < mde:
        verdict = "stop: futile"
        reason = (
            f"{interval} excludes a gain of the minimum detectable effect {mde:g}: "
            "the lift cannot reach it"
        )
    else:
        verdict = "keep running"
        reason = (
            f"{interval}: not significant, and a gain of the MDE {mde:g} is still possible; "
            f"about {needed:,} more observations per arm for {power:.0%} power"
        )
    return Experiment(
        kind=kind,
        alpha=alpha,
        mde=mde,
        control=first,
        treatment=second,
        fixed=fixed,
        sequential=sequential,
        srm=srm,
        verdict=verdict,
        reason=reason,
        samples_needed_per_arm=needed if verdict == "keep running" else 0,
        higher_is_better=higher_is_better,
    )


def logged_outcomes(
    workspace: Workspace,
    arms: tuple[str, str],
    metric: str = "outcome",
    versions: tuple[int, int] | None = None,
    since: datetime | None = None,
) -> tuple[list[np.ndarray], list[np.ndarray], list[int]]:
    """Each arm's outcomes from the prediction log joined with the labels by request id, in
    the order the service answered; their rows in that order (the arrivals :func:`analyze`
    peeks by); and each arm's assignment units for the sample-ratio check (distinct entity
    ids, as the canary routes by entity; requests where none is logged).

    ``metric`` is ``outcome`` (the label as a number: 1/0 for a binary target),
    ``squared_error`` (``(prediction - outcome)²``: how wrong each answer was; lower is
    better) or a numeric field of the log (``latency_ms``, ``prediction``, or a feature
    ``f.<name>``), which needs no labels. ``versions``: only each arm's rows answered by that
    model version (one canary's experiment, not every challenger the log has seen);
    ``since``: only rows answered at or after that time (when this canary began).

    Raises
    ------
    DataError
        When the log is missing, an arm is not in it, or the metric is not a numeric field.
    """
    from shipyard.monitoring.labels import read_labels
    from shipyard.serving.log import read_log

    if not workspace.logs.is_dir():
        raise DataError(
            f"no prediction log at '{workspace.logs}'; serve the models with the log on "
            "(`shipyard serve`) before an experiment can be read"
        )
    # the days before ``since`` are not read at all (the log is partitioned by date)
    log = read_log(workspace.logs, since=None if since is None else since.date()).to_pandas()
    labeled = metric in ("outcome", "squared_error")
    if not labeled and metric not in log.columns:
        raise DataError(
            f"--metric '{metric}' is neither 'outcome', 'squared_error' nor a field of the prediction log "
            f"(it has {', '.join(c for c in log.columns if c not in ('warnings', 'probabilities'))})"
        )
    seen = sorted(str(a) for a in log["arm"].dropna().unique())
    for arm in arms:
        if arm not in seen:
            raise DataError(
                f"arm '{arm}' has no logged predictions (the log holds {', '.join(seen) or 'none'}); "
                "an experiment needs two arms: deploy a canary (`shipyard promote VERSION "
                "--to canary`) or name the arms with --arms"
            )
    if labeled:
        labels = read_labels(workspace).to_pandas()[["request_id", "outcome"]]
        log = log.merge(labels.dropna(subset=["request_id"]), on="request_id", how="left")
    if metric == "squared_error":
        log["squared_error"] = (log["prediction"] - log["outcome"]) ** 2
    values = log[metric]
    if values.dtype.kind not in "fiub":
        raise DataError(f"--metric '{metric}' is not numeric (it holds {values.dtype})")
    if since is not None:
        log = log[log["time"] >= since]
    log = log.reset_index(drop=True)
    outcomes, arrivals, units = [], [], []
    for i, arm in enumerate(arms):
        rows = log[log["arm"] == arm]
        if versions is not None:
            rows = rows[rows["model_version"] == versions[i]]
        entities = rows["entity_id"].dropna()
        units.append(int(entities.nunique()) if len(entities) else len(rows))
        known = rows[metric].dropna()
        outcomes.append(known.to_numpy(dtype=float))
        arrivals.append(known.index.to_numpy(dtype=float))
    return outcomes, arrivals, units
