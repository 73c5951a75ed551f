"""``run_process``: ``subprocess.run`` without orphans, zombies or ARG_MAX surprises.

A drop-in for :func:`subprocess.run`: the same arguments give the same
:class:`subprocess.CompletedProcess` (here the subclass :class:`ProcessResult`),
the same ``stdout``/``stderr`` types, and errors that are also
:class:`subprocess.CalledProcessError` / :class:`subprocess.TimeoutExpired`.
What it adds:

- The child starts in its own session, so it leads a new process group that
  holds it and everything it spawns.
- Input goes through stdin, never the command line, so any size works.
- On timeout the whole group gets ``SIGTERM``, then ``SIGKILL`` after a grace
  period; after a normal exit, members of the group still running get the
  same. Group members that became our children (we are PID 1 or a child
  subreaper) are reaped, so nothing is left running and no zombie is ours.
- A budget that is already spent (``timeout <= 0`` or an enclosing
  :func:`deadline` with nothing left) raises before the process is started.
- Error text, ``repr``, events and audit records show the command with its
  secrets (``--password X``, ``token=...``, ``https://user:pass@host``...)
  redacted.

One lifecycle generator (:mod:`.process_lifecycle`) makes every decision
(when to signal, what counts as gone, what to reap, which result or error to
build) and yields the few operations that need I/O; the sync and asyncio
children of :mod:`.process_drivers` perform them, driven by
:mod:`.._core.effects`. :mod:`.process_call` checks
the arguments, :mod:`.process_group` signals and reaps the group.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar, overload

from .._core.effects import arun_effects, run_effects
from .argv import Command, StrOrBytesPath, redact_argv
from .process_call import Environment, File, _prepare
from .process_drivers import _AsyncChild, _SyncChild
from .process_lifecycle import _lifecycle
from .process_result import (
    ProcessError,
    ProcessResult,
    ProcessTimeoutError,
)

__all__ = [
    "ProcessError",
    "ProcessResult",
    "ProcessTimeoutError",
    "arun_process",
    "redact_argv",
    "run_process",
]


_DEFAULT_GRACE = 2.0


# -- public entry points --------------------------------------------------------------

# One overload table for both entry points. It mirrors typeshed's
# subprocess.run, so mypy infers the same ProcessResult[str] /
# ProcessResult[bytes] as it does CompletedProcess[...]; the sync function
# returns those, the async one coroutines of them.

_Text_co = TypeVar("_Text_co", covariant=True)
_Bytes_co = TypeVar("_Bytes_co", covariant=True)
_Either_co = TypeVar("_Either_co", covariant=True)


class _Runner(Protocol[_Text_co, _Bytes_co, _Either_co]):
    """How :func:`run_process` and :func:`arun_process` are called, by text mode."""

    @overload
    def __call__(
        self,
        args: Command,
        *,
        input: str | None = None,
        capture_output: bool = False,
        text: Literal[True],
        encoding: str | None = None,
        errors: str | None = None,
        universal_newlines: bool | None = None,
        timeout: float | None = None,
        check: bool = False,
        env: Environment | None = None,
        cwd: StrOrBytesPath | None = None,
        stdin: File = None,
        stdout: File = None,
        stderr: File = None,
        grace: float = _DEFAULT_GRACE,
        kill_group_on_exit: bool = True,
    ) -> _Text_co: ...
    @overload
    def __call__(
        self,
        args: Command,
        *,
        input: str | None = None,
        capture_output: bool = False,
        text: bool | None = None,
        encoding: str,
        errors: str | None = None,
        universal_newlines: bool | None = None,
        timeout: float | None = None,
        check: bool = False,
        env: Environment | None = None,
        cwd: StrOrBytesPath | None = None,
        stdin: File = None,
        stdout: File = None,
        stderr: File = None,
        grace: float = _DEFAULT_GRACE,
        kill_group_on_exit: bool = True,
    ) -> _Text_co: ...
    @overload
    def __call__(
        self,
        args: Command,
        *,
        input: bytes | bytearray | memoryview | None = None,
        capture_output: bool = False,
        text: Literal[False] | None = None,
        encoding: None = None,
        errors: None = None,
        universal_newlines: Literal[False] | None = None,
        timeout: float | None = None,
        check: bool = False,
        env: Environment | None = None,
        cwd: StrOrBytesPath | None = None,
        stdin: File = None,
        stdout: File = None,
        stderr: File = None,
        grace: float = _DEFAULT_GRACE,
        kill_group_on_exit: bool = True,
    ) -> _Bytes_co: ...
    @overload
    def __call__(
        self,
        args: Command,
        *,
        input: str | bytes | bytearray | memoryview | None = None,
        capture_output: bool = False,
        text: bool | None = None,
        encoding: str | None = None,
        errors: str | None = None,
        universal_newlines: bool | None = None,
        timeout: float | None = None,
        check: bool = False,
        env: Environment | None = None,
        cwd: StrOrBytesPath | None = None,
        stdin: File = None,
        stdout: File = None,
        stderr: File = None,
        grace: float = _DEFAULT_GRACE,
        kill_group_on_exit: bool = True,
    ) -> _Either_co: ...


if TYPE_CHECKING:
    _Result = ProcessResult
    _SyncRunner = _Runner[_Result[str], _Result[bytes], _Result[Any]]
    _AsyncRunner = _Runner[
        Coroutine[Any, Any, _Result[str]],
        Coroutine[Any, Any, _Result[bytes]],
        Coroutine[Any, Any, _Result[Any]],
    ]


def _sync_runner(fn: _SyncRunner) -> _SyncRunner:
    """Type ``fn`` by the overload table (mypy checks that it fits)."""
    return fn


def _async_runner(fn: _AsyncRunner) -> _AsyncRunner:
    """Type ``fn`` by the overload table (mypy checks that it fits)."""
    return fn


@_sync_runner
def run_process(
    args: Command,
    *,
    input: str | bytes | bytearray | memoryview | None = None,
    capture_output: bool = False,
    text: bool | None = None,
    encoding: str | None = None,
    errors: str | None = None,
    universal_newlines: bool | None = None,
    timeout: float | None = None,
    check: bool = False,
    env: Environment | None = None,
    cwd: StrOrBytesPath | None = None,
    stdin: File = None,
    stdout: File = None,
    stderr: File = None,
    grace: float = _DEFAULT_GRACE,
    kill_group_on_exit: bool = True,
) -> ProcessResult[Any]:
    """Run a command to completion, like :func:`subprocess.run`, leaving nothing behind.

    Replacing ``subprocess.run(`` with ``run_process(`` keeps every result:
    ``args``, ``returncode``, and ``stdout``/``stderr`` as ``None`` (not
    captured), ``bytes``, or ``str`` (text mode: ``text``, ``encoding``,
    ``errors`` or ``universal_newlines``, decoded with universal newlines).
    What changes is what happens around the child:

    - It starts in a new session: it and everything it spawns share one
      process group, and it has no controlling terminal (a program that would
      prompt on the terminal fails instead of waiting for a keyboard).
    - ``input`` goes through a pipe, never the command line: any size.
    - When the budget (``timeout`` or an enclosing :func:`deadline`,
      whichever is tighter) runs out, the whole group gets ``SIGTERM``, and
      ``SIGKILL`` after ``grace`` seconds if anything still runs.
    - When the child exits, members of its group still running (``cmd &``
      in a script) are ended the same way (``kill_group_on_exit``), so none
      is orphaned and none can hold the output pipes open.
    - Group members that became our children (this process is PID 1 or a
      child subreaper) are reaped; no zombie is left.
    - On ``KeyboardInterrupt`` the group is ended the same way (a second
      interrupt skips the grace period) before the interrupt propagates.

    Processes that called ``setsid()`` themselves have left the group and are
    beyond its reach. Safe to call from many threads at once: each call owns
    its child, pipes and selector.

    Args:
        args: A sequence of program and arguments (str, bytes or paths), or a
            single program name (no shell: a string is never split).
        input: Data for the child's stdin: bytes, or str in text mode.
        capture_output: Capture stdout and stderr (``stdout=PIPE, stderr=PIPE``).
        text: Text mode: str in and out, decoded with ``encoding``/``errors``.
        encoding: Text encoding (default: the locale's, as subprocess).
        errors: Decoding error handler (default ``"strict"``).
        universal_newlines: Old name of ``text``.
        timeout: Seconds before the group is terminated; ``None`` for no
            limit. ``<= 0`` (or an enclosing deadline with nothing left)
            raises before anything is started.
        check: Raise :class:`ProcessError` on a non-zero exit status.
        env: The child's complete environment (``None``: inherit ours).
            Inside a :func:`~paios_reliability.trace`, ``TRACEPARENT`` is
            added, so the child's own ``trace()`` joins the same trace.
        cwd: Working directory of the child.
        stdin: ``None`` (inherit), ``PIPE``, ``DEVNULL``, a file or an fd.
        stdout: ``None`` (inherit), ``PIPE``, ``DEVNULL``, a file or an fd.
        stderr: As ``stdout``, or ``STDOUT`` to merge it into stdout.
        grace: Seconds between ``SIGTERM`` and ``SIGKILL``.
        kill_group_on_exit: End the group's remaining members when the child
            exits. ``False`` lets a script start a background service that
            outlives it; that service is then yours to stop and reap, and
            output it writes to a captured pipe after the child exited is
            collected for at most one second.

    Returns:
        A :class:`ProcessResult` (a :class:`subprocess.CompletedProcess`).

    Raises:
        ProcessTimeoutError: The budget ran out, or was spent before the start
            (also ``TimeoutExceeded``, ``TimeoutError`` and
            ``subprocess.TimeoutExpired``); carries the output captured so far.
        ProcessError: ``check`` is true and the status is not 0 (also
            ``subprocess.CalledProcessError``; code ``PROCESS_FAILED``).
        OSError: The program could not be started (e.g. ``FileNotFoundError``).
        TypeError: An argument has the wrong type (``input`` str without text
            mode, a non-path in ``args``).
        ValueError: Conflicting arguments (``input`` with ``stdin``,
            ``capture_output`` with ``stdout``), an empty ``args``, a bad ``grace``.
    """
    call = _prepare(
        args,
        input=input,
        capture_output=capture_output,
        text=text,
        encoding=encoding,
        errors=errors,
        universal_newlines=universal_newlines,
        timeout=timeout,
        check=check,
        env=env,
        cwd=cwd,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        grace=grace,
        kill_group_on_exit=kill_group_on_exit,
    )
    started = time.monotonic()
    child = _SyncChild()
    try:
        child.start(call)
        return run_effects(
            _lifecycle(call, child.pid, started, child.settled), child.perform
        )
    finally:
        child.close()


@_async_runner
async def arun_process(
    args: Command,
    *,
    input: str | bytes | bytearray | memoryview | None = None,
    capture_output: bool = False,
    text: bool | None = None,
    encoding: str | None = None,
    errors: str | None = None,
    universal_newlines: bool | None = None,
    timeout: float | None = None,
    check: bool = False,
    env: Environment | None = None,
    cwd: StrOrBytesPath | None = None,
    stdin: File = None,
    stdout: File = None,
    stderr: File = None,
    grace: float = _DEFAULT_GRACE,
    kill_group_on_exit: bool = True,
) -> ProcessResult[Any]:
    """The ``async`` twin of :func:`run_process`: same arguments, results and guarantees.

    Text mode works here too (asyncio's own subprocess API is bytes only).
    Waiting never blocks the event loop. If the awaiting task is cancelled,
    the process group is ended (``SIGTERM``, ``SIGKILL`` after ``grace``; a
    second cancellation skips the grace period) and its members reaped before
    :class:`asyncio.CancelledError` propagates. Many calls may run
    concurrently on one loop.
    """
    call = _prepare(
        args,
        input=input,
        capture_output=capture_output,
        text=text,
        encoding=encoding,
        errors=errors,
        universal_newlines=universal_newlines,
        timeout=timeout,
        check=check,
        env=env,
        cwd=cwd,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        grace=grace,
        kill_group_on_exit=kill_group_on_exit,
    )
    started = time.monotonic()
    child = await _AsyncChild.spawn(call)
    try:
        return await arun_effects(
            _lifecycle(call, child.pid, started, child.settled), child.perform
        )
    finally:
        child.close()


if sys.platform == "win32":  # pragma: no cover - POSIX process groups only
    raise ImportError("paios_reliability.run_process needs a POSIX system")
