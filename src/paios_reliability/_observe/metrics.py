"""Metrics: counters, gauges and histograms behind one small interface.

The registry is in memory, cheap to update on hot paths (one dict lookup and a
lock per update; label values are validated once, when a label set is first
seen) and readable in tests. Exporters pull from it at scrape time:
:func:`~.exporters.export_prometheus` registers a ``prometheus_client`` collector and
:func:`~.exporters.export_opentelemetry` registers observable instruments on an
OpenTelemetry meter. Neither package is imported unless its adapter is called.

Naming scheme (enforced where it can be)::

    paios_reliability_<primitive>_<what>[_<unit>][_total]

lower snake case; counters end in ``_total``; units are base units
(``_seconds``, ``_bytes``). Every library event
``paios_reliability.<primitive>.<action>`` is counted by the event bridge as
``paios_reliability_<primitive>_<action>_total{subject="..."}`` once a registry
records events (:func:`get_metrics` switches that on for the default registry).

Label values are never empty and never ``"unknown"``: a metric nobody can
attribute is a metric nobody can act on, so such values raise
:class:`~paios_reliability.ConfigError` (code ``USAGE_ERROR``) at once.
"""

from __future__ import annotations

import bisect
import math
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from .._core.exceptions import ConfigError
from .._core.settings import Restorer

if TYPE_CHECKING:
    from .._core.event import Event

__all__ = [
    "DEFAULT_BUCKETS",
    "Counter",
    "Gauge",
    "Histogram",
    "MetricFamily",
    "MetricSample",
    "MetricsRegistry",
    "counter",
    "gauge",
    "get_metrics",
    "histogram",
    "set_metrics",
]

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
NO_SUBJECT = "none"


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
        self._lock = threading.Lock()
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


