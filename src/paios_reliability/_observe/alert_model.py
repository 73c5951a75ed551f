"""What an alert is: its level and its fields."""

from __future__ import annotations

import datetime as _dt
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass

__all__ = ["Alert", "AlertLevel"]


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
