"""Events: one frozen record per state change, fanned out to hooks.

Every primitive reports what it does (a retry scheduled, a breaker opening, a
boundary catching an error) as an :class:`Event` named
``paios_reliability.<primitive>.<action>``. Hooks receive them synchronously on
the emitting thread. The default hook logs through structlog into the stdlib
logger ``paios_reliability`` (so nothing is printed unless logging is set up,
and nothing ever goes to stdout, which MCP stdio servers need for the protocol).

A hook that raises is logged and skipped; it can never break the call that
emitted the event.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from ._config import Restorer
from ._observe import current_trace
from .typing import EventHook

__all__ = ["Event", "Level", "add_event_hook", "emit", "log_event"]

Level = Literal["debug", "info", "warning", "error", "critical"]

_LEVELNO: Mapping[str, int] = MappingProxyType(
    {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
)
_NAME_PART = re.compile(r"^[a-z][a-z0-9_]*$")
_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """One thing a primitive did.

    Attributes:
        name: Stable dotted name, ``paios_reliability.<primitive>.<action>``.
        level: ``debug`` | ``info`` | ``warning`` | ``error`` | ``critical``.
        subject: What it happened to: a breaker name, a function, a path.
        fields: Read-only details (attempt numbers, waits, states...).
        trace: The trace context (``trace_id``, ``span_id``...) at emission.
        timestamp: Wall-clock time of emission, seconds since the epoch.
        exc: The exception involved, if any.
    """

    name: str
    level: Level = "info"
    subject: str | None = None
    fields: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    trace: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    timestamp: float = 0.0
    exc: BaseException | None = None

    @property
    def primitive(self) -> str:
        """The primitive that emitted it, e.g. ``retry``."""
        return self.name.split(".")[1]

    @property
    def action(self) -> str:
        """What happened, e.g. ``scheduled``."""
        return self.name.split(".", 2)[2]

    def to_dict(self) -> dict[str, Any]:
        """A flat, JSON-safe view (exception as type and message).

        The event's own keys (``event``, ``level``, ``timestamp``, ``subject``,
        trace ids, ``error_type``/``error``) win over fields of the same name.
        Values under secret-looking keys and secrets in text (``token=...``,
        ``Bearer ...``) are redacted, so logs and stores never receive them.
        """
        from ._taxonomy import json_safe, redact_text

        out: dict[str, Any] = json_safe(dict(self.fields))
        out.update(self.trace)
        out.update(event=self.name, level=self.level, timestamp=self.timestamp)
        if self.subject is not None:
            out["subject"] = self.subject
        if self.exc is not None:
            out["error_type"] = type(self.exc).__qualname__
            try:
                out["error"] = redact_text(str(self.exc))
            except Exception:  # noqa: BLE001 - an unprintable error is still an event
                out["error"] = f"<unprintable {type(self.exc).__name__}>"
        return out


_lock = threading.Lock()
_hooks: tuple[EventHook, ...] = ()
_hook_errors = 0


def add_event_hook(hook: EventHook) -> Restorer:
    """Send every event to ``hook`` too (after the hooks already added).

    Args:
        hook: A callable taking one :class:`Event`. It must be thread-safe.

    Returns:
        A :class:`Restorer` that removes exactly this hook again.
    """
    global _hooks  # noqa: PLW0603 - copy-on-write tuple, readers take no lock
    if not callable(hook):
        raise TypeError(f"add_event_hook() needs a callable, got {hook!r}")
    token = _Registration(hook)
    with _lock:
        _hooks = (*_hooks, token)

    def undo() -> None:
        global _hooks  # noqa: PLW0603
        with _lock:
            _hooks = tuple(h for h in _hooks if h is not token)

    return Restorer(undo)


class _Registration:
    """Wraps a hook so the same callable can be added twice and removed once."""

    __slots__ = ("hook",)

    def __init__(self, hook: EventHook) -> None:
        self.hook = hook

    def __call__(self, event: Event, /) -> None:
        self.hook(event)


def hook_errors() -> int:
    """How many times a hook has raised since the process started."""
    return _hook_errors


def emit(
    primitive: str,
    action: str,
    /,
    *,
    level: Level = "info",
    subject: str | None = None,
    exc: BaseException | None = None,
    **fields: Any,
) -> Event:
    """Build an event and hand it to the default log hook and every added hook.

    ``primitive`` and ``action`` are positional-only, so any other name
    (even ``action=``) can be a field. Never raises because of a hook.
    Returns the event (handy in tests).
    """
    event = Event(
        name=f"paios_reliability.{primitive}.{action}",
        level=level,
        subject=subject,
        fields=MappingProxyType(fields) if fields else _EMPTY,
        trace=current_trace(),
        timestamp=time.time(),
        exc=exc,
    )
    _deliver(log_event, event)
    for hook in _hooks:
        _deliver(hook, event)
    return event


def _deliver(hook: EventHook, event: Event) -> None:
    global _hook_errors  # noqa: PLW0603 - a diagnostic counter, races only undercount
    try:
        hook(event)
    except Exception:  # noqa: BLE001 - a hook must never break the caller
        _hook_errors += 1
        try:
            import logging

            logging.getLogger("paios_reliability.events").exception(
                "event hook %r failed on %s", getattr(hook, "hook", hook), event.name
            )
        except Exception:  # noqa: BLE001, S110 - logging itself is broken; give up quietly
            pass


def valid_name_part(part: str) -> bool:
    """Whether ``part`` may be a primitive or action name (lower snake case)."""
    return bool(_NAME_PART.match(part))


# -- the default hook: structlog over the stdlib logger "paios_reliability" ------

_logger_cache: list[Any] = []


def _structlog_logger() -> Any:
    if not _logger_cache:
        import logging

        import structlog

        def to_stdlib(
            _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
        ) -> tuple[tuple[Any, ...], dict[str, Any]]:
            exc_info = event_dict.pop("exc_info", None)
            name = event_dict["event"]
            rest = " ".join(f"{k}={v!r}" for k, v in event_dict.items() if k != "event")
            message = f"{name} {rest}" if rest else name
            return (message,), {
                "extra": {"paios_event": dict(event_dict)},
                "exc_info": exc_info,
            }

        _logger_cache.append(
            structlog.wrap_logger(
                logging.getLogger("paios_reliability"),
                processors=[to_stdlib],
                wrapper_class=structlog.stdlib.BoundLogger,
            )
        )
    return _logger_cache[0]


def log_event(event: Event) -> None:
    """The default hook: log ``event`` at its level via structlog and stdlib."""
    import logging

    levelno = _LEVELNO[event.level]
    if not logging.getLogger("paios_reliability").isEnabledFor(levelno):
        return
    data = event.to_dict()
    name = data.pop("event")
    data.pop("level", None)
    data.pop("timestamp", None)
    if "exc_info" in data:  # a field may not steal the logger's own argument
        data["field_exc_info"] = data.pop("exc_info")
    exc = event.exc
    # Tracebacks only where someone must act; a scheduled retry is not that.
    exc_info = (
        (type(exc), exc, exc.__traceback__)
        if exc is not None and levelno >= _LEVELNO["error"]
        else None
    )
    _structlog_logger().log(levelno, name, exc_info=exc_info, **data)
