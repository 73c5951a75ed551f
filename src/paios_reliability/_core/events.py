"""Events: one frozen record per state change, fanned out to hooks.

Every primitive reports what it does (a retry scheduled, a breaker opening, a
boundary catching an error) as an :class:`Event` named
``paios_reliability.<primitive>.<action>``. Hooks receive them synchronously on
the emitting thread. The default hook logs them into the stdlib logger
``paios_reliability``, which has a ``NullHandler``: nothing is printed unless
the host set up logging (not even warnings, which the stdlib's last-resort
handler would otherwise print to stderr), routine events are DEBUG so a host
logging INFO hears only what matters, and nothing ever goes to stdout, which
MCP stdio servers need for the protocol.

Nothing the default hook writes carries a secret: the message is built from
the redacted :meth:`Event.to_dict`, and a traceback travels as an already
redacted ``exc_text`` (never as ``exc_info``), so every handler and formatter
prints only redacted text. Repeated identical failures are summarised: the
first in full, then one counted line per interval (:func:`set_log_summary`).

A hook that raises is logged and skipped; it can never break the call that
emitted the event.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from types import MappingProxyType

from .settings import Restorer
from .typing_lite import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any, Literal

    from ..typing import EventHook
    from .event import Event

    Level = Literal["debug", "info", "warning", "error", "critical"]

__all__ = ["add_event_hook", "emit", "emit_event"]

_NAME_PART = re.compile(r"^[a-z][a-z0-9_]*$")


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
) -> None:
    """Report a state change to the default log hook and every added hook.

    ``primitive`` and ``action`` are positional-only, so any other name
    (even ``action=``) can be a field. Never raises because of a hook.

    The event is built only if something can receive it: an added hook, or
    stdlib logging, which the host may have configured once it imported it.
    A process that did neither (a hook script) pays one check per event and
    never loads :mod:`dataclasses` or :mod:`logging` for events it would
    drop unseen.
    """
    if _hooks or "logging" in sys.modules:
        _publish(
            _build(
                primitive, action, level=level, subject=subject, exc=exc, fields=fields
            )
        )


def emit_event(
    primitive: str,
    action: str,
    /,
    *,
    level: Level = "info",
    subject: str | None = None,
    exc: BaseException | None = None,
    **fields: Any,
) -> Event:
    """Emit an application's own event, like the library's; returns it.

    The event goes through the same hooks, logs, event stores and metrics
    as the library's own. ``primitive`` and ``action`` are positional-only,
    so any other name (even ``action=``) can be a field. Never raises
    because of a hook.
    """
    event = _build(
        primitive, action, level=level, subject=subject, exc=exc, fields=fields
    )
    _publish(event)
    return event


def _build(
    primitive: str,
    action: str,
    /,
    *,
    level: Level,
    subject: str | None,
    exc: BaseException | None,
    fields: dict[str, Any],
) -> Event:
    from .event import _EMPTY, Event  # on the first event built, not at import
    from .trace import current_trace

    return Event(
        name=f"paios_reliability.{primitive}.{action}",
        level=level,
        subject=subject,
        fields=MappingProxyType(fields) if fields else _EMPTY,
        trace=current_trace(),
        timestamp=time.time(),
        exc=exc,
    )


def _publish(event: Event) -> None:
    if "logging" in sys.modules:  # else no handler can have been configured
        from .event_log import log_event

        _deliver(log_event, event)
    for hook in _hooks:
        _deliver(hook, event)


def _deliver(hook: EventHook, event: Event) -> None:
    global _hook_errors  # noqa: PLW0603 - a diagnostic counter, races only undercount
    try:
        hook(event)
    except Exception as exc:  # noqa: BLE001 - a hook must never break the caller
        _hook_errors += 1
        try:
            import logging

            from .event_log import log_redacted

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
