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

import math
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

from .._core.settings import Restorer
from .metric_types import (
    _FORBIDDEN_VALUES,
    DEFAULT_BUCKETS,
    Counter,
    Gauge,
    Histogram,
    MetricFamily,
    MetricType,
    _Any,
    _check_labelnames,
    _check_name,
    _usage,
)

if TYPE_CHECKING:
    from .._core.event import Event

__all__ = [
    "MetricsRegistry",
    "counter",
    "gauge",
    "get_metrics",
    "histogram",
    "set_metrics",
]

#: The ``subject`` label of bridged events that have no subject.
NO_SUBJECT = "none"


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
