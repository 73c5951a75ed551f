"""SQLite done right for many processes: WAL, busy timeout, explicit transactions.

:func:`open_database` replaces ``sqlite3.connect()``. The order of the pragmas
matters: ``busy_timeout`` is set *before* switching to WAL (the switch takes a
lock; without a busy handler, concurrent openers of a fresh database fail with
"database is locked"), WAL is verified by reading the pragma back, and the
connection runs in autocommit mode (``isolation_level=None``) so no statement
ever runs in an implicit transaction. Writes go through
:func:`write_transaction` (``BEGIN IMMEDIATE``: the write lock is taken up front,
so a read-then-write can never lose an update or fail half-way on an upgrade).

:func:`check_database` and :func:`checkpoint` live in :mod:`.db_maintenance`.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import time
import weakref

from .._core.events import emit
from .._core.exceptions import PermanentError, ReliabilityError, TransientError
from .._core.typing_lite import TYPE_CHECKING
from .atomic import (
    _READ_FLAGS,
    NotARegularFileError,
    file_kind,
    refuse_special_file,
)

if TYPE_CHECKING:
    from typing import Any, Literal

    Synchronous = Literal["OFF", "NORMAL", "FULL", "EXTRA"]

__all__ = ["DatabaseError", "DatabaseLockedError", "DatabaseOpenError", "open_database"]

SQLITE_MAGIC = b"SQLite format 3\x00"
_SYNCHRONOUS = {"OFF": 0, "NORMAL": 1, "FULL": 2, "EXTRA": 3}
# A 0-byte file younger than this may be a database another (non-paios) process
# is creating right now; we wait for it instead of calling it a placeholder.
_FRESH_FILE_GRACE = 2.0
_MEMORY = ":memory:"


class DatabaseError(PermanentError, sqlite3.DatabaseError):
    """An SQLite database cannot be used as it is.

    Not a database (a foreign or garbage file, a 0-byte placeholder, a FIFO)
    or it refused its settings. Also a :class:`sqlite3.DatabaseError`, so the
    ``except sqlite3.Error`` or ``except sqlite3.DatabaseError`` code already
    has around its database calls keeps catching it.
    """

    default_code = "DB_ERROR"


class DatabaseOpenError(DatabaseError, sqlite3.OperationalError):
    """An SQLite database could not be opened or created.

    A missing file (read-only or ``create=False``), a missing directory, a
    directory at the path. Also a :class:`sqlite3.OperationalError`, what
    ``sqlite3.connect`` raises for "unable to open database file".
    """


class DatabaseLockedError(TransientError, sqlite3.OperationalError):
    """An SQLite database stayed locked (busy) past the allowed wait.

    Retryable. Also a :class:`sqlite3.OperationalError`, as SQLite's own
    "database is locked" is.
    """

    default_code = "DB_LOCKED"


for _cls in (DatabaseError, DatabaseOpenError, DatabaseLockedError):
    _cls.__module__ = "paios_reliability"
del _cls


def _forked_error(conn: sqlite3.Connection) -> ReliabilityError:
    where = getattr(conn, "_paios_path", "?")
    pid = getattr(conn, "_paios_pid", "?")
    emit("sqlite", "forked_use", level="error", subject=where)
    return PermanentError(
        f"SQLite connection to {where} was opened in process {pid} and used in "
        f"process {os.getpid()} (after fork()); a connection must never cross a "
        "fork: open a new one in the child",
        code="PROGRAMMING_ERROR",
        context={"path": where, "opened_pid": pid, "pid": os.getpid()},
    )


class _Cursor(sqlite3.Cursor):
    """The cursor class of ``conn.cursor()``; tracked so a fork can disarm it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _live.add(self)


class _Connection(sqlite3.Connection):
    """The connection :func:`open_database` returns.

    Differences from :class:`sqlite3.Connection`: ``with conn:`` *closes* it
    at the end of the block (after committing an explicitly opened
    transaction, or rolling it back on an exception), and it cannot be used
    in a forked child: a connection inherited through ``fork()`` corrupts
    locks and the WAL index.

    The fork guard costs nothing per call: a handler registered with
    :func:`os.register_at_fork` turns every live connection (and every cursor
    made by ``cursor()``) of the child into a :class:`_ForkedConnection`,
    whose methods raise. (A cursor *returned by* ``conn.execute`` on Python
    3.11+ is a plain one and is not covered.)
    """

    _paios_pid: int
    _paios_path: str

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._paios_pid = os.getpid()
        self._paios_path = str(args[0]) if args else str(kwargs.get("database"))
        _live.add(self)

    def cursor(self, factory: Any = _Cursor) -> Any:
        return super().cursor(factory)

    def __enter__(self) -> _Connection:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> Literal[False]:
        try:
            if self.in_transaction:
                if exc_type is None:
                    self.commit()
                else:
                    self.rollback()
        finally:
            self.close()
        return False

    def __repr__(self) -> str:
        return f"<paios_reliability sqlite connection {self._paios_path!r}>"


