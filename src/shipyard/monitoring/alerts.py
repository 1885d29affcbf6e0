"""The rules: a window's summaries become rows of the results table, each with its level,
and the rows that fired become alerts (printed sorted by severity, sent to a webhook).

Every threshold comes from ``[monitoring]`` in ``shipyard.toml``
(:class:`~shipyard.spec.MonitoringSection`):

- **drift** (features against the train split, scores against the test split's output):
  :func:`~shipyard.monitoring.drift.compare` under a
  :class:`~shipyard.monitoring.drift.DriftPolicy` of ``alpha`` and the PSI, Wasserstein and
  Jensen–Shannon floors. The verdict sits on the row of the effect that crossed its floor,
  and its note says which held: the significance (with the test's p-value at the sketch's
  least favourable bound) and the effect size.
- **null rate**: alert when a feature's null rate rose by more than
  ``max_null_rate_increase`` over the reference's (warn past half of it);
- **range violations**: the share of non-null values outside the contract's [min, max],
  alert past ``max_range_violation_rate`` (warn past half);
- **unseen categories**: the share outside the reference's categories, judged the same way
  against ``max_unseen_rate`` when the reference's set was complete;
- **missing fields**: a feature no row of the window carried is an alert; a field the model
  does not know is a warning;
- **volume**: a window's rows over the median of the windows before it, alert below
  ``min_volume_ratio`` (the last window, when it is still open, against its elapsed share);
- **system**: latency p99 over ``max_latency_p99_ms`` (when set) and an error rate over
  ``max_error_rate`` are alerts;
- **staleness**: hours since the last request over ``max_staleness_hours`` (when set).
"""

from __future__ import annotations

import json
import math
import statistics
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

from shipyard.monitoring.drift import DriftPolicy, DriftResult
from shipyard.monitoring.table import result_row
from shipyard.spec import MonitoringSection

SEVERITY = {"alert": 0, "warn": 1, "ok": 2, "empty": 3}


def policy(rules: MonitoringSection) -> DriftPolicy:
    """The drift policy ``[monitoring]`` sets."""
    return DriftPolicy(
        alpha=rules.alpha,
        psi=(rules.psi_warn, rules.psi_alert),
        wasserstein=(rules.wasserstein_warn, rules.wasserstein_alert),
        jensen_shannon=(rules.js_warn, rules.js_alert),
    )


def _verdict(result: DriftResult, policy: DriftPolicy) -> str:
    held = "significant" if result.significant else "not significant"
    test = f"{result.test} p={result.pvalue:.3g}" if result.pvalue is not None else "no test"
    if result.effect is None:
        return f"{held} ({test}, alpha {policy.alpha:g}); no effect over its floor"
    floors = {"psi": policy.psi, "wasserstein": policy.wasserstein}
    floors["jensen_shannon"] = policy.jensen_shannon
    attribute = "wasserstein_lower" if result.effect == "wasserstein" else result.effect
    value = getattr(result, attribute)
    warn, alert = floors[result.effect]
    floor = f"the alert floor {alert:g}" if value >= alert else f"the warn floor {warn:g}"
    return f"{held} ({test}, alpha {policy.alpha:g}) and {result.effect} {value:.4g} over {floor}"


def drift_rows(result: DriftResult, section: str, policy: DriftPolicy) -> list[dict[str, Any]]:
    """The statistics of one column's drift; the verdict on the row of its effect."""
    if result.level == "empty":
        return [
            result_row(
                section, result.column, "psi", None, level="empty", note="; ".join(result.notes)
            )
        ]
    verdict = _verdict(result, policy)
    judged = result.effect or "psi"
    out: list[dict[str, Any]] = []

    def add(statistic: str, value: float | None, what: str, **more: Any) -> None:
        """A statistic's row; the one the verdict rests on carries the level and says why."""
        if statistic == judged:
            more.update(level=result.level, note=f"{verdict}. {result.method}")
        more.setdefault("note", what)
        out.append(result_row(section, result.column, statistic, value, **more))

    add("psi", result.psi, "population stability index")
    if result.kind == "numeric":
        p = result.pvalue
        add(
            "ks",
            result.ks,
            f"two-sample KS over the fine bins; p at the bound {p:.3g}",
            lower=result.ks,
            upper=result.ks_upper,
            pvalue=p,
        )
        add(
            "wasserstein",
            result.wasserstein,
            f"Wasserstein-1 / reference {result.scale_name}",
            lower=result.wasserstein_lower,
            upper=result.wasserstein_upper,
        )
    else:
        add("jensen_shannon", result.jensen_shannon, "Jensen-Shannon distance, base 2")
        add(
            "chi2",
            result.chi2,
            f"chi-square test of homogeneity, {result.dof} degrees of freedom",
            pvalue=result.pvalue,
        )
    return out


