"""EventStore: a queryable record of what happened, in one SQLite file.

``observability.sqlite`` holds one row per event (``id, ts, trace_id, span_id,
service, category, action, level, metadata``) plus the run markers of the crash
handler. It is opened with :func:`~paios_reliability.open_database` (WAL, busy
timeout) and written with :func:`~paios_reliability.write_transaction`, so any
number of processes can write to it at once.

:meth:`EventStore.emit` only appends to an in-memory buffer (a few
microseconds); a daemon thread writes the buffer in batches (one transaction per
batch), when it holds ``batch_size`` events or every ``flush_interval``
seconds, and at exit. ``emit`` never raises into the caller: a store that
cannot be written is logged (at most once a minute) and counted in
:meth:`EventStore.stats`, and the buffer is bounded (the oldest events are
dropped, and counted, when it is full).
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import logging
import os
import sqlite3
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from .._core.exceptions import ConfigError
from .._core.settings import Restorer
from .._core.trace import current_trace
from .eventstore_schema import (
    _INSERT,
    _LEVELNO,
    _SCHEMA,
    _SCHEMA_VERSION,
    LEVELS,
    Level,
)
from .stored_event import EventStoreStats, StoredEvent, _encode, _Row, _row_to_event
from .time_args import TimeArg, parse_time

if TYPE_CHECKING:
    from .._core.event import Event

__all__ = ["EventStore"]

T = TypeVar("T")
_log = logging.getLogger("paios_reliability.event_store")

# Set while a store does its own I/O, so events that I/O emits (sqlite.opened,
# sqlite.lock_retry...) are not fed back into the store by its hook.
_in_store: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "paios_reliability_in_event_store", default=False
)

# -- the store -------------------------------------------------------------------

_stores: weakref.WeakSet[EventStore] = weakref.WeakSet()
_registry_lock = threading.Lock()
_fork_leftovers: list[Any] = []  # connections inherited through fork: never closed


def _after_fork_in_child() -> None:
    for store in list(_stores):
        store._reset_after_fork()


def _flush_all_at_exit() -> None:
    for store in list(_stores):
        with contextlib.suppress(Exception):
            store.close(timeout=5.0)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_flush_all_at_exit)


class EventStore:
    """Record events in an SQLite file that many processes can share.

    Args:
        path: The database file (created if missing), e.g.
            ``observability.sqlite``.
        service: Default ``service`` of events emitted through this store.
        batch_size: Write when this many events are buffered.
        flush_interval: ...or at least this often (seconds).
        max_buffer: Most events kept in memory while the database cannot be
            written; beyond it the oldest are dropped (and counted).
        busy_timeout_ms: SQLite busy timeout of the store's connection.
        readonly: Open for queries only (no schema creation, no writes).

    Thread-safe; one instance per process and path is enough. After
    ``fork()`` the child gets a fresh connection and an empty buffer (the
    parent writes what it had buffered).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        service: str | None = None,
        batch_size: int = 500,
        flush_interval: float = 1.0,
        max_buffer: int = 100_000,
        busy_timeout_ms: int = 5000,
        readonly: bool = False,
    ) -> None:
        if batch_size < 1 or max_buffer < batch_size:
            raise ConfigError(
                f"need 1 <= batch_size <= max_buffer, got {batch_size}, {max_buffer}",
                code="USAGE_ERROR",
            )
        if not flush_interval > 0:
            raise ConfigError(
                f"flush_interval must be > 0, got {flush_interval!r}",
                code="USAGE_ERROR",
            )
        self.path = os.fspath(path)
        self.service = service
        self.batch_size = batch_size
        self.flush_interval = float(flush_interval)
        self.max_buffer = max_buffer
        self.busy_timeout_ms = busy_timeout_ms
        self.readonly = readonly
        self._init_runtime()
        with _registry_lock:
            _stores.add(self)

    def _init_runtime(self) -> None:
        self._buffer: deque[_Row] = deque()
        self._io_lock = threading.RLock()
        self._io_owner: int | None = None
        self._conn: sqlite3.Connection | None = None
        self._schema_ready = False
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()
        self._closed = False
        self._released = False  # the connection is gone for good (after close)
        self._emitted = 0
        self._written = 0
        self._dropped = 0
        self._errors = 0
        self._last_error_log = -1e9
        self._backoff = 0.0

    def _reset_after_fork(self) -> None:
        if self._conn is not None:
            _fork_leftovers.append(self._conn)
        closed = self._closed
        self._init_runtime()
        self._closed = closed

    # -- writing -------------------------------------------------------------

    def emit(
        self,
        category: str,
        action: str,
        *,
        level: Level | str = "info",
        service: str | None = None,
        trace_id: str | None = None,
        span_id: str | None = None,
        ts: float | None = None,
        **metadata: Any,
    ) -> None:
        """Record one event (buffered; written within ``flush_interval``).

        Never raises: a failure is logged and counted (see :meth:`stats`).

        Args:
            category: What kind of thing (``breaker``, ``tool``, ``crash``...).
            action: What happened (``opened``, ``failed``...).
            level: ``debug`` | ``info`` | ``warning`` | ``error`` | ``critical``.
            service: Overrides the store's default service.
            trace_id: Default: the current trace (:func:`trace`); ``""``
                for none.
            span_id: Default: the current span; ``""`` for none.
            ts: Seconds since the epoch (default: now).
            **metadata: JSON-serialisable details; secret-looking keys and
                tokens in text are redacted when written.
        """
        try:
            if trace_id is None and span_id is None:
                context = current_trace()
                if context:
                    trace_id = context.get("trace_id")
                    span_id = context.get("span_id")
            # "" means "no trace" explicitly (e.g. a crash found at the next start).
            trace_id = trace_id or None
            span_id = span_id or None
            if level not in _LEVELNO:
                metadata["given_level"] = str(level)
                level = "info"
            self._append(
                (
                    time.time() if ts is None else float(ts),
                    trace_id,
                    span_id,
                    service if service is not None else self.service,
                    str(category),
                    str(action),
                    str(level),
                    metadata,
                )
            )
        except Exception:  # noqa: BLE001 - emit never raises into the caller
            self._dropped += 1
            self._log_failure("emit failed")

    def _append(self, row: _Row) -> None:
        if self._closed or self.readonly:
            self._dropped += 1
            return
        buffer = self._buffer
        buffer.append(row)
        self._emitted += 1
        size = len(buffer)
        if size >= self.batch_size:
            if size > self.max_buffer:
                with contextlib.suppress(IndexError):
                    buffer.popleft()
                    self._dropped += 1
            if not self._wake.is_set():  # setting an Event costs ~10 us
                self._wake.set()
        if self._thread is None:
            self._start_flusher()

    def _start_flusher(self) -> None:
        with self._thread_lock:
            if self._thread is not None or self._closed:
                return
            thread = threading.Thread(
                target=self._flusher,
                name=f"paios-event-store-{os.path.basename(self.path)}",
                daemon=True,
            )
            self._thread = thread
            thread.start()

    def _flusher(self) -> None:
        _in_store.set(True)
        while not self._stop.is_set():
            self._wake.wait(self.flush_interval + self._backoff)
            self._wake.clear()
            if self._stop.is_set():
                break
            self._flush_some(wait=5.0)

    def flush(self, timeout: float = 30.0) -> int:
        """Write every buffered event now.

        Args:
            timeout: Seconds to wait for another thread's flush in progress.

        Returns:
            How many events were written (0 if nothing was pending, or the
            database could not be written: then they stay buffered).
        """
        return self._flush_some(wait=timeout)

    def _flush_some(self, *, wait: float) -> int:
        me = threading.get_ident()
        if self._io_owner == me:
            # Re-entered from a signal handler that interrupted our own write:
            # the interrupted frame finishes it; never nest transactions.
            return 0
        if not self._io_lock.acquire(timeout=max(0.0, wait)):
            return 0
        token = _in_store.set(True)
        self._io_owner = me
        try:
            total = 0
            while self._buffer:
                written = self._write_batch()
                if written == 0:
                    break
                total += written
            return total
        finally:
            self._io_owner = None
            _in_store.reset(token)
            self._io_lock.release()

    def _write_batch(self) -> int:
        """Write one batch; on any failure its events go back to the buffer.

        Also on ``SystemExit`` (the crash handler's SIGTERM) and
        ``KeyboardInterrupt`` arriving in the middle: the popped events are
        re-queued (or counted as dropped when the buffer is full), then the
        exception continues. An event is never lost uncounted; one
        interrupted at the very instant of the commit may be written twice.
        """
        batch: list[_Row] = []
        rows: list[tuple[Any, ...]] = []
        kept: list[_Row] = []  # the encodable events, in order
        buffer = self._buffer
        try:
            with contextlib.suppress(IndexError):
                for _ in range(max(self.batch_size, 2000)):
                    batch.append(buffer.popleft())  # noqa: PERF401 - stops at IndexError
            if not batch:
                return 0
            for row in batch:
                try:
                    encoded = (*row[:7], _encode(row[7]))
                except Exception:  # noqa: BLE001 - one unencodable event must not block the rest
                    self._dropped += 1
                    self._log_failure("could not encode event metadata")
                    continue
                rows.append(encoded)
                kept.append(row)
            batch = kept  # the dropped ones are counted; never re-queued
            from .._data.transactions import write_transaction

            conn = self._connection()
            with write_transaction(conn):
                conn.executemany(_INSERT, rows)
        except BaseException as exc:
            self._requeue(batch)
            if not isinstance(exc, Exception):
                raise  # SystemExit, KeyboardInterrupt: counted, now on their way
            self._errors += 1
            self._backoff = min(30.0, max(0.5, self._backoff * 2))
            self._log_failure("write failed", exc)
            if isinstance(exc, sqlite3.Error):
                self._drop_connection()
            return 0
        self._backoff = 0.0
        self._written += len(rows)
        return len(rows)

    def _requeue(self, batch: list[_Row]) -> None:
        """Put ``batch`` back at the front, dropping (and counting) the oldest."""
        buffer = self._buffer
        buffer.extendleft(reversed(batch))
        while len(buffer) > self.max_buffer:
            buffer.popleft()
            self._dropped += 1

    def _log_failure(self, what: str, exc: BaseException | None = None) -> None:
        now = time.monotonic()
        if now - self._last_error_log < 60.0:
            return
        self._last_error_log = now
        with contextlib.suppress(Exception):
            _log.error(
                "event store %s: %s (%s); events stay buffered (%d pending, %d dropped)",
                self.path,
                what,
                f"{type(exc).__name__}: {exc}" if exc is not None else "-",
                len(self._buffer),
                self._dropped,
            )
            from .._core.events import emit

            token = _in_store.set(True)
            try:
                emit(
                    "event_store",
                    "write_failed",
                    level="error",
                    subject=self.path,
                    exc=exc,
                    pending=len(self._buffer),
                    dropped=self._dropped,
                )
            finally:
                _in_store.reset(token)

    # -- connection ----------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        conn = self._conn
        if conn is None:
            if self._released:
                from .._core.exceptions import PermanentError

                # Reopening here would leak a connection nobody closes.
                raise PermanentError(
                    f"event store {self.path} is closed",
                    code="DB_ERROR",
                    context={"path": self.path},
                )
            from .._data.database import open_database

            conn = open_database(
                self.path,
                busy_timeout_ms=self.busy_timeout_ms,
                readonly=self.readonly,
                create=not self.readonly,
                check_same_thread=False,
            )
            self._conn = conn
        if not self._schema_ready:
            if not self.readonly:
                self._create_schema(conn)
            elif not conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'events'"
            ).fetchone():
                from .._core.exceptions import PermanentError

                raise PermanentError(
                    f"{self.path} is an SQLite database but not an event store "
                    "(it has no events table)",
                    code="DB_ERROR",
                    context={"path": self.path},
                )
            self._schema_ready = True
        return conn

    def _create_schema(self, conn: sqlite3.Connection) -> None:
        from .._data.transactions import write_transaction

        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version >= _SCHEMA_VERSION:
            return
        with write_transaction(conn):
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        self._schema_ready = False
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    @contextlib.contextmanager
    def _io(self, timeout: float = 30.0) -> Iterator[sqlite3.Connection]:
        """The store's connection, exclusively, for a synchronous operation."""
        from .._core.exceptions import TransientError

        if not self._io_lock.acquire(timeout=timeout):
            raise TransientError(
                f"event store {self.path} is busy in another thread",
                code="DB_LOCKED",
                context={"path": self.path},
            )
        token = _in_store.set(True)
        me = threading.get_ident()
        outer = self._io_owner
        self._io_owner = me
        try:
            yield self._connection()
        finally:
            self._io_owner = outer
            _in_store.reset(token)
            self._io_lock.release()

    def _run(self, fn: Callable[[sqlite3.Connection], T], *, write: bool) -> T:
        """Run ``fn`` on the connection now (used by the crash handler)."""
        from .._data.transactions import write_transaction

        with self._io() as conn:
            if not write:
                return fn(conn)
            with write_transaction(conn):
                return fn(conn)

    def _emit_now(
        self,
        category: str,
        action: str,
        *,
        level: str,
        service: str | None,
        metadata: dict[str, Any],
        trace_id: str | None = None,
        span_id: str | None = None,
    ) -> bool:
        """Emit and write at once; False if that could not be done right now.

        ``metadata`` is a dict (not keywords) so that any key is allowed.
        Safe to call from a signal handler: if this thread is in the middle of
        a write, the event stays buffered for the exit flush instead.
        """
        try:
            self._append(
                (
                    time.time(),
                    trace_id or None,
                    span_id or None,
                    service if service is not None else self.service,
                    category,
                    action,
                    level if level in _LEVELNO else "info",
                    metadata,
                )
            )
        except Exception:  # noqa: BLE001 - never raises, like emit
            self._dropped += 1
            return False
        if self._closed or self._io_owner == threading.get_ident():
            return False
        self._flush_some(wait=10.0)
        return not self._buffer

    # -- reading -------------------------------------------------------------

    def query(
        self,
        *,
        trace_id: str | None = None,
        category: str | None = None,
        action: str | None = None,
        since: TimeArg | None = None,
        until: TimeArg | None = None,
        level: Level | str | None = None,
        service: str | None = None,
        limit: int | None = 1000,
    ) -> list[StoredEvent]:
        """Events matching every given filter, oldest first.

        Buffered events of this process are written first, so you read your
        own writes.

        Args:
            trace_id: Only this trace.
            category: Only this category.
            action: Only this action.
            since: Not older than this (see :func:`parse_time`: ``"1h"``,
                a timedelta, a datetime, epoch seconds).
            until: Not newer than this.
            level: This level *or worse* (``"error"`` includes ``critical``).
            service: Only this service.
            limit: At most this many: the most recent ones (``None``: all).

        Raises:
            ConfigError: ``USAGE_ERROR`` for an unknown level or bad time.
            ReliabilityError: The database cannot be opened or read.
        """
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (
            ("trace_id", trace_id),
            ("category", category),
            ("action", action),
            ("service", service),
        ):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        now = time.time()
        if since is not None:
            clauses.append("ts >= ?")
            params.append(parse_time(since, now=now))
        if until is not None:
            clauses.append("ts <= ?")
            params.append(parse_time(until, now=now))
        if level is not None:
            if level not in _LEVELNO:
                raise ConfigError(
                    f"unknown level {level!r}; use one of {list(LEVELS)}",
                    code="USAGE_ERROR",
                )
            wanted = [name for name in LEVELS if _LEVELNO[name] >= _LEVELNO[level]]
            clauses.append(f"level IN ({', '.join('?' * len(wanted))})")
            params.extend(wanted)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"SELECT id, ts, trace_id, span_id, service, category, action, level, metadata FROM events {where} ORDER BY ts DESC, id DESC"  # noqa: S608 - clauses are ours, values bound
        if limit is not None:
            if limit < 0:
                raise ConfigError(
                    f"limit must be >= 0, got {limit}", code="USAGE_ERROR"
                )
            sql += f" LIMIT {int(limit)}"
        if self._buffer:
            self.flush()
        with self._io() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [_row_to_event(row) for row in reversed(rows)]

    def count(self, **filters: Any) -> int:
        """How many events match (same filters as :meth:`query`, no limit)."""
        return len(self.query(limit=None, **filters))

    def last_crash(self, service: str | None = None) -> StoredEvent | None:
        """The most recent crash recorded for ``service`` (any service if None).

        Crashes are recorded by :func:`install_crash_handler`: uncaught
        exceptions (main thread, other threads, asyncio) and unclean exits
        (SIGKILL, OOM kill, ``os._exit``, segfault) found at the next start.
        """
        found = self.query(category="crash", service=service, limit=1)
        return found[0] if found else None

    def prune(self, older_than: TimeArg) -> int:
        """Delete events older than ``older_than`` (e.g. ``"30d"``, a timedelta).

        Deletes in chunks, so writers in other processes are never blocked for
        long. Finished run markers older than that go too.

        Returns:
            How many events were deleted.
        """
        from .._data.transactions import write_transaction

        cutoff = parse_time(older_than)
        if self._buffer:
            self.flush()
        deleted = 0
        while True:
            with self._io() as conn, write_transaction(conn):
                cursor = conn.execute(
                    "DELETE FROM events WHERE id IN "
                    "(SELECT id FROM events WHERE ts < ? LIMIT 5000)",
                    (cutoff,),
                )
                n = cursor.rowcount
                if n < 5000:
                    conn.execute(
                        "DELETE FROM runs WHERE status != 'running' AND started < ?",
                        (cutoff,),
                    )
            deleted += n
            if n < 5000:
                break
        from .._core.events import emit

        emit("event_store", "pruned", subject=self.path, deleted=deleted)
        return deleted

    def stats(self) -> EventStoreStats:
        """Counters of this store in this process."""
        return EventStoreStats(
            emitted=self._emitted,
            written=self._written,
            dropped=self._dropped,
            errors=self._errors,
            pending=len(self._buffer),
        )

    # -- library events ------------------------------------------------------

    def record_library_events(self, *, min_level: Level | str = "info") -> Restorer:
        """Send every paios_reliability event into this store from now on.

        Event ``paios_reliability.<primitive>.<action>`` becomes a row with
        ``category=<primitive>``, ``action=<action>``, its level, trace ids,
        and its fields (plus ``subject`` and the error) as metadata.

        Args:
            min_level: Skip events below this level (``debug`` records all).

        Returns:
            A :class:`Restorer` that stops recording.
        """
        from .._core.events import add_event_hook

        if min_level not in _LEVELNO:
            raise ConfigError(f"unknown level {min_level!r}", code="USAGE_ERROR")
        return add_event_hook(_StoreHook(self, _LEVELNO[min_level]))

    # -- lifecycle -----------------------------------------------------------

    def close(self, timeout: float = 30.0) -> None:
        """Write what is buffered and release the connection. Idempotent.

        Events emitted after ``close`` are dropped (and counted).
        """
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._flush_some(wait=timeout)
        if self._io_lock.acquire(timeout=timeout):
            try:
                self._drop_connection()
                self._released = True
            finally:
                self._io_lock.release()
        with _registry_lock:
            _stores.discard(self)

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EventStore({self.path!r}, service={self.service!r})"


class _StoreHook:
    __slots__ = ("_min", "_store")

    def __init__(self, store: EventStore, min_levelno: int) -> None:
        self._store = store
        self._min = min_levelno

    def __call__(self, event: Event, /) -> None:
        if _LEVELNO.get(event.level, 20) < self._min or _in_store.get():
            return
        metadata = event.to_dict()
        for key in ("event", "level", "timestamp", "trace_id", "span_id"):
            metadata.pop(key, None)
        trace = event.trace
        self._store._append(
            (
                event.timestamp or time.time(),
                trace.get("trace_id"),
                trace.get("span_id"),
                self._store.service,
                event.primitive,
                event.action,
                event.level,
                metadata,
            )
        )
