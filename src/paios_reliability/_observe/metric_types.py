"""The metric types: ``Counter``, ``Gauge``, ``Histogram``, their samples and checks.

Each metric keeps its series per label set, bounded by ``max_series``;
names, label names and label values are checked when given, so a metric
nobody can attribute is refused at once.
"""

from __future__ import annotations

import bisect
import math
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from .._core.exceptions import ConfigError

if TYPE_CHECKING:
    pass


MetricType = Literal["counter", "gauge", "histogram"]

#: Default histogram buckets (seconds): from 1 ms to 60 s.
DEFAULT_BUCKETS: tuple[float, ...] = (
    0.001,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)

_METRIC_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
_LABEL_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
_FORBIDDEN_VALUES = frozenset({"", "unknown"})
#: The label value a series gets once a metric has ``max_series`` label sets.
OVERFLOW = "overflow"
#: The ``subject`` label of bridged events that have no subject.

__all__ = ["Counter", "Gauge", "Histogram", "MetricFamily", "MetricSample"]


def _is_str(value: object) -> bool:
    return isinstance(value, str)


def _usage(message: str) -> ConfigError:
    return ConfigError(message, code="USAGE_ERROR")


def _check_name(name: str, kind: MetricType) -> None:
    if not _is_str(name) or not _METRIC_NAME.match(name):
        raise _usage(
            f"metric name {name!r} is invalid: use lower snake case "
            "(paios_reliability_<primitive>_<what>[_<unit>][_total])"
        )
    if kind == "counter" and not name.endswith("_total"):
        raise _usage(f"counter name {name!r} must end in '_total'")
    if kind != "counter" and name.endswith("_total"):
        raise _usage(f"only counters end in '_total'; {kind} name is {name!r}")


def _check_labelnames(labelnames: Iterable[str], kind: MetricType) -> tuple[str, ...]:
    names = tuple(labelnames)
    for label in names:
        if not _is_str(label) or not _LABEL_NAME.match(label):
            raise _usage(f"label name {label!r} is invalid: use lower snake case")
        if label.startswith("__"):
            raise _usage(f"label name {label!r} is reserved (starts with '__')")
        if kind == "histogram" and label == "le":
            raise _usage("label name 'le' is reserved for histogram buckets")
    if len(set(names)) != len(names):
        raise _usage(f"duplicate label names in {names!r}")
    return names


def _check_value(metric: str, label: str, value: object) -> str:
    if not isinstance(value, str):
        raise _usage(
            f"label {label}={value!r} of {metric}: label values must be strings"
        )
    if value.strip().lower() in _FORBIDDEN_VALUES:
        raise _usage(
            f"label {label}={value!r} of {metric}: empty or 'unknown' label values "
            "are rejected; name the thing (e.g. the breaker or tool name)"
        )
    return value


@dataclass(frozen=True, slots=True)
class MetricSample:
    """One series of a metric at collection time.

    Attributes:
        labels: Label name → value.
        value: Counter/gauge value; for a histogram, the sum of observations.
        count: Histogram only: number of observations.
        buckets: Histogram only: ``(upper_bound, cumulative_count)`` pairs,
            ending with ``(inf, count)``.
    """

    labels: Mapping[str, str]
    value: float
    count: int = 0
    buckets: tuple[tuple[float, int], ...] = ()


@dataclass(frozen=True, slots=True)
class MetricFamily:
    """A metric and all its series, as :meth:`MetricsRegistry.collect` returns it."""

    name: str
    type: MetricType
    description: str
    labelnames: tuple[str, ...]
    samples: tuple[MetricSample, ...]


