"""The default event hook: events into the stdlib logger, without secrets or storms.

:func:`log_event` logs each event into ``paios_reliability`` (which has a
``NullHandler``, so nothing is printed unless the host set up logging);
:func:`log_redacted` is the one way the library writes a record, with the
traceback already redacted; repeated identical failures are summarised
(:func:`set_log_summary`).
"""

from __future__ import annotations

import contextlib
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from .checks import check_count, check_optional_number
from .event import _error_text
from .settings import Restorer

if TYPE_CHECKING:
    import logging

    from .event import Event

__all__ = [
    "flush_log_summary",
    "isolate_log_summary",
    "log_event",
    "log_redacted",
    "set_log_summary",
]

_LEVELNO: Mapping[str, int] = MappingProxyType(
    {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
)
_WARNING, _ERROR = 30, 40

# -- logging without secrets ------------------------------------------------------

_quiet = False


def _install_null_handler() -> None:
    """Give the ``paios_reliability`` logger a ``NullHandler``, once.

    Without any handler on the way up, the stdlib's last-resort handler
    prints WARNING and above to stderr: a host that never configured logging
    would get library lines it did not ask for. Done on the first log, not at
    import, so ``import paios_reliability`` does not import ``logging``.
    """
    global _quiet  # noqa: PLW0603 - set once; a race only adds a second NullHandler
    if _quiet:
        return
    import logging

    logger = logging.getLogger("paios_reliability")
    if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
        logger.addHandler(logging.NullHandler())
    _quiet = True


def log_redacted(
    logger: logging.Logger,
    levelno: int,
    message: str,
    exc: BaseException | None = None,
    *,
    payload: Mapping[str, Any] | None = None,
) -> None:
    """Log ``message`` with the redacted traceback of ``exc``.

    The record gets no ``exc_info``: the traceback is already formatted and
    redacted into ``exc_text``, which the stdlib ``Formatter`` (and every
    formatter built on it) prints as it is, so no handler of the user's can
    print the raw exception text, notes or chained causes. ``message`` is
    redacted too. ``payload`` becomes ``record.paios_event`` (structured
    fields, lifted by :func:`configure_logging`); the traceback is added to it
    as ``exception``.
    """
    _install_null_handler()
    if not logger.isEnabledFor(levelno):
        return
    from .redaction import redact_text, redacted_traceback

    fields = dict(payload) if payload is not None else {"event": message}
    exc_text = None
    if exc is not None:
        exc_text = redacted_traceback(exc).rstrip("\n")
        if "exception" in fields:  # a field may not hide the traceback
            fields["field_exception"] = fields.pop("exception")
        fields["exception"] = exc_text
    if _log_via_structlog(logger.name, levelno, fields, redact_text(message)):
        return
    record = logger.makeRecord(
        logger.name,
        levelno,
        __file__,
        0,
        redact_text(message),
        (),
        None,
        func="log_redacted",
        extra={"paios_event": fields},
    )
    record.exc_text = exc_text
    logger.handle(record)


def _log_via_structlog(
    name: str, levelno: int, fields: Mapping[str, Any], message: str
) -> bool:
    """Log through the application's own structlog configuration, if it has one.

    An application that called ``structlog.configure()`` gets the library's
    events rendered by its processors, as real key/value pairs (JSON, logfmt,
    the stdlib ``ProcessorFormatter`` recipe): never one flattened string.
    structlog is only looked up in ``sys.modules``: an application that never
    imported it pays nothing, and the library itself never configures it.
    The level gate stays the stdlib ``paios_reliability`` logger's, the one
    knob for both routes.

    Returns:
        Whether the event was handed to structlog; ``False`` (use stdlib
        logging) when structlog is not configured or its processors raised,
        so a broken log pipeline never loses the event nor breaks the caller.
    """
    import sys

    structlog: Any = sys.modules.get("structlog")
    if structlog is None or not structlog.is_configured():
        return False
    data = dict(fields)
    event = data.pop("event", message)
    # BoundLogger.log() takes these two itself; keep the values under new keys.
    for reserved in ("level", "event"):
        if reserved in data:
            data[f"field_{reserved}"] = data.pop(reserved)
    try:
        structlog.get_logger(name).log(levelno, event, **data)
    except Exception:  # noqa: BLE001 - fall back to stdlib logging
        return False
    return True


def _message(name: str, data: Mapping[str, Any]) -> str:
    rest = " ".join(f"{k}={v!r}" for k, v in data.items())
    return f"{name} {rest}" if rest else name


def log_event(event: Event) -> None:
    """The default hook: log ``event`` at its level into ``paios_reliability``.

    The message is ``<event name> key=value ...`` from :meth:`Event.to_dict`
    (redacted); the fields ride along as ``record.paios_event``. Events at
    ``error`` and above with an exception carry its redacted traceback (see
    :func:`log_redacted`); a scheduled retry is not worth one.

    Failures (an exception, or ``warning`` and above) that repeat with the
    same event name, subject, exception type and message shape are
    summarised (:func:`set_log_summary`): only the log output; hooks and
    stores still get every event.
    """
    import logging

    _install_null_handler()
    logger = logging.getLogger("paios_reliability")
    levelno = _LEVELNO[event.level]
    if not logger.isEnabledFor(levelno):
        return
    summary = _summary
    if summary is not None and (event.exc is not None or levelno >= _WARNING):
        due, log_now = summary.admit(event, levelno)
        for line in due:
            line.log(logger)
        if not log_now:
            return
    data = event.to_dict()
    name = data.pop("event")
    data.pop("level", None)
    data.pop("timestamp", None)
    message = _message(name, data)
    payload = {**data, "event": name}
    exc = event.exc if levelno >= _ERROR else None
    log_redacted(logger, levelno, message, exc, payload=payload)


# -- log storms: repeated identical failures summarised -----------------------------

_SUMMARY_NAME = "paios_reliability.logging.suppressed"
_DIGITS = re.compile(r"\d+")
DEFAULT_SUMMARY_INTERVAL = 60.0
DEFAULT_SUMMARY_KEYS = 1024


@dataclass(slots=True)
class _Tally:
    """One kind of repeated failure: when it was last logged in full, and since."""

    levelno: int
    name: str
    subject: str | None
    error_type: str | None
    error: str | None
    since: float
    suppressed: int = 0
    last: float = 0.0

    def line(self) -> _SummaryLine:
        return _SummaryLine(self, self.suppressed, max(0.0, self.last - self.since))


@dataclass(frozen=True, slots=True)
class _SummaryLine:
    """What one summary record says: how many were suppressed, over how long."""

    tally: _Tally
    suppressed: int
    seconds: float

    def log(self, logger: logging.Logger) -> None:
        from .redaction import redact_text

        tally = self.tally
        data: dict[str, Any] = {
            "suppressed": self.suppressed,
            "seconds": round(self.seconds, 3),
            "suppressed_event": tally.name,
        }
        if tally.subject is not None:
            data["subject"] = redact_text(tally.subject)
        if tally.error_type is not None:
            data["error_type"] = tally.error_type
            data["error"] = tally.error
        with contextlib.suppress(Exception):  # a summary must never break a call
            log_redacted(
                logger,
                tally.levelno,
                _message(_SUMMARY_NAME, data),
                payload={**data, "event": _SUMMARY_NAME},
            )


class _LogSummary:
    """Which failures to log in full and which to count (thread-safe, bounded).

    A failure is logged in full the first time its key (event name, subject,
    exception type, redacted message with digits masked) is seen, and again
    once ``interval`` seconds have passed since; in between it is counted. The
    count is written as one summary line when the key next occurs after the
    interval, when any failure arrives after its interval has run out, when
    the key is evicted (at most ``max_keys`` keys, least recently seen first)
    and at interpreter exit. Time comes from the clock seam at each call.
    """

    __slots__ = ("_lock", "_next_due", "_tallies", "interval", "max_keys")

    def __init__(self, interval: float, max_keys: int) -> None:
        self.interval = interval
        self.max_keys = max_keys
        # Re-entrant: a signal handler (the crash handler's SIGTERM) may log
        # a failure while this thread is inside admit(); a plain Lock would
        # wait for itself forever.
        self._lock = threading.RLock()
        self._tallies: OrderedDict[tuple[Any, ...], _Tally] = OrderedDict()
        self._next_due = math.inf

    def admit(self, event: Event, levelno: int) -> tuple[list[_SummaryLine], bool]:
        """``(summary lines due now, whether to log this event in full)``."""
        from .clock import get_clock

        now = get_clock().monotonic()
        error_type = error = None
        if event.exc is not None:
            error_type = type(event.exc).__qualname__
            error = _DIGITS.sub("#", _error_text(event.exc, 200))
        key = (event.name, event.subject, levelno, error_type, error)
        due: list[_SummaryLine] = []
        with self._lock:
            tally = self._tallies.get(key)
            if tally is None:
                self._tallies[key] = _Tally(
                    levelno, event.name, event.subject, error_type, error, now
                )
                if len(self._tallies) > self.max_keys:
                    _, evicted = self._tallies.popitem(last=False)
                    if evicted.suppressed:
                        due.append(evicted.line())
                log_now = True
            else:
                self._tallies.move_to_end(key)
                if tally.since <= now < tally.since + self.interval:
                    if not tally.suppressed:
                        _exit_flush_registered()
                        self._next_due = min(
                            self._next_due, tally.since + self.interval
                        )
                    tally.suppressed += 1
                    tally.last = now
                    log_now = False
                else:  # the interval is over (or the clock went back): start anew
                    if tally.suppressed:
                        due.append(tally.line())
                    tally.since, tally.suppressed, tally.last = now, 0, now
                    log_now = True
            if now >= self._next_due:
                due.extend(self._sweep(now))
        return due, log_now

    def _sweep(self, now: float) -> list[_SummaryLine]:
        """Summaries of every key whose interval has run out (lock held)."""
        due: list[_SummaryLine] = []
        next_due = math.inf
        for key, tally in list(self._tallies.items()):
            if not tally.suppressed:
                continue
            ends = tally.since + self.interval
            if ends <= now:
                due.append(tally.line())
                self._tallies.pop(key, None)  # its next occurrence is logged in full
            else:
                next_due = min(next_due, ends)
        self._next_due = next_due
        return due

    def drain(self) -> list[_SummaryLine]:
        """Summaries of every pending count, whatever the interval; forgets all."""
        with self._lock:
            due = [t.line() for t in self._tallies.values() if t.suppressed]
            self._tallies.clear()
            self._next_due = math.inf
        return due


_summary_lock = threading.Lock()
_summary: _LogSummary | None = _LogSummary(
    DEFAULT_SUMMARY_INTERVAL, DEFAULT_SUMMARY_KEYS
)
_exit_registered: list[bool] = []


def _exit_flush_registered() -> None:
    """Flush pending counts at exit; registered at the first suppression."""
    if not _exit_registered:
        import atexit

        _exit_registered.append(True)
        atexit.register(flush_log_summary)


def flush_log_summary() -> None:
    """Write a summary line for every pending suppressed count now.

    Runs at interpreter exit by itself (before logging shuts down). Never
    raises.
    """
    import logging

    summary = _summary
    if summary is None:
        return
    logger = logging.getLogger("paios_reliability")
    for line in summary.drain():
        line.log(logger)


def _swap_summary(new: _LogSummary | None) -> _LogSummary | None:
    global _summary
    with _summary_lock:
        old, _summary = _summary, new
    if old is not None:
        import logging

        logger = logging.getLogger("paios_reliability")
        for line in old.drain():  # counts are never lost, only summarised
            line.log(logger)
    return old


def set_log_summary(
    interval: float | None = DEFAULT_SUMMARY_INTERVAL,
    *,
    max_keys: int = DEFAULT_SUMMARY_KEYS,
) -> Restorer:
    """Summarise repeated identical failures in the default log hook's output.

    On by default (60 s). A failure event (one with an exception, or at
    ``warning`` and above) is logged in full the first time; identical ones
    (same event name, subject, level, exception type and redacted message,
    digits masked) within ``interval`` seconds are only counted, and one line
    ``paios_reliability.logging.suppressed suppressed=N seconds=S
    suppressed_event=...`` reports the count when the failure recurs after
    the interval, when the interval of any pending count has run out by the
    time the next failure is logged, and at interpreter exit. So a storm of N
    identical failures writes O(1) tracebacks per interval, not O(N). Only
    log output is summarised: hooks, metrics and the event store still get
    every event.

    Thread-safe; memory is bounded by ``max_keys`` (least recently seen keys
    are dropped first, their pending count written). Time comes from the
    clock seam (:func:`~paios_reliability.testing.FakeClock` in tests).

    Args:
        interval: Seconds between full log lines of one failure; ``None`` or
            ``0`` logs every failure in full.
        max_keys: How many distinct failures to track at once.

    Returns:
        A :class:`Restorer` that brings back the previous setting. Changing
        the setting starts with nothing tracked; pending counts are written
        first.

    Raises:
        ValueError: ``interval`` is negative or not finite, or ``max_keys`` < 1.
    """
    check_optional_number("set_log_summary", "interval", interval, zero=True)
    check_count("set_log_summary", "max_keys", max_keys)
    new = _LogSummary(float(interval), max_keys) if interval else None
    old = _swap_summary(new)
    previous = (old.interval, old.max_keys) if old is not None else None

    def undo() -> None:
        _swap_summary(_LogSummary(*previous) if previous is not None else None)

    return Restorer(undo)


def isolate_log_summary() -> Restorer:
    """Start counting afresh with the current setting (test isolation).

    Returns:
        A :class:`Restorer` that writes what is pending and starts afresh
        again, with the setting in force when this was called.
    """
    current = _summary
    settings = (current.interval, current.max_keys) if current is not None else None
    _swap_summary(_LogSummary(*settings) if settings is not None else None)

    def undo() -> None:
        _swap_summary(_LogSummary(*settings) if settings is not None else None)

    return Restorer(undo)
