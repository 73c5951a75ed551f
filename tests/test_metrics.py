"""Metrics registry: validation, the event bridge, Prometheus and OpenTelemetry adapters."""

from __future__ import annotations

import math
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paios_reliability import (
    ConfigError,
    Counter,
    Gauge,
    Histogram,
    MetricsRegistry,
    counter,
    export_opentelemetry,
    export_prometheus,
    gauge,
    get_metrics,
    histogram,
    set_metrics,
)
from paios_reliability._core.events import emit
from paios_reliability.testing import capture_events


def test_counter_gauge_histogram_basics() -> None:
    reg = MetricsRegistry()
    calls = reg.counter("paios_reliability_tool_calls_total", "Tool calls", ["tool"])
    calls.inc(tool="search")
    calls.inc(2, tool="search")
    calls.labels(tool="fetch").inc()
    assert calls.value(tool="search") == 3
    assert reg.value("paios_reliability_tool_calls_total", tool="fetch") == 1
    assert reg.value("paios_reliability_tool_calls_total", tool="never") == 0
    depth = reg.gauge("paios_reliability_queue_depth")
    depth.set(5)
    depth.inc()
    depth.dec(3)
    assert depth.value() == 3
    latency = reg.histogram(
        "paios_reliability_tool_duration_seconds", buckets=[0.1, 1.0]
    )
    for value in (0.05, 0.1, 0.5, 3.0):
        latency.observe(value)
    [family] = [f for f in reg.collect() if f.name.endswith("_seconds")]
    [sample] = family.samples
    assert sample.count == 4
    assert sample.value == pytest.approx(3.65)
    assert sample.buckets == ((0.1, 2), (1.0, 3), (math.inf, 4))
    assert latency.count() == 4
    assert latency.total() == pytest.approx(3.65)
    assert reg.value("paios_reliability_tool_duration_seconds") == 4


@pytest.mark.parametrize("value", ["", "   ", "unknown", "Unknown", " UNKNOWN "])
def test_empty_or_unknown_label_values_are_rejected(value: str) -> None:
    c = MetricsRegistry().counter("paios_reliability_x_total", labelnames=["tool"])
    with pytest.raises(ConfigError, match="empty or 'unknown'") as info:
        c.inc(tool=value)
    assert info.value.code == "USAGE_ERROR"
    with pytest.raises(ConfigError):
        c.labels(tool=value)
    assert c.collect().samples == ()


def test_label_sets_must_match_exactly() -> None:
    c = MetricsRegistry().counter("paios_reliability_x_total", labelnames=["a", "b"])
    with pytest.raises(ConfigError, match="takes labels"):
        c.inc(a="1")
    with pytest.raises(ConfigError, match="takes labels"):
        c.inc(a="1", b="2", c="3")
    with pytest.raises(ConfigError, match="must be strings"):
        c.inc(a="1", b=2)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="cannot go down"):
        c.inc(-1, a="1", b="2")
    with pytest.raises(ConfigError, match="cannot go down"):
        c.labels(a="1", b="2").inc(-1)


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("counter", "paios_reliability_calls"),  # counters end in _total
        ("gauge", "paios_reliability_depth_total"),  # only counters do
        ("counter", "Paios_calls_total"),
        ("counter", "paios-calls_total"),
        ("histogram", "9lives"),
    ],
)
def test_metric_names_follow_the_scheme(kind: str, name: str) -> None:
    reg = MetricsRegistry()
    with pytest.raises(ConfigError):
        getattr(reg, kind)(name)


def test_bad_label_names_and_buckets() -> None:
    reg = MetricsRegistry()
    with pytest.raises(ConfigError):
        reg.counter("a_total", labelnames=["__x"])
    with pytest.raises(ConfigError):
        reg.counter("a_total", labelnames=["a", "a"])
    with pytest.raises(ConfigError):
        reg.histogram("h", labelnames=["le"])
    with pytest.raises(ConfigError):
        reg.histogram("h", buckets=[1.0, 1.0])
    with pytest.raises(ConfigError):
        reg.histogram("h").observe(float("nan"))


def test_asking_again_returns_the_same_metric_and_conflicts_raise() -> None:
    reg = MetricsRegistry()
    first = reg.counter("a_total", labelnames=["x"])
    assert reg.counter("a_total", labelnames=["x"]) is first
    with pytest.raises(ConfigError, match="already a counter"):
        reg.gauge("a_total")
    with pytest.raises(ConfigError, match="already a counter"):
        reg.counter("a_total", labelnames=["y"])
    reg.histogram("h", buckets=[1, 2])
    with pytest.raises(ConfigError, match="other buckets"):
        reg.histogram("h", buckets=[1, 3])
    assert reg.get("missing") is None
    assert isinstance(reg.get("a_total"), Counter)


def test_series_are_capped_and_overflow_is_reported_once() -> None:
    reg = MetricsRegistry(max_series=3)
    c = reg.counter("a_total", labelnames=["user"])
    with capture_events() as events:
        for i in range(10):
            c.inc(user=f"u{i}")
    assert len(c.collect().samples) == 4  # 3 real + "overflow"
    assert c.value(user="overflow") == 7
    assert len(events.of("metrics.series_overflow")) == 1
    c.clear()
    assert c.collect().samples == ()


