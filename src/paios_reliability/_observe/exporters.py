"""Exporters of the metrics registry to Prometheus and OpenTelemetry (extras).

Both read our registry when the other side collects, so updating a metric
costs the same whether or not an exporter is attached. ``prometheus_client``
and ``opentelemetry`` are imported only here, only when called.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

from .._core.imports import missing_extra
from .._core.settings import Restorer
from .metric_types import Counter, Gauge, Histogram, _Any
from .metrics import MetricsRegistry, get_metrics

__all__ = ["export_opentelemetry", "export_prometheus"]


# -- adapters (optional extras) ----------------------------------------------------


def export_prometheus(
    registry: MetricsRegistry | None = None, *, prometheus_registry: Any = None
) -> Restorer:
    """Expose ``registry`` through ``prometheus_client`` (extra ``prometheus``).

    Registers a collector that reads our registry at scrape time: updates stay
    as cheap as ever, and ``prometheus_client.generate_latest()`` or its HTTP
    server shows every metric.

    Args:
        registry: Ours (default: :func:`get_metrics`).
        prometheus_registry: A ``prometheus_client.CollectorRegistry``
            (default: its global ``REGISTRY``).

    Returns:
        A :class:`Restorer` that unregisters the collector.

    Raises:
        PermanentError: ``DEPENDENCY_MISSING`` if ``prometheus_client`` is not
            installed (``pip install paios-reliability[prometheus]``).
    """
    try:
        from prometheus_client import REGISTRY
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )
    except ImportError as exc:
        raise missing_extra("prometheus_client", "prometheus") from exc

    ours = registry if registry is not None else get_metrics()
    target = prometheus_registry if prometheus_registry is not None else REGISTRY

    class _Collector:
        def collect(self) -> Iterator[Any]:
            for family in ours.collect():
                names = list(family.labelnames)
                made: Any
                if family.type == "counter":
                    made = CounterMetricFamily(
                        family.name, family.description or family.name, labels=names
                    )
                    for s in family.samples:
                        made.add_metric([s.labels[n] for n in names], s.value)
                elif family.type == "gauge":
                    made = GaugeMetricFamily(
                        family.name, family.description or family.name, labels=names
                    )
                    for s in family.samples:
                        made.add_metric([s.labels[n] for n in names], s.value)
                else:
                    made = HistogramMetricFamily(
                        family.name, family.description or family.name, labels=names
                    )
                    for s in family.samples:
                        buckets = [
                            ("+Inf" if math.isinf(b) else repr(float(b)), float(c))
                            for b, c in s.buckets
                        ]
                        made.add_metric([s.labels[n] for n in names], buckets, s.value)
                yield made

        def describe(self) -> list[Any]:
            return []  # dynamic metric set: skip registration-time name checks

    collector = _Collector()
    target.register(collector)
    return Restorer(lambda: target.unregister(collector))


def export_opentelemetry(
    registry: MetricsRegistry | None = None, *, meter: Any = None
) -> Restorer:
    """Expose ``registry`` through OpenTelemetry instruments (extra ``otel``).

    Call it once at start-up: it follows the registry, so metrics created
    later (the library's own event counters are created at their first
    event) are exported too. Counters become ``ObservableCounter`` and gauges
    ``ObservableGauge``, read at each collection. Histograms become real
    OpenTelemetry ``Histogram`` instruments with the same bucket boundaries
    (as the advisory boundaries, honoured by the SDK since 1.30): every
    observation from the call on is recorded into them too, so the exported
    buckets are real; earlier observations are not replayed. The circuit
    breaker state is the gauge ``paios_reliability_circuit_breaker_state``
    (0 closed, 1 half open, 2 open).

    Thread-safe; calling it twice exports everything twice (keep the
    :class:`Restorer` and call it before exporting again).

    Args:
        registry: Ours (default: :func:`get_metrics`).
        meter: An ``opentelemetry.metrics.Meter`` (default:
            ``get_meter("paios_reliability")``).

    Returns:
        A :class:`Restorer` that stops following the registry and stops the
        histogram mirroring (OpenTelemetry has no way to delete instruments:
        observable ones then report nothing).

    Raises:
        PermanentError: ``DEPENDENCY_MISSING`` if ``opentelemetry-api`` is not
            installed.
    """
    try:
        from opentelemetry import metrics as otel_metrics
    except ImportError as exc:
        raise missing_extra("opentelemetry", "otel") from exc

    ours = registry if registry is not None else get_metrics()
    the_meter = (
        meter if meter is not None else otel_metrics.get_meter("paios_reliability")
    )
    active = [True]
    mirrored: list[tuple[Histogram, Callable[[float, dict[str, str]], None]]] = []

    def observe(metric: Counter | Gauge) -> Any:
        def callback(_options: Any) -> list[Any]:
            if not active[0]:
                return []
            return [
                otel_metrics.Observation(s.value, dict(s.labels))
                for s in metric.collect().samples
            ]

        return callback

    def export(metric: _Any) -> None:
        if isinstance(metric, Counter):
            the_meter.create_observable_counter(
                metric.name, callbacks=[observe(metric)], description=metric.description
            )
        elif isinstance(metric, Gauge):
            the_meter.create_observable_gauge(
                metric.name, callbacks=[observe(metric)], description=metric.description
            )
        else:
            instrument = otel_histogram(the_meter, metric)
            record: Callable[[float, dict[str, str]], None] = instrument.record
            with ours._lock:
                metric._mirrors = (*metric._mirrors, record)
                mirrored.append((metric, record))

    following = ours._follow(export)

    def undo() -> None:
        following()
        active[0] = False
        with ours._lock:
            for metric, record in mirrored:
                metric._mirrors = tuple(m for m in metric._mirrors if m is not record)

    return Restorer(undo)


def otel_histogram(meter: Any, metric: Histogram, *, unit: str = "") -> Any:
    """An OpenTelemetry histogram with ``metric``'s name and bucket boundaries."""
    return meter.create_histogram(
        metric.name,
        unit=unit,
        description=metric.description,
        explicit_bucket_boundaries_advisory=list(metric.buckets),
    )