class MetricsRegistry:
    """An in-memory set of metrics; the default one is :func:`get_metrics`.

    Asking for a metric that exists returns it (so code can ask on first use
    instead of at import); asking with another type, label names or buckets
    raises :class:`ConfigError`.

    Args:
        max_series: Per metric, the number of distinct label sets kept; more
            are folded into one ``"overflow"`` series (and a
            ``metrics.series_overflow`` warning event is emitted once).
    """

    def __init__(self, *, max_series: int = 1000) -> None:
        if max_series < 1:
            raise _usage(f"max_series must be >= 1, got {max_series!r}")
        self.max_series = max_series
        self._lock = threading.Lock()
        self._metrics: dict[str, _Any] = {}
        # Called with each metric created from now on (exporters that must
        # follow metrics made after they were set up).
        self._on_create: tuple[Callable[[_Any], None], ...] = ()

    def _get_or_make(
        self,
        kind: MetricType,
        name: str,
        description: str,
        labelnames: Iterable[str],
        buckets: Sequence[float] | None = None,
    ) -> _Any:
        existing = self._metrics.get(name)
        if existing is not None:
            names = tuple(labelnames)
            if existing.kind != kind or existing.labelnames != names:
                raise _usage(
                    f"metric {name!r} is already a {existing.kind} with labels "
                    f"{list(existing.labelnames)}; asked for a {kind} with {list(names)}"
                )
            if (
                buckets is not None
                and isinstance(existing, Histogram)
                and existing.buckets != tuple(sorted(float(b) for b in buckets))
            ):
                raise _usage(f"histogram {name!r} already exists with other buckets")
            return existing
        _check_name(name, kind)
        names = _check_labelnames(labelnames, kind)
        metric: _Any
        if kind == "counter":
            metric = Counter(name, description, names, self.max_series)
        elif kind == "gauge":
            metric = Gauge(name, description, names, self.max_series)
        else:
            metric = Histogram(
                name,
                description,
                names,
                self.max_series,
                DEFAULT_BUCKETS if buckets is None else buckets,
            )
        with self._lock:
            made = self._metrics.setdefault(name, metric)
            listeners = self._on_create if made is metric else ()
        for listener in listeners:
            listener(made)
        return made

    def _follow(self, listener: Callable[[_Any], None]) -> Restorer:
        """Call ``listener`` for every metric there is and every one made later."""
        with self._lock:
            self._on_create = (*self._on_create, listener)
            existing = list(self._metrics.values())
        for metric in existing:
            listener(metric)

        def undo() -> None:
            with self._lock:
                self._on_create = tuple(f for f in self._on_create if f is not listener)

        return Restorer(undo)

    def counter(
        self, name: str, description: str = "", labelnames: Iterable[str] = ()
    ) -> Counter:
        """The counter ``name`` (created on first use). Names end in ``_total``."""
        metric = self._get_or_make("counter", name, description, labelnames)
        assert isinstance(metric, Counter)
        return metric

    def gauge(
        self, name: str, description: str = "", labelnames: Iterable[str] = ()
    ) -> Gauge:
        """The gauge ``name`` (created on first use)."""
        metric = self._get_or_make("gauge", name, description, labelnames)
        assert isinstance(metric, Gauge)
        return metric

    def histogram(
        self,
        name: str,
        description: str = "",
        labelnames: Iterable[str] = (),
        *,
        buckets: Sequence[float] | None = None,
    ) -> Histogram:
        """The histogram ``name`` (created on first use; default buckets in seconds)."""
        metric = self._get_or_make("histogram", name, description, labelnames, buckets)
        assert isinstance(metric, Histogram)
        return metric

    def get(self, name: str) -> Counter | Gauge | Histogram | None:
        """The metric called ``name``, if it exists."""
        return self._metrics.get(name)

    def value(self, name: str, **labels: str) -> float:
        """Read one series: a counter or gauge value, a histogram's count.

        Returns 0 for a metric or series that does not exist yet, so tests can
        assert on it before and after.
        """
        metric = self._metrics.get(name)
        if metric is None:
            return 0.0
        if isinstance(metric, Histogram):
            return float(metric.count(**labels))
        return metric.value(**labels)

    def __iter__(self) -> Iterator[Counter | Gauge | Histogram]:
        with self._lock:
            return iter(sorted(self._metrics.values(), key=lambda m: m.name))

    def collect(self) -> list[MetricFamily]:
        """A consistent-per-metric snapshot of every metric, sorted by name."""
        return [metric.collect() for metric in self]

    def clear(self) -> None:
        """Reset every series to nothing (metrics stay registered)."""
        for metric in self:
            metric.clear()

    def to_prometheus_text(self) -> str:
        """The Prometheus text exposition format (version 0.0.4) of all metrics."""
        lines: list[str] = []
        for family in self.collect():
            if family.description:
                lines.append(f"# HELP {family.name} {_escape_help(family.description)}")
            lines.append(f"# TYPE {family.name} {family.type}")
            for sample in family.samples:
                if family.type == "histogram":
                    for bound, cumulative in sample.buckets:
                        le = "+Inf" if math.isinf(bound) else repr(float(bound))
                        labels = _fmt_labels({**sample.labels, "le": le})
                        lines.append(f"{family.name}_bucket{labels} {cumulative}")
                    labels = _fmt_labels(sample.labels)
                    lines.append(f"{family.name}_sum{labels} {_fmt(sample.value)}")
                    lines.append(f"{family.name}_count{labels} {sample.count}")
                else:
                    labels = _fmt_labels(sample.labels)
                    lines.append(f"{family.name}{labels} {_fmt(sample.value)}")
        return "\n".join(lines) + ("\n" if lines else "")

    def record_events(self) -> Restorer:
        """Count every library event into this registry from now on.

        Event ``paios_reliability.<primitive>.<action>`` increments
        ``paios_reliability_<primitive>_<action>_total{subject=...}`` (the
        event's subject, or ``"none"``).

        Returns:
            A :class:`Restorer` that stops the counting.
        """
        from .._core.events import add_event_hook
        from .._policies.workers import abandoned_count

        running = abandoned_count()
        if running:
            _abandoned_gauge(self).set(running)
        return add_event_hook(_EventBridge(self))

    def __repr__(self) -> str:
        return f"MetricsRegistry({len(self._metrics)} metrics)"


