"""atomic_write / atomic_open and the sidecar file lock.

Crash safety is shown with real processes: a writer is SIGKILLed at random
moments, 300 times, and the file is checked after every kill.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostile_files import (
    HOSTILE_KINDS,
    finishes,
    hostile,
    record_creation_modes,
)
from paios_reliability import LockConflictError, atomic_open, atomic_write
from paios_reliability._data.atomic import (
    FileTooLargeError,
    NotARegularFileError,
    read_regular_file,
)
from paios_reliability._data.file_lock import file_lock, lock_path_for
from paios_reliability.testing import FakeClock, capture_events

WORKERS = str(Path(__file__).with_name("_proc_data_workers.py"))


def _temps(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


# -- contents, types, permissions ---------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("héllo\n", "héllo\n".encode()),
        (b"\x00\xffbytes", b"\x00\xffbytes"),
        (bytearray(b"array"), b"array"),
        (memoryview(b"view"), b"view"),
        ("", b""),
    ],
    ids=["str", "bytes", "bytearray", "memoryview", "empty"],
)
def test_atomic_write_contents(tmp_path: Path, data: Any, expected: bytes) -> None:
    target = tmp_path / "f"
    atomic_write(target, data)
    assert target.read_bytes() == expected
    assert _temps(tmp_path) == []


def test_atomic_write_encoding(tmp_path: Path) -> None:
    atomic_write(tmp_path / "f", "héllo", encoding="latin-1")
    assert (tmp_path / "f").read_bytes() == b"h\xe9llo"


def test_atomic_write_rejects_other_types(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="str or bytes"):
        atomic_write(tmp_path / "f", 42)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("via", ["atomic_write", "atomic_open"])
def test_existing_mode_is_kept(tmp_path: Path, via: str) -> None:
    target = tmp_path / "f"
    target.write_text("old")
    target.chmod(0o640)
    if via == "atomic_write":
        atomic_write(target, "new")
    else:
        with atomic_open(target) as fh:
            fh.write("new")
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert target.read_text() == "new"


def test_explicit_mode_and_umask_default(tmp_path: Path) -> None:
    atomic_write(tmp_path / "secret", "x", mode=0o600)
    assert stat.S_IMODE((tmp_path / "secret").stat().st_mode) == 0o600
    old_umask = os.umask(0o027)
    try:
        atomic_write(tmp_path / "new", "x")
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o640


@pytest.mark.parametrize(
    ("existing", "mode", "umask", "final"),
    [
        (None, 0o600, 0o022, 0o600),  # a new secret
        (0o600, None, 0o022, 0o600),  # a secret rewritten: its mode is kept
        (0o600, None, 0o000, 0o600),
        (0o640, 0o600, 0o022, 0o600),  # narrowed by mode=
        (0o664, None, 0o022, 0o664),  # the umask took a bit; fchmod gives it back
        (None, None, 0o077, 0o600),  # a new file: 0o666 minus the umask
    ],
)
@pytest.mark.parametrize("via", ["atomic_write", "atomic_open"])
def test_finding_11_temp_file_is_created_with_its_final_mode(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    via: str,
    existing: int | None,
    mode: int | None,
    umask: int,
    final: int,
) -> None:
    target = tmp_path / "secret.json"
    if existing is not None:
        target.write_text("old")
        target.chmod(existing)
    created = record_creation_modes(monkeypatch, tmp_path)
    old_umask = os.umask(umask)
    try:
        if via == "atomic_write":
            atomic_write(target, "sk-live-SECRET", mode=mode)
        else:
            with atomic_open(target, "w", perms=mode) as fh:
                fh.write("sk-live-SECRET")
    finally:
        os.umask(old_umask)
    monkeypatch.undo()
    temps = [m for name, m in created if name.endswith(".tmp")]
    assert len(temps) == 1
    # Never a bit more than the final mode, from the first instant.
    assert temps[0] & ~final == 0, oct(temps[0])
    assert stat.S_IMODE(target.stat().st_mode) == final
    assert target.read_text() == "sk-live-SECRET"


def test_finding_11_owner_kept_and_temp_owner_only_until_chown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Root gives the file to another user; anyone else to another of their
    # own groups (the one change of owner a non-root user may make).
    if os.geteuid() == 0:
        owner = (65534, 65534)
    else:
        groups = [g for g in os.getgroups() if g != os.getgid()]
        if not groups:
            pytest.skip("not root, and in no group but the primary one")
        owner = (os.getuid(), groups[0])
    target = tmp_path / "shared.json"
    target.write_text("old")
    os.chown(target, *owner)
    target.chmod(0o640)
    created = record_creation_modes(monkeypatch, tmp_path)
    atomic_write(target, "new")
    monkeypatch.undo()
    # Until fchown, the group bits would be our own group's: owner-only.
    assert [m for name, m in created if name.endswith(".tmp")] == [0o600]
    st = target.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (*owner, 0o640)


def test_finding_19_temp_stays_locked_until_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A concurrent writer's stale cleanup, run while the temp is renamed, keeps it.

    Right before ``os.replace`` the temp file is made to look as old as after
    a slow fsync, and another process runs the stale-temp cleanup of the same
    target, as a concurrent writer of that file would.
    """
    target = tmp_path / "big.json"
    target.write_text("old")
    real_replace = os.replace
    cleanup_removed: list[str] = []

    def replace(src: Any, dst: Any) -> None:
        if str(src).endswith(".tmp"):
            old = time.time() - 60
            os.utime(src, (old, old))
            proc = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    "import sys; from paios_reliability._data.atomic import _clean_stale; "
                    "print(_clean_stale(sys.argv[1]))",
                    str(target),
                ],
                capture_output=True,
                text=True,
                timeout=120,
                check=True,
            )
            cleanup_removed.append(proc.stdout.strip())
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    atomic_write(target, "new")
    monkeypatch.undo()
    assert cleanup_removed == ["0"]
    assert target.read_text() == "new"
    assert _temps(tmp_path) == []