class _Metric:
    """Shared machinery: label validation, series table, cardinality cap."""

    kind: MetricType

    __slots__ = (
        "_lock",
        "_max_series",
        "_overflowed",
        "_series",
        "description",
        "labelnames",
        "name",
    )

    def __init__(
        self, name: str, description: str, labelnames: tuple[str, ...], max_series: int
    ) -> None:
        self.name = name
        self.description = description
        self.labelnames = labelnames
        self._max_series = max_series
        # Re-entrant: the event bridge may count an event a signal handler
        # emits while this thread is inside an update.
        self._lock = threading.RLock()
        self._series: dict[tuple[str, ...], Any] = {}
        self._overflowed = False

    def _key(self, labels: Mapping[str, object]) -> tuple[str, ...]:
        names = self.labelnames
        key: tuple[Any, ...] | None
        try:
            key = tuple([labels[n] for n in names])
        except KeyError:
            key = None
        if key is not None and len(labels) == len(names) and key in self._series:
            return key
        return self._new_key(labels)

    def _new_key(self, labels: Mapping[str, object]) -> tuple[str, ...]:
        if set(labels) != set(self.labelnames):
            raise _usage(
                f"{self.name} takes labels {list(self.labelnames)}, got {sorted(labels)}"
            )
        key = tuple(_check_value(self.name, n, labels[n]) for n in self.labelnames)
        first_overflow = False
        with self._lock:
            if key not in self._series:
                if len(self._series) >= self._max_series:
                    # Unbounded label sets (a label fed from user input) would
                    # grow memory without limit; fold the excess into one series.
                    key = tuple(OVERFLOW for _ in self.labelnames)
                    first_overflow = not self._overflowed
                    self._overflowed = True
                if key not in self._series:
                    self._series[key] = self._initial()
        if first_overflow:  # outside the lock: the event may update metrics too
            _warn_overflow(self.name, self._max_series)
        return key

    def _initial(self) -> Any:
        return 0.0

    def _label_dict(self, key: tuple[str, ...]) -> dict[str, str]:
        return dict(zip(self.labelnames, key, strict=True))

    def clear(self) -> None:
        """Forget every series (tests; a restarted component)."""
        with self._lock:
            self._series.clear()
            self._overflowed = False


def _warn_overflow(name: str, limit: int) -> None:
    from .._core.events import emit

    emit(
        "metrics",
        "series_overflow",
        level="warning",
        subject=name,
        max_series=limit,
    )


class _Scalar(_Metric):
    """A metric whose series each hold one number (counters and gauges)."""

    __slots__ = ()

    def value(self, **labels: str) -> float:
        """The current value of one series (0 if it was never updated or set)."""
        key = tuple(labels.get(n, "") for n in self.labelnames)
        return float(self._series.get(key, 0.0))

    def collect(self) -> MetricFamily:
        with self._lock:
            items = list(self._series.items())
        return MetricFamily(
            self.name,
            self.kind,
            self.description,
            self.labelnames,
            tuple(MetricSample(self._label_dict(k), float(v)) for k, v in items),
        )


class Counter(_Scalar):
    """A value that only goes up (requests, retries, breaker trips).

    Use :meth:`inc`, or bind labels once with :meth:`labels` on hot paths.
    Thread-safe.
    """

    kind: MetricType = "counter"
    __slots__ = ()

    def inc(self, amount: float = 1.0, /, **labels: str) -> None:
        """Add ``amount`` (>= 0) to the series named by ``labels``.

        Raises:
            ConfigError: Negative amount, wrong label names, or an empty or
                ``"unknown"`` label value.
        """
        if not amount >= 0:
            raise _usage(f"{self.name}: a counter cannot go down (inc({amount!r}))")
        key = self._key(labels)
        with self._lock:
            self._series[key] += amount

    def labels(self, **labels: str) -> _BoundCounter:
        """The series for ``labels``, validated once, for repeated updates."""
        return _BoundCounter(self, self._key(labels))


class _BoundCounter:
    __slots__ = ("_key", "_metric")

    def __init__(self, metric: Counter, key: tuple[str, ...]) -> None:
        self._metric = metric
        self._key = key

    def inc(self, amount: float = 1.0, /) -> None:
        if not amount >= 0:
            raise _usage(
                f"{self._metric.name}: a counter cannot go down (inc({amount!r}))"
            )
        metric = self._metric
        with metric._lock:
            metric._series[self._key] += amount


