"""Where checkpoints live: the same five operations on SQLite and on a state store."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .._core.events import emit
from .._core.exceptions import IntegrityError

if TYPE_CHECKING:
    import sqlite3

    from ..typing import StateStore

__all__ = [
    "_DONE",
    "_PRIMITIVE",
    "_SQLiteBackend",
    "_StoreBackend",
    "_decode",
    "_encode",
    "_store_rows",
]

_DONE = frozenset({"completed", "skipped"})
_PRIMITIVE = "checkpoint"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS paios_checkpoints (
    run_id TEXT NOT NULL,
    step TEXT NOT NULL,
    seq INTEGER NOT NULL,
    status TEXT NOT NULL,
    output TEXT NOT NULL,
    checksum TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (run_id, step)
) WITHOUT ROWID
"""


def _encode(output: Any) -> tuple[str, str]:
    from .._data.signed import canonical_json

    data = canonical_json(output, exclude=())
    return data.decode("utf-8", "surrogatepass"), hashlib.sha256(data).hexdigest()


def _decode(run_id: str, step: str, text: str, checksum: str, where: str) -> Any:
    data = text.encode("utf-8", "surrogatepass")
    if hashlib.sha256(data).hexdigest() != checksum:
        emit(
            _PRIMITIVE, "corrupt", level="error", subject=run_id, step=step, store=where
        )
        raise IntegrityError(
            f"checkpoint {step!r} of run {run_id!r} in {where} fails its checksum "
            "(changed outside paios_reliability?); resume with force_restart=True "
            "or skip_to=... to run past it",
            context={"run_id": run_id, "step": step, "store": where},
        )
    return json.loads(text)


# -- backends: the same five operations on SQLite and on a state store ------------------


class _SQLiteBackend:
    """Checkpoints in an SQLite file: one row per (run, step)."""

    def __init__(self, path: str, busy_timeout_ms: int) -> None:
        self.path = path
        self.where = path
        self._busy_timeout_ms = busy_timeout_ms
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self._closed = False
        self._abandoned: list[sqlite3.Connection] = []

    def _connection(self) -> sqlite3.Connection:
        # Called with self._lock held.
        if self._closed:
            raise ValueError(f"CheckpointStore({self.path!r}) is closed")
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        if self._conn is not None:
            # Inherited through fork(): never use or close it here.
            self._abandoned.append(self._conn)
            self._conn = None
        from .._data.database import open_database
        from .._data.transactions import write_transaction

        conn = open_database(
            self.path, busy_timeout_ms=self._busy_timeout_ms, check_same_thread=False
        )
        try:
            with write_transaction(conn):
                conn.execute(_SCHEMA)
        except BaseException:
            conn.close()
            raise
        self._conn, self._pid = conn, os.getpid()
        return conn

    def _records(self, conn: sqlite3.Connection, run_id: str) -> list[tuple[Any, ...]]:
        return list(
            conn.execute(
                "SELECT step, status, output, checksum, seq, created_at, updated_at "
                "FROM paios_checkpoints WHERE run_id = ? ORDER BY seq",
                (run_id,),
            )
        )

    def save(
        self,
        run_id: str,
        step: str,
        *,
        status: str,
        text: str,
        checksum: str,
        now: float,
    ) -> tuple[Any, ...]:
        from .._data.transactions import write_transaction

        with self._lock:
            conn = self._connection()
            with write_transaction(conn):
                row = conn.execute(
                    "SELECT seq, created_at FROM paios_checkpoints "
                    "WHERE run_id = ? AND step = ?",
                    (run_id, step),
                ).fetchone()
                if row is None:
                    (seq,) = conn.execute(
                        "SELECT COALESCE(MAX(seq), 0) + 1 FROM paios_checkpoints "
                        "WHERE run_id = ?",
                        (run_id,),
                    ).fetchone()
                    created = now
                else:
                    seq, created = row
                conn.execute(
                    "INSERT OR REPLACE INTO paios_checkpoints (run_id, step, seq, "
                    "status, output, checksum, created_at, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (run_id, step, seq, status, text, checksum, created, now),
                )
        return (step, status, text, checksum, seq, created, now)

    def load(self, run_id: str) -> list[tuple[Any, ...]]:
        from .._data.transactions import read_transaction

        with self._lock:
            conn = self._connection()
            with read_transaction(conn):
                return self._records(conn, run_id)

    def prepare(
        self,
        run_id: str,
        clear_all: bool,
        clear: Sequence[str],
        skip: Sequence[str],
        now: float,
    ) -> list[tuple[Any, ...]]:
        """Apply a restart / skip, then read the run (one transaction)."""
        from .._data.transactions import read_transaction, write_transaction

        with self._lock:
            conn = self._connection()
            if not (clear_all or clear or skip):
                with read_transaction(conn):
                    return self._records(conn, run_id)
            with write_transaction(conn):
                if clear_all:
                    conn.execute(
                        "DELETE FROM paios_checkpoints WHERE run_id = ?", (run_id,)
                    )
                conn.executemany(
                    "DELETE FROM paios_checkpoints WHERE run_id = ? AND step = ?",
                    [(run_id, s) for s in clear],
                )
                text, checksum = _encode(None)
                for name in skip:
                    row = conn.execute(
                        "SELECT status, seq, created_at FROM paios_checkpoints "
                        "WHERE run_id = ? AND step = ?",
                        (run_id, name),
                    ).fetchone()
                    if row is not None and row[0] in _DONE:
                        continue
                    if row is None:
                        (seq,) = conn.execute(
                            "SELECT COALESCE(MAX(seq), 0) + 1 FROM paios_checkpoints "
                            "WHERE run_id = ?",
                            (run_id,),
                        ).fetchone()
                        created = now
                    else:
                        _, seq, created = row
                    conn.execute(
                        "INSERT OR REPLACE INTO paios_checkpoints (run_id, step, seq, "
                        "status, output, checksum, created_at, updated_at) "
                        "VALUES (?, ?, ?, 'skipped', ?, ?, ?, ?)",
                        (run_id, name, seq, text, checksum, created, now),
                    )
                return self._records(conn, run_id)

    def delete(self, run_id: str) -> None:
        from .._data.transactions import write_transaction

        with self._lock:
            conn = self._connection()
            with write_transaction(conn):
                conn.execute(
                    "DELETE FROM paios_checkpoints WHERE run_id = ?", (run_id,)
                )

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conn, self._conn = self._conn, None
            if conn is not None and self._pid == os.getpid():
                conn.close()


