"""Reading a process's memory, open files and threads, and when to sample them.

From ``/proc`` on Linux (no dependency), through psutil elsewhere when it
is installed; ``None`` when there is no way to tell.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass


MB = float(1 << 20)
_PAGE_SIZE: int | None = None
_LINUX: bool = sys.platform.startswith("linux")

__all__ = ["read_open_fds", "read_rss", "read_threads", "sampling_times"]


# -- reading memory ----------------------------------------------------------------


def _page_size() -> int:
    global _PAGE_SIZE  # noqa: PLW0603 - cached constant
    if _PAGE_SIZE is None:
        try:
            _PAGE_SIZE = int(os.sysconf("SC_PAGE_SIZE"))
        except (AttributeError, ValueError, OSError):  # pragma: no cover - not POSIX
            _PAGE_SIZE = 4096
    return _PAGE_SIZE


def _psutil_process(pid: int | None) -> Any:
    """A ``psutil.Process``, or ``None`` without psutil or without the process."""
    import importlib

    try:
        # Through importlib: psutil ships no type information of its own.
        psutil: Any = importlib.import_module("psutil")
    except ImportError:
        return None
    try:
        return psutil.Process(pid)
    except (psutil.Error, ValueError):
        return _GONE


_GONE: Any = object()


def read_rss(pid: int | None = None) -> int | None:
    """Resident set size of ``pid`` (default: this process) in bytes.

    Linux reads ``/proc/<pid>/statm`` (a few microseconds). Elsewhere psutil
    answers when it is installed (extra ``psutil``); without it, ``ps`` is
    spawned (milliseconds: fine at one sample a minute). Returns ``None``
    when the process does not exist or the size cannot be read.
    """
    if _LINUX:
        target = "self" if pid is None else str(int(pid))
        try:
            with open(f"/proc/{target}/statm", "rb") as fh:
                fields = fh.read().split()
            return int(fields[1]) * _page_size()
        except (OSError, IndexError, ValueError):
            return None
    process = _psutil_process(pid)
    if process is _GONE:
        return None
    if process is not None:
        try:
            return int(process.memory_info().rss)
        except Exception:  # noqa: BLE001 - psutil.Error: gone or not permitted
            return None
    try:
        out = subprocess.run(  # noqa: S603 - fixed program, numeric argument
            ["ps", "-o", "rss=", "-p", str(os.getpid() if pid is None else int(pid))],  # noqa: S607 - ps is found on PATH on every POSIX system
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
        return int(out) * 1024 if out else None
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


def read_open_fds(pid: int | None = None) -> int | None:
    """Open file descriptors (handles on Windows) of ``pid`` (default: this process).

    Linux counts ``/proc/<pid>/fd``; elsewhere psutil answers when it is
    installed. ``None`` when it cannot be known (no psutil, no process, not
    permitted): a resource watch must tell "unknown" from "zero".
    """
    if _LINUX:
        target = "self" if pid is None else str(int(pid))
        try:
            return len(os.listdir(f"/proc/{target}/fd"))
        except OSError:
            return None
    process = _psutil_process(pid)
    if process is None or process is _GONE:
        return None
    try:
        count = process.num_handles() if os.name == "nt" else process.num_fds()
        return int(count)
    except Exception:  # noqa: BLE001 - psutil.Error: gone or not permitted
        return None


def read_threads(pid: int | None = None) -> int | None:
    """Operating-system threads of ``pid`` (default: this process).

    Counts every native thread, including those Python does not know about
    (``threading.active_count()`` does not). Linux reads
    ``/proc/<pid>/status``; elsewhere psutil answers when it is installed.
    ``None`` when it cannot be known.
    """
    if _LINUX:
        target = "self" if pid is None else str(int(pid))
        try:
            with open(f"/proc/{target}/status", "rb") as fh:
                for line in fh:
                    if line.startswith(b"Threads:"):
                        return int(line.split()[1])
        except (OSError, IndexError, ValueError):
            return None
        return None
    process = _psutil_process(pid)
    if process is None or process is _GONE:
        return None
    try:
        return int(process.num_threads())
    except Exception:  # noqa: BLE001 - psutil.Error: gone or not permitted
        return None


def _traced_bytes() -> int:
    import tracemalloc

    if not tracemalloc.is_tracing():
        tracemalloc.start()
    return int(tracemalloc.get_traced_memory()[0])


def sampling_times(
    start: float, interval: float, rnd: random.Random
) -> Iterator[float]:
    """Endless sample times after ``start``: one uniformly random moment in each
    ``interval``-long slot (jittered slots).

    Random moments make every phase of a periodic memory shape equally likely,
    whatever its period; one per slot keeps the count per sub-window steady.
    A fixed interval, or one jittered by only +-20 %, lets a cycle of about
    the same period show the same phase for many samples in a row (aliasing).
    """
    slot = float(start)
    while True:
        slot += interval
        yield slot + rnd.uniform(0.0, interval)