def test_symlink_is_followed_and_kept(tmp_path: Path) -> None:
    real_dir = tmp_path / "real"
    real_dir.mkdir()
    target = real_dir / "config.json"
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    atomic_write(link, "new")
    assert link.is_symlink()
    assert os.readlink(link) == str(target)
    assert target.read_text() == "new"
    with atomic_open(link, "wb") as fh:
        fh.write(b"newer")
    assert link.is_symlink()
    assert target.read_bytes() == b"newer"
    assert _temps(tmp_path) == []
    assert _temps(real_dir) == []


def test_dangling_symlink_creates_its_target(tmp_path: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "missing")
    atomic_write(link, "made")
    assert link.is_symlink()
    assert (tmp_path / "missing").read_text() == "made"


def test_errors_leave_target_untouched_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_text("old")
    error = RuntimeError("stop half-way")
    with pytest.raises(RuntimeError) as info, atomic_open(target) as fh:  # noqa: PT012
        fh.write("half")
        raise error
    assert info.value is error
    assert target.read_text() == "old"
    assert _temps(tmp_path) == []


def test_directory_target_and_missing_parent(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError):
        atomic_write(tmp_path, "x")
    with pytest.raises(FileNotFoundError):
        atomic_write(tmp_path / "no" / "f", "x")
    assert _temps(tmp_path) == []


@pytest.mark.parametrize("kind", ["fifo", "socket", "dev_zero"])
def test_a_special_file_is_never_replaced(tmp_path: Path, kind: str) -> None:
    with hostile(kind, tmp_path / "f") as path:
        before = os.lstat(path)
        with pytest.raises(FileExistsError, match=HOSTILE_KINDS[kind]) as info:
            finishes(lambda: atomic_write(path, "x"))
        assert info.value.filename == str(path)
        after = os.lstat(path)
        assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)
    assert _temps(tmp_path) == []


# -- reading files someone else may have put there ------------------------------------


@pytest.mark.parametrize("kind", sorted(HOSTILE_KINDS))
def test_read_regular_file_refuses_special_files_without_blocking(
    tmp_path: Path, kind: str
) -> None:
    with hostile(kind, tmp_path / "f") as path:
        expected = IsADirectoryError if kind == "directory" else NotARegularFileError
        with pytest.raises(expected, match=HOSTILE_KINDS[kind]) as info:
            finishes(lambda: read_regular_file(path, max_bytes=1024))
        assert info.value.filename == str(path)


def test_read_regular_file_bounds_the_size(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 1000)
    assert read_regular_file(path, max_bytes=1000) == b"x" * 1000
    with pytest.raises(FileTooLargeError, match="1000 bytes") as info:
        read_regular_file(path, max_bytes=999)
    assert info.value.filename == str(path)
    with pytest.raises(FileNotFoundError):
        read_regular_file(tmp_path / "missing", max_bytes=10)


def test_atomic_open_rejects_non_atomic_modes(tmp_path: Path) -> None:
    for mode in ("a", "r+", "x", "ab"):
        with pytest.raises(ValueError, match="cannot be atomic"):
            atomic_open(tmp_path / "f", mode)  # type: ignore[call-overload]


