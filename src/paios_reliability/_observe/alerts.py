"""Alerts: tell a human once, through every channel that works.

:class:`AlertDispatcher` sends an :class:`Alert` to its channels: a structlog
log line, the event store, a desktop notification (``notify-send`` on Linux,
``osascript`` on macOS; silently absent where neither exists, reported once)
and a webhook (stdlib HTTP with timeout and retries).

Noise control: alerts with a ``key`` (an integration, a tool) go through a
per-key :class:`~paios_reliability.OccurrenceThreshold` (default: 5 within an
hour), so a flapping integration alerts once per hour, not 500 times.
``CRITICAL`` always goes through, and alerts without a key are not throttled.

Isolation: fast channels (log, event store) are called inline; slow ones
(desktop, webhook) each have their own daemon thread and bounded queue, so a
webhook that hangs until its timeout never delays the log line, and a channel
that fails never stops the others.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import queue
import threading
import time
from collections import Counter as _Tally
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._core.events import emit
from .._core.exceptions import ConfigError
from .alert_channels import LogChannel
from .alert_model import Alert, AlertLevel

if TYPE_CHECKING:
    from ..typing import AlertChannel
    from .eventstore import EventStore
    from .health import HealthRegistry, HealthReport
    from .stored_event import StoredEvent

__all__ = ["AlertDispatcher", "ChannelStats", "daily_report"]

_log = logging.getLogger("paios_reliability.alerts")


# -- the dispatcher --------------------------------------------------------------------

_STOP = object()


@dataclass(frozen=True, slots=True)
class ChannelStats:
    """Delivery counters of one channel."""

    sent: int
    failed: int
    dropped: int


class _Lane:
    """A blocking channel's own worker thread and bounded queue."""

    def __init__(
        self, dispatcher: AlertDispatcher, channel: AlertChannel, size: int
    ) -> None:
        self.channel = channel
        self.queue: queue.Queue[Any] = queue.Queue(size)
        self.dispatcher = dispatcher
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()

    def put(self, alert: Alert) -> None:
        with self.lock:
            if self.thread is None:
                self.thread = threading.Thread(
                    target=self.run,
                    name=f"paios-alerts-{self.channel.name}",
                    daemon=True,
                )
                self.thread.start()
        try:
            self.queue.put_nowait(alert)
        except queue.Full:
            self.dispatcher._count(self.channel.name, "dropped")
            emit(
                "alerts",
                "dropped",
                level="error",
                subject=self.channel.name,
                title=alert.title,
            )

    def run(self) -> None:
        while True:
            item = self.queue.get()
            try:
                if item is _STOP:
                    return
                self.dispatcher._deliver(self.channel, item)
            finally:
                self.queue.task_done()


