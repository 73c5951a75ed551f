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
import enum
import json
import logging
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter as _Tally
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._core.clock import get_clock
from .._core.events import emit
from .._core.exceptions import ConfigError

if TYPE_CHECKING:
    from ..typing import AlertChannel, Clock
    from .eventstore import EventStore, StoredEvent
    from .health import HealthRegistry, HealthReport

__all__ = [
    "Alert",
    "AlertChannel",
    "AppriseChannel",
    "AlertDispatcher",
    "AlertLevel",
    "DesktopChannel",
    "EventStoreChannel",
    "LogChannel",
    "WebhookChannel",
    "daily_report",
]

_log = logging.getLogger("paios_reliability.alerts")


class AlertLevel(str, enum.Enum):
    """How urgent an alert is. ``CRITICAL`` bypasses the noise threshold."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert, as every channel receives it.

    Attributes:
        level: :class:`AlertLevel`.
        title: Short summary (a notification title).
        message: The details.
        key: What it is about, for throttling (``"integration:github"``).
        service: The service that raised it.
        timestamp: Seconds since the epoch.
        occurrences: How many times it happened since the last alert for
            this key (1 for unthrottled alerts).
        fields: Extra JSON-safe details.
    """

    level: AlertLevel
    title: str
    message: str = ""
    key: str | None = None
    service: str | None = None
    timestamp: float = 0.0
    occurrences: int = 1
    fields: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view (secrets in fields redacted)."""
        from .._core.redaction import json_safe

        return {
            "level": self.level.value,
            "title": self.title,
            "message": self.message,
            "key": self.key,
            "service": self.service,
            "timestamp": _dt.datetime.fromtimestamp(self.timestamp, _dt.timezone.utc)
            .isoformat()
            .replace("+00:00", "Z"),
            "occurrences": self.occurrences,
            "fields": json_safe(dict(self.fields)),
        }


# -- channels ------------------------------------------------------------------------

_STD_LEVELS = {AlertLevel.INFO: 20, AlertLevel.WARNING: 30, AlertLevel.CRITICAL: 50}


class LogChannel:
    """Log alerts through structlog into the stdlib logger ``paios_reliability.alerts``."""

    blocking = False

    def __init__(
        self, logger_name: str = "paios_reliability.alerts", *, name: str = "log"
    ) -> None:
        self.name = name
        self.logger_name = logger_name
        self._logger: Any = None

    def send(self, alert: Alert, /) -> None:
        if self._logger is None:
            import structlog

            self._logger = structlog.wrap_logger(
                logging.getLogger(self.logger_name),
                wrapper_class=structlog.stdlib.BoundLogger,
                processors=[_to_stdlib],
            )
        data = alert.to_dict()
        data.pop("timestamp", None)
        data["alert_level"] = data.pop("level")  # `level` is the logger's own argument
        title = data.pop("title")
        self._logger.log(_STD_LEVELS[alert.level], f"ALERT {title}", **data)


def _to_stdlib(
    _logger: Any, _method: str, event_dict: Any
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    name = event_dict.pop("event")
    rest = " ".join(f"{k}={v!r}" for k, v in event_dict.items())
    return ((f"{name} {rest}" if rest else name),), {
        "extra": {"paios_alert": dict(event_dict)}
    }


class EventStoreChannel:
    """Record alerts in an :class:`EventStore` (category ``alert``, action = level)."""

    blocking = False

    def __init__(self, store: EventStore, *, name: str = "event_store") -> None:
        self.name = name
        self.store = store

    def send(self, alert: Alert, /) -> None:
        self.store.emit(
            "alert",
            alert.level.value,
            level=alert.level.value,
            service=alert.service,
            title=alert.title,
            message=alert.message,
            key=alert.key,
            occurrences=alert.occurrences,
            **dict(alert.fields),
        )


_LINUX_STYLE: dict[AlertLevel, tuple[str, int, str | None]] = {
    # urgency, expire time in ms (0: until dismissed), sound hint
    AlertLevel.INFO: ("low", 5000, None),
    AlertLevel.WARNING: ("normal", 10000, "dialog-warning"),
    AlertLevel.CRITICAL: ("critical", 0, "dialog-error"),
}


def _safe_url(value: object) -> str | None:
    if not isinstance(value, str) or len(value) > 2000:
        return None
    if not value.startswith(("https://", "http://")):
        return None
    if any(ord(c) <= 32 or ord(c) == 127 for c in value):
        return None
    return value


def _no_leading_dash(text: str) -> str:
    # terminal-notifier would read "-x" as an option.
    return text if not text.startswith("-") else "\u2013" + text[1:]


def _applescript_string(text: str) -> str:
    cleaned = "".join(" " if ord(c) < 32 or ord(c) == 127 else c for c in text)
    return '"' + cleaned.replace("\\", "\\\\").replace('"', '\\"') + '"'


class DesktopChannel:
    """Desktop notifications: ``notify-send`` (Linux) or ``osascript`` (macOS).

    What each level looks like:

    - INFO: shown about 5 s, no sound;
    - WARNING: shown about 10 s, with a sound;
    - CRITICAL: stays until dismissed, with a sound and, given a URL (the
      alert's ``url`` field, else ``action_url``), a way to open it: on
      macOS a dialog (``display alert``) whose "Open" button opens it; on
      Linux the URL is in the body (notification daemons make it a link;
      ``notify-send`` actions would block until the user answers).

    On Linux the level sets ``--urgency``, ``--expire-time`` (5000, 10000,
    0 = never) and a sound hint. On macOS, ``terminal-notifier`` (when
    installed) shows INFO and WARNING alerts that carry a URL, so a click
    opens it; the dialog of a CRITICAL alert is shown without waiting for
    the answer. Only ``http(s)`` URLs are used.

    Where no notifier exists (servers, containers) the channel is
    unavailable: it says so once (a log warning and an
    ``alerts.channel_unavailable`` event) and then drops alerts silently. It
    never raises for that.

    Args:
        app_name: Shown as the sender (Linux).
        timeout: Seconds the notifier may take.
        platform: Override ``sys.platform`` (to build commands for another OS).
        action_url: The runbook or dashboard a CRITICAL alert opens, when the
            alert has no ``url`` field.
    """

    blocking = True

    def __init__(
        self,
        *,
        app_name: str = "paios",
        timeout: float = 5.0,
        platform: str | None = None,
        name: str = "desktop",
        action_url: str | None = None,
    ) -> None:
        self.name = name
        self.app_name = app_name
        self.timeout = timeout
        self.platform = sys.platform if platform is None else platform
        self.program = self._program_name()
        self.path = shutil.which(self.program) if self.program else None
        self.terminal_notifier = (
            shutil.which("terminal-notifier") if self.platform == "darwin" else None
        )
        if action_url is not None and _safe_url(action_url) is None:
            raise ConfigError(
                "DesktopChannel(action_url=...) must be an http(s) URL without "
                "spaces or control characters",
                code="USAGE_ERROR",
            )
        self.action_url = action_url
        self._reported = False

    def _program_name(self) -> str | None:
        if self.platform.startswith("linux") or "bsd" in self.platform:
            return "notify-send"
        if self.platform == "darwin":
            return "osascript"
        return None

    @property
    def available(self) -> bool:
        """Whether a notifier program was found."""
        return self.path is not None

    def _url(self, alert: Alert) -> str | None:
        return _safe_url(alert.fields.get("url")) or self.action_url

    def command(self, alert: Alert) -> list[str] | None:
        """The argv that would show ``alert`` (``None`` on unsupported platforms)."""
        title = alert.title[:200]
        body = alert.message[:1000]
        url = self._url(alert)
        level = alert.level
        if self.program == "notify-send":
            urgency, expire, sound = _LINUX_STYLE[level]
            if url is not None:
                body = f"{body}\n{url}" if body else url
            argv = [
                self.path or "notify-send",
                "--app-name",
                self.app_name,
                "--urgency",
                urgency,
                "--expire-time",
                str(expire),
            ]
            if sound is not None:
                argv += ["--hint", f"string:sound-name:{sound}"]
            return [*argv, "--", title, body]
        if self.program == "osascript":
            osascript = self.path or "osascript"
            if level is AlertLevel.CRITICAL:
                script = (
                    f"display alert {_applescript_string(title)} "
                    f"message {_applescript_string(body)} as critical"
                )
                if url is not None:
                    script = (
                        f"set answer to {script} "
                        'buttons {"Dismiss", "Open"} default button "Open"\n'
                        'if button returned of answer is "Open" then '
                        f"open location {_applescript_string(url)}"
                    )
                return [osascript, "-e", "beep", "-e", script]
            if url is not None and self.terminal_notifier is not None:
                argv = [
                    self.terminal_notifier,
                    "-title",
                    _no_leading_dash(title),
                    "-message",
                    _no_leading_dash(body or title),
                    "-open",
                    url,
                ]
                if level is AlertLevel.WARNING:
                    argv += ["-sound", "default"]
                return argv
            script = (
                f"display notification {_applescript_string(body)} "
                f"with title {_applescript_string(title)}"
            )
            if level is AlertLevel.WARNING:
                script += ' sound name "Funk"'
            return [osascript, "-e", script]
        return None

    def send(self, alert: Alert, /) -> None:
        argv = self.command(alert)
        if argv is None or self.path is None:
            if not self._reported:
                self._reported = True
                _log.warning(
                    "desktop notifications unavailable on %s (no %s); alerts still go "
                    "to the other channels",
                    self.platform,
                    self.program or "notifier",
                )
                emit(
                    "alerts",
                    "channel_unavailable",
                    level="warning",
                    subject=self.name,
                    program=self.program,
                    platform=self.platform,
                )
            return
        if alert.level is AlertLevel.CRITICAL and self.program == "osascript":
            # The dialog stays until dismissed: never hold the lane for it.
            proc = subprocess.Popen(  # noqa: S603 - fixed program, argv without a shell
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            threading.Thread(
                target=proc.wait, name="paios-alert-dialog", daemon=True
            ).start()
            return
        subprocess.run(  # noqa: S603 - fixed program, argv without a shell
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=self.timeout,
            check=True,
        )


class WebhookChannel:
    """POST alerts as JSON to a URL (stdlib ``urllib``; no extra dependency).

    Transient failures (connection refused/reset, timeouts, HTTP 429/5xx) are
    retried up to ``attempts`` times with exponential backoff; 4xx fail fast.

    Args:
        url: ``http://`` or ``https://`` endpoint (Slack/ntfy/your relay).
        timeout: Seconds per attempt (connect and read).
        attempts: Attempts in total (>= 1).
        backoff: First wait between attempts, doubled each time (max 10 s).
        headers: Extra headers (e.g. ``Authorization``).
        clock: Time source for the waits.
    """

    blocking = True

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        attempts: int = 3,
        backoff: float = 0.5,
        headers: Mapping[str, str] | None = None,
        clock: Clock | None = None,
        name: str = "webhook",
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(
                f"webhook URL must be http(s): {url!r}", code="USAGE_ERROR"
            )
        if attempts < 1 or not timeout > 0:
            raise ConfigError("need attempts >= 1 and timeout > 0", code="USAGE_ERROR")
        self.name = name
        self.url = url
        self.timeout = float(timeout)
        self.attempts = int(attempts)
        self.backoff = float(backoff)
        self.headers = dict(headers or {})
        self._clock = clock

    def payload(self, alert: Alert) -> bytes:
        """The JSON body sent for ``alert``."""
        body = alert.to_dict()
        body["text"] = f"[{alert.level.value.upper()}] {alert.title}" + (
            f": {alert.message}" if alert.message else ""
        )
        return json.dumps(body).encode("utf-8")

    def send(self, alert: Alert, /) -> None:
        import urllib.error
        import urllib.request

        from .._core.taxonomy import is_retryable

        data = self.payload(alert)
        headers = {"Content-Type": "application/json", **self.headers}
        for attempt in range(1, self.attempts + 1):
            request = urllib.request.Request(  # noqa: S310 - scheme checked in __init__
                self.url, data=data, headers=headers, method="POST"
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                    response.read(65536)
            except Exception as exc:
                if isinstance(exc, urllib.error.HTTPError):
                    exc.close()  # its body is not needed; never leak the socket
                if attempt >= self.attempts or not is_retryable(exc):
                    raise
                wait = min(10.0, self.backoff * (2 ** min(attempt - 1, 10)))
                get_clock(self._clock).sleep(wait)
            else:
                return


# -- the dispatcher --------------------------------------------------------------------

_STOP = object()


class AppriseChannel:
    """Send alerts through apprise: Slack, Telegram, Discord, ntfy, e-mail and
    a hundred more services, each given as a URL (extra ``apprise``).

    apprise does the per-service work (formats, endpoints, its own retries);
    this channel maps the alert level to apprise's notify type (info, warning,
    failure for critical) and reports a delivery that failed for any URL as
    an error, so the dispatcher's stats count it.

    The URLs carry tokens (``tgram://BOT_TOKEN/CHAT``): they are never shown
    in the repr, in errors or in events; only their schemes are.

    Args:
        urls: One apprise URL or several (every one is notified).
        name: The channel's name in the dispatcher's stats.

    Raises:
        PermanentError: ``DEPENDENCY_MISSING`` without apprise installed
            (``pip install 'paios-reliability[apprise]'``).
        ConfigError: ``USAGE_ERROR`` for no URLs; ``CONFIG_INVALID`` for a
            URL apprise cannot use (named by position and scheme only).
    """

    blocking = True

    def __init__(self, urls: str | Sequence[str], *, name: str = "apprise") -> None:
        try:
            import apprise
        except ImportError as exc:
            from .._core.exceptions import PermanentError

            raise PermanentError(
                "apprise is not installed: pip install 'paios-reliability[apprise]'",
                code="DEPENDENCY_MISSING",
                context={"module": "apprise"},
            ) from exc
        items = [urls] if isinstance(urls, str) else list(urls)
        if not items:
            raise ConfigError(
                "AppriseChannel needs at least one URL", code="USAGE_ERROR"
            )
        self.name = name
        self._apprise: Any = apprise.Apprise()
        self._types = {
            AlertLevel.INFO: apprise.NotifyType.INFO,
            AlertLevel.WARNING: apprise.NotifyType.WARNING,
            AlertLevel.CRITICAL: apprise.NotifyType.FAILURE,
        }
        self.schemes: tuple[str, ...] = tuple(
            u.split("://", 1)[0] if "://" in u else "?" for u in items
        )
        for position, (url, scheme) in enumerate(
            zip(items, self.schemes, strict=True), 1
        ):
            if not self._apprise.add(url):
                raise ConfigError(
                    f"apprise cannot use URL #{position} (scheme {scheme!r}); "
                    "check it against the apprise URL list",
                    code="CONFIG_INVALID",
                )

    def send(self, alert: Alert, /) -> None:
        body = alert.message or alert.title
        if not self._apprise.notify(
            title=f"[{alert.level.value.upper()}] {alert.title}",
            body=body,
            notify_type=self._types[alert.level],
        ):
            from .._core.exceptions import TransientError

            raise TransientError(
                f"apprise could not deliver the alert to every URL "
                f"(schemes: {', '.join(self.schemes)})",
                code="SERVICE_UNAVAILABLE",
            )

    def __repr__(self) -> str:
        return f"AppriseChannel(name={self.name!r}, schemes={list(self.schemes)!r})"


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
            from .._policies.ratelimit import OccurrenceThreshold

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
    from .eventstore import parse_time

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
