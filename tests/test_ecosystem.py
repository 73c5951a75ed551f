"""A good citizen of the ecosystem: structlog, stdlib logging and OpenTelemetry.

The library must follow the application's logging and tracing setup, never
replace it, and export what OpenTelemetry users expect (issue 20).
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

import paios_reliability as pr

SECRET = "sk-ECOSYSTEMSECRET12345"


@pytest.fixture
def structlog_config() -> Iterator[None]:
    assert not structlog.is_configured()
    try:
        yield
    finally:
        structlog.reset_defaults()


def _trip(name: str) -> None:
    breaker = pr.CircuitBreaker(name, failure_threshold=1)
    with pytest.raises(ConnectionResetError), breaker:
        raise ConnectionResetError(f"reset, token={SECRET}")


# -- structlog and stdlib logging ----------------------------------------------------


def test_finding_structlog_library_events_follow_the_users_own_configuration(
    structlog_config: None,
) -> None:
    """A pure-structlog JSON setup got the library's lines as plain text."""
    out = io.StringIO()
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.PrintLoggerFactory(file=out),
    )
    _trip("eco-structlog")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    opened = [
        line
        for line in lines
        if line["event"] == "paios_reliability.circuit_breaker.opened"
    ]
    assert len(opened) == 1
    assert opened[0]["subject"] == "eco-structlog"
    assert opened[0]["reason"] == "consecutive_failures"
    assert opened[0]["level"] == "warning"
    assert SECRET not in out.getvalue()


def test_finding_structlog_stdlib_recipe_gets_fields_as_keys(
    structlog_config: None,
) -> None:
    """structlog's documented ProcessorFormatter recipe got one flattened string."""
    structlog.configure(
        processors=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
    )
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processor=structlog.processors.JSONRenderer()
        )
    )
    logger = logging.getLogger("paios_reliability")
    logger.addHandler(handler)
    try:
        _trip("eco-recipe")
    finally:
        logger.removeHandler(handler)
    (line,) = [
        json.loads(text)
        for text in out.getvalue().splitlines()
        if "circuit_breaker.opened" in text
    ]
    assert line["event"] == "paios_reliability.circuit_breaker.opened"
    assert line["open_for"] == 30.0
    assert line["subject"] == "eco-recipe"


def test_finding_configure_logging_restorer_leaves_structlog_unconfigured() -> None:
    """Restoring called structlog.configure(), which marks it as configured."""
    assert not structlog.is_configured()
    restore = pr.configure_logging(json=True)
    assert structlog.is_configured()
    restore()
    assert not structlog.is_configured()


def test_finding_library_never_configures_structlog_or_logging() -> None:
    """Using the primitives must leave structlog and the root logger untouched."""
    script = """
import logging, structlog, paios_reliability as pr
root = logging.getLogger()
before = (list(root.handlers), root.level)
b = pr.CircuitBreaker("x", failure_threshold=1)
try:
    with b:
        raise ConnectionResetError("reset")
except ConnectionResetError:
    pass
@pr.retry(attempts=2, wait_initial=0, wait_max=0)
def flaky(): raise ConnectionResetError("again")
try:
    flaky()
except Exception:
    pass
pr.classify(KeyError("k"))
assert not structlog.is_configured(), "structlog was configured"
assert (list(root.handlers), root.level) == before, "root logging changed"
print("untouched")
"""
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "untouched"


# -- OpenTelemetry metrics -------------------------------------------------------------


def _points(reader: Any) -> dict[str, Any]:
    data = reader.get_metrics_data()
    if data is None:
        return {}
    return {
        m.name: m
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    }


def test_finding_otel_export_at_startup_exports_instruments_created_later() -> None:
    """export_opentelemetry() at start-up exported nothing, ever."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    registry = pr.MetricsRegistry()
    stop_events = registry.record_events()
    stop = pr.export_opentelemetry(registry, meter=provider.get_meter("t"))
    try:
        assert _points(reader) == {}
        _trip("eco-later")
        registry.gauge("paios_reliability_queue_depth").set(3)
        points = _points(reader)
        opened = points["paios_reliability_circuit_breaker_opened_total"]
        (point,) = opened.data.data_points
        assert point.value == 1
        assert dict(point.attributes) == {"subject": "eco-later"}
        (depth,) = points["paios_reliability_queue_depth"].data.data_points
        assert depth.value == 3
    finally:
        stop()
        stop_events()
        provider.shutdown()


def test_finding_otel_histograms_export_real_buckets() -> None:
    """Histograms became a _count and a _sum counter, with no buckets."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    registry = pr.MetricsRegistry()
    stop = pr.export_opentelemetry(registry, meter=provider.get_meter("t"))
    try:
        latency = registry.histogram(
            "paios_reliability_call_seconds", labelnames=["tool"], buckets=[0.1, 1, 10]
        )
        for value in (0.05, 0.5, 0.7, 5.0, 50.0):
            latency.observe(value, tool="search")
        metric = _points(reader)["paios_reliability_call_seconds"]
        (point,) = metric.data.data_points
        assert list(point.explicit_bounds) == [0.1, 1.0, 10.0]
        assert list(point.bucket_counts) == [1, 2, 1, 1]
        assert point.count == 5
        assert point.sum == pytest.approx(56.25)
        assert dict(point.attributes) == {"tool": "search"}
        assert "paios_reliability_call_seconds_count" not in _points(reader)
    finally:
        stop()
    latency.observe(0.05, tool="search")  # stopped: no longer mirrored
    (point,) = _points(reader)["paios_reliability_call_seconds"].data.data_points
    assert point.count == 5
    provider.shutdown()