def _refuse(self: Any, *args: Any, **kwargs: Any) -> Any:
    conn = self.connection if isinstance(self, sqlite3.Cursor) else self
    raise _forked_error(conn)


def _leave(self: Any, *args: Any, **kwargs: Any) -> None:
    """Closing in the child would act on the parent's database: do nothing."""


_GUARDED = (
    "execute",
    "executemany",
    "executescript",
    "cursor",
    "commit",
    "rollback",
    "backup",
    "iterdump",
    "create_function",
    "create_aggregate",
    "blobopen",
    "serialize",
    "deserialize",
)


class _ForkedConnection(_Connection):
    """What a connection becomes in a forked child: every use raises."""

    __enter__ = _refuse
    close = _leave

    def __exit__(self, exc_type: object, exc: object, tb: object) -> Literal[False]:
        return False


class _ForkedCursor(_Cursor):
    """What a cursor becomes in a forked child: every use raises."""


for _name in _GUARDED:
    setattr(_ForkedConnection, _name, _refuse)
for _name in (
    "execute",
    "executemany",
    "executescript",
    "fetchone",
    "fetchmany",
    "fetchall",
    "__next__",
    "close",
):
    setattr(_ForkedCursor, _name, _refuse if _name != "close" else _leave)
del _name

_live: weakref.WeakSet[Any] = weakref.WeakSet()


def _after_fork_in_child() -> None:  # pragma: no cover - runs in forked children
    for obj in list(_live):
        if isinstance(obj, _Connection):
            obj.__class__ = _ForkedConnection
        elif isinstance(obj, _Cursor):
            obj.__class__ = _ForkedCursor
    _live.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _readonly_uri(name: str) -> str:
    import urllib.parse  # only here: keeps the module's import cheap

    return "file:" + urllib.parse.quote(os.path.abspath(name)) + "?mode=ro"


def _display(path: str | os.PathLike[str]) -> str:
    return os.fspath(path)


def _in_transaction(conn: sqlite3.Connection) -> bool:
    # A function, not the attribute, so type checkers do not narrow it for
    # good after the first check: the block in between changes it.
    return conn.in_transaction


def _is_busy(exc: BaseException) -> bool:
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    name = str(getattr(exc, "sqlite_errorname", "") or "")
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return True
    text = str(exc).lower()
    return "database is locked" in text or "database is busy" in text


def _locked(path: str, what: str) -> DatabaseLockedError:
    return DatabaseLockedError(
        f"SQLite database {path} stayed locked: {what}",
        code="DB_LOCKED",
        context={"path": path},
    )


def _not_a_database(path: str, why: str) -> DatabaseError:
    return DatabaseError(
        f"{path} {why}", code="DB_NOT_A_DATABASE", context={"path": path}
    )


def _read_header(path: str) -> bytes:
    """The first bytes of ``path``; never blocks, whatever is there.

    Raises:
        NotARegularFileError: Not a regular file (checked on the opened file).
        OSError: It cannot be opened or read.
    """
    fd = os.open(path, _READ_FLAGS)
    try:
        refuse_special_file(path, os.fstat(fd))
        return os.read(fd, len(SQLITE_MAGIC))
    finally:
        os.close(fd)


def _inspect_existing(path: str, busy_timeout: float) -> bool:
    """Refuse a placeholder or a foreign file at ``path``; True if it exists.

    A 0-byte file that is brand new may be a database a plain
    ``sqlite3.connect()`` elsewhere is creating right now, so it gets a short
    grace period (bounded by the busy timeout) to gain its header.
    """
    # Real time, not the clock seam: this waits for another process's file
    # system activity, which a fake clock cannot speed up.
    deadline = time.monotonic() + min(_FRESH_FILE_GRACE, busy_timeout)
    while True:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            raise DatabaseOpenError(
                f"{path} is a directory, not an SQLite database",
                code="IS_A_DIRECTORY",
                context={"path": path},
            )
        kind = file_kind(st.st_mode)
        if kind is not None:
            # A FIFO or device reports size 0: it is no placeholder, and
            # SQLite must never open it (a FIFO blocks, /dev/zero never ends).
            raise _not_a_database(
                path, f"is {kind}, not a regular file; refusing to open it"
            )
        if st.st_size > 0:
            break
        young = time.time() - st.st_mtime < _FRESH_FILE_GRACE
        if not young or time.monotonic() >= deadline:
            raise _not_a_database(
                path,
                "is an empty (0-byte) placeholder, not an SQLite database; "
                "remove it or point to the real database file",
            )
        time.sleep(0.01)
    try:
        head = _read_header(path)
    except NotARegularFileError as exc:  # swapped in since the stat
        raise _not_a_database(path, str(exc.strerror)) from exc
    except OSError:
        return True  # unreadable: let sqlite report it in its own words
    if head != SQLITE_MAGIC:
        raise _not_a_database(
            path,
            f"is not an SQLite database (header {head[:16]!r}); refusing to open it",
        )
    return True