def test_atomic_open_text_newline(tmp_path: Path) -> None:
    with atomic_open(tmp_path / "f", "w", newline="\r\n") as fh:
        fh.write("a\nb\n")
    assert (tmp_path / "f").read_bytes() == b"a\r\nb\r\n"


# -- durability order ----------------------------------------------------------------


def _record_calls(
    monkeypatch: pytest.MonkeyPatch,
    fail_file_fsync: bool = False,
) -> list[tuple[str, str]]:
    calls: list[tuple[str, str]] = []
    real_fsync: Callable[[int], None] = os.fsync
    real_replace = os.replace

    def fsync(fd: int) -> None:
        kind = "dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"
        calls.append(("fsync", kind))
        if fail_file_fsync and kind == "file":
            raise OSError(errno.EIO, "injected I/O error")
        real_fsync(fd)

    def replace(src: Any, dst: Any) -> None:
        calls.append(("replace", os.path.basename(str(dst))))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return calls


@pytest.mark.parametrize("via", ["atomic_write", "atomic_open"])
def test_fsync_file_then_replace_then_fsync_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, via: str
) -> None:
    calls = _record_calls(monkeypatch)
    if via == "atomic_write":
        atomic_write(tmp_path / "f", "data")
    else:
        with atomic_open(tmp_path / "f") as fh:
            fh.write("data")
    assert calls == [("fsync", "file"), ("replace", "f"), ("fsync", "dir")]


def test_fsync_failure_is_not_retried_and_discards_the_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "f"
    target.write_text("old")
    calls = _record_calls(monkeypatch, fail_file_fsync=True)
    with capture_events() as events, pytest.raises(OSError) as info:
        atomic_write(target, "new")
    assert info.value.errno == errno.EIO
    assert calls == [("fsync", "file")]  # once, never again on that file
    assert target.read_text() == "old"
    assert _temps(tmp_path) == []
    assert len(events.of("atomic_write.failed")) == 1
    monkeypatch.undo()
    atomic_write(target, "new")  # a retry by the caller writes a fresh temp file
    assert target.read_text() == "new"


# -- stale temp files ------------------------------------------------------------------


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=60)
    return proc.pid


def test_stale_temp_of_a_dead_writer_is_removed(tmp_path: Path) -> None:
    target = tmp_path / "f.json"
    stale = tmp_path / f".f.json.{_dead_pid()}.0badcafe.tmp"
    stale.write_text("partial")
    mine = tmp_path / f".f.json.{os.getpid()}.00000000.tmp"  # a live writer's
    mine.write_text("in progress")
    other = tmp_path / f".other.json.{_dead_pid()}.0badcafe.tmp"  # another target
    other.write_text("partial")
    with capture_events() as events:
        atomic_write(target, "x")
    assert not stale.exists()
    assert mine.exists()
    assert other.exists()
    assert events.of("atomic_write.stale_temp_removed")[0].fields["count"] == 1


def test_a_fifo_named_like_a_stale_temp_does_not_block_the_writer(
    tmp_path: Path,
) -> None:
    target = tmp_path / "f.json"
    planted = tmp_path / f".f.json.{_dead_pid()}.0badcafe.tmp"
    os.mkfifo(planted)
    finishes(lambda: atomic_write(target, "x"))
    assert target.read_text() == "x"
    assert stat.S_ISFIFO(os.lstat(planted).st_mode)  # not ours: left alone


def test_stale_temp_whose_pid_was_reused_is_removed_once_old(tmp_path: Path) -> None:
    target = tmp_path / "f.json"
    # PID 1 is always alive: the name's writer looks live, as after PID reuse.
    reused = tmp_path / ".f.json.1.0badcafe.tmp"
    reused.write_text("partial")
    old = time.time() - 60
    os.utime(reused, (old, old))
    fresh = tmp_path / ".f.json.1.1badcafe.tmp"  # could be a writer about to lock
    fresh.write_text("partial")
    atomic_write(target, "x")
    assert not reused.exists()
    assert fresh.exists()