def _store_save(
    data: Any, step: str, *, status: str, text: str, checksum: str, now: float
) -> tuple[Any, tuple[Any, ...]]:
    steps = dict(data["s"]) if data is not None else {}
    seq = data["n"] if data is not None else 1
    old = steps.get(step)
    if old is None:
        entry = [seq, status, text, checksum, now, now]
        seq += 1
    else:
        entry = [old[0], status, text, checksum, old[4], now]
    steps[step] = entry
    return {"n": seq, "s": steps}, (
        step,
        status,
        text,
        checksum,
        entry[0],
        entry[4],
        now,
    )


def _store_rows(data: Any) -> list[tuple[Any, ...]]:
    if data is None:
        return []
    rows = [(name, e[1], e[2], e[3], e[0], e[4], e[5]) for name, e in data["s"].items()]
    return sorted(rows, key=lambda r: r[4])


def _store_prepare(
    data: Any,
    clear_all: bool,
    clear: Sequence[str],
    skip: Sequence[str],
    now: float,
) -> tuple[Any, list[tuple[Any, ...]]]:
    if not (clear_all or clear or skip):
        return data, _store_rows(data)
    steps: dict[str, Any] = {} if data is None or clear_all else dict(data["s"])
    seq = 1 if data is None else data["n"]
    for name in clear:
        steps.pop(name, None)
    text, checksum = _encode(None)
    for name in skip:
        old = steps.get(name)
        if old is None:
            steps[name] = [seq, "skipped", text, checksum, now, now]
            seq += 1
        elif old[1] not in _DONE:
            steps[name] = [old[0], "skipped", text, checksum, old[4], now]
    new = {"n": seq, "s": steps} if steps else None
    return new, _store_rows(new)


class _StoreBackend:
    """Checkpoints in a state store: one record per run, one update per save."""

    def __init__(self, store: StateStore, retention: float) -> None:
        self.store = store
        self.where = repr(store)
        self._ttl = retention

    @staticmethod
    def _key(run_id: str) -> str:
        return f"{_PRIMITIVE}:{run_id}"

    def save(
        self,
        run_id: str,
        step: str,
        *,
        status: str,
        text: str,
        checksum: str,
        now: float,
    ) -> tuple[Any, ...]:
        def apply(data: Any) -> tuple[Any, tuple[Any, ...]]:
            return _store_save(
                data, step, status=status, text=text, checksum=checksum, now=now
            )

        return self.store.update(self._key(run_id), apply, ttl=self._ttl)

    def load(self, run_id: str) -> list[tuple[Any, ...]]:
        return _store_rows(self.store.get(self._key(run_id)))

    def prepare(
        self,
        run_id: str,
        clear_all: bool,
        clear: Sequence[str],
        skip: Sequence[str],
        now: float,
    ) -> list[tuple[Any, ...]]:
        def apply(data: Any) -> tuple[Any, list[tuple[Any, ...]]]:
            return _store_prepare(data, clear_all, clear, skip, now)

        return self.store.update(self._key(run_id), apply, ttl=self._ttl)

    def delete(self, run_id: str) -> None:
        self.store.delete(self._key(run_id))

    def close(self) -> None:
        """The caller owns the state store; nothing to release here."""
