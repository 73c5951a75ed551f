"""An inter-process lock on a sidecar file beside the file it guards."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

from .._core.budget import cap_wait
from .._core.clock import get_clock
from .._core.events import emit
from .._core.exceptions import LockConflictError
from .atomic import _POSIX, _resolve

__all__ = ["file_lock", "lock_path_for"]

# -- inter-process lock on a sidecar file ----------------------------------------
#
# A lock on the data file itself is useless: the data file is *replaced* by
# every write, so a second writer locks the new inode while the first still
# holds the old one. The lock lives on ``.<name>.lock`` beside the target,
# which is never deleted or replaced.


class _Held:
    __slots__ = ("count", "fd", "rlock")

    def __init__(self) -> None:
        self.rlock = threading.RLock()
        self.count = 0
        self.fd = -1


_held_lock = threading.Lock()
_held: dict[str, _Held] = {}


def _forget_held_locks() -> None:  # pragma: no cover - runs in forked children
    # The child holds none of the parent's flocks' owners (threads); start clean.
    global _held_lock  # noqa: PLW0603
    _held_lock = threading.Lock()
    _held.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_held_locks)


def lock_path_for(path: str | os.PathLike[str]) -> str:
    """The sidecar lock file guarding ``path`` (symlinks resolved)."""
    target = _resolve(path)
    return os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.lock")


def _os_try_lock(fd: int) -> bool:
    if _POSIX:
        import fcntl

        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True
    import msvcrt  # pragma: no cover - Windows

    try:  # pragma: no cover - Windows
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined,unused-ignore]
    except OSError:  # pragma: no cover - Windows
        return False
    return True  # pragma: no cover - Windows


def _os_unlock(fd: int) -> None:
    if _POSIX:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_UN)
    else:  # pragma: no cover - Windows
        import msvcrt

        with contextlib.suppress(OSError):
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined,unused-ignore]


@contextlib.contextmanager
def file_lock(path: str | os.PathLike[str], *, timeout: float = 30.0) -> Iterator[str]:
    """Hold the inter-process lock of ``path`` for the block (re-entrant per thread).

    Other threads of this process wait on an in-process lock; other
    processes on ``flock`` (POSIX) or ``msvcrt.locking`` (Windows) of the
    sidecar file. Waits are bounded by ``timeout``, and inside a ``@hook``
    by what is left of its budget.

    Yields:
        The lock file's path.

    Raises:
        LockConflictError: If the lock could not be had within ``timeout``.
    """
    lock_file = lock_path_for(path)
    timeout = cap_wait(timeout)
    with _held_lock:
        held = _held.setdefault(lock_file, _Held())
    if not held.rlock.acquire(timeout=max(0.0, timeout)):
        raise LockConflictError(
            f"{lock_file} is held by another thread of this process",
            key=lock_file,
            retry_after=None,
        )
    try:
        if held.count == 0:
            held.fd = _acquire_os_lock(lock_file, timeout)
        held.count += 1
        try:
            yield lock_file
        finally:
            held.count -= 1
            if held.count == 0:
                fd, held.fd = held.fd, -1
                try:
                    _os_unlock(fd)
                finally:
                    os.close(fd)
    finally:
        held.rlock.release()


def _acquire_os_lock(lock_file: str, timeout: float) -> int:
    # O_NONBLOCK: a FIFO planted at the lock path must not block the open.
    flags = os.O_NONBLOCK | os.O_CLOEXEC if _POSIX else 0
    try:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | flags, 0o666)
    except PermissionError as exc:
        try:
            fd = os.open(lock_file, os.O_RDONLY | flags)  # flock works read-only
        except FileNotFoundError:
            # A read-only directory: the lock file cannot be created. The
            # permission error is the cause, not the missing file.
            raise exc from None
    clock = get_clock()
    deadline = clock.monotonic() + timeout
    wait = 0.0005
    try:
        while not _os_try_lock(fd):
            remaining = deadline - clock.monotonic()
            if remaining <= 0:
                emit("file_lock", "timeout", level="warning", subject=lock_file)
                raise LockConflictError(
                    f"could not lock {lock_file} within {timeout:g}s: another "
                    "process holds it",
                    key=lock_file,
                )
            clock.sleep(min(wait, remaining))
            wait = min(wait * 2, 0.05)
    except BaseException:
        os.close(fd)
        raise
    return fd