class _EventBridge:
    """Event hook: one counter per event name, labelled by subject."""

    __slots__ = ("_counters", "_registry")

    def __init__(self, registry: MetricsRegistry) -> None:
        self._registry = registry
        self._counters: dict[str, Counter] = {}

    def __call__(self, event: Event, /) -> None:
        counter = self._counters.get(event.name)
        if counter is None:
            _, primitive, action = event.name.split(".", 2)
            name = f"paios_reliability_{primitive}_{action.replace('.', '_')}_total"
            counter = self._registry.counter(
                name, f"{primitive} {action} events", ("subject",)
            )
            self._counters[event.name] = counter
        subject = event.subject
        if not subject or subject.strip().lower() in _FORBIDDEN_VALUES:
            subject = NO_SUBJECT
        counter.inc(subject=subject)
        if event.name in _ABANDONED_EVENTS:
            running = event.fields.get("running")
            if isinstance(running, int):
                _abandoned_gauge(self._registry).set(running)
        state = _BREAKER_STATES.get(event.name)
        if state is not None:
            self._registry.gauge(
                BREAKER_STATE_METRIC,
                "circuit breaker state: 0 closed, 1 half open, 2 open",
                ("subject",),
            ).set(state, subject=subject)


#: The gauge the event bridge keeps per breaker (label ``subject``).
BREAKER_STATE_METRIC = "paios_reliability_circuit_breaker_state"
# Ordered by severity, so "> 0" means "not fully healthy".
_BREAKER_STATES = {
    "paios_reliability.circuit_breaker.closed": 0.0,
    "paios_reliability.circuit_breaker.half_opened": 1.0,
    "paios_reliability.circuit_breaker.opened": 2.0,
}


# The timeout policy reports its abandoned workers in events (it sits below
# this layer); the gauge follows their ``running`` field.
_ABANDONED_EVENTS = frozenset(
    {
        "paios_reliability.timeout.abandoned",
        "paios_reliability.timeout.abandoned_finished",
    }
)


def _abandoned_gauge(registry: MetricsRegistry) -> Gauge:
    return registry.gauge(
        "paios_reliability_timeout_abandoned_workers",
        "Timed-out sync calls still running in abandoned worker threads",
    )


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _fmt_labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape_value(v)}"' for k, v in labels.items())
    return "{" + inner + "}"


def _fmt(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


# -- the default registry --------------------------------------------------------

_default_lock = threading.Lock()
_default: MetricsRegistry | None = None
_default_bridge: Restorer | None = None


def get_metrics() -> MetricsRegistry:
    """The process-wide default registry, created (and fed by events) on first use.

    The first call also starts counting every library event into it (see
    :meth:`MetricsRegistry.record_events`), so "every primitive updates the
    metrics" costs nothing until someone looks at metrics.
    """
    global _default, _default_bridge  # noqa: PLW0603 - the one default, set once
    registry = _default
    if registry is not None:
        return registry
    with _default_lock:
        if _default is None:
            _default = MetricsRegistry()
            _default_bridge = _default.record_events()
        return _default


def set_metrics(registry: MetricsRegistry) -> Restorer:
    """Make ``registry`` the default (it records events while it is).

    Returns:
        A :class:`Restorer` that brings back the previous default.
    """
    global _default, _default_bridge  # noqa: PLW0603
    with _default_lock:
        previous, previous_bridge = _default, _default_bridge
        if previous_bridge is not None:
            previous_bridge()
        _default = registry
        _default_bridge = registry.record_events()

    def undo() -> None:
        global _default, _default_bridge  # noqa: PLW0603
        with _default_lock:
            if _default_bridge is not None:
                _default_bridge()
            _default = previous
            _default_bridge = previous.record_events() if previous is not None else None

    return Restorer(undo)


def counter(
    name: str, description: str = "", labelnames: Iterable[str] = ()
) -> Counter:
    """The counter ``name`` of the default registry (see :meth:`MetricsRegistry.counter`)."""
    return get_metrics().counter(name, description, labelnames)


def gauge(name: str, description: str = "", labelnames: Iterable[str] = ()) -> Gauge:
    """The gauge ``name`` of the default registry (see :meth:`MetricsRegistry.gauge`)."""
    return get_metrics().gauge(name, description, labelnames)


def histogram(
    name: str,
    description: str = "",
    labelnames: Iterable[str] = (),
    *,
    buckets: Sequence[float] | None = None,
) -> Histogram:
    """The histogram ``name`` of the default registry."""
    return get_metrics().histogram(name, description, labelnames, buckets=buckets)
