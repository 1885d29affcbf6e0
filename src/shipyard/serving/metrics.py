"""Service metrics in Prometheus' text format: counters and latency histograms by label.

Small on purpose: updating a counter is one dict operation under a lock, so the request path
stays in microseconds; ``render()`` writes the exposition format Prometheus scrapes.

>>> m = Metrics()
>>> m.count("shipyard_requests_total", endpoint="predict", arm="champion", version="1")
>>> m.observe("shipyard_latency_seconds", 0.0004, arm="champion", version="1")
>>> "shipyard_requests_total{arm=\\"champion\\",endpoint=\\"predict\\",version=\\"1\\"} 1" in m.render()
True
"""

from __future__ import annotations

import bisect
import threading

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
HELP = {
    "shipyard_requests_total": "Records answered, by endpoint, arm and model version.",
    "shipyard_errors_total": "Requests refused or failed, by endpoint and kind.",
    "shipyard_warnings_total": "Served records with a contract warning, by field and reason.",
    "shipyard_latency_seconds": "Time to answer one request, by arm and model version.",
    "shipyard_shadow_total": "Shadow scorings, by outcome (ok, error, dropped).",
    "shipyard_guardrail_breaches_total": "Canary guardrail breaches that stopped a challenger.",
    "shipyard_log_dropped_total": "Prediction-log records dropped because its queue was full.",
}


def _labels(labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, str(v)) for k, v in labels.items()))


def _text(labels: tuple[tuple[str, str], ...], extra: str = "") -> str:
    parts = [f'{k}="{v}"' for k, v in labels]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


class Metrics:
    """Counters and histograms keyed by metric name and labels."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, dict[tuple, float]] = {}
        self._histograms: dict[str, dict[tuple, list[float]]] = {}
        self.gauges: dict[str, float] = {}

    def count(self, name: str, value: float = 1.0, **labels: str) -> None:
        key = _labels(labels)
        with self._lock:
            series = self._counters.setdefault(name, {})
            series[key] = series.get(key, 0.0) + value

    def observe(self, name: str, seconds: float, **labels: str) -> None:
        key = _labels(labels)
        slot = bisect.bisect_left(BUCKETS, seconds)
        with self._lock:
            series = self._histograms.setdefault(name, {})
            counts = series.get(key)
            if counts is None:
                counts = series[key] = [0.0] * (len(BUCKETS) + 2)  # buckets, +Inf, sum
            counts[slot] += 1
            counts[-1] += seconds

    def value(self, name: str, **labels: str) -> float:
        """A counter's value (0 when never counted); for tests and the admin state."""
        return self._counters.get(name, {}).get(_labels(labels), 0.0)

    def render(self) -> str:
        lines: list[str] = []
        with self._lock:
            counters = {n: dict(s) for n, s in self._counters.items()}
            histograms = {
                n: {k: list(v) for k, v in s.items()} for n, s in self._histograms.items()
            }
        for name, series in sorted(counters.items()):
            lines += [f"# HELP {name} {HELP.get(name, name)}", f"# TYPE {name} counter"]
            lines += [f"{name}{_text(k)} {v:g}" for k, v in sorted(series.items())]
        for name, series in sorted(histograms.items()):
            lines += [f"# HELP {name} {HELP.get(name, name)}", f"# TYPE {name} histogram"]
            for key, counts in sorted(series.items()):
                running = 0.0
                for bound, n in zip((*BUCKETS, "+Inf"), counts[:-1], strict=True):
                    running += n
                    le = 'le="' + str(bound) + '"'
                    lines.append(f"{name}_bucket{_text(key, le)} {running:g}")
                lines.append(f"{name}_sum{_text(key)} {counts[-1]:.6f}")
                lines.append(f"{name}_count{_text(key)} {running:g}")
        for name, value in sorted(self.gauges.items()):
            lines += [f"# TYPE {name} gauge", f"{name} {value:g}"]
        return "\n".join(lines) + "\n"
