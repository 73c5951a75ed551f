"""Exporters of the metrics registry to Prometheus and OpenTelemetry (extras).

Both read our registry when the other side collects, so updating a metric
costs the same whether or not an exporter is attached. ``prometheus_client``
and ``opentelemetry`` are imported only here, only when called.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from .._core.settings import Restorer
from .metrics import Counter, Gauge, MetricsRegistry, get_metrics

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
        raise _missing("prometheus_client", "prometheus") from exc

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
) -> list[Any]:
    """Expose ``registry`` through OpenTelemetry observable instruments (extra ``otel``).

    Counters become ``ObservableCounter``, gauges ``ObservableGauge``;
    histograms (which have no observable form in the OpenTelemetry API) become
    an ``ObservableCounter`` pair ``<name>_count`` and ``<name>_sum``. Metrics
    created later are picked up at the next call only, so call it after your
    metrics exist (the library's own event counters are created on first event).

    Args:
        registry: Ours (default: :func:`get_metrics`).
        meter: An ``opentelemetry.metrics.Meter`` (default:
            ``get_meter("paios_reliability")``).

    Returns:
        The instruments created.

    Raises:
        PermanentError: ``DEPENDENCY_MISSING`` if ``opentelemetry-api`` is not
            installed.
    """
    try:
        from opentelemetry import metrics as otel_metrics
    except ImportError as exc:
        raise _missing("opentelemetry", "otel") from exc

    ours = registry if registry is not None else get_metrics()
    the_meter = (
        meter if meter is not None else otel_metrics.get_meter("paios_reliability")
    )

    def observe(name: str, pick: str) -> Any:
        def callback(_options: Any) -> list[Any]:
            metric = ours.get(name)
            if metric is None:
                return []
            family = metric.collect()
            out = []
            for s in family.samples:
                value: float = s.value if pick == "value" else float(s.count)
                out.append(otel_metrics.Observation(value, dict(s.labels)))
            return out

        return callback

    instruments: list[Any] = []
    for metric in ours:
        if isinstance(metric, Counter):
            instruments.append(
                the_meter.create_observable_counter(
                    metric.name,
                    callbacks=[observe(metric.name, "value")],
                    description=metric.description,
                )
            )
        elif isinstance(metric, Gauge):
            instruments.append(
                the_meter.create_observable_gauge(
                    metric.name,
                    callbacks=[observe(metric.name, "value")],
                    description=metric.description,
                )
            )
        else:
            instruments.append(
                the_meter.create_observable_counter(
                    f"{metric.name}_count",
                    callbacks=[observe(metric.name, "count")],
                    description=metric.description,
                )
            )
            instruments.append(
                the_meter.create_observable_counter(
                    f"{metric.name}_sum",
                    callbacks=[observe(metric.name, "value")],
                    description=metric.description,
                )
            )
    return instruments


def _missing(module: str, extra: str) -> Exception:
    from .._core.exceptions import PermanentError

    return PermanentError(
        f"{module} is not installed: pip install 'paios-reliability[{extra}]'",
        code="DEPENDENCY_MISSING",
        context={"module": module},
    )
