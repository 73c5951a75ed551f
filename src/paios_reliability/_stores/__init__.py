"""Shared state for breakers, limiters and bulkheads: memory, SQLite, Redis.

A store maps string keys to small JSON values and offers one operation that
matters, ``update(key, fn, ttl=...)``: an atomic read-modify-write. The
protection primitives keep their logic in pure functions and run them inside
``update``, so they behave the same on every store:

- :class:`MemoryStore`: one process, the default, no I/O (and a fast path the
  breaker and bulkhead use directly).
- :class:`SQLiteStore`: many processes on one host; each update is one
  ``BEGIN IMMEDIATE`` transaction.
- :class:`RedisStore`: many hosts; each update is a read plus a server-side
  compare-and-set Lua script, retried when another writer got there first.

A store that cannot be reached raises :class:`StoreUnavailableError` within a
bounded time; primitives built with ``fail_open=True`` let calls through
instead and emit an event.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._core.checks import (
    check_count,
    check_name,
    check_number,
    check_optional_number,
)
from .._core.exceptions import StoreUnavailableError
from ._memory import MemoryStore
from .engine import (
    GC_MARGIN,
    NS,
    Steps,
    adrive,
    complete,
    drive,
    now_ns,
    resolve_store,
    seconds_to_ns,
    ttl_seconds,
)

if TYPE_CHECKING:
    from ._redis import RedisStore
    from ._sqlite import SQLiteStore

__all__ = [
    "GC_MARGIN",
    "NS",
    "MemoryStore",
    "RedisStore",
    "SQLiteStore",
    "Steps",
    "StoreUnavailableError",
    "adrive",
    "check_count",
    "check_name",
    "check_optional_number",
    "check_number",
    "complete",
    "drive",
    "now_ns",
    "resolve_store",
    "seconds_to_ns",
    "ttl_seconds",
]


def __getattr__(name: str) -> Any:
    # SQLite and Redis stores load their drivers only when asked for.
    if name == "SQLiteStore":
        from ._sqlite import SQLiteStore

        return SQLiteStore
    if name == "RedisStore":
        from ._redis import RedisStore

        return RedisStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
