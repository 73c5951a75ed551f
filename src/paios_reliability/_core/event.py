"""The :class:`Event` record: one frozen, redacted-on-the-way-out state change.

Apart from :mod:`.events` (the bus) so that a process in which no event is
ever built (no hook added, logging never imported) does not pay for
:mod:`dataclasses`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .events import Level

__all__ = ["Event"]

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
        from .redaction import json_safe, redact_text

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
        from .redaction import json_safe, redact_text

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
    from .redaction import redact_clip

    try:
        return redact_clip(str(exc), limit)
    except Exception:  # noqa: BLE001 - an unprintable error is still an event
        return f"<unprintable {type(exc).__name__}>"
