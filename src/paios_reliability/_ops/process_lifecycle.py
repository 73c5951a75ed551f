"""The lifecycle of a ``run_process`` child: every decision, no I/O.

:func:`_lifecycle` is a generator: it yields the few operations that need
I/O (poll, pump, drain), which the sync and asyncio drivers of
:mod:`.process_drivers` perform, and decides everything else: when to
signal, what counts as gone, what to reap, which result or error to build.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from .argv import _show
from .process_call import _Call
from .process_group import _group_alive, _signal_group
from .process_result import (
    ProcessError,
    ProcessResult,
    ProcessTimeoutError,
)

__all__: list[str] = []


# After the group is gone, how long output may still trickle in from a
# process that left the group (setsid) but holds our pipe.
_DRAIN = 1.0
# Group members are not event-driven: poll them, fast at first (most die of
# SIGTERM within milliseconds), then at most every 50 ms.
_POLL_FIRST = 0.002
_POLL_MAX = 0.05


# -- the lifecycle: every decision, no I/O ---------------------------------------------


@dataclass(frozen=True, slots=True)
class _Poll:
    """Answer the leader's exit status if it has been collected, else None."""


@dataclass(frozen=True, slots=True)
class _Pump:
    """Move input and output for ``seconds`` (None: no limit); answer the exit status.

    With ``until_exit``, answer as soon as the leader has exited (its output
    pipes may still be open).
    """

    seconds: float | None
    until_exit: bool


@dataclass(frozen=True, slots=True)
class _Drain:
    """Stop feeding input; read output until every pipe is at EOF or ``seconds``
    have passed; close the pipes. Answer ``(stdout, stderr)``: bytes for a
    captured stream, None for one that was not captured.
    """

    seconds: float


_Op = _Poll | _Pump | _Drain


@dataclass(frozen=True, slots=True)
class _Ended:
    found: bool  # some member was still running when we looked
    killed: bool  # a running member needed SIGKILL


def _wait(op: _Op, interrupts: list[BaseException]) -> Generator[_Op, Any, Any]:
    """Perform ``op``; an exception thrown in (Ctrl-C, cancellation) is kept, not raised."""
    try:
        return (yield op)
    except BaseException as exc:  # noqa: BLE001 - re-raised once the group is gone
        interrupts.append(exc)
        return None


def _end_group(
    pgid: int, grace: float, interrupts: list[BaseException]
) -> Generator[_Op, Any, _Ended]:
    """SIGTERM the group, SIGKILL what still runs after ``grace``; reap what is ours.

    An interrupt arriving during the grace period skips the rest of it
    (a second Ctrl-C kills at once). Every wait after SIGKILL is bounded.
    """
    code = yield from _wait(_Poll(), interrupts)
    if not _group_alive(pgid, leader_reaped=code is not None):
        return _Ended(found=False, killed=False)
    _signal_group(pgid, signal.SIGTERM)
    patience = len(interrupts)
    until = time.monotonic() + grace
    delay = _POLL_FIRST
    while len(interrupts) == patience and (left := until - time.monotonic()) > 0:
        code = yield from _wait(_Pump(min(delay, left), until_exit=False), interrupts)
        if not _group_alive(pgid, leader_reaped=code is not None):
            return _Ended(found=True, killed=False)
        delay = min(delay * 2, _POLL_MAX)
    code = yield from _wait(_Poll(), interrupts)
    killed = _group_alive(pgid, leader_reaped=code is not None)
    # Zombies alone are harmless to SIGKILL, and a process whose main thread
    # exited shows as a zombie while its other threads run: kill in any case,
    # report only what was really running.
    if _signal_group(pgid, signal.SIGKILL) and killed:
        from .._core.events import emit

        emit("process", "killed", level="warning", subject=str(pgid), pid=pgid)
    # SIGKILL is final but not instant: wait (bounded) for the leader's exit
    # status and for the kernel to tear the rest of the group down.
    until = time.monotonic() + _DRAIN
    delay = _POLL_FIRST
    while (left := until - time.monotonic()) > 0:
        code = yield from _wait(_Pump(min(delay, left), until_exit=False), interrupts)
        if code is not None and not _group_alive(pgid, leader_reaped=True):
            break
        delay = min(delay * 2, _POLL_MAX)
    return _Ended(found=True, killed=killed)


class _Settled:
    """Set once the lifecycle has dealt with the group (ended it, or left it by request).

    A ``KeyboardInterrupt`` can land anywhere, also between two steps of the
    lifecycle rather than in a wait it can catch; a driver that finds this
    unset kills the group itself.
    """

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = False


def _lifecycle(
    call: _Call, pid: int, started: float, settled: _Settled
) -> Generator[_Op, Any, ProcessResult[Any]]:
    """From a started child to its result or error, leaving nothing behind."""
    interrupts: list[BaseException] = []
    code = yield from _wait(_Pump(call.budget, until_exit=True), interrupts)
    timed_out = code is None and not interrupts
    ended = _Ended(found=False, killed=False)
    if code is None or call.kill_group_on_exit:
        ended = yield from _end_group(pid, call.grace, interrupts)
        if code is None:
            code = yield from _wait(_Poll(), interrupts)
    settled.done = True
    if interrupts:
        # The group is gone; the interrupt (KeyboardInterrupt, CancelledError)
        # goes on unchanged.
        raise interrupts[0]
    stdout, stderr = yield _Drain(_DRAIN)
    from .._core.events import emit

    if timed_out:
        assert call.budget is not None  # only a budget times out
        emit(
            "process",
            "timed_out",
            level="warning",
            subject=call.program,
            pid=pid,
            seconds=call.budget,
            killed=ended.killed,
            started=True,
        )
        raise ProcessTimeoutError(
            call.args, call.budget, stdout, stderr, killed=ended.killed
        )
    if ended.found:
        emit(
            "process",
            "group_ended",
            level="info",
            subject=call.program,
            pid=pid,
            returncode=code,
            killed=ended.killed,
        )
    assert code is not None  # the leader was reaped by the kill sequence
    return _finish(call, code, stdout, stderr, started)


def _finish(
    call: _Call,
    returncode: int,
    stdout: bytes | None,
    stderr: bytes | None,
    started: float,
) -> ProcessResult[Any]:
    out: str | bytes | None = stdout
    err: str | bytes | None = stderr
    if call.text is not None:
        out = None if stdout is None else _translate(stdout, *call.text)
        err = None if stderr is None else _translate(stderr, *call.text)
    duration = time.monotonic() - started
    if call.check and returncode:
        from .._core.events import emit

        error = ProcessError(returncode, call.args, out, err)
        emit(
            "process",
            "failed",
            level="warning",
            subject=call.program,
            exc=error,
            returncode=returncode,
            duration=round(duration, 6),
        )
        raise error
    return ProcessResult(call.args, returncode, out, err, duration=duration)


def _translate(data: bytes, encoding: str, errors: str) -> str:
    # What subprocess does in text mode: decode, then universal newlines.
    return data.decode(encoding, errors).replace("\r\n", "\n").replace("\r", "\n")


def _spawn_failed(call: _Call, exc: OSError) -> None:
    """Add a hint when a one-string command was probably meant for a shell."""
    program = call.argv[0]
    if (
        len(call.argv) == 1
        and isinstance(call.args, str)
        and isinstance(exc, FileNotFoundError)
        and " " in call.args.strip()
        and hasattr(exc, "add_note")
    ):
        exc.add_note(
            f"run_process({_show(program)}) runs one program of that name, without a "
            "shell; pass a list of arguments, e.g. shlex.split(...)"
        )