class Gauge(_Scalar):
    """A value that goes up and down (queue depth, RSS, breaker state).

    Thread-safe.
    """

    kind: MetricType = "gauge"
    __slots__ = ()

    def set(self, value: float, /, **labels: str) -> None:
        """Set the series named by ``labels`` to ``value``."""
        key = self._key(labels)
        with self._lock:
            self._series[key] = float(value)

    def inc(self, amount: float = 1.0, /, **labels: str) -> None:
        """Add ``amount`` (may be negative)."""
        key = self._key(labels)
        with self._lock:
            self._series[key] += amount

    def dec(self, amount: float = 1.0, /, **labels: str) -> None:
        """Subtract ``amount``."""
        self.inc(-amount, **labels)


class _HistogramSeries:
    __slots__ = ("count", "counts", "sum")

    def __init__(self, nbuckets: int) -> None:
        self.counts = [0] * nbuckets
        self.count = 0
        self.sum = 0.0


class Histogram(_Metric):
    """Distribution of observed values (durations, sizes) in fixed buckets.

    Thread-safe. Buckets are upper bounds; ``+Inf`` is implied.
    """

    kind: MetricType = "histogram"
    __slots__ = ("_mirrors", "buckets")

    def __init__(
        self,
        name: str,
        description: str,
        labelnames: tuple[str, ...],
        max_series: int,
        buckets: Sequence[float],
    ) -> None:
        super().__init__(name, description, labelnames, max_series)
        bounds = sorted(float(b) for b in buckets if not math.isinf(b))
        if (
            not bounds
            or len(set(bounds)) != len(bounds)
            or any(map(math.isnan, bounds))
        ):
            raise _usage(
                f"{name}: buckets must be distinct numbers, got {list(buckets)!r}"
            )
        self.buckets: tuple[float, ...] = tuple(bounds)
        # Exporters that need every observation (an OpenTelemetry histogram
        # has no observable form, so it cannot be read at collection time).
        self._mirrors: tuple[Callable[[float, dict[str, str]], None], ...] = ()

    def _initial(self) -> Any:
        return _HistogramSeries(len(self.buckets))

    def observe(self, value: float, /, **labels: str) -> None:
        """Record one observation in the series named by ``labels``."""
        if math.isnan(value):
            raise _usage(f"{self.name}: cannot observe NaN")
        key = self._key(labels)
        index = bisect.bisect_left(self.buckets, value)
        with self._lock:
            series = self._series[key]
            if index < len(series.counts):
                series.counts[index] += 1
            series.count += 1
            series.sum += value
        for mirror in self._mirrors:
            mirror(value, self._label_dict(key))

    def count(self, **labels: str) -> int:
        """Observations recorded in one series."""
        key = tuple(labels.get(n, "") for n in self.labelnames)
        series = self._series.get(key)
        return 0 if series is None else int(series.count)

    def total(self, **labels: str) -> float:
        """Sum of the observations recorded in one series."""
        key = tuple(labels.get(n, "") for n in self.labelnames)
        series = self._series.get(key)
        return 0.0 if series is None else float(series.sum)

    def collect(self) -> MetricFamily:
        samples = []
        with self._lock:
            items = [
                (k, list(s.counts), s.count, s.sum) for k, s in self._series.items()
            ]
        for key, counts, total_count, total in items:
            cumulative = 0
            pairs = []
            for bound, n in zip(self.buckets, counts, strict=True):
                cumulative += n
                pairs.append((bound, cumulative))
            pairs.append((math.inf, total_count))
            samples.append(
                MetricSample(
                    self._label_dict(key), float(total), total_count, tuple(pairs)
                )
            )
        return MetricFamily(
            self.name, self.kind, self.description, self.labelnames, tuple(samples)
        )


_Any = Counter | Gauge | Histogram
