"""timed: durations into a histogram with real buckets (Prometheus and OpenTelemetry)."""

from __future__ import annotations

import asyncio
import inspect
import threading

import pytest

import paios_reliability as pr
from paios_reliability import timed
from paios_reliability.testing import FakeClock


def test_timed_block_records_into_buckets() -> None:
    clock = FakeClock()
    reg = pr.MetricsRegistry()
    with timed("kb_search", registry=reg, clock=clock, tool="search"):
        clock.advance(0.3)
    hist = reg.get("kb_search_seconds")
    assert isinstance(hist, pr.Histogram)
    assert hist.count(tool="search", outcome="ok") == 1
    assert hist.total(tool="search", outcome="ok") == pytest.approx(0.3)
    text = reg.to_prometheus_text()
    assert 'kb_search_seconds_bucket{tool="search",outcome="ok",le="0.25"} 0' in text
    assert 'kb_search_seconds_bucket{tool="search",outcome="ok",le="0.5"} 1' in text


def test_timed_decorates_sync_and_async_and_records_errors() -> None:
    clock = FakeClock()
    reg = pr.MetricsRegistry()
    t = timed("op", registry=reg, clock=clock, buckets=[1.0, 10.0])

    @t
    def work(x: int) -> int:
        clock.advance(2)
        if x < 0:
            raise ValueError("negative")
        return x

    @t
    async def awork(x: int) -> int:
        clock.advance(0.5)
        await asyncio.sleep(0)
        return x

    assert inspect.iscoroutinefunction(awork)
    assert work(3) == 3
    with pytest.raises(ValueError, match="negative"):
        work(-1)
    assert asyncio.run(awork(4)) == 4
    hist = reg.get("op_seconds")
    assert isinstance(hist, pr.Histogram)
    assert hist.buckets == (1.0, 10.0)
    assert hist.count(outcome="ok") == 2
    assert hist.total(outcome="ok") == pytest.approx(2.5)
    assert hist.count(outcome="error") == 1


def test_one_timed_object_times_concurrent_threads_separately() -> None:
    reg = pr.MetricsRegistry()
    t = timed("shared", registry=reg)
    inside = threading.Barrier(4)

    def run() -> None:
        with t:
            inside.wait(30)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    hist = reg.get("shared_seconds")
    assert isinstance(hist, pr.Histogram)
    assert hist.count(outcome="ok") == 4


def test_timed_rejects_a_bad_name_and_conflicting_labels() -> None:
    reg = pr.MetricsRegistry()
    with pytest.raises(pr.ConfigError):
        timed("Bad Name", registry=reg)
    timed("x", registry=reg, tool="a")
    with pytest.raises(pr.ConfigError):
        timed("x", registry=reg, other="b")


def test_timed_exports_real_buckets_to_opentelemetry() -> None:
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    clock = FakeClock()
    with timed(
        "kb_write",
        registry=pr.MetricsRegistry(),
        clock=clock,
        buckets=[0.1, 1.0],
        meter=provider.get_meter("test"),
    ):
        clock.advance(0.5)
    data = reader.get_metrics_data()
    [metric] = [
        m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
    ]
    provider.shutdown()
    [point] = metric.data.data_points
    assert metric.name == "kb_write_seconds"
    assert list(point.explicit_bounds) == [0.1, 1.0]
    assert list(point.bucket_counts) == [0, 1, 0]
    assert dict(point.attributes) == {"outcome": "ok"}
