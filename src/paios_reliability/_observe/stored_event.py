"""What an event store row is: :class:`StoredEvent`, the store's stats, and the encoding of metadata.

Metadata is stored as JSON with every secret-looking key's value
redacted, so no row ever holds a secret.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass

__all__ = ["EventStoreStats", "StoredEvent"]


_Row = tuple[
    float, str | None, str | None, str | None, str, str, str, Mapping[str, Any]
]


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One row of the event store.

    Attributes:
        id: Row id (increases with insertion order within one database).
        ts: Seconds since the epoch (UTC).
        trace_id: Trace of the code that emitted it, if any.
        span_id: Span of the code that emitted it, if any.
        service: The service (process role) that emitted it.
        category: What kind of thing: a primitive (``breaker``), ``crash``...
        action: What happened (``opened``, ``uncaught_exception``...).
        level: ``debug`` | ``info`` | ``warning`` | ``error`` | ``critical``.
        metadata: The event's fields (JSON).
    """

    id: int
    ts: float
    trace_id: str | None
    span_id: str | None
    service: str | None
    category: str
    action: str
    level: str
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def time(self) -> _dt.datetime:
        """``ts`` as an aware UTC datetime."""
        return _dt.datetime.fromtimestamp(self.ts, _dt.timezone.utc)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view (``ts`` as ISO 8601 UTC)."""
        return {
            "id": self.id,
            "ts": self.time.isoformat().replace("+00:00", "Z"),
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "service": self.service,
            "category": self.category,
            "action": self.action,
            "level": self.level,
            "metadata": dict(self.metadata),
        }

    def to_line(self) -> str:
        """One readable line (what ``events query`` prints)."""
        stamp = self.time.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        parts = [stamp, f"{self.level.upper():<8}", f"{self.category}.{self.action}"]
        if self.service:
            parts.append(f"service={self.service}")
        if self.trace_id:
            parts.append(f"trace={self.trace_id}")
        if self.metadata:
            parts.append(json.dumps(dict(self.metadata), sort_keys=True, default=str))
        return "  ".join(parts)


@dataclass(frozen=True, slots=True)
class EventStoreStats:
    """Counters of one :class:`EventStore` in this process.

    Attributes:
        emitted: Events accepted by ``emit`` (and the hook).
        written: Events written to the database.
        dropped: Events lost: buffer full, store closed, or encoding failed.
        errors: Failed write attempts (each retried later while buffered).
        pending: Events waiting in the buffer right now.
    """

    emitted: int
    written: int
    dropped: int
    errors: int
    pending: int


# -- encoding --------------------------------------------------------------------


_secret_keys: dict[str, bool] = {}
_PLAIN = (int, bool, type(None))


def _is_secret_key(key: str) -> bool:
    known = _secret_keys.get(key)
    if known is None:
        from .._core.redaction import is_secret_key

        known = is_secret_key(key)
        if len(_secret_keys) < 10_000:  # bounded: keys may come from data
            _secret_keys[key] = known
    return known


def _encode(metadata: Mapping[str, Any]) -> str:
    """JSON with secrets redacted (values under secret keys, tokens in text).

    Flat metadata of plain values (the common case) takes a fast path; anything
    else goes through :func:`json_safe`, which also handles nesting, odd types
    and hostile objects.
    """
    from .._core.redaction import REDACTED, json_safe, redact_text

    if not metadata:
        return "{}"
    flat: dict[str, Any] = {}
    for key, value in metadata.items():
        if type(key) is not str:
            break
        if _is_secret_key(key):
            flat[key] = REDACTED
        elif type(value) is str:
            flat[key] = redact_text(value)
        elif type(value) in _PLAIN or (type(value) is float and math.isfinite(value)):
            flat[key] = value
        else:
            break
    else:
        return json.dumps(flat, separators=(",", ":"))
    return json.dumps(json_safe(metadata), separators=(",", ":"), allow_nan=False)


def _row_to_event(row: Sequence[Any]) -> StoredEvent:
    try:
        metadata = json.loads(row[8]) if row[8] else {}
    except ValueError:
        metadata = {"raw": row[8]}
    if not isinstance(metadata, dict):
        metadata = {"value": metadata}
    return StoredEvent(
        id=int(row[0]),
        ts=float(row[1]),
        trace_id=row[2],
        span_id=row[3],
        service=row[4],
        category=row[5],
        action=row[6],
        level=row[7],
        metadata=metadata,
    )