def test_killed_writer_300_times_file_is_always_old_or_new(tmp_path: Path) -> None:
    procs = {}
    for kind, seed in (("atomic", "1"), ("config", "2")):
        (tmp_path / kind).mkdir()
        doc = str(tmp_path / kind / "doc.json")
        procs[kind] = subprocess.Popen(
            [sys.executable, WORKERS, "kill_loop", kind, doc, "300", seed],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    for kind, proc in procs.items():
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err[-3000:]
        result = json.loads(out.strip().splitlines()[-1])
        states = result["states"]
        assert set(states) <= {"A", "B"}, (kind, states)
        assert sum(states.values()) == 300
        assert states.get("A", 0) > 0, (kind, states)
        assert states.get("B", 0) > 0, (kind, states)  # writes really happened
        assert result["leftover"] == []  # the next save cleaned every stale temp
        assert result["final"] == "B"
        assert result["bad_backups"] == []
        assert _temps(tmp_path / kind) == []


# -- concurrency -------------------------------------------------------------------------


def test_concurrent_threads_leave_one_complete_version(tmp_path: Path) -> None:
    target = tmp_path / "f"
    payloads = [bytes([65 + i]) * 50_000 for i in range(8)]
    errors: list[BaseException] = []

    def writer(data: bytes) -> None:
        try:
            for _ in range(5):
                atomic_write(target, data)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(p,)) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert target.read_bytes() in payloads
    assert _temps(tmp_path) == []


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    first=st.binary(max_size=5000),
    second=st.one_of(st.binary(max_size=5000), st.text(max_size=2000)),
    name=st.text(
        alphabet=st.characters(
            blacklist_characters="/\x00", blacklist_categories=["Cs"]
        ),
        min_size=1,
        max_size=255,
    ).filter(lambda n: n not in {".", ".."} and len(n.encode()) <= 255),
)
def test_any_content_and_name_round_trip(
    tmp_path: Path, first: bytes, second: bytes | str, name: str
) -> None:
    target = tmp_path / name
    atomic_write(target, first)
    assert target.read_bytes() == first
    atomic_write(target, second)
    expected = second.encode() if isinstance(second, str) else second
    assert target.read_bytes() == expected
    assert _temps(tmp_path) == []
    target.unlink()


# -- the sidecar lock ----------------------------------------------------------------


def test_file_lock_is_a_never_replaced_sidecar(tmp_path: Path) -> None:
    target = tmp_path / "data.json"
    assert lock_path_for(target) == str(tmp_path / ".data.json.lock")
    with file_lock(target) as lock_file:
        assert lock_file == str(tmp_path / ".data.json.lock")
        inode = os.stat(lock_file).st_ino
        atomic_write(target, "replaced while locked")
        with file_lock(target):  # re-entrant in the same thread
            pass
    assert os.stat(lock_file).st_ino == inode


def test_file_lock_serialises_threads(tmp_path: Path) -> None:
    target = tmp_path / "n"
    atomic_write(target, "0")

    def bump() -> None:
        for _ in range(50):
            with file_lock(target):
                value = int(target.read_text())
                atomic_write(target, str(value + 1))

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert target.read_text() == "200"


def test_file_lock_times_out_against_another_process(tmp_path: Path) -> None:
    target = tmp_path / "data.json"
    ready = tmp_path / "ready"
    holder = subprocess.Popen(
        [sys.executable, WORKERS, "hold_lock", str(target), str(ready)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert holder.poll() is None, holder.communicate()[1]
            assert time.monotonic() < deadline
            time.sleep(0.01)
        clock = FakeClock()
        with (
            clock.install(),
            capture_events() as events,
            pytest.raises(LockConflictError) as info,
            file_lock(target, timeout=2.0),
        ):
            pass  # pragma: no cover
        assert info.value.key == str(tmp_path / ".data.json.lock")
        assert info.value.retryable
        assert 1.9 <= sum(clock.sleeps) <= 2.0 + 1e-9
        # Polls back off from 0.5 ms, doubling up to 50 ms; the last wait is
        # clipped so the waits end exactly at the timeout.
        expected: list[float] = []
        wait = 0.0005
        while sum(expected) + wait < 2.0:
            expected.append(wait)
            wait = min(wait * 2, 0.05)
        expected.append(2.0 - sum(expected))
        assert clock.sleeps == pytest.approx(expected)
        assert len(events.of("file_lock.timeout")) == 1
    finally:
        out, _ = holder.communicate(input="", timeout=60)
    assert json.loads(out) == {"held": True}
    with file_lock(target, timeout=5):  # free again once the holder is gone
        pass


@pytest.mark.parametrize("driver", ["sync", "async"])
async def test_from_sync_and_async_code(tmp_path: Path, driver: str) -> None:
    target = tmp_path / "f.json"
    target.write_text("old")
    target.chmod(0o640)
    if driver == "sync":
        atomic_write(target, '{"v": 1}')
    else:  # blocking I/O goes to a worker thread; the loop stays free
        await asyncio.to_thread(atomic_write, target, '{"v": 1}')
    assert json.loads(target.read_text()) == {"v": 1}
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert _temps(tmp_path) == []