_STATE_VALUE = {"closed": 0.0, "half_open": 1.0, "open": 2.0}


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from(["trip", "reset", "fail", "ok"]), max_size=12))
def test_finding_breaker_state_gauge_follows_the_breaker(ops: list[str]) -> None:
    """Neither exporter had a breaker-state gauge."""
    registry = pr.MetricsRegistry()
    stop = registry.record_events()
    name = "eco-gauge"
    breaker = pr.CircuitBreaker(name, failure_threshold=2)
    try:
        for op in ops:
            if op == "trip":
                breaker.trip()
            elif op == "reset":
                breaker.reset()
            else:
                try:
                    with breaker:
                        if op == "fail":
                            raise ConnectionResetError("down")
                except (ConnectionResetError, pr.CircuitOpenError):
                    pass
            gauge = registry.get("paios_reliability_circuit_breaker_state")
            shown = 0.0 if gauge is None else gauge.value(subject=name)
            assert shown == _STATE_VALUE[breaker.state], (ops, breaker.state)
    finally:
        stop()


def test_finding_breaker_state_gauge_reaches_prometheus() -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    registry = pr.MetricsRegistry()
    stop = registry.record_events()
    scrape = CollectorRegistry()
    try:
        _trip("eco-prom")
        with pr.export_prometheus(registry, prometheus_registry=scrape):
            text = generate_latest(scrape).decode()
    finally:
        stop()
    assert 'paios_reliability_circuit_breaker_state{subject="eco-prom"} 2.0' in text


# -- OpenTelemetry tracing ---------------------------------------------------------------


@pytest.fixture
def spans() -> Iterator[Any]:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
        InMemorySpanExporter,
    )

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    stop = pr.trace_opentelemetry(provider.get_tracer("test"))
    try:
        yield exporter, provider.get_tracer("test")
    finally:
        stop()
        provider.shutdown()


def test_finding_resilient_calls_are_spans_when_tracing_is_on(spans: Any) -> None:
    """@resilient calls were invisible to OpenTelemetry tracing."""
    exporter, tracer = spans

    @pr.resilient(name="eco.lookup", retry=False)
    def lookup(x: int) -> int:
        return x * 2

    @pr.resilient(name="eco.alookup", retry=False, timeout=5)
    async def alookup(x: int) -> int:
        await asyncio.sleep(0)
        return x + 1

    with tracer.start_as_current_span("request") as parent:
        assert lookup(21) == 42
        assert asyncio.run(alookup(1)) == 2
    by_name = {s.name: s for s in exporter.get_finished_spans()}
    assert set(by_name) == {"request", "resilient eco.lookup", "resilient eco.alookup"}
    trace_id = parent.get_span_context().trace_id
    for name in ("resilient eco.lookup", "resilient eco.alookup"):
        span = by_name[name]
        assert span.context.trace_id == trace_id
        assert span.parent is not None
        assert span.parent.span_id == parent.get_span_context().span_id
        assert span.status.is_ok
    assert (
        by_name["resilient eco.lookup"].attributes["paios.resilient.name"]
        == "eco.lookup"
    )


def test_finding_resilient_failure_span_has_the_code_and_no_secret(spans: Any) -> None:
    from opentelemetry.trace import StatusCode

    exporter, _ = spans

    @pr.resilient(name="eco.failing", retry=False)
    def failing() -> None:
        raise PermissionError(f"denied, api_key={SECRET}")

    with pytest.raises(PermissionError):
        failing()
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes["paios.error.code"] == "PERMISSION_DENIED"
    (event,) = span.events
    assert event.name == "exception"
    assert event.attributes["exception.type"] == "PermissionError"
    assert SECRET not in str(event.attributes)
    assert "denied" in event.attributes["exception.message"]


def test_finding_resilient_spans_stop_when_tracing_is_switched_off() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
        InMemorySpanExporter,
    )

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    @pr.resilient(name="eco.toggle", retry=False)
    def call() -> str:
        return "ok"

    call()
    stop = pr.trace_opentelemetry(provider.get_tracer("t"))
    call()
    stop()
    call()
    assert [s.name for s in exporter.get_finished_spans()] == ["resilient eco.toggle"]
    provider.shutdown()
