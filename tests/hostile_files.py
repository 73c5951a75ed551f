"""Hostile files for the data-integrity tests.

Things that are not regular files put where a file is expected (a FIFO blocks
a plain ``open()`` forever, ``/dev/zero`` never ends), a directory the test
user cannot write to, and a way to run a worker without root's rights (tests
run as root here, and permission bits do not stop root).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

T = TypeVar("T")

WORKERS = str(Path(__file__).with_name("_proc_data_workers.py"))
UNPRIVILEGED_UID = 65534  # nobody

#: Kinds of hostile path: each names what the error must say.
HOSTILE_KINDS = {
    "fifo": "FIFO",
    "socket": "socket",
    "directory": "directory",
    "dev_zero": "character device",
    "symlink_to_fifo": "FIFO",
}


@contextlib.contextmanager
def hostile(kind: str, path: Path) -> Iterator[Path]:
    """Put a hostile ``kind`` of file at ``path`` for the block."""
    sock: socket.socket | None = None
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "symlink_to_fifo":
        real = path.with_name(path.name + ".real-fifo")
        os.mkfifo(real)
        path.symlink_to(real)
    elif kind == "socket":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # AF_UNIX paths are limited to ~108 bytes: bind relative to the directory.
        cwd = os.getcwd()
        os.chdir(path.parent)
        try:
            sock.bind(path.name)
        finally:
            os.chdir(cwd)
    elif kind == "directory":
        path.mkdir()
    elif kind == "dev_zero":
        path.symlink_to("/dev/zero")
    else:  # pragma: no cover - a typo in a test
        raise ValueError(kind)
    try:
        yield path
    finally:
        if sock is not None:
            sock.close()


def finishes(fn: Callable[[], T], *, within: float = 30.0) -> T:
    """``fn()``'s result (or exception); fails the test if it hangs.

    The bound is generous: a hang is infinite, the calls here take
    milliseconds.
    """
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # re-raised in the caller
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(within)
    if thread.is_alive():
        pytest.fail(f"still blocked after {within} s: it hangs")
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


def state(path: Path) -> tuple[bytes, int]:
    """A file's bytes and permission bits."""
    return path.read_bytes(), stat.S_IMODE(os.stat(path).st_mode)


@contextlib.contextmanager
def readonly_dir() -> Iterator[Path]:
    """A directory the worker of :func:`run_unprivileged` can read, not write.

    As root: owned by root, mode 0o755 (files in it are given to the
    unprivileged user by :func:`give_away`). Otherwise: our own, mode 0o555
    while the block runs. Outside pytest's ``tmp_path``, whose parents are
    closed to other users.
    """
    directory = Path(tempfile.mkdtemp(prefix="paios-ro-"))
    try:
        os.chmod(directory, 0o755)
        yield directory
    finally:
        os.chmod(directory, 0o755)
        shutil.rmtree(directory, ignore_errors=True)


def seal(directory: Path) -> None:
    """Make ``directory`` read-only for the unprivileged worker."""
    if os.geteuid() != 0:
        os.chmod(directory, 0o555)


def give_away(*paths: Path) -> None:
    """Make files the unprivileged worker's own (as root; else they are ours)."""
    if os.geteuid() == 0:
        for path in paths:
            os.chown(path, UNPRIVILEGED_UID, UNPRIVILEGED_UID)


def run_unprivileged(command: str, *args: str) -> dict[str, Any]:
    """Run a worker command without root's rights; its JSON answer.

    As root the worker warms up (every import done), then drops to uid
    65534, so permission bits apply to it. Skips only where the privileges
    cannot be dropped.
    """
    proc = subprocess.run(
        [sys.executable, WORKERS, "unprivileged", command, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"worker failed ({proc.returncode}): {proc.stderr[-3000:]}")
    answer: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    if answer.get("cannot_drop"):
        pytest.skip(f"cannot drop root privileges here: {answer['cannot_drop']}")
    return answer


def record_creation_modes(
    monkeypatch: pytest.MonkeyPatch, directory: Path
) -> list[tuple[str, int]]:
    """``(name, mode)`` of every file created under ``directory``, at creation.

    The mode is read with ``fstat`` on the new descriptor right after the
    ``open`` that created it: what another process opening it at that
    instant would be checked against. Covers ``os.open`` and the builtin
    ``open`` (which ``shutil`` uses).
    """
    import builtins

    seen: list[tuple[str, int]] = []
    real_os_open = os.open
    real_open = builtins.open
    root = os.path.realpath(directory)

    def mine(path: Any) -> bool:
        try:
            name = os.fsdecode(path)
        except TypeError:
            return False  # an fd
        return os.path.realpath(name).startswith(root + os.sep)

    def os_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        created = bool(flags & os.O_CREAT) and mine(path) and not os.path.exists(path)
        fd = real_os_open(path, flags, *args, **kwargs)
        if created:
            seen.append((os.path.basename(path), stat.S_IMODE(os.fstat(fd).st_mode)))
        return fd

    def open_(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        created = (
            any(c in mode for c in "wax") and mine(file) and not os.path.exists(file)
        )
        fh = real_open(file, mode, *args, **kwargs)
        if created:
            mode_bits = stat.S_IMODE(os.fstat(fh.fileno()).st_mode)
            seen.append((os.path.basename(os.fsdecode(file)), mode_bits))
        return fh

    monkeypatch.setattr(os, "open", os_open)
    monkeypatch.setattr(builtins, "open", open_)
    return seen
