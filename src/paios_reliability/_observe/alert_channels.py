"""Where alerts go: the log, the event store, the desktop, a webhook, Apprise.

Each channel is a small class with ``send(alert)``; the dispatcher in
:mod:`.alerts` decides which run inline and which get a thread of their own.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .._core.clock import get_clock
from .._core.events import emit
from .._core.exceptions import ConfigError
from .alert_model import Alert, AlertLevel

if TYPE_CHECKING:
    from ..typing import Clock
    from .eventstore import EventStore

__all__ = [
    "AppriseChannel",
    "DesktopChannel",
    "EventStoreChannel",
    "LogChannel",
    "WebhookChannel",
]

_log = logging.getLogger("paios_reliability.alerts")


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
            from .._core.imports import missing_extra

            raise missing_extra("apprise", "apprise") from exc
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
