"""Events: one frozen record per state change, fanned out to hooks.

Every primitive reports what it does (a retry scheduled, a breaker opening, a
boundary catching an error) as an :class:`Event` named
``paios_reliability.<primitive>.<action>``. Hooks receive them synchronously on
the emitting thread. The default hook logs them into the stdlib logger
``paios_reliability`` (so nothing is printed unless logging is set up, and
nothing ever goes to stdout, which MCP stdio servers need for the protocol).

Nothing the default hook writes carries a secret: the message is built from
the redacted :meth:`Event.to_dict`, and a traceback travels as an already
redacted ``exc_text`` (never as ``exc_info``), so every handler and formatter
prints only redacted text.

A hook that raises is logged and skipped; it can never break the call that
emitted the event.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from ._config import Restorer
from ._observe import current_trace
from .typing import EventHook

if TYPE_CHECKING:
    import logging

__all__ = [
    "Event",
    "Level",
    "add_event_hook",
    "emit",
    "log_event",
    "log_redacted",
]

Level = Literal["debug", "info", "warning", "error", "critical"]

_LEVELNO: Mapping[str, int] = MappingProxyType(
    {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
)
_ERROR = 40
_NAME_PART = re.compile(r"^[a-z][a-z0-9_]*$")
_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class Event:
    """One thing a primitive did.

    ``fields`` and ``exc`` are the raw values, for hooks in this process;
    every view of an event meant to leave it (:meth:`to_dict`, ``repr``, the
    default log hook, the event store) is redacted.

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
        Everything is redacted (see :func:`~paios_reliability.audit_event`):
        values under secret-looking keys, secrets in text (``token=...``,
        ``Bearer ...``, ``sk-...``, URL passwords) in fields, the subject, the
        trace context and the error message, so logs and stores never
        receive them.
        """
        from ._taxonomy import json_safe, redact_text

        out: dict[str, Any] = json_safe(dict(self.fields))
        if self.trace:
            out.update(json_safe(dict(self.trace)))
        out.update(event=self.name, level=self.level, timestamp=self.timestamp)
        if self.subject is not None:
            out["subject"] = redact_text(str(self.subject))
        if self.exc is not None:
            out["error_type"] = type(self.exc).__qualname__
            out["error"] = _error_text(self.exc)
        return out

    def __repr__(self) -> str:
        from ._taxonomy import json_safe, redact_text

        parts = [f"name={self.name!r}", f"level={self.level!r}"]
        if self.subject is not None:
            parts.append(f"subject={redact_text(str(self.subject))!r}")
        parts.append(f"fields={json_safe(dict(self.fields))!r}")
        if self.trace:
            parts.append(f"trace={json_safe(dict(self.trace))!r}")
        parts.append(f"timestamp={self.timestamp!r}")
        if self.exc is not None:
            parts.append(
                f"exc=<{type(self.exc).__qualname__}: {_error_text(self.exc)}>"
            )
        return f"Event({', '.join(parts)})"


def _error_text(exc: BaseException, limit: int = 2000) -> str:
    """``str(exc)``, redacted, at most ``limit`` characters; never raises."""
    from ._taxonomy import redact_clip

    try:
        return redact_clip(str(exc), limit)
    except Exception:  # noqa: BLE001 - an unprintable error is still an event
        return f"<unprintable {type(exc).__name__}>"


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
    except Exception as exc:  # noqa: BLE001 - a hook must never break the caller
        _hook_errors += 1
        try:
            import logging

            log_redacted(
                logging.getLogger("paios_reliability.events"),
                logging.ERROR,
                f"event hook {getattr(hook, 'hook', hook)!r} failed on {event.name}",
                exc,
            )
        except Exception:  # noqa: BLE001, S110 - logging itself is broken; give up quietly
            pass


def valid_name_part(part: str) -> bool:
    """Whether ``part`` may be a primitive or action name (lower snake case)."""
    return bool(_NAME_PART.match(part))


# -- logging without secrets ------------------------------------------------------


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
    if not logger.isEnabledFor(levelno):
        return
    from ._taxonomy import redact_text, redacted_traceback

    fields = dict(payload) if payload is not None else {"event": message}
    exc_text = None
    if exc is not None:
        exc_text = redacted_traceback(exc).rstrip("\n")
        if "exception" in fields:  # a field may not hide the traceback
            fields["field_exception"] = fields.pop("exception")
        fields["exception"] = exc_text
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


def _message(name: str, data: Mapping[str, Any]) -> str:
    rest = " ".join(f"{k}={v!r}" for k, v in data.items())
    return f"{name} {rest}" if rest else name


def log_event(event: Event) -> None:
    """The default hook: log ``event`` at its level into ``paios_reliability``.

    The message is ``<event name> key=value ...`` from :meth:`Event.to_dict`
    (redacted); the fields ride along as ``record.paios_event``. Events at
    ``error`` and above with an exception carry its redacted traceback (see
    :func:`log_redacted`); a scheduled retry is not worth one.
    """
    import logging

    logger = logging.getLogger("paios_reliability")
    levelno = _LEVELNO[event.level]
    if not logger.isEnabledFor(levelno):
        return
    data = event.to_dict()
    name = data.pop("event")
    data.pop("level", None)
    data.pop("timestamp", None)
    message = _message(name, data)
    payload = {**data, "event": name}
    exc = event.exc if levelno >= _ERROR else None
    log_redacted(logger, levelno, message, exc, payload=payload)
