"""``run_process``: run a command without orphans, zombies or ARG_MAX surprises.

- The child starts in its own session, so it leads a new process group that
  holds it and everything it spawns.
- Input goes through stdin, never the command line, so any size works.
- On timeout the whole group gets ``SIGTERM``, then ``SIGKILL`` after a grace
  period (children that ignore ``SIGTERM`` included), and the child is reaped:
  nothing is left running and nothing is left as a zombie of ours.
- The budget is the tighter of ``timeout`` and an enclosing :func:`deadline`.

The sync and async drivers share every decision (validation, budget, kill
sequence, result and error building); only the waiting differs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from ._exceptions import PermanentError, TimeoutExceeded
from ._timeout import remaining

if TYPE_CHECKING:
    import asyncio

__all__ = [
    "ProcessError",
    "ProcessResult",
    "ProcessTimeoutError",
    "arun_process",
    "run_process",
]

_TAIL = 8192
_DEFAULT_GRACE = 2.0
# After SIGKILL the kernel tears the group down at once; this only bounds
# waiting for pipes a process that escaped the group might still hold open.
_DRAIN = 1.0

StrPath = str | os.PathLike[str]
Input = bytes | str | None


@dataclass(frozen=True, slots=True)
class ProcessResult:
    """What a finished :func:`run_process` call produced.

    Attributes:
        argv: The command as run.
        returncode: Exit status; negative ``-N`` when killed by signal ``N``.
        stdout: Everything the process wrote to stdout.
        stderr: Everything the process wrote to stderr.
        duration: Wall-clock seconds from start to exit.
    """

    argv: tuple[str, ...]
    returncode: int
    stdout: bytes
    stderr: bytes
    duration: float

    @property
    def ok(self) -> bool:
        """Whether the process exited with status 0."""
        return self.returncode == 0

    @property
    def stdout_text(self) -> str:
        """``stdout`` decoded as UTF-8 (undecodable bytes replaced)."""
        return self.stdout.decode("utf-8", "replace")

    @property
    def stderr_text(self) -> str:
        """``stderr`` decoded as UTF-8 (undecodable bytes replaced)."""
        return self.stderr.decode("utf-8", "replace")


def _tail_text(data: bytes, limit: int = 2000) -> str:
    from ._taxonomy import redact_text

    text = data[-limit:].decode("utf-8", "replace").strip()
    return redact_text(text)


class ProcessError(PermanentError):
    """A process run with ``check=True`` exited with a non-zero status.

    Attributes:
        argv: The command.
        returncode: Its exit status (``-N``: killed by signal ``N``).
        stdout: The last 8 KiB of its stdout.
        stderr: The last 8 KiB of its stderr.
    """

    default_code = "PROCESS_FAILED"

    def __init__(
        self,
        message: str = "",
        *,
        argv: Sequence[str] = (),
        returncode: int = 1,
        stdout: bytes = b"",
        stderr: bytes = b"",
        retryable: bool | None = None,
    ) -> None:
        self.argv = tuple(argv)
        self.returncode = returncode
        self.stdout = stdout[-_TAIL:]
        self.stderr = stderr[-_TAIL:]
        if not message:
            last = _tail_text(self.stderr, 300).splitlines()
            detail = f": {last[-1]}" if last else ""
            message = f"{_show(self.argv)} exited with status {returncode}{detail}"
        super().__init__(
            message,
            retryable=retryable,
            context={
                "argv": list(self.argv),
                "returncode": returncode,
                "stderr_tail": _tail_text(self.stderr),
            },
        )


class ProcessTimeoutError(TimeoutExceeded):
    """A process ran out of time; its whole process group was terminated.

    Also a :class:`TimeoutExceeded` (and a builtin :class:`TimeoutError`).

    Attributes:
        argv: The command.
        stdout: The last 8 KiB of what it wrote to stdout before it was stopped.
        stderr: The last 8 KiB of what it wrote to stderr before it was stopped.
        killed: Whether ``SIGKILL`` was needed after the grace period.
    """

    def __init__(
        self,
        message: str = "",
        *,
        argv: Sequence[str] = (),
        seconds: float | None = None,
        stdout: bytes = b"",
        stderr: bytes = b"",
        killed: bool = False,
    ) -> None:
        self.argv = tuple(argv)
        self.stdout = stdout[-_TAIL:]
        self.stderr = stderr[-_TAIL:]
        self.killed = killed
        if not message:
            budget = f"{seconds:g}s" if seconds is not None else "its deadline"
            message = f"{_show(self.argv)} did not finish within {budget}; its process group was terminated"
        super().__init__(
            message,
            seconds=seconds,
            context={
                "argv": list(self.argv),
                "killed": killed,
                "stdout_tail": _tail_text(self.stdout),
                "stderr_tail": _tail_text(self.stderr),
            },
        )


for _cls in (ProcessError, ProcessTimeoutError):
    _cls.__module__ = "paios_reliability"


def _show(argv: Sequence[str]) -> str:
    import shlex

    text = shlex.join(argv)
    return text if len(text) <= 120 else text[:117] + "..."


# -- shared decisions ---------------------------------------------------------------


def _prepare(
    argv: Sequence[StrPath], input: Input, timeout: float | None, grace: float
) -> tuple[tuple[str, ...], bytes | None, float | None]:
    if isinstance(argv, (str, bytes)):
        raise TypeError(
            "run_process(argv) takes a sequence of arguments, not a string: "
            f"use [{argv!r}] or shlex.split(...), got {argv!r}"
        )
    args = tuple(os.fspath(a) for a in argv)
    if not args:
        raise ValueError("run_process(argv) needs at least the program to run")
    if not all(isinstance(a, str) for a in args):
        raise TypeError(
            f"run_process(argv) arguments must be str or path-like, got {argv!r}"
        )
    if timeout is not None and (isinstance(timeout, bool) or not timeout > 0):
        raise ValueError(
            f"run_process(timeout=...) must be > 0 or None, got {timeout!r}"
        )
    if not grace >= 0:
        raise ValueError(f"run_process(grace=...) must be >= 0, got {grace!r}")
    data = input.encode("utf-8") if isinstance(input, str) else input
    if data is not None and not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(
            f"run_process(input=...) must be bytes, str or None, got {type(input)!r}"
        )
    budget = timeout
    left = remaining()
    if left is not None and (budget is None or left < budget):
        budget = left
    return args, None if data is None else bytes(data), budget


def _signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to a process group; False when the group is already gone."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - a group member changed credentials
        return True
    return True


def _group_alive(pgid: int) -> bool:
    return _signal_group(pgid, 0)


def _timed_out(
    args: tuple[str, ...],
    budget: float | None,
    timeout: float | None,
    stdout: bytes,
    stderr: bytes,
    *,
    killed: bool,
    pid: int,
) -> ProcessTimeoutError:
    from ._events import emit

    emit(
        "process",
        "timed_out",
        level="warning",
        subject=args[0],
        pid=pid,
        seconds=budget,
        killed=killed,
    )
    return ProcessTimeoutError(
        argv=args,
        seconds=budget if budget is not None else timeout,
        stdout=stdout,
        stderr=stderr,
        killed=killed,
    )


def _finish(
    args: tuple[str, ...],
    returncode: int,
    stdout: bytes,
    stderr: bytes,
    started: float,
    *,
    check: bool,
) -> ProcessResult:
    result = ProcessResult(
        argv=args,
        returncode=returncode,
        stdout=stdout,
        stderr=stderr,
        duration=time.monotonic() - started,
    )
    if check and returncode != 0:
        from ._events import emit

        error = ProcessError(
            argv=args, returncode=returncode, stdout=stdout, stderr=stderr
        )
        emit(
            "process",
            "failed",
            level="warning",
            subject=args[0],
            exc=error,
            returncode=returncode,
            duration=round(result.duration, 6),
        )
        raise error
    return result


def _popen_kwargs(
    env: Mapping[str, str] | None, cwd: StrPath | None, has_input: bool
) -> dict[str, Any]:
    return {
        "stdin": subprocess.PIPE if has_input else subprocess.DEVNULL,
        "stdout": subprocess.PIPE,
        "stderr": subprocess.PIPE,
        "env": None if env is None else dict(env),
        "cwd": cwd,
        "start_new_session": True,
        "close_fds": True,
    }


# -- sync driver ----------------------------------------------------------------------


def run_process(
    argv: Sequence[StrPath],
    *,
    input: Input = None,
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
    cwd: StrPath | None = None,
    check: bool = True,
    grace: float = _DEFAULT_GRACE,
) -> ProcessResult:
    """Run a command to completion in its own process group.

    ``input`` is written to the child's stdin (any size: nothing goes through
    the command line, so ARG_MAX never applies); stdout and stderr are
    captured in full. The child starts in a new session, so it and every
    process it spawns share one process group. When the budget (``timeout``
    or an enclosing :func:`deadline`, whichever is tighter) runs out, the
    whole group gets ``SIGTERM``; whatever is still there after ``grace``
    seconds gets ``SIGKILL``; the child is then reaped, so neither orphans nor
    zombies are left behind. Grandchildren that called ``setsid()`` themselves
    have left the group and are beyond reach.

    Args:
        argv: Program and arguments, e.g. ``["git", "status"]`` (never a shell string).
        input: Bytes (or text, encoded as UTF-8) for stdin; ``None`` gives
            the child an empty stdin (``/dev/null``).
        timeout: Seconds before the process group is terminated, or ``None``.
        env: The child's complete environment (``None``: inherit ours).
        cwd: Working directory of the child.
        check: Raise :class:`ProcessError` on a non-zero exit status.
        grace: Seconds between ``SIGTERM`` and ``SIGKILL``.

    Returns:
        A :class:`ProcessResult`.

    Raises:
        ProcessTimeoutError: The budget ran out (a :class:`TimeoutExceeded`);
            carries the output captured until then.
        ProcessError: ``check`` is true and the exit status is not 0
            (``PROCESS_FAILED``, permanent).
        OSError: The program could not be started (e.g. not found).
    """
    args, data, budget = _prepare(argv, input, timeout, grace)
    started = time.monotonic()
    proc = subprocess.Popen(args, **_popen_kwargs(env, cwd, data is not None))  # noqa: S603 - argv, no shell
    try:
        stdout, stderr = proc.communicate(data, timeout=budget)
    except subprocess.TimeoutExpired as expired:
        killed = _stop_group_sync(proc, grace)
        out, err = _drain_sync(proc, expired)
        raise _timed_out(
            args, budget, timeout, out, err, killed=killed, pid=proc.pid
        ) from None
    except BaseException:
        # KeyboardInterrupt or an error while writing: leave nothing behind.
        _stop_group_sync(proc, 0.0)
        _drain_sync(proc, None)
        raise
    return _finish(args, proc.returncode, stdout, stderr, started, check=check)


def _stop_group_sync(proc: subprocess.Popen[bytes], grace: float) -> bool:
    """SIGTERM the group, SIGKILL what is left after ``grace``; reap the child."""
    pgid = proc.pid  # the child leads its own group (start_new_session)
    killed = False
    if _signal_group(pgid, signal.SIGTERM):
        until = time.monotonic() + grace
        while time.monotonic() < until:
            if proc.poll() is not None and not _group_alive(pgid):
                break
            time.sleep(0.01)
        if _group_alive(pgid):
            killed = _signal_group(pgid, signal.SIGKILL)
            if killed:
                _emit_killed(proc.pid)
    try:
        proc.wait(timeout=_DRAIN + grace)
        # SIGKILL is final but not instant: wait (bounded) until the kernel
        # has torn every member of the group down.
        until = time.monotonic() + _DRAIN
        while _group_alive(pgid) and time.monotonic() < until:
            time.sleep(0.005)
    except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL cannot be ignored
        proc.kill()
        proc.wait()
    return killed


def _drain_sync(
    proc: subprocess.Popen[bytes], expired: subprocess.TimeoutExpired | None
) -> tuple[bytes, bytes]:
    """Collect what the child wrote; never wait long for pipes held elsewhere."""
    out: bytes | None
    err: bytes | None
    try:
        out, err = proc.communicate(timeout=_DRAIN)
    except (subprocess.TimeoutExpired, ValueError, OSError):
        out = cast("bytes | None", expired.output) if expired is not None else None
        err = expired.stderr if expired is not None else None
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    return out or b"", err or b""


def _emit_killed(pid: int) -> None:
    from ._events import emit

    emit("process", "killed", level="warning", subject=str(pid), pid=pid)


# -- async driver ---------------------------------------------------------------------


async def arun_process(
    argv: Sequence[StrPath],
    *,
    input: Input = None,
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
    cwd: StrPath | None = None,
    check: bool = True,
    grace: float = _DEFAULT_GRACE,
) -> ProcessResult:
    """The ``async`` twin of :func:`run_process`: same arguments, same guarantees.

    Waiting never blocks the event loop. If the awaiting task is cancelled,
    the process group is terminated (``SIGTERM``, then ``SIGKILL`` after
    ``grace``) and reaped before :class:`asyncio.CancelledError` propagates.
    """
    import asyncio

    args, data, budget = _prepare(argv, input, timeout, grace)
    started = time.monotonic()
    kwargs = _popen_kwargs(env, cwd, data is not None)
    proc = await asyncio.create_subprocess_exec(*args, **kwargs)
    stdout = bytearray()
    stderr = bytearray()
    io_tasks = [
        asyncio.ensure_future(_read_all(proc.stdout, stdout)),
        asyncio.ensure_future(_read_all(proc.stderr, stderr)),
    ]
    if data is not None:
        io_tasks.append(asyncio.ensure_future(_write_all(proc.stdin, data)))
    waiter = asyncio.ensure_future(proc.wait())
    try:
        done, _ = await asyncio.wait(
            [waiter, *io_tasks], timeout=budget, return_when=asyncio.ALL_COMPLETED
        )
        if waiter not in done or not all(t in done for t in io_tasks):
            killed = await _stop_group_async(proc, waiter, grace)
            await _settle(io_tasks)
            raise _timed_out(
                args,
                budget,
                timeout,
                bytes(stdout),
                bytes(stderr),
                killed=killed,
                pid=proc.pid,
            )
    except BaseException:
        if proc.returncode is None:
            await asyncio.shield(_stop_group_async(proc, waiter, 0.0))
        await _settle(io_tasks)
        if not waiter.done():
            waiter.cancel()
        raise
    for task in io_tasks:
        task.result()  # surface an unexpected I/O error
    returncode = waiter.result()
    return _finish(args, returncode, bytes(stdout), bytes(stderr), started, check=check)


async def _read_all(stream: asyncio.StreamReader | None, into: bytearray) -> None:
    if stream is None:
        return
    while chunk := await stream.read(65536):
        into += chunk


async def _write_all(stream: asyncio.StreamWriter | None, data: bytes) -> None:
    if stream is None:
        return
    try:
        stream.write(data)
        await stream.drain()
    except (BrokenPipeError, ConnectionResetError):
        pass  # the child exited without reading all of it, as subprocess does
    finally:
        stream.close()


async def _stop_group_async(
    proc: asyncio.subprocess.Process, waiter: asyncio.Future[int], grace: float
) -> bool:
    import asyncio

    pgid = proc.pid
    killed = False
    if _signal_group(pgid, signal.SIGTERM):
        loop = asyncio.get_running_loop()
        until = loop.time() + grace
        while loop.time() < until:
            if proc.returncode is not None and not _group_alive(pgid):
                break
            await asyncio.sleep(0.01)
        if _group_alive(pgid):
            killed = _signal_group(pgid, signal.SIGKILL)
            if killed:
                _emit_killed(proc.pid)
    done, _ = await asyncio.wait([waiter], timeout=_DRAIN + grace)
    if not done:  # pragma: no cover - SIGKILL cannot be ignored
        proc.kill()
        await asyncio.wait([waiter], timeout=_DRAIN)
    until = time.monotonic() + _DRAIN
    while _group_alive(pgid) and time.monotonic() < until:  # noqa: ASYNC110 - polls the kernel
        await asyncio.sleep(0.005)
    return killed


async def _settle(tasks: Sequence[asyncio.Future[None]]) -> None:
    """Give readers a moment to drain what is buffered, then stop them."""
    import asyncio

    pending = [t for t in tasks if not t.done()]
    if pending:
        _, still = await asyncio.wait(pending, timeout=_DRAIN)
        for task in still:
            task.cancel()
        if still:
            await asyncio.wait(still, timeout=_DRAIN)
    for task in tasks:
        if task.done() and not task.cancelled():
            task.exception()  # mark retrieved: no "exception never retrieved" noise


if sys.platform == "win32":  # pragma: no cover - POSIX process groups only
    raise ImportError("paios_reliability.run_process needs a POSIX system")
