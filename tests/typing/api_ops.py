"""Type-checked (mypy --strict), never run: the observability/operations API's types hold."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Coroutine
from typing import Any, Literal

from typing_extensions import assert_type

import paios_reliability as pr

# -- event store and crash handler ---------------------------------------------------

store = pr.EventStore("observability.sqlite", service="gateway")
assert_type(store.emit("breaker", "opened", level="warning", name="github"), None)
events = store.query(
    trace_id="t", category="breaker", since="1h", level="error", limit=10
)
assert_type(events, list[pr.StoredEvent])
assert_type(events[0].metadata["x"], Any)
assert_type(events[0].time, dt.datetime)
assert_type(
    store.query(since=dt.timedelta(hours=1), until=dt.datetime.now()),
    list[pr.StoredEvent],
)
assert_type(store.last_crash("gateway"), pr.StoredEvent | None)
assert_type(store.prune("30d"), int)
assert_type(store.record_library_events(), pr.Restorer)
pr.EventStore(42)  # type: ignore[arg-type]
store.query(limit="ten")  # type: ignore[arg-type]

handler = pr.install_crash_handler(store, service="gateway")
assert_type(handler, pr.CrashHandler)
assert_type(handler.previous_crashes, list[pr.StoredEvent])
pr.install_crash_handler("observability.sqlite", service="x")  # type: ignore[arg-type]

# -- metrics -----------------------------------------------------------------------------

registry = pr.get_metrics()
assert_type(registry, pr.MetricsRegistry)
calls = pr.counter("paios_reliability_tool_calls_total", "Tool calls", ["tool"])
assert_type(calls, pr.Counter)
calls.inc(tool="search")
calls.labels(tool="search").inc(2)
assert_type(pr.gauge("paios_reliability_queue_depth"), pr.Gauge)
assert_type(pr.histogram("paios_reliability_tool_duration_seconds"), pr.Histogram)
assert_type(registry.value("paios_reliability_tool_calls_total", tool="search"), float)
assert_type(pr.set_metrics(pr.MetricsRegistry()), pr.Restorer)
assert_type(pr.export_prometheus(registry), pr.Restorer)
calls.inc(tool=3)  # type: ignore[arg-type]

# -- leaks, recycling -------------------------------------------------------------------

monitor = pr.LeakMonitor(threshold_mb_per_hour=10, on_leak=lambda report: None)
assert_type(monitor.check(), pr.LeakReport)
assert_type(monitor.check().slope_mb_per_hour, float | None)
assert_type(monitor.start(interval=60), pr.LeakMonitor)


def no_report() -> None:
    return None


pr.LeakMonitor(on_leak=no_report)  # type: ignore[arg-type]
pr.LeakMonitor(source="psutil")  # type: ignore[arg-type]

tracker = pr.ResourceTracker()
assert_type(tracker.close(), list[pr.TrackedResource])


async def job() -> int:
    return 1


async def use_tracker() -> None:
    task = tracker.task(job())
    assert_type(await task, int)


def double(x: int) -> int:
    return 2 * x


worker = pr.RecyclingWorker(double, max_requests=100)
assert_type(worker, pr.RecyclingWorker[int])
assert_type(worker.call(21), int)
by_name: pr.RecyclingWorker[str] = pr.RecyclingWorker("pkg.mod:fn")
assert_type(by_name.call(), str)


async def use_worker() -> None:
    assert_type(await worker.acall(2), int)


assert_type(pr.Recycler(1000, jitter=50).record(), bool)
pr.RecyclingWorker(double, max_requests="many")  # type: ignore[arg-type]

# -- health ---------------------------------------------------------------------------------

health = pr.HealthRegistry(default_timeout=2)


@health.check
def database() -> bool:
    return True


@health.check("upstream", timeout=1.0, critical=False)
async def upstream() -> tuple[str, str]:
    return ("degraded", "slow")


assert_type(database, Callable[[], bool])
assert_type(database(), bool)
assert_type(upstream, Callable[[], Coroutine[Any, Any, tuple[str, str]]])
report = health.run()
assert_type(report, pr.HealthReport)
assert_type(report.status, Literal["ok", "degraded", "failing"])
assert_type(report.checks, tuple[pr.HealthCheckResult, ...])
assert_type(report.to_json(), str)


async def use_health() -> None:
    assert_type(await health.arun(), pr.HealthReport)


health.check("x", timeout="soon")  # type: ignore[call-overload]

# -- alerts and service units ------------------------------------------------------------------

dispatcher = pr.AlertDispatcher(
    [
        pr.LogChannel(),
        pr.EventStoreChannel(store),
        pr.WebhookChannel("http://127.0.0.1:9/"),
    ],
    threshold=pr.OccurrenceThreshold(5, 3600),
)
assert_type(
    dispatcher.alert(pr.AlertLevel.WARNING, "github failing", key="github"), bool
)
assert_type(dispatcher.critical("disk full"), bool)
channel: pr.AlertChannel = pr.DesktopChannel()
assert_type(pr.daily_report(health, store), str)
pr.WebhookChannel(8080)  # type: ignore[arg-type]

assert_type(
    pr.render_launchd("com.example.agent", ["/usr/bin/python3", "-m", "agent"]), str
)
assert_type(pr.render_systemd("Agent", ["/usr/bin/python3", "-m", "agent"]), str)
pr.render_systemd("Agent", ["/x"], restart_sec="10s")  # type: ignore[arg-type]
pr.render_launchd(1, ["/x"])  # type: ignore[arg-type]