def _over(value: float, limit: float) -> str:
    """The level of a value against an alert limit (warn past half of it)."""
    if not math.isfinite(value):
        return "empty"
    if value > limit:
        return "alert"
    return "warn" if value > limit / 2 else "ok"


def null_rate_row(column: str, current: float, reference: float, rules: MonitoringSection):
    increase = current - reference
    return result_row(
        "quality",
        column,
        "null_rate",
        current,
        level=_over(increase, rules.max_null_rate_increase),
        note=(
            f"reference {reference:.4g}; rose by {increase:.4g} (alert over "
            f"{rules.max_null_rate_increase:g})"
        ),
    )


def range_row(column: str, outside: int, n: int, low: float, high: float, rules):
    rate = outside / n if n else float("nan")
    return result_row(
        "quality",
        column,
        "range_violation_rate",
        rate,
        level=_over(rate, rules.max_range_violation_rate),
        note=f"{outside:,} of {n:,} values outside the contract's [{low:g}, {high:g}]",
    )


def unseen_row(column: str, rate: float, exact: bool, rules: MonitoringSection):
    level = _over(rate, rules.max_unseen_rate) if exact else "ok"
    what = "categories training never saw" if exact else "values beyond the kept categories"
    return result_row("quality", column, "unseen_rate", rate, level=level, note=f"share of {what}")


def volume_rows(rows: int, earlier: Sequence[int], elapsed: float, rules: MonitoringSection):
    """The window's rows and their ratio to the median of the windows before it;
    ``elapsed`` is the share of the window that has passed (1 once it is closed)."""
    out = [result_row("volume", "", "rows", rows)]
    if not earlier:
        out.append(
            result_row("volume", "", "volume_ratio", None, level="empty", note="no earlier window")
        )
        return out
    median = float(statistics.median(earlier))
    expected = median * elapsed
    ratio = rows / expected if expected > 0 else float("nan")
    level = (
        "empty"
        if not math.isfinite(ratio)
        else ("alert" if ratio < rules.min_volume_ratio else "ok")
    )
    note = f"{rows:,} rows against a median of {median:,.0f} over {len(earlier)} earlier windows"
    if elapsed < 1:
        note += f", {elapsed:.0%} of this window elapsed"
    out.append(result_row("volume", "", "volume_ratio", ratio, level=level, note=note))
    return out


def system_rows(p50: float, p95: float, p99: float, errors: int, rows: int, rules, max_error_rate):
    limit = rules.max_latency_p99_ms
    p99_level = (
        "ok" if limit is None or not math.isfinite(p99) else ("alert" if p99 > limit else "ok")
    )
    error_rate = errors / rows if rows else float("nan")
    how = "from a histogram of 200 bins per decade (within 0.6%)"
    return [
        result_row("system", "", "rows", rows),
        result_row("system", "", "latency_p50", p50, note=f"ms, {how}"),
        result_row("system", "", "latency_p95", p95, note=f"ms, {how}"),
        result_row(
            "system",
            "",
            "latency_p99",
            p99,
            level=p99_level,
            note=f"ms, {how}" + (f"; alert over {limit:g} ms" if limit is not None else ""),
        ),
        result_row(
            "system",
            "",
            "error_rate",
            error_rate,
            level="ok" if not rows else ("alert" if error_rate > max_error_rate else "ok"),
            note=f"{errors:,} of {rows:,} answers failed; alert over {max_error_rate:g}",
        ),
    ]


def staleness_row(statistic: str, hours: float | None, limit: float | None, what: str):
    if hours is None:
        return result_row("quality", "", statistic, None, level="empty", note=f"no {what} yet")
    level = "alert" if limit is not None and hours > limit else "ok"
    note = f"hours since the last {what}" + (f"; alert over {limit:g}" if limit is not None else "")
    return result_row("quality", "", statistic, hours, level=level, note=note)


# --- alerts --------------------------------------------------------------------------------


def alerts(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The rows that fired (alert, then warn), each once, in window order within a level."""
    fired = [dict(r) for r in rows if r.get("level") in ("alert", "warn")]
    return sorted(
        fired,
        key=lambda r: (
            SEVERITY[r["level"]],
            str(r.get("window_start")),
            str(r.get("arm")),
            str(r.get("section")),
            str(r.get("column")),
        ),
    )


def send(url: str, document: Mapping[str, Any], timeout: float) -> str | None:
    """POST ``document`` as JSON to ``url``; a warning when it failed (down, slow, a
    refusal), None when the webhook answered 2xx. Never raises."""
    body = json.dumps(document, default=str).encode()
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            status = answer.status
    except urllib.error.HTTPError as exc:
        return f"webhook {url} refused the alerts: HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"webhook {url} could not be reached within {timeout:g} s: {reason}"
    if not 200 <= status < 300:
        return f"webhook {url} answered HTTP {status}"
    return None
