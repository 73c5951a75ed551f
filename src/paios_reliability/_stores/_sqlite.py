"""The SQLite store: state shared by the processes of one host through one file."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from .._core.aio import require_asyncio
from .._core.events import emit
from .._core.exceptions import ReliabilityError, StoreUnavailableError
from .._data.database import open_database
from .._data.transactions import write_transaction

__all__ = ["SQLiteStore"]

R = TypeVar("R")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS paios_state (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    expires_at REAL NOT NULL
) WITHOUT ROWID
"""
_SWEEP_EVERY = 256


def _close_if_opened_here(conn: sqlite3.Connection, pid: int) -> None:
    # A store dropped without close(): its connection is closed with it
    # (Python 3.13 warns about a connection left to the garbage collector),
    # but never in a forked child, where it belongs to the parent.
    if os.getpid() == pid:
        with contextlib.suppress(sqlite3.Error):
            conn.close()


def _encode(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def _read(conn: sqlite3.Connection, key: str) -> Any:
    """The row of ``key`` (``(value, expires_at)``), or ``None``."""
    return conn.execute(
        "SELECT value, expires_at FROM paios_state WHERE key = ?", (key,)
    ).fetchone()


def _live(row: Any, now: float) -> Any:
    """The value a row holds, or ``None`` when there is none or it expired by ``now``."""
    return None if row is None or row[1] <= now else json.loads(row[0])


class SQLiteStore:
    """State shared by every process on this host that opens the same file.

    The database is opened with :func:`~paios_reliability.open_database` (WAL,
    busy timeout) and every :meth:`update` is one
    :func:`~paios_reliability.write_transaction` (``BEGIN IMMEDIATE``): the
    read, the pure update function and the write happen under the write lock,
    so concurrent processes never lose an update. Rows carry an expiry time
    and are garbage-collected ``ttl`` seconds after their last write.

    One connection per process, opened on first use (and again in a forked
    child), guarded by a lock so threads and the ``a*`` methods (which run in
    a worker thread) can share it.

    Args:
        path: The database file; created (in WAL mode) when missing.
        busy_timeout_ms: How long an operation waits for another process's
            write lock before raising :class:`StoreUnavailableError`.

    Raises:
        StoreUnavailableError: From any operation when the file cannot be
            opened, read or written within the busy timeout.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, busy_timeout_ms: int = 5000
    ) -> None:
        if busy_timeout_ms < 0:
            raise ValueError(f"busy_timeout_ms must be >= 0, got {busy_timeout_ms!r}")
        self.path = os.fspath(path)
        self._busy_timeout_ms = int(busy_timeout_ms)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self._writes = 0
        self._closed = False
        self._abandoned: list[sqlite3.Connection] = []
        self._finalizer: weakref.finalize[..., SQLiteStore] | None = None

    @property
    def shared(self) -> bool:
        """Always ``True``: every process opening the file sees the state."""
        return True

    def _connection(self) -> sqlite3.Connection:
        # Called with self._lock held.
        if self._closed:
            raise ValueError(f"{self!r} is closed")
        pid = os.getpid()
        if self._conn is not None and self._pid == pid:
            return self._conn
        if self._conn is not None:
            # Inherited through fork(): never touch it here (closing it could
            # release the parent's locks); keep it referenced and open anew.
            self._abandoned.append(self._conn)
            self._conn = None
            if self._finalizer is not None:
                self._finalizer.detach()
        conn = open_database(
            self.path, busy_timeout_ms=self._busy_timeout_ms, check_same_thread=False
        )
        try:
            conn.execute(_SCHEMA)
        except BaseException:
            conn.close()
            raise
        self._conn, self._pid = conn, pid
        self._finalizer = weakref.finalize(self, _close_if_opened_here, conn, pid)
        return conn

    def _unavailable(self, exc: BaseException, what: str) -> StoreUnavailableError:
        emit(
            "store",
            "unavailable",
            level="error",
            subject=self.path,
            exc=exc,
            operation=what,
        )
        from .._core.taxonomy import classify

        # A locked or busy file may recover; a path that is not a database won't.
        retryable = classify(exc).retryable
        return StoreUnavailableError(
            f"SQLite state store {self.path} is unavailable during {what}: "
            f"{type(exc).__name__}: {exc}",
            store=f"sqlite:{self.path}",
            retryable=retryable,
        )

    def get(self, key: str) -> Any:
        with self._lock:
            try:
                row = _read(self._connection(), key)
            except (sqlite3.Error, ReliabilityError) as exc:
                raise self._unavailable(exc, "get") from exc
        return _live(row, time.time())

    def update(self, key: str, fn: Callable[[Any], tuple[Any, R]], *, ttl: float) -> R:
        budget = max(0.05, self._busy_timeout_ms / 1000)
        with self._lock:
            try:
                conn = self._connection()
                # Read first, without the write lock (WAL readers never wait):
                # when ``fn`` changes nothing (a closed breaker admitting, a
                # limiter refusing) its answer is exact as of this read, and
                # no writer is held up. Otherwise run it again under the lock.
                current = _live(_read(conn, key), time.time())
                new, result = fn(current)
                if new is current:
                    return result
                with write_transaction(conn, budget=budget, max_attempts=3):
                    row = _read(conn, key)
                    now = time.time()
                    current = _live(row, now)
                    new, result = fn(current)
                    if new is None:
                        if row is not None:
                            conn.execute(
                                "DELETE FROM paios_state WHERE key = ?", (key,)
                            )
                    elif new is not current:
                        conn.execute(
                            "INSERT OR REPLACE INTO paios_state (key, value, expires_at) "
                            "VALUES (?, ?, ?)",
                            (key, _encode(new), now + ttl),
                        )
                        self._writes += 1
                        if self._writes % _SWEEP_EVERY == 0:
                            conn.execute(
                                "DELETE FROM paios_state WHERE expires_at <= ?", (now,)
                            )
            except (sqlite3.Error, ReliabilityError) as exc:
                raise self._unavailable(exc, "update") from exc
            except BaseException:
                # An interrupt (Ctrl-C) can land between BEGIN returning and
                # the ``with`` block starting: never leave this process
                # holding the file's write lock.
                self._roll_back()
                raise
        return result

    def _roll_back(self) -> None:
        # Called with self._lock held.
        conn = self._conn
        if conn is not None and self._pid == os.getpid() and conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")

    async def aget(self, key: str) -> Any:
        import asyncio

        require_asyncio("SQLiteStore")  # trio: a clear error, not 'no running loop'
        return await asyncio.to_thread(self.get, key)

    async def aupdate(
        self, key: str, fn: Callable[[Any], tuple[Any, R]], *, ttl: float
    ) -> R:
        import asyncio

        require_asyncio("SQLiteStore")  # trio: a clear error, not 'no running loop'
        return await asyncio.to_thread(self.update, key, fn, ttl=ttl)

    def delete(self, key: str) -> None:
        with self._lock:
            try:
                conn = self._connection()
                with write_transaction(
                    conn, budget=max(0.05, self._busy_timeout_ms / 1000), max_attempts=3
                ):
                    conn.execute("DELETE FROM paios_state WHERE key = ?", (key,))
            except (sqlite3.Error, ReliabilityError) as exc:
                raise self._unavailable(exc, "delete") from exc
            except BaseException:
                self._roll_back()
                raise

    def close(self) -> None:
        """Close this process's connection; later use raises ``ValueError``."""
        with self._lock:
            self._closed = True
            self._conn = None
            if self._finalizer is not None:
                self._finalizer()  # closes the connection if opened here

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"
