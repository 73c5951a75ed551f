"""Time arguments of the event store, the CLI and the status API: ``90s``, ``1h30m``, ISO times."""

from __future__ import annotations

import datetime as _dt
import re
import time
from typing import TYPE_CHECKING

from .._core.exceptions import ConfigError

if TYPE_CHECKING:
    pass

__all__ = ["TimeArg", "parse_duration", "parse_time"]


# -- time arguments ----------------------------------------------------------------

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)", re.IGNORECASE)
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_MAX_SECONDS = 100 * 365 * 86400.0

TimeArg = float | int | _dt.datetime | _dt.timedelta | str


def parse_duration(text: str) -> float:
    """Seconds in a duration like ``90s``, ``15m``, ``1h30m``, ``2d``, ``1w``.

    Raises:
        ConfigError: ``USAGE_ERROR`` for anything else.
    """
    compact = text.strip().replace(" ", "")
    if not compact:
        raise ConfigError("empty duration", code="USAGE_ERROR")
    total = 0.0
    pos = 0
    for match in _DURATION.finditer(compact):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2).lower()]
        pos = match.end()
    if pos != len(compact) or pos == 0:
        raise ConfigError(
            f"invalid duration {text!r}: use e.g. 90s, 15m, 1h30m, 2d, 1w",
            code="USAGE_ERROR",
        )
    if total > _MAX_SECONDS:
        raise ConfigError(f"duration {text!r} is too long", code="USAGE_ERROR")
    return total


def parse_time(value: TimeArg, *, now: float | None = None) -> float:
    """An absolute time (seconds since the epoch) from a flexible argument.

    Args:
        value: A number (epoch seconds), an aware datetime (a naive one is
            taken as UTC), a timedelta (that long before ``now``), a duration
            string (``"1h"``: that long ago), or an ISO 8601 timestamp string.
        now: The reference time (default: ``time.time()``).

    Raises:
        ConfigError: ``USAGE_ERROR`` for a value that is none of these.
    """
    reference = time.time() if now is None else now
    if isinstance(value, bool):
        raise ConfigError(f"invalid time {value!r}", code="USAGE_ERROR")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, _dt.datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=_dt.timezone.utc)
        return aware.timestamp()
    if isinstance(value, _dt.timedelta):
        return reference - value.total_seconds()
    if isinstance(value, str):
        try:
            return reference - parse_duration(value)
        except ConfigError:
            pass
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            return parse_time(_dt.datetime.fromisoformat(text), now=reference)
        except ValueError:
            raise ConfigError(
                f"invalid time {value!r}: use a duration (1h, 30m, 2d) or an "
                "ISO 8601 timestamp",
                code="USAGE_ERROR",
            ) from None
    raise ConfigError(f"invalid time {value!r}", code="USAGE_ERROR")
