"""Issue 16: library errors are also the stdlib exceptions existing code catches."""

from __future__ import annotations

import errno
import os
import pickle
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import paios_reliability as pr


def test_finding_16_open_database_on_a_garbage_file_is_a_sqlite3_error(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.db"
    path.write_bytes(b"this is not a database at all, just some bytes\n" * 4)
    before = path.read_bytes()
    with pytest.raises(sqlite3.DatabaseError) as info:
        pr.open_database(path)
    assert isinstance(info.value, pr.DatabaseError)
    assert isinstance(info.value, pr.PermanentError)
    assert info.value.code == "DB_NOT_A_DATABASE"
    assert str(path) in str(info.value)
    assert path.read_bytes() == before


@pytest.mark.parametrize("kind", ["placeholder", "fifo"])
def test_finding_16_unusable_database_files_are_sqlite3_errors(
    tmp_path: Path, kind: str
) -> None:
    path = tmp_path / "x.db"
    if kind == "placeholder":
        path.touch()
        old = 1_000_000_000
        os.utime(path, (old, old))
    else:
        if not hasattr(os, "mkfifo"):
            pytest.skip("no FIFOs on this platform")
        os.mkfifo(path)
    with pytest.raises(sqlite3.Error) as info:
        pr.open_database(path)
    assert info.value.code == "DB_NOT_A_DATABASE"  # type: ignore[attr-defined]


@pytest.mark.parametrize("case", ["missing_readonly", "missing_parent", "directory"])
def test_finding_16_databases_that_cannot_be_opened_are_operational_errors(
    tmp_path: Path, case: str
) -> None:
    if case == "missing_readonly":
        call = lambda: pr.open_database(tmp_path / "none.db", readonly=True)  # noqa: E731
    elif case == "missing_parent":
        call = lambda: pr.open_database(tmp_path / "no" / "x.db")  # noqa: E731
    else:
        (tmp_path / "dir.db").mkdir()
        call = lambda: pr.open_database(tmp_path / "dir.db")  # noqa: E731
    with pytest.raises(sqlite3.OperationalError) as info:
        call()
    assert isinstance(info.value, pr.DatabaseOpenError)
    assert isinstance(info.value, pr.ReliabilityError)


def test_finding_16_a_database_that_stays_locked_is_an_operational_error(
    tmp_path: Path,
) -> None:
    path = tmp_path / "locked.db"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys\n"
            f"c = sqlite3.connect({str(path)!r}, isolation_level=None)\n"
            "c.execute('PRAGMA journal_mode=WAL')\n"
            "c.execute('BEGIN IMMEDIATE')\n"
            "print('held', flush=True)\n"
            "sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        conn = pr.open_database(path, busy_timeout_ms=50)
        try:
            with (
                pytest.raises(sqlite3.OperationalError) as info,
                pr.write_transaction(conn, budget=0.3),
            ):
                pass
        finally:
            conn.close()
    finally:
        holder.communicate("", timeout=30)
    assert isinstance(info.value, pr.DatabaseLockedError)
    assert info.value.retryable
    assert pr.is_retryable(info.value)
    assert info.value.code == "DB_LOCKED"


def test_finding_16_config_file_errors_are_os_errors_when_a_file_call_failed(
    tmp_path: Path,
) -> None:
    cfg = pr.ConfigFile(tmp_path / "missing-dir" / "c.json")
    with pytest.raises(OSError) as info:
        cfg.save({"a": 1})
    exc = info.value
    assert isinstance(exc, pr.ConfigIOError)
    assert isinstance(exc, pr.ConfigError)
    assert isinstance(exc, ValueError)
    assert exc.errno == errno.ENOENT
    assert exc.filename is not None
    assert exc.code == "FILE_NOT_FOUND"
    assert "missing-dir" in str(exc)
    # A bad file's content is no file-call failure: a ConfigError, not OSError.
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(pr.ConfigError) as info2:
        pr.ConfigFile(bad).load()
    assert not isinstance(info2.value, OSError)


def test_finding_16_credential_store_file_errors_are_os_errors(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    with pytest.raises(OSError) as info:
        pr.CredentialStore(blocker / "auth.json")
    assert isinstance(info.value, pr.CredentialIOError)
    assert isinstance(info.value, pr.CredentialError)
    assert info.value.errno == errno.ENOTDIR


def test_finding_16_os_error_fields_survive_pickling(tmp_path: Path) -> None:
    cause = FileNotFoundError(errno.ENOENT, "No such file", str(tmp_path / "x"))
    exc = pr.ConfigIOError("cannot write", path=str(tmp_path), cause=cause)
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is pr.ConfigIOError
    assert (back.errno, back.strerror, back.filename) == (
        errno.ENOENT,
        "No such file",
        str(tmp_path / "x"),
    )
    assert str(back) == "cannot write"
    db = pickle.loads(pickle.dumps(pr.DatabaseLockedError("busy")))
    assert isinstance(db, sqlite3.OperationalError)
    assert db.code == "DB_LOCKED"


def test_finding_16_process_and_timeout_errors_keep_their_stdlib_bases() -> None:
    with pytest.raises(subprocess.CalledProcessError):
        pr.run_process([sys.executable, "-c", "raise SystemExit(3)"], check=True)
    with pytest.raises(subprocess.TimeoutExpired) as info:
        pr.run_process(
            [sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.5
        )
    assert isinstance(info.value, TimeoutError)