def _create_atomically(path: str, busy_timeout_ms: int) -> None:
    """Create a WAL database at ``path`` so it is never visible half-made.

    The database is built under a temporary name in the same directory and
    hard-linked into place; the loser of a creation race just uses the
    winner's file. Where hard links are unsupported, sqlite creates it in place.
    """
    directory = os.path.dirname(os.path.abspath(path)) or "."
    tmp = os.path.join(
        directory,
        f".{os.path.basename(path)}.{os.getpid()}.{os.urandom(4).hex()}.tmp",
    )
    try:
        conn = sqlite3.connect(tmp, timeout=busy_timeout_ms / 1000)
        try:
            conn.execute("PRAGMA journal_mode=WAL").fetchone()
        finally:
            conn.close()
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        except OSError:
            # No hard links here (some network/FUSE file systems): let sqlite
            # create the file in place; a concurrent opener may see it empty
            # for a moment, which the placeholder grace period covers.
            return
    finally:
        for suffix in ("", "-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp + suffix)


def _pragma(conn: sqlite3.Connection, sql: str) -> Any:
    row = sqlite3.Connection.execute(conn, sql).fetchone()
    return None if row is None else row[0]


def _prepare_file(
    name: str, busy_timeout_ms: int, *, readonly: bool, create: bool
) -> None:
    if _inspect_existing(name, busy_timeout_ms / 1000):
        return
    parent = os.path.dirname(os.path.abspath(name))
    if readonly or not create:
        raise DatabaseOpenError(
            f"SQLite database {name} does not exist",
            code="FILE_NOT_FOUND",
            context={"path": name},
        )
    if not os.path.isdir(parent):
        raise DatabaseOpenError(
            f"cannot create SQLite database {name}: directory {parent} does not exist",
            code="FILE_NOT_FOUND",
            context={"path": name},
        )
    try:
        _create_atomically(name, busy_timeout_ms)
    except ReliabilityError:
        raise  # already ours (and, as a sqlite3 error, would be wrapped again)
    except sqlite3.Error as exc:
        raise _open_error(name, exc) from exc


def _open_error(name: str, exc: sqlite3.Error) -> ReliabilityError:
    if _is_busy(exc):
        return _locked(name, "while opening it")
    text = str(exc).lower()
    if "not a database" in text or "malformed" in text:
        return _not_a_database(name, f"is not a usable SQLite database: {exc}")
    return DatabaseOpenError(
        f"cannot open SQLite database {name}: {exc}",
        code="DB_ERROR",
        context={"path": name},
    )


def _configure(
    conn: sqlite3.Connection,
    name: str,
    *,
    busy_timeout_ms: int,
    synchronous: str,
    want_wal: bool,
    require_wal: bool,
    journal_size_limit: int | None,
) -> str:
    # 1. The busy handler first: every later step may need a lock.
    _pragma(conn, f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    # 2. WAL, verified by reading it back.
    mode = str(_pragma(conn, "PRAGMA journal_mode")).lower()
    if want_wal and mode != "wal":
        _pragma(conn, "PRAGMA journal_mode=WAL")
        mode = str(_pragma(conn, "PRAGMA journal_mode")).lower()
        if mode != "wal":
            if require_wal:
                raise DatabaseError(
                    f"SQLite database {name} cannot use WAL (journal_mode "
                    f"stays {mode!r}; is it on a network file system?); pass "
                    "require_wal=False to accept rollback-journal mode",
                    code="DB_ERROR",
                    context={"path": name, "journal_mode": mode},
                )
            emit(
                "sqlite",
                "wal_unavailable",
                level="warning",
                subject=name,
                journal_mode=mode,
            )
    # 3. Durability and integrity settings, each read back.
    _pragma(conn, f"PRAGMA synchronous = {synchronous}")
    _pragma(conn, "PRAGMA foreign_keys = ON")
    if journal_size_limit is not None:
        _pragma(conn, f"PRAGMA journal_size_limit = {int(journal_size_limit)}")
    got_sync = _pragma(conn, "PRAGMA synchronous")
    got_fk = _pragma(conn, "PRAGMA foreign_keys")
    if got_sync != _SYNCHRONOUS[synchronous] or got_fk != 1:
        raise DatabaseError(
            f"SQLite database {name} did not accept its settings "
            f"(synchronous={got_sync!r}, foreign_keys={got_fk!r})",
            code="DB_ERROR",
            context={"path": name},
        )
    # A non-SQLite file that slipped past the header check (e.g. written
    # between our check and the open) fails here, with its name.
    _pragma(conn, "PRAGMA schema_version")
    return mode


def open_database(
    path: str | os.PathLike[str],
    *,
    busy_timeout_ms: int = 5000,
    synchronous: Synchronous | str = "NORMAL",
    readonly: bool = False,
    require_wal: bool = True,
    create: bool = True,
    check_same_thread: bool = True,
    journal_size_limit: int | None = 64 * 1024 * 1024,
) -> sqlite3.Connection:
    """Open an SQLite database safely for use by many processes.

    In this order: the file is checked (a 0-byte placeholder or a non-SQLite
    file is refused), ``busy_timeout`` is set, then WAL is switched on and
    verified by reading the pragma back, then ``synchronous`` and
    ``foreign_keys=ON``. The connection is in autocommit mode
    (``isolation_level=None``): nothing runs in an implicit transaction; use
    :func:`write_transaction` / :func:`read_transaction`.

    The caller owns the connection. ``with open_database(p) as conn:`` closes it
    at the end of the block. Using it in another process (after ``fork()``)
    raises :class:`PermanentError` (``PROGRAMMING_ERROR``) instead of silently
    corrupting locks.

    Args:
        path: The database file, or ``":memory:"``.
        busy_timeout_ms: How long one statement waits for a lock (ms).
        synchronous: ``OFF`` | ``NORMAL`` | ``FULL`` | ``EXTRA``. ``NORMAL`` is
            durable against application crashes in WAL mode; only a power
            loss may lose the last transactions (never corrupt the file).
        readonly: Open with ``mode=ro``; the journal mode is read, not changed.
        require_wal: If WAL cannot be enabled (network file systems without
            shared memory), raise; with ``False``, keep the mode SQLite gives
            and emit a ``sqlite.wal_unavailable`` warning event instead.
        create: Create the file if missing (WAL from the first byte).
        check_same_thread: Passed to :func:`sqlite3.connect`.
        journal_size_limit: Bytes the WAL is truncated to after a checkpoint
            (``None`` leaves SQLite's default: never truncate).

    Returns:
        A :class:`sqlite3.Connection` (a subclass).

    Raises:
        PermanentError: ``DB_NOT_A_DATABASE`` for a placeholder or foreign
            file, ``FILE_NOT_FOUND`` for a missing file (``create=False``,
            ``readonly``) or directory, ``DB_ERROR`` when WAL is required but
            unavailable, ``PROGRAMMING_ERROR`` for bad arguments.
        TransientError: ``DB_LOCKED`` if the database stayed locked while being
            set up.
    """
    if busy_timeout_ms < 0:
        raise ValueError(f"busy_timeout_ms must be >= 0, got {busy_timeout_ms!r}")
    sync_name = str(synchronous).upper()
    if sync_name not in _SYNCHRONOUS:
        raise ValueError(
            f"synchronous must be one of {sorted(_SYNCHRONOUS)}, got {synchronous!r}"
        )
    name = _display(path)
    memory = name in (_MEMORY, "")
    if not memory:
        _prepare_file(name, busy_timeout_ms, readonly=readonly, create=create)
    target = name
    if readonly and not memory:
        target = _readonly_uri(name)
    try:
        conn = sqlite3.connect(
            target,
            timeout=busy_timeout_ms / 1000,
            isolation_level=None,
            check_same_thread=check_same_thread,
            factory=_Connection,
            uri=readonly and not memory,
        )
    except sqlite3.Error as exc:
        raise _open_error(name, exc) from exc
    try:
        conn._paios_path = name
        mode = _configure(
            conn,
            name,
            busy_timeout_ms=busy_timeout_ms,
            synchronous=sync_name,
            want_wal=not readonly and not memory,
            require_wal=require_wal,
            journal_size_limit=None if readonly else journal_size_limit,
        )
    except ReliabilityError:
        conn.close()
        raise  # already ours (and, as a sqlite3 error, would be wrapped again)
    except sqlite3.Error as exc:
        conn.close()
        raise _open_error(name, exc) from exc
    except BaseException:
        conn.close()
        raise
    emit("sqlite", "opened", level="debug", subject=name, journal_mode=mode)
    return conn