class AlertDispatcher:
    """Send alerts to every channel, once per noisy key, never blocked by one.

    Args:
        channels: Where alerts go (default: a :class:`LogChannel`).
        threshold: Object with ``record(key) -> bool`` deciding when a keyed,
            non-critical alert goes out (default:
            ``OccurrenceThreshold(5, 3600)``: the 5th occurrence within an
            hour alerts, then quiet for an hour).
        service: Stamped on every alert.
        queue_size: Per blocking channel, alerts waiting at most; more are
            dropped (and counted).

    Thread-safe.
    """

    def __init__(
        self,
        channels: Iterable[AlertChannel] | None = None,
        *,
        threshold: Any = None,
        service: str | None = None,
        queue_size: int = 1000,
    ) -> None:
        chosen = list(channels) if channels is not None else [LogChannel()]
        names = [c.name for c in chosen]
        if len(set(names)) != len(names):
            raise ConfigError(
                f"alert channel names must be unique, got {names}", code="USAGE_ERROR"
            )
        if threshold is None:
            from .._policies.throttle import OccurrenceThreshold

            threshold = OccurrenceThreshold(5, 3600.0, name="alerts")
        self.channels: tuple[AlertChannel, ...] = tuple(chosen)
        self.threshold = threshold
        self.service = service
        self._lock = threading.Lock()
        self._stats: dict[str, dict[str, int]] = {
            n: {"sent": 0, "failed": 0, "dropped": 0} for n in names
        }
        self._pending: _Tally[str] = _Tally()
        self.suppressed: _Tally[str] = _Tally()
        self._lanes = {
            c.name: _Lane(self, c, queue_size)
            for c in chosen
            if getattr(c, "blocking", False)
        }

    def alert(
        self,
        level: AlertLevel | str,
        title: str,
        message: str = "",
        *,
        key: str | None = None,
        **fields: Any,
    ) -> bool:
        """Raise an alert; returns whether it was sent (not held back by the threshold).

        Never raises because of a channel. Returns quickly: slow channels
        deliver on their own threads (see :meth:`flush`).

        Args:
            level: ``AlertLevel`` or ``"info"``/``"warning"``/``"critical"``.
            title: Short summary.
            message: Details.
            key: Throttle per key (non-critical alerts only).
            **fields: Extra details for the channels.
        """
        try:
            lvl = AlertLevel(level)
        except ValueError:
            raise ConfigError(
                f"unknown alert level {level!r}; use info, warning or critical",
                code="USAGE_ERROR",
            ) from None
        occurrences = 1
        if key is not None:
            # The threshold may live in a shared store: ask it outside our lock.
            send = lvl is AlertLevel.CRITICAL or self._should_send(key)
            with self._lock:
                if not send:
                    self._pending[key] += 1
                    self.suppressed[key] += 1
                    return False
                occurrences = self._pending.pop(key, 0) + 1
        alert = Alert(
            level=lvl,
            title=title,
            message=message,
            key=key,
            service=self.service,
            timestamp=time.time(),
            occurrences=occurrences,
            fields=fields,
        )
        for channel in self.channels:
            lane = self._lanes.get(channel.name)
            if lane is not None:
                lane.put(alert)
            else:
                self._deliver(channel, alert)
        emit(
            "alerts",
            "sent",
            level="warning" if lvl is not AlertLevel.INFO else "info",
            subject=key or title,
            alert_level=lvl.value,
            occurrences=occurrences,
        )
        return True

    def _should_send(self, key: str) -> bool:
        try:
            return bool(self.threshold.record(key))
        except Exception as exc:  # noqa: BLE001 - better a duplicate alert than a lost one
            emit("alerts", "threshold_failed", level="error", subject=key, exc=exc)
            return True

    def info(
        self, title: str, message: str = "", *, key: str | None = None, **fields: Any
    ) -> bool:
        """``alert(AlertLevel.INFO, ...)``."""
        return self.alert(AlertLevel.INFO, title, message, key=key, **fields)

    def warning(
        self, title: str, message: str = "", *, key: str | None = None, **fields: Any
    ) -> bool:
        """``alert(AlertLevel.WARNING, ...)``."""
        return self.alert(AlertLevel.WARNING, title, message, key=key, **fields)

    def critical(
        self, title: str, message: str = "", *, key: str | None = None, **fields: Any
    ) -> bool:
        """``alert(AlertLevel.CRITICAL, ...)``: never throttled."""
        return self.alert(AlertLevel.CRITICAL, title, message, key=key, **fields)

    def _deliver(self, channel: AlertChannel, alert: Alert) -> None:
        try:
            channel.send(alert)
        except Exception as exc:  # noqa: BLE001 - one channel never stops the others
            self._count(channel.name, "failed")
            with contextlib.suppress(Exception):
                _log.warning(
                    "alert channel %s failed: %s: %s",
                    channel.name,
                    type(exc).__name__,
                    exc,
                )
            emit(
                "alerts",
                "channel_failed",
                level="warning",
                subject=channel.name,
                exc=exc,
                title=alert.title,
            )
        else:
            self._count(channel.name, "sent")

    def _count(self, channel: str, what: str) -> None:
        with self._lock:
            self._stats[channel][what] += 1

    def stats(self) -> dict[str, ChannelStats]:
        """Per channel: alerts sent, failed and dropped."""
        with self._lock:
            return {
                name: ChannelStats(**counts) for name, counts in self._stats.items()
            }

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every queued alert was delivered (or failed).

        Returns:
            True if all queues drained within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        for lane in self._lanes.values():
            while lane.queue.unfinished_tasks:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.005)
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Deliver what is queued (within ``timeout``) and stop the threads."""
        self.flush(timeout)
        for lane in self._lanes.values():
            if lane.thread is not None:
                with contextlib.suppress(queue.Full):
                    lane.queue.put_nowait(_STOP)

    def send_daily_report(
        self,
        health: HealthReport | HealthRegistry | None,
        store: EventStore | None,
        **options: Any,
    ) -> str:
        """Build :func:`daily_report` and send it as one INFO alert; returns the text."""
        text = daily_report(health, store, **options)
        status = _health_status(health)
        title = "Daily report" + (f": {status.upper()}" if status else "")
        self.alert(AlertLevel.INFO, title, text)
        return text

    def __repr__(self) -> str:
        return f"AlertDispatcher({[c.name for c in self.channels]!r})"


# -- the daily report --------------------------------------------------------------------


def _health_status(health: HealthReport | HealthRegistry | None) -> str | None:
    report = _as_report(health)
    return None if report is None else report.status


def _as_report(health: HealthReport | HealthRegistry | None) -> HealthReport | None:
    if health is None:
        return None
    run = getattr(health, "run", None)
    if callable(run):
        report: HealthReport = run()
        return report
    return health  # type: ignore[return-value]


def _when(ts: float) -> str:
    return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).strftime("%H:%M:%SZ")


def daily_report(  # noqa: PLR0915 - one linear report, section by section
    health: HealthReport | HealthRegistry | None,
    store: EventStore | None,
    *,
    since: Any = "24h",
    markdown: bool = True,
    title: str = "Daily reliability report",
) -> str:
    """A summary for a human: health per component, errors in the last 24 h by
    category, breaker trips, leaks and crashes.

    Args:
        health: A report, or a registry to run now (``None``: skip the section).
        store: The event store to summarise (``None``: skip those sections).
        since: Start of the period (any :func:`parse_time` form).
        markdown: Markdown (tables) or plain text.
        title: The heading.

    Returns:
        The report text.
    """
    from .time_args import parse_time

    now = time.time()
    start = parse_time(since, now=now)
    day = _dt.datetime.fromtimestamp(now, _dt.timezone.utc).strftime(
        "%Y-%m-%d %H:%M UTC"
    )
    out: list[str] = [f"# {title} — {day}" if markdown else f"{title} — {day}", ""]

    def heading(text: str) -> None:
        out.append(f"## {text}" if markdown else f"{text}\n{'-' * len(text)}")

    def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        if markdown:
            out.append("| " + " | ".join(header) + " |")
            out.append("|" + "---|" * len(header))
            out.extend(
                "| " + " | ".join(c.replace("|", "\\|") for c in row) + " |"
                for row in rows
            )
        else:
            widths = [
                max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)
            ]
            out.append(
                "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
            )
            out.extend(
                "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True))
                for row in rows
            )
        out.append("")

    report = _as_report(health)
    if report is not None:
        heading(f"Health: {report.status.upper()}")
        table(
            ["component", "status", "detail"],
            [[c.name, c.status, c.detail or "-"] for c in report.checks],
        )
    if store is not None:
        events = store.query(since=start, limit=200_000)
        errors = [e for e in events if e.level in ("error", "critical")]
        heading("Errors in the last 24 h by category")
        if errors:
            by_category: dict[str, list[StoredEvent]] = {}
            for e in errors:
                by_category.setdefault(e.category, []).append(e)
            rows = [
                [
                    category,
                    str(len(items)),
                    str(sum(1 for e in items if e.level == "critical")),
                    ", ".join(
                        f"{a} x{n}"
                        for a, n in _Tally(e.action for e in items).most_common(3)
                    ),
                    _when(items[-1].ts),
                ]
                for category, items in sorted(
                    by_category.items(), key=lambda kv: (-len(kv[1]), kv[0])
                )
            ]
            table(["category", "errors", "critical", "top actions", "last"], rows)
        else:
            out.extend(["No errors.", ""])
        trips = [
            e
            for e in events
            if e.category in ("circuit_breaker", "breaker") and e.action == "opened"
        ]
        heading("Breaker trips")
        if trips:
            per = _Tally((e.metadata.get("subject") or "?") for e in trips)
            last = {str(e.metadata.get("subject") or "?"): e.ts for e in trips}
            table(
                ["breaker", "trips", "last"],
                [
                    [str(name), str(n), _when(last[str(name)])]
                    for name, n in per.most_common()
                ],
            )
        else:
            out.extend(["No breaker opened.", ""])
        leaks = [
            e
            for e in events
            if e.category == "leak_monitor" and e.action == "leak_detected"
        ]
        heading("Leaks")
        if leaks:
            table(
                ["monitor", "growth MB/h", "when"],
                [
                    [
                        str(e.metadata.get("subject") or e.service or "?"),
                        str(e.metadata.get("slope_mb_per_hour", "?")),
                        _when(e.ts),
                    ]
                    for e in leaks
                ],
            )
        else:
            out.extend(["No leak detected.", ""])
        crashes = [e for e in events if e.category == "crash"]
        heading("Crashes")
        if crashes:
            table(
                ["service", "kind", "error", "when"],
                [
                    [
                        e.service or "?",
                        e.action,
                        str(
                            e.metadata.get("error_type")
                            or e.metadata.get("reason")
                            or "-"
                        ),
                        _when(e.ts),
                    ]
                    for e in crashes
                ],
            )
        else:
            out.extend(["No crash.", ""])
    return "\n".join(out).rstrip() + "\n"
