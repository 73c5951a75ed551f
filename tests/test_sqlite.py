"""open_database / write_transaction / read_transaction / check_database / checkpoint.

Real SQLite files, real processes (subprocess workers in
``tests/_proc_data_workers.py``), real ``fork()`` and ``kill -9``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import types
import warnings
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostile_files import HOSTILE_KINDS, finishes, hostile
from paios_reliability import (
    DatabaseReport,
    PermanentError,
    ReliabilityError,
    TransientError,
    check_database,
    checkpoint,
    classify,
    open_database,
    read_transaction,
    write_transaction,
)
from paios_reliability._data import transactions
from paios_reliability.testing import FakeClock, capture_events

WORKERS = str(Path(__file__).with_name("_proc_data_workers.py"))
OLD = 1_000_000_000  # an mtime far in the past: a placeholder, not a fresh file


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, WORKERS, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _result(proc: subprocess.Popen[str], timeout: float = 120) -> dict[str, object]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    parsed: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return parsed


def _digest(path: Path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


@pytest.fixture
def db(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    with open_database(tmp_path / "app.db") as conn:
        conn.execute("CREATE TABLE kv (k TEXT PRIMARY KEY, v INTEGER NOT NULL)")
        yield conn


# -- open_database -----------------------------------------------------------------


def test_open_database_settings(tmp_path: Path) -> None:
    with open_database(tmp_path / "a.db", busy_timeout_ms=1234) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 1234
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.isolation_level is None
        conn.execute("CREATE TABLE t (x)")
        conn.execute("INSERT INTO t VALUES (1)")
        # autocommit: no implicit transaction was left open by the INSERT
        assert conn.in_transaction is False
    with open_database(tmp_path / "a.db", synchronous="full") as conn:
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2
        assert conn.execute("SELECT x FROM t").fetchall() == [(1,)]


def test_new_database_is_wal_from_the_first_byte(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    open_database(path).close()
    data = path.read_bytes()
    assert data.startswith(b"SQLite format 3\x00")
    assert data[18:20] == b"\x02\x02"  # file format versions 2 = WAL
    assert [p.name for p in tmp_path.iterdir()] == ["fresh.db"]  # no temp left


def test_foreign_keys_are_enforced(tmp_path: Path) -> None:
    with open_database(tmp_path / "fk.db") as conn:
        conn.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        conn.execute("CREATE TABLE child (pid INTEGER REFERENCES parent(id))")
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute("INSERT INTO child VALUES (42)")


def test_context_manager_closes_and_commits_explicit_transaction(
    tmp_path: Path,
) -> None:
    path = tmp_path / "cm.db"
    with open_database(path) as conn:
        conn.execute("CREATE TABLE t (x)")
        conn.execute("BEGIN")
        conn.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(sqlite3.ProgrammingError):
        conn.execute("SELECT 1")
    conn2 = open_database(path)
    with pytest.raises(KeyError), conn2:  # noqa: PT012 - the block is the subject
        conn2.execute("BEGIN")
        conn2.execute("INSERT INTO t VALUES (2)")
        raise KeyError("boom")
    with open_database(path) as conn3:
        assert conn3.execute("SELECT x FROM t").fetchall() == [(1,)]


@pytest.mark.parametrize(
    ("content", "why"),
    [(b"", "0-byte placeholder"), (b"{'not': 'sqlite'}\n" * 10, "not an SQLite")],
    ids=["placeholder", "foreign-file"],
)
def test_refuses_placeholder_and_foreign_file(
    tmp_path: Path, content: bytes, why: str
) -> None:
    path = tmp_path / "data.db"
    path.write_bytes(content)
    os.utime(path, (OLD, OLD))
    before = _digest(path)
    with pytest.raises(PermanentError) as info:
        open_database(path)
    assert info.value.code == "DB_NOT_A_DATABASE"
    assert str(path) in str(info.value)
    assert why.rsplit(maxsplit=1)[-1] in str(info.value)
    assert _digest(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.db"]


def test_fresh_empty_file_gets_a_grace_period_then_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "young.db"
    path.write_bytes(b"")
    with pytest.raises(PermanentError) as info:
        open_database(path, busy_timeout_ms=50)
    assert info.value.code == "DB_NOT_A_DATABASE"
    assert path.read_bytes() == b""


def test_missing_file_and_directory_errors(tmp_path: Path) -> None:
    with pytest.raises(PermanentError) as info:
        open_database(tmp_path / "nope" / "x.db")
    assert info.value.code == "FILE_NOT_FOUND"
    assert "nope" in str(info.value)
    with pytest.raises(PermanentError) as info:
        open_database(tmp_path / "x.db", create=False)
    assert info.value.code == "FILE_NOT_FOUND"
    with pytest.raises(PermanentError) as info:
        open_database(tmp_path / "x.db", readonly=True)
    assert info.value.code == "FILE_NOT_FOUND"
    assert not (tmp_path / "x.db").exists()
    with pytest.raises(PermanentError) as info:
        open_database(tmp_path)
    assert info.value.code == "IS_A_DIRECTORY"


@pytest.mark.parametrize("kind", sorted(set(HOSTILE_KINDS) - {"directory"}))
@pytest.mark.parametrize("readonly", [False, True])
def test_a_special_file_is_refused_at_once(
    tmp_path: Path, kind: str, readonly: bool
) -> None:
    """A FIFO or device reports size 0 but is no placeholder: no grace, no open."""
    with hostile(kind, tmp_path / "app.db") as path:
        before = os.lstat(path)
        with pytest.raises(PermanentError) as info:
            # Waiting out the placeholder grace period (2 s) would be a failure.
            finishes(lambda: open_database(path, readonly=readonly), within=1.5)
        assert info.value.code == "DB_NOT_A_DATABASE"
        assert str(path) in str(info.value)
        assert f"{HOSTILE_KINDS[kind]}" in str(info.value)
        assert "not a regular file" in str(info.value)
        after = os.lstat(path)
        assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)
    # Nothing made beside it either (no -wal, -shm or temp database).
    leftovers = {p.name for p in tmp_path.iterdir()} - {"app.db", "app.db.real-fifo"}
    assert leftovers == set()


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="synchronous"):
        open_database(":memory:", synchronous="SOMETIMES")
    with pytest.raises(ValueError, match="busy_timeout_ms"):
        open_database(":memory:", busy_timeout_ms=-1)


def test_memory_database() -> None:
    with open_database(":memory:") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "memory"
        conn.execute("CREATE TABLE t (x)")
        with write_transaction(conn):
            conn.execute("INSERT INTO t VALUES (1)")
        assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 1


def test_readonly(tmp_path: Path) -> None:
    path = tmp_path / "ro.db"
    with open_database(path) as conn:
        conn.execute("CREATE TABLE t (x)")
        conn.execute("INSERT INTO t VALUES (7)")
    before = path.read_bytes()
    with open_database(path, readonly=True) as ro:
        assert ro.execute("SELECT x FROM t").fetchall() == [(7,)]
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            ro.execute("INSERT INTO t VALUES (8)")
    assert path.read_bytes() == before


def test_forked_child_cannot_use_the_connection(db: sqlite3.Connection) -> None:
    # The library supports POSIX systems only, which all have fork().
    cursor = db.cursor()
    db.execute("INSERT INTO kv VALUES ('a', 1)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # multi-threaded fork
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit code
        status = 0
        attempts = (
            lambda: db.execute("UPDATE kv SET v = 2"),
            lambda: cursor.execute("UPDATE kv SET v = 3"),
            db.cursor,
            db.commit,
            lambda: db.executemany("INSERT INTO kv VALUES (?, ?)", [("b", 1)]),
        )
        for i, attempt in enumerate(attempts):
            try:
                attempt()
            except PermanentError as exc:
                if exc.code != "PROGRAMMING_ERROR" or "fork" not in str(exc):
                    status |= 1 << i
            except BaseException:
                status |= 1 << i
            else:
                status |= 1 << i
        os._exit(status)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert db.execute("SELECT v FROM kv").fetchall() == [(1,)]


# -- write_transaction / read_transaction --------------------------------------------


def test_write_transaction_commits(db: sqlite3.Connection) -> None:
    with write_transaction(db) as conn:
        assert conn is db
        assert db.in_transaction
        db.execute("INSERT INTO kv VALUES ('a', 1)")
    assert not db.in_transaction
    assert db.execute("SELECT v FROM kv").fetchall() == [(1,)]


def test_write_transaction_rolls_back_and_reraises_unchanged(
    db: sqlite3.Connection,
) -> None:
    error = LookupError("the original")
    with pytest.raises(LookupError) as info, write_transaction(db):  # noqa: PT012
        db.execute("INSERT INTO kv VALUES ('a', 1)")
        raise error
    assert info.value is error
    assert not db.in_transaction
    assert db.execute("SELECT count(*) FROM kv").fetchone()[0] == 0


def test_write_transaction_refuses_to_nest(db: sqlite3.Connection) -> None:
    with write_transaction(db):
        with pytest.raises(PermanentError) as info, write_transaction(db):
            pass  # pragma: no cover
        assert info.value.code == "PROGRAMMING_ERROR"
        db.execute("INSERT INTO kv VALUES ('a', 1)")
    assert db.execute("SELECT count(*) FROM kv").fetchone()[0] == 1


def test_write_transaction_gives_up_with_db_locked(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    holder = open_database(path)
    waiter = open_database(path, busy_timeout_ms=10)
    clock = FakeClock()
    holder.execute("BEGIN IMMEDIATE")
    try:
        with (
            clock.install(),
            capture_events() as events,
            pytest.raises(TransientError) as info,
            write_transaction(waiter, max_attempts=4),
        ):
            pass  # pragma: no cover
    finally:
        holder.rollback()
    assert info.value.code == "DB_LOCKED"
    assert info.value.retryable
    assert classify(info.value).code == "DB_LOCKED"
    assert str(path) in str(info.value)
    assert len(events.of("sqlite.lock_retry")) == 3
    assert len(events.of("sqlite.lock_exhausted")) == 1
    assert len(clock.sleeps) == 3
    assert all(0 <= s <= 2.0 for s in clock.sleeps)
    assert not waiter.in_transaction
    holder.close()
    waiter.close()


def test_write_transaction_budget_bounds_the_retries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The longest jittered wait every time, so the waits are known: the caps
    # 0.1, 0.2, 0.4 s, the last clipped to the 0.5 s budget. The busy waits
    # inside SQLite count in real time; frozen here, so only the fake clock's
    # waits spend the budget, however slow the machine.
    monkeypatch.setattr(random, "uniform", lambda low, high: high)
    monkeypatch.setattr(
        transactions, "time", types.SimpleNamespace(monotonic=lambda: 0.0)
    )
    path = tmp_path / "budget.db"
    holder = open_database(path)
    waiter = open_database(path, busy_timeout_ms=1)
    holder.execute("BEGIN IMMEDIATE")
    clock = FakeClock()
    try:
        with (
            clock.install(),
            pytest.raises(TransientError) as info,
            write_transaction(waiter, budget=0.5, max_attempts=1000),
        ):
            pass  # pragma: no cover
    finally:
        holder.rollback()
    assert clock.sleeps == pytest.approx([0.1, 0.2, 0.2])
    assert sum(clock.sleeps) <= 0.5 + 1e-9
    # The budget, not max_attempts, ended it: one attempt per wait, plus one,
    # and the last wait is clipped so the waits use the budget exactly.
    assert f"failed {len(clock.sleeps) + 1} time(s)" in str(info.value)
    assert sum(clock.sleeps) >= 0.5 - 1e-9
    holder.close()
    waiter.close()


@pytest.mark.parametrize(("busy_ms", "budget"), [(300, 0.3), (200, 0.4)])
def test_finding_08_write_transaction_gives_up_within_its_budget(
    tmp_path: Path, busy_ms: int, budget: float
) -> None:
    # The budget counts from the first BEGIN, including the wait SQLite did
    # inside it; each retry waits only for what is left.
    path = tmp_path / "budget.db"
    holder = open_database(path)
    waiter = open_database(path, busy_timeout_ms=busy_ms)
    holder.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        with (
            pytest.raises(TransientError),
            write_transaction(waiter, budget=budget, max_attempts=50),
        ):
            pass  # pragma: no cover
        took = time.monotonic() - started
    finally:
        holder.rollback()
    assert budget * 0.9 <= took < budget * 1.5  # never about twice the budget
    # The connection keeps its own busy timeout for later statements.
    assert waiter.execute("PRAGMA busy_timeout").fetchone()[0] == busy_ms
    assert not waiter.in_transaction
    holder.close()
    waiter.close()


class _ReleasingClock(FakeClock):
    """Fake time whose first sleep lets the other writer finish."""

    def __init__(self, holder: sqlite3.Connection) -> None:
        super().__init__()
        self.holder = holder

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        if self.holder.in_transaction:
            self.holder.commit()


def test_write_transaction_retries_until_the_lock_frees(tmp_path: Path) -> None:
    path = tmp_path / "retry.db"
    holder = open_database(path)
    holder.execute("CREATE TABLE t (x)")
    waiter = open_database(path, busy_timeout_ms=10)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO t VALUES (1)")
    clock = _ReleasingClock(holder)
    with clock.install(), write_transaction(waiter):
        waiter.execute("INSERT INTO t VALUES (2)")
    assert len(clock.sleeps) == 1
    assert waiter.execute("SELECT x FROM t ORDER BY x").fetchall() == [(1,), (2,)]
    holder.close()
    waiter.close()


def test_read_transaction_is_a_snapshot_and_read_only(tmp_path: Path) -> None:
    path = tmp_path / "snap.db"
    with open_database(path) as writer, open_database(path) as reader:
        writer.execute("CREATE TABLE t (x)")
        writer.execute("INSERT INTO t VALUES (1)")
        with read_transaction(reader):
            assert reader.execute("SELECT count(*) FROM t").fetchone()[0] == 1
            with write_transaction(writer):
                writer.execute("INSERT INTO t VALUES (2)")
            assert reader.execute("SELECT count(*) FROM t").fetchone()[0] == 1
            with pytest.raises(sqlite3.OperationalError):
                reader.execute("INSERT INTO t VALUES (3)")
        assert not reader.in_transaction
        assert reader.execute("SELECT count(*) FROM t").fetchone()[0] == 2
        reader.execute("INSERT INTO t VALUES (4)")  # query_only is off again
        assert writer.execute("SELECT count(*) FROM t").fetchone()[0] == 3


def test_long_read_emits_a_warning(db: sqlite3.Connection) -> None:
    clock = FakeClock()
    with clock.install(), capture_events() as events, read_transaction(db):
        db.execute("SELECT * FROM kv").fetchall()
        clock.advance(61)
    [event] = events.of("sqlite.long_read")
    assert event.level == "warning"
    assert event.fields["seconds"] == 61


def test_read_transaction_refuses_to_nest(db: sqlite3.Connection) -> None:
    with write_transaction(db), pytest.raises(PermanentError), read_transaction(db):
        pass  # pragma: no cover


# -- checkpoint ------------------------------------------------------------------------


def test_checkpoint_truncate_empties_the_wal(tmp_path: Path) -> None:
    path = tmp_path / "cp.db"
    with open_database(path) as conn:
        conn.execute("CREATE TABLE t (x)")
        for i in range(50):
            conn.execute("INSERT INTO t VALUES (?)", (i,))
        assert Path(f"{path}-wal").stat().st_size > 0
        with capture_events() as events:
            passive = checkpoint(conn)
            result = checkpoint(conn, "truncate")
        assert passive.busy is False
        assert passive.wal_frames >= passive.checkpointed_frames > 0
        assert result.busy is False
        assert Path(f"{path}-wal").stat().st_size == 0
        assert [e.fields["mode"] for e in events.of("sqlite.checkpoint")] == [
            "PASSIVE",
            "TRUNCATE",
        ]
        with pytest.raises(ValueError, match="checkpoint mode"):
            checkpoint(conn, "EVENTUALLY")


# -- check_database --------------------------------------------------------------------


def test_check_database_healthy_and_unmodified(tmp_path: Path) -> None:
    path = tmp_path / "ok.db"
    with open_database(path) as conn:
        conn.execute("CREATE TABLE t (x)")
        conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(100)])
        conn.execute("DELETE FROM t WHERE x > 10")
        checkpoint(conn, "TRUNCATE")
    before = _digest(path)
    for full in (False, True):
        report = check_database(path, full=full)
        assert isinstance(report, DatabaseReport)
        assert report.ok, report.to_text()
        assert report.exists
        assert report.is_sqlite
        assert not report.zero_byte
        assert report.journal_mode == "wal"
        assert report.integrity == ("ok",)
        assert report.check == ("integrity_check" if full else "quick_check")
        assert report.size == path.stat().st_size
        assert report.page_size == 4096
        assert report.page_count == report.size // 4096
        assert report.freelist_count is not None
        assert report.problems == ()
        json.dumps(report.to_dict())
        assert f"{path}: ok" in report.to_text()
    assert _digest(path) == before


@pytest.mark.parametrize(
    ("content", "flag", "needle"),
    [
        (None, "exists", "does not exist"),
        (b"", "zero_byte", "0-byte placeholder"),
        (b"PK\x03\x04 a zip file, not a database", "is_sqlite", "not an SQLite"),
    ],
    ids=["missing", "placeholder", "foreign"],
)
def test_check_database_reports_bad_files(
    tmp_path: Path, content: bytes | None, flag: str, needle: str
) -> None:
    path = tmp_path / "bad.db"
    if content is not None:
        path.write_bytes(content)
    report = check_database(path)
    assert not report.ok
    assert any(needle in p for p in report.problems), report.problems
    assert getattr(report, flag) is (flag == "zero_byte")
    assert "PROBLEMS" in report.to_text()
    assert report.to_dict()["ok"] is False
    if content is not None:
        assert path.read_bytes() == content


@pytest.mark.parametrize("kind", sorted(HOSTILE_KINDS))
def test_check_database_reports_special_files_without_opening_them(
    tmp_path: Path, kind: str
) -> None:
    with hostile(kind, tmp_path / "app.db") as path:
        report = finishes(lambda: check_database(path))
        assert not report.ok
        assert report.exists
        assert not report.zero_byte  # not called a placeholder
        assert len(report.problems) == 1
        assert HOSTILE_KINDS[kind] in report.problems[0]
        text = report.to_text()
        assert text.splitlines() == [
            f"{path}: PROBLEMS",
            f"  problem: {report.problems[0]}",
        ]


def test_check_database_finds_corruption(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.db"
    with open_database(path) as conn:
        conn.execute("CREATE TABLE t (x TEXT)")
        conn.execute("CREATE INDEX tx ON t (x)")
        conn.executemany(
            "INSERT INTO t VALUES (?)", [(f"row {i:05d} " * 20,) for i in range(400)]
        )
        checkpoint(conn, "TRUNCATE")
    data = bytearray(path.read_bytes())
    for offset in range(3 * 4096 + 100, len(data) - 4096, 4096 * 3):
        data[offset : offset + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))
    report = check_database(path, full=True)
    assert not report.ok
    assert report.is_sqlite
    assert report.integrity != ("ok",)
    assert path.read_bytes() == bytes(data)


def test_check_database_rollback_journal_is_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "legacy.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    report = check_database(path)
    assert report.ok
    assert report.journal_mode == "delete"
    assert any("not 'wal'" in w for w in report.warnings)
    assert "warning:" in report.to_text()


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    data=st.one_of(
        st.binary(min_size=1, max_size=3000),
        st.binary(max_size=3000).map(lambda b: b"SQLite format 3\x00" + b),
    )
)
def test_arbitrary_bytes_give_typed_errors(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "fuzz.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    path.write_bytes(data)
    report = check_database(path)
    assert path.read_bytes() == data  # checking never modifies the file
    assert isinstance(report.ok, bool)
    json.dumps(report.to_dict())
    failure: ReliabilityError | None = None
    try:
        conn = open_database(path)
    except ReliabilityError as exc:
        failure = exc
    else:
        conn.close()
    if failure is not None:
        assert str(path) in str(failure)
        assert not report.ok  # what open_database refuses, the check flags


# -- real processes ------------------------------------------------------------------


def test_processes_lose_no_increment(tmp_path: Path) -> None:
    path = tmp_path / "counter.db"
    go = tmp_path / "go"
    with open_database(path) as conn:
        conn.execute("CREATE TABLE counter (k TEXT PRIMARY KEY, v INTEGER)")
        conn.execute("INSERT INTO counter VALUES ('n', 0)")
    procs = [_spawn("sqlite_increment", str(path), "2000", str(go)) for _ in range(4)]
    go.touch()
    results = [_result(p) for p in procs]
    assert results == [{"done": 2000, "errors": 0}] * 4
    with open_database(path) as conn:
        assert conn.execute("SELECT v FROM counter").fetchone()[0] == 8000
    assert check_database(path, full=True).ok


def test_simultaneous_opens_of_a_fresh_database_all_succeed(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    go = tmp_path / "go"
    procs = [_spawn("sqlite_open", str(path), str(go)) for _ in range(12)]
    time.sleep(0.3)  # let them import; they then wait for the start signal
    go.touch()
    results = [_result(p) for p in procs]
    assert results == [{"ok": True, "mode": "wal"}] * 12
    assert check_database(path).ok
    leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp"))
    assert leftovers == []


def test_kill_9_mid_transaction_leaves_a_consistent_database(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    with open_database(path) as conn:
        conn.execute("CREATE TABLE rows (n INTEGER PRIMARY KEY, payload TEXT)")
    for round_ in range(3):
        ready = tmp_path / f"ready{round_}"
        with open_database(path) as conn:
            conn.execute("DELETE FROM rows")
        proc = _spawn("sqlite_writer_forever", str(path), str(ready))
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(0.01 * round_)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        report = check_database(path, full=True)
        assert report.ok, report.to_text()
        with open_database(path) as conn:
            rows = [n for (n,) in conn.execute("SELECT n FROM rows ORDER BY n")]
        assert len(rows) >= 50
        assert rows == list(range(len(rows)))  # committed rows intact, no gap


@pytest.mark.parametrize("driver", ["sync", "async"])
async def test_transactions_from_sync_and_async_code(
    tmp_path: Path, driver: str
) -> None:
    def bump(conn: sqlite3.Connection) -> int:
        with write_transaction(conn):
            (v,) = conn.execute("SELECT v FROM kv WHERE k = 'n'").fetchone()
            conn.execute("UPDATE kv SET v = ? WHERE k = 'n'", (v + 1,))
        with read_transaction(conn):
            return int(conn.execute("SELECT v FROM kv WHERE k = 'n'").fetchone()[0])

    with open_database(tmp_path / "a.db", check_same_thread=False) as conn:
        conn.execute("CREATE TABLE kv (k TEXT PRIMARY KEY, v INTEGER)")
        conn.execute("INSERT INTO kv VALUES ('n', 0)")
        for expected in (1, 2, 3):
            if driver == "sync":
                got = bump(conn)
            else:  # one thread at a time uses the connection
                got = await asyncio.to_thread(bump, conn)
            assert got == expected


def test_default_write_transaction_is_reused_without_a_cycle(tmp_path: Path) -> None:
    conn = open_database(tmp_path / "r.db")
    first, second = write_transaction(conn), write_transaction(conn)
    assert first is second  # no allocation per transaction
    assert write_transaction(conn, budget=1.0) is not first
    with first as inside:
        assert inside is conn
    ref = weakref.ref(conn)
    conn.close()
    del conn, inside
    assert ref() is None  # freed by reference counting alone: no cycle
