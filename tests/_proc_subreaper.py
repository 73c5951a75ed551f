"""Child for the run_process tests that need to be PID 1 or a child subreaper.

``python tests/_proc_subreaper.py MODE SCENARIO COUNT WORKDIR``

Makes itself a child subreaper (``prctl(PR_SET_CHILD_SUBREAPER)``: orphans of
its descendants are re-parented to it, as they are to PID 1 in a container),
runs SCENARIO COUNT times through ``run_process`` (MODE ``sync``) or
``arun_process`` (MODE ``async``), then prints one JSON line: per call what
happened, and every remaining child of this process (running or zombie) read
from /proc.

Scenarios:
    ``timeout``: ``sh -c "sleep 30 & sleep 30"`` with ``timeout=0.3`` and a
        30 s grace: every member dies of SIGTERM, so the call must neither
        wait out the grace nor need SIGKILL.
    ``ignore_term``: the same with SIGTERM ignored by all: SIGKILL after a
        0.3 s grace.
    ``exit``: ``sh -c "sleep 30 & echo $! > FILE"``: the shell exits at once,
        its background member must be ended.
    ``interrupt``: a KeyboardInterrupt arrives once the background member
        has started.
    ``interrupt_at_fork`` / ``interrupt_after_popen`` (sync only): the
        KeyboardInterrupt lands while the child is being started, once its
        background member runs: as the fork returns inside ``Popen``
        (before it stored the pid), or in the setup after ``Popen`` returned.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paios_reliability as pr

PR_SET_CHILD_SUBREAPER = 36


def children() -> list[dict[str, Any]]:
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me:
            found.append({"pid": int(entry), "state": fields[0]})
    return found


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _interrupt_when_written(path: Path) -> threading.Thread:
    def watch() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if path.exists() and path.read_text().strip():
                os.kill(os.getpid(), signal.SIGUSR1)
                return
            time.sleep(0.005)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def _interrupt_once_written(path: Path) -> None:
    deadline = time.monotonic() + 30
    while not (path.exists() and path.read_text().strip()):
        if time.monotonic() > deadline:
            raise RuntimeError("the background member never started")
        time.sleep(0.005)
    raise KeyboardInterrupt


@contextmanager
def _interrupt_while_starting(where: str, pidfile: Path) -> Iterator[None]:
    """A KeyboardInterrupt at one exact step of starting the child."""
    if where == "at_fork":
        # Where the pid of the forked child comes back to Popen.
        import _posixsubprocess

        owner: Any = (
            subprocess if hasattr(subprocess, "_fork_exec") else _posixsubprocess
        )
        name = "_fork_exec" if owner is subprocess else "fork_exec"
        fork_exec = getattr(owner, name)

        def forked(*args: Any) -> int:
            fork_exec(*args)  # the child runs; Popen never learns its pid
            _interrupt_once_written(pidfile)
            raise AssertionError("unreachable")  # pragma: no cover

        setattr(owner, name, forked)
        try:
            yield
        finally:
            setattr(owner, name, fork_exec)
    else:
        pidfd_open = os.pidfd_open

        def interrupted(pid: int, flags: int = 0) -> int:
            _interrupt_once_written(pidfile)
            return pidfd_open(pid, flags)  # pragma: no cover - never reached

        os.pidfd_open = interrupted
        try:
            yield
        finally:
            os.pidfd_open = pidfd_open


def _call(mode: str, args: list[str], **kwargs: Any) -> pr.ProcessResult[Any]:
    if mode == "sync":
        return pr.run_process(args, **kwargs)
    return asyncio.run(pr.arun_process(args, **kwargs))


async def _cancel_when_written(path: Path, args: list[str], **kwargs: Any) -> None:
    task = asyncio.ensure_future(pr.arun_process(args, **kwargs))
    while not (path.exists() and path.read_text().strip()):
        await asyncio.sleep(0.005)
    task.cancel()
    await task


def scenario(mode: str, name: str, workdir: Path, n: int) -> dict[str, Any]:
    pidfile = workdir / f"bg-{n}"
    record: dict[str, Any] = {"scenario": name}
    started = time.monotonic()
    try:
        if name == "timeout":
            _call(mode, ["sh", "-c", "sleep 30 & sleep 30"], timeout=0.3, grace=30)
        elif name == "ignore_term":
            script = "trap '' TERM; sleep 30 & sleep 30"
            _call(mode, ["sh", "-c", script], timeout=0.3, grace=0.3)
        elif name == "exit":
            _call(mode, ["sh", "-c", f"sleep 30 & echo $! > {pidfile}"])
        elif name == "interrupt":
            args = ["sh", "-c", f"sleep 30 & echo $! > {pidfile}; wait"]
            if mode == "sync":
                _interrupt_when_written(pidfile)
                _call(mode, args, grace=5)
            else:
                asyncio.run(_cancel_when_written(pidfile, args, grace=5))
        elif name.startswith("interrupt_"):
            args = ["sh", "-c", f"sleep 30 & echo $! > {pidfile}; wait"]
            with _interrupt_while_starting(name.removeprefix("interrupt_"), pidfile):
                _call(mode, args, grace=5)
        record["outcome"] = "returned"
    except pr.ProcessTimeoutError as exc:
        record["outcome"] = "timed_out"
        record["killed"] = exc.killed
    except (KeyboardInterrupt, asyncio.CancelledError) as exc:
        record["outcome"] = type(exc).__name__
    record["seconds"] = time.monotonic() - started
    if pidfile.exists():
        pid = int(pidfile.read_text())
        try:
            with open(f"/proc/{pid}/stat") as stat:
                record["background_state"] = stat.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            record["background_state"] = None
    return record


def main() -> None:
    mode, name, count, workdir = (
        sys.argv[1],
        sys.argv[2],
        int(sys.argv[3]),
        Path(sys.argv[4]),
    )
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")
    signal.signal(signal.SIGUSR1, _raise_interrupt)

    records = [scenario(mode, name, workdir, n) for n in range(count)]
    print(json.dumps({"calls": records, "children": children()}), flush=True)


if __name__ == "__main__":
    main()
