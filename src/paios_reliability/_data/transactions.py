"""Explicit SQLite transactions: ``write_transaction`` (``BEGIN IMMEDIATE``) and ``read_transaction``.

The write lock is taken up front, with jittered retries bounded by a
budget (and by an enclosing ``@hook`` or deadline), so a read-then-write
never loses an update nor fails half-way on a lock upgrade.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
import weakref
from collections.abc import Iterator
from contextlib import AbstractContextManager

from .._core.budget import cap_wait
from .._core.clock import get_clock
from .._core.events import emit
from .._core.exceptions import PermanentError
from .._core.typing_lite import TYPE_CHECKING
from .database import _Connection, _in_transaction, _is_busy, _locked

if TYPE_CHECKING:
    from typing import Any, Literal

    from .._core.exc_info import ExcType, ExcValue, Traceback

    Synchronous = Literal["OFF", "NORMAL", "FULL", "EXTRA"]

__all__ = ["read_transaction", "write_transaction"]


# -- transactions --------------------------------------------------------------


def _ran(conn: sqlite3.Connection, statement: str) -> bool:
    """Execute ``statement``; False if the database lock stayed busy.

    Any other error propagates.
    """
    try:
        conn.execute(statement)
    except sqlite3.OperationalError as exc:
        if not _is_busy(exc):
            raise
        return False
    return True


def _begin(
    conn: sqlite3.Connection, statement: str, budget: float, max_attempts: int
) -> None:
    """Run ``BEGIN ...``, retrying with jittered backoff while the lock is busy.

    Each attempt waits inside SQLite (its busy handler) for at most what is
    left of ``budget``; between attempts we back off (full jitter) so a herd
    of writers spreads out. The total is bounded by ``budget`` seconds,
    counted from the first attempt, and by ``max_attempts``.
    """
    started = time.monotonic()
    if not _ran(conn, statement):  # the common case needs no bookkeeping
        _begin_retry(conn, statement, budget, max_attempts, started)


def _begin_retry(
    conn: sqlite3.Connection,
    statement: str,
    budget: float,
    max_attempts: int,
    started: float | None = None,
) -> None:
    """The slow path of :func:`_begin`: the first attempt found the lock busy.

    ``started`` is when that first attempt began (``time.monotonic()``): the
    wait SQLite's busy handler spent inside it counts against ``budget``.
    Every further attempt gets only the rest of the budget as its busy
    timeout (lowered for the attempt, restored after), so the whole call
    takes about ``budget``, never ``budget`` plus a full busy timeout per
    attempt. Backoff sleeps go through the clock seam (fake time in tests);
    the busy waits are real time; the larger of the two elapsed counts.
    """
    import random

    clock = get_clock()
    start = clock.monotonic()
    real_start = time.monotonic() if started is None else started
    attempt = 1
    path = getattr(conn, "_paios_path", "?")
    configured_ms: int | None = None  # the connection's own busy timeout

    def elapsed() -> float:
        return max(clock.monotonic() - start, time.monotonic() - real_start)

    try:
        while True:
            spent = elapsed()
            if attempt >= max_attempts or spent >= budget:
                emit(
                    "sqlite",
                    "lock_exhausted",
                    level="error",
                    subject=path,
                    attempts=attempt,
                    elapsed=round(spent, 3),
                )
                raise _locked(
                    path, f"{statement} failed {attempt} time(s) over {spent:.1f}s"
                )
            cap = min(2.0, 0.05 * (2 ** min(attempt, 16)))
            wait = min(random.uniform(0, cap), max(0.0, budget - spent))  # noqa: S311
            emit(
                "sqlite",
                "lock_retry",
                level="warning",
                subject=path,
                attempt=attempt,
                wait=round(wait, 4),
            )
            clock.sleep(wait)
            attempt += 1
            if configured_ms is None:
                configured_ms = int(conn.execute("PRAGMA busy_timeout").fetchone()[0])
            left_ms = max(0, int((budget - elapsed()) * 1000))
            conn.execute(f"PRAGMA busy_timeout = {min(configured_ms, left_ms)}")
            if _ran(conn, statement):
                return
    finally:
        if configured_ms is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.execute(f"PRAGMA busy_timeout = {configured_ms}")


class _WriteTransaction:
    """The context manager :func:`write_transaction` returns.

    A class, not a generator: cheaper, and its code runs while the write lock
    is held. It keeps no per-call state, so one instance per connection (with
    the default options) is cached on the connection and reused: a
    transaction then allocates nothing that the cyclic GC must track. The
    cached instance refers to its connection weakly (no reference cycle).
    """

    __slots__ = ("_conn", "_weak", "budget", "max_attempts")

    def __init__(
        self,
        conn: sqlite3.Connection,
        budget: float,
        max_attempts: int,
        *,
        weak: bool = False,
    ) -> None:
        self._conn: Any = weakref.ref(conn) if weak else conn
        self._weak = weak
        self.budget = budget
        self.max_attempts = max_attempts

    @property
    def conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection = self._conn() if self._weak else self._conn
        return conn

    def __enter__(self) -> sqlite3.Connection:
        conn: sqlite3.Connection = self._conn() if self._weak else self._conn
        if conn.in_transaction:
            raise PermanentError(
                "write_transaction() on a connection that is already inside a "
                "transaction; SQLite transactions do not nest",
                code="PROGRAMMING_ERROR",
            )
        started = time.monotonic()
        try:  # _begin()'s fast path, inlined: this runs once per transaction
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc):
                raise
            _begin_retry(
                conn,
                "BEGIN IMMEDIATE",
                cap_wait(self.budget),  # inside a @hook: what is left of it
                self.max_attempts,
                started,
            )
        return conn

    def __exit__(self, exc_type: ExcType, exc: ExcValue, tb: Traceback) -> None:
        conn: sqlite3.Connection = self._conn() if self._weak else self._conn
        if exc_type is not None:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            return
        try:
            # Not conn.commit(): that prepares "COMMIT" afresh on every call,
            # while the write lock is held; execute() reuses a cached statement.
            conn.execute("COMMIT")
        except sqlite3.OperationalError as error:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.rollback()
            if _is_busy(error):
                path = getattr(conn, "_paios_path", "?")
                raise _locked(path, "COMMIT stayed busy; rolled back") from error
            raise


def write_transaction(
    conn: sqlite3.Connection,
    *,
    budget: float = 30.0,
    max_attempts: int = 10,
) -> AbstractContextManager[sqlite3.Connection]:
    """Run the block in one ``BEGIN IMMEDIATE`` transaction.

    The write lock is taken at the start, so a read-then-write inside the block
    sees the latest data and cannot be overtaken by another writer (no lost
    updates). Commits on success, rolls back on any exception (which is then
    re-raised unchanged).

    While the lock stays busy past the connection's busy timeout, ``BEGIN`` is
    retried with jittered exponential backoff, within ``budget`` seconds and
    ``max_attempts`` attempts. The budget counts from the first ``BEGIN``,
    including the time SQLite waited inside it, and each retry waits inside
    SQLite only for what is left: the call gives up after about ``budget``
    seconds (or the connection's busy timeout, if that is longer: the first
    attempt always gets it in full).

    Args:
        conn: A connection in autocommit mode (from :func:`open_database`).
        budget: Seconds to keep trying to get the write lock.
        max_attempts: Upper bound on ``BEGIN`` attempts.

    Returns:
        A context manager whose ``with ... as`` value is ``conn``.

    Raises:
        TransientError: ``DB_LOCKED`` when the lock could not be had in budget,
            or the commit stayed busy (the transaction is rolled back).
        PermanentError: ``PROGRAMMING_ERROR`` when ``conn`` is already inside a
            transaction (nest with savepoints yourself, or restructure).
    """
    if budget == 30.0 and max_attempts == 10 and isinstance(conn, _Connection):
        cached: _WriteTransaction | None = conn.__dict__.get("_paios_wtx")
        if cached is None:
            cached = conn.__dict__["_paios_wtx"] = _WriteTransaction(
                conn, budget, max_attempts, weak=True
            )
        return cached
    return _WriteTransaction(conn, budget, max_attempts)


@contextlib.contextmanager
def read_transaction(
    conn: sqlite3.Connection, *, warn_after: float | None = 60.0
) -> Iterator[sqlite3.Connection]:
    """Run the block in one read transaction: a consistent snapshot.

    The block runs with ``PRAGMA query_only`` on, so a write inside it fails at
    once instead of upgrading the lock. Keep it short: in WAL mode an open
    reader stops checkpoints from recycling the WAL, which then grows.

    Args:
        conn: A connection in autocommit mode (from :func:`open_database`).
        warn_after: Emit a ``sqlite.long_read`` warning event when the block
            held its snapshot longer than this many seconds (``None``: never).

    Raises:
        PermanentError: ``PROGRAMMING_ERROR`` when already inside a transaction.
    """
    if conn.in_transaction:
        raise PermanentError(
            "read_transaction() on a connection that is already inside a transaction",
            code="PROGRAMMING_ERROR",
        )
    clock = get_clock()
    start = clock.monotonic()
    conn.execute("PRAGMA query_only = ON")
    try:
        _begin(conn, "BEGIN DEFERRED", 30.0, 10)
        try:
            yield conn
        finally:
            if _in_transaction(conn):
                conn.rollback()  # nothing to keep: it only read
    finally:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("PRAGMA query_only = OFF")
        held = clock.monotonic() - start
        if warn_after is not None and held > warn_after:
            emit(
                "sqlite",
                "long_read",
                level="warning",
                subject=getattr(conn, "_paios_path", "?"),
                seconds=round(held, 3),
            )