def test_updates_from_many_threads_are_not_lost() -> None:
    c = MetricsRegistry().counter("a_total", labelnames=["t"])
    bound = c.labels(t="x")

    def work() -> None:
        for _ in range(2000):
            bound.inc()
            c.inc(t="y")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert c.value(t="x") == 8000
    assert c.value(t="y") == 8000


def test_every_library_event_is_counted_by_the_bridge() -> None:
    reg = MetricsRegistry()
    with reg.record_events():
        emit("circuit_breaker", "opened", subject="github")
        emit("circuit_breaker", "opened", subject="github")
        emit("retry", "scheduled")  # no subject
        emit("retry", "scheduled", subject="unknown")  # unusable subject
    emit("retry", "scheduled", subject="late")  # after the bridge is removed
    assert (
        reg.value("paios_reliability_circuit_breaker_opened_total", subject="github")
        == 2
    )
    assert reg.value("paios_reliability_retry_scheduled_total", subject="none") == 2
    assert reg.value("paios_reliability_retry_scheduled_total", subject="late") == 0


def test_default_registry_and_shortcuts() -> None:
    mine = MetricsRegistry()
    with set_metrics(mine):
        assert get_metrics() is mine
        assert isinstance(counter("paios_reliability_t_total"), Counter)
        assert isinstance(gauge("paios_reliability_g"), Gauge)
        assert isinstance(histogram("paios_reliability_h_seconds"), Histogram)
        emit("bulkhead", "rejected", subject="db")
        assert (
            mine.value("paios_reliability_bulkhead_rejected_total", subject="db") == 1
        )
    assert get_metrics() is not mine
    emit("bulkhead", "rejected", subject="db")
    assert mine.value("paios_reliability_bulkhead_rejected_total", subject="db") == 1
    assert get_metrics() is get_metrics()


def test_prometheus_text_parses_with_the_official_parser() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    reg = MetricsRegistry()
    reg.counter("paios_reliability_calls_total", "Calls\nmade", ["tool"]).inc(
        tool='a "q" \\ b'
    )
    reg.gauge("paios_reliability_depth").set(2.5)
    reg.histogram("paios_reliability_d_seconds", buckets=[0.5]).observe(0.2)
    families = {
        f.name: f for f in text_string_to_metric_families(reg.to_prometheus_text())
    }
    calls = families["paios_reliability_calls"]
    assert calls.type == "counter"
    assert calls.samples[0].labels == {"tool": 'a "q" \\ b'}
    assert calls.samples[0].value == 1
    assert families["paios_reliability_depth"].samples[0].value == 2.5
    hist = {
        s.name: s
        for s in families["paios_reliability_d_seconds"].samples
        if s.name.endswith("_count")
    }
    assert hist["paios_reliability_d_seconds_count"].value == 1


@settings(max_examples=100, deadline=None)
@given(
    st.text(min_size=1, max_size=40).filter(
        lambda s: s.strip().lower() not in ("", "unknown")
    )
)
def test_any_valid_label_value_survives_the_exposition_format(value: str) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    reg = MetricsRegistry()
    reg.counter("a_total", labelnames=["v"]).inc(3, v=value)
    [family] = text_string_to_metric_families(reg.to_prometheus_text())
    assert family.samples[0].labels == {"v": value}
    assert family.samples[0].value == 3


def test_export_prometheus_collector_reads_at_scrape_time() -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    prom = CollectorRegistry()
    reg = MetricsRegistry()
    c = reg.counter("paios_reliability_calls_total", "Calls", ["tool"])
    h = reg.histogram("paios_reliability_d_seconds", buckets=[1.0])
    with export_prometheus(reg, prometheus_registry=prom):
        c.inc(tool="x")
        h.observe(0.5)
        first = generate_latest(prom).decode()
        c.inc(tool="x")
        second = generate_latest(prom).decode()
    assert 'paios_reliability_calls_total{tool="x"} 1.0' in first
    assert 'paios_reliability_calls_total{tool="x"} 2.0' in second
    assert 'paios_reliability_d_seconds_bucket{le="1.0"} 1.0' in second
    assert generate_latest(prom).decode() == ""  # unregistered by the restorer


def test_export_opentelemetry_with_a_real_sdk_reader() -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    reg = MetricsRegistry()
    reg.counter("paios_reliability_calls_total", labelnames=["tool"]).inc(4, tool="x")
    reg.gauge("paios_reliability_depth").set(7)
    hist = reg.histogram("paios_reliability_d_seconds")
    stop = export_opentelemetry(reg, meter=provider.get_meter("test"))
    hist.observe(0.3)
    data = reader.get_metrics_data()
    stop()
    points = {
        m.name: m.data.data_points[0]
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    }
    provider.shutdown()
    assert points["paios_reliability_calls_total"].value == 4
    assert dict(points["paios_reliability_calls_total"].attributes) == {"tool": "x"}
    assert points["paios_reliability_depth"].value == 7
    assert points["paios_reliability_d_seconds"].count == 1
    assert points["paios_reliability_d_seconds"].sum == pytest.approx(0.3)
