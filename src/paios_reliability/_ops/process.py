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

One lifecycle generator (:func:`_lifecycle`) makes every decision (when to
signal, what counts as gone, what to reap, which result or error to build) and
yields the few operations that need I/O; :func:`_drive` and :func:`_adrive`
are the thin sync and asyncio drivers that perform them.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, Literal, TypeVar, overload

from .._policies.timeout import remaining
from .argv import Command, StrOrBytesPath, _program, _show, redact_argv
from .process_result import (
    ProcessError,
    ProcessResult,
    ProcessTimeoutError,
)

if TYPE_CHECKING:
    import asyncio
    import selectors

__all__ = [
    "ProcessError",
    "ProcessResult",
    "ProcessTimeoutError",
    "arun_process",
    "redact_argv",
    "run_process",
]

_T = TypeVar("_T")
_R = TypeVar("_R")

File = int | IO[Any] | None
Environment = Mapping[str, StrOrBytesPath] | Mapping[bytes, StrOrBytesPath]

_DEFAULT_GRACE = 2.0
# After the group is gone, how long output may still trickle in from a
# process that left the group (setsid) but holds our pipe.
_DRAIN = 1.0
# Group members are not event-driven: poll them, fast at first (most die of
# SIGTERM within milliseconds), then at most every 50 ms.
_POLL_FIRST = 0.002
_POLL_MAX = 0.05
_READ_CHUNK = 1 << 16
_WRITE_CHUNK = 1 << 20


# -- the prepared call ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Call:
    """Everything decided before the child exists (validated; budget checked)."""

    args: Command
    argv: list[StrOrBytesPath]
    data: bytes | memoryview | None
    popen: dict[str, Any]
    text: tuple[str, str] | None
    budget: float | None
    grace: float
    check: bool
    kill_group_on_exit: bool

    @property
    def program(self) -> str:
        return _program(self.args)


def _prepare(
    args: Command,
    *,
    input: Any,
    capture_output: bool,
    text: bool | None,
    encoding: str | None,
    errors: str | None,
    universal_newlines: bool | None,
    timeout: float | None,
    check: bool,
    env: Environment | None,
    cwd: StrOrBytesPath | None,
    stdin: File,
    stdout: File,
    stderr: File,
    grace: float,
    kill_group_on_exit: bool,
) -> _Call:
    argv = _argv(args)
    if (
        text is not None
        and universal_newlines is not None
        and bool(text) != bool(universal_newlines)
    ):
        raise ValueError(
            "run_process(text=..., universal_newlines=...) disagree: pass one or the other"
        )
    text_mode = _text_mode(text, encoding, errors, universal_newlines)
    if input is not None and stdin is not None:
        raise ValueError("stdin and input arguments may not both be used.")
    if capture_output and (stdout is not None or stderr is not None):
        raise ValueError(
            "stdout and stderr arguments may not be used with capture_output."
        )
    data = _input_bytes(input, text_mode)
    if data is None and stdin == subprocess.PIPE:
        data = b""  # subprocess.run closes a piped stdin at once: the child reads EOF
    budget = _budget(timeout)
    grace = _seconds(grace, "grace")
    popen: dict[str, Any] = {
        "stdin": subprocess.PIPE if data is not None else stdin,
        "stdout": subprocess.PIPE if capture_output else stdout,
        "stderr": subprocess.PIPE if capture_output else stderr,
        "env": _with_traceparent(env),
        "cwd": cwd,
        "start_new_session": True,
        "close_fds": True,
    }
    call = _Call(
        args=args,
        argv=argv,
        data=data,
        popen=popen,
        text=text_mode,
        budget=budget,
        grace=grace,
        check=bool(check),
        kill_group_on_exit=bool(kill_group_on_exit),
    )
    if budget is not None and budget <= 0:
        raise _not_started(call, budget)
    return call


def _argv(args: Command) -> list[StrOrBytesPath]:
    if isinstance(args, (str, bytes, os.PathLike)):
        # As in subprocess without a shell: one program name, no splitting.
        return [args]
    try:
        argv = list(args)
    except TypeError:
        raise TypeError(
            f"run_process(args) takes a sequence of arguments or a program name, got {type(args).__name__}"
        ) from None
    if not argv:
        raise ValueError("run_process(args) needs at least the program to run")
    for index, item in enumerate(argv):
        if not isinstance(item, (str, bytes, os.PathLike)):
            raise TypeError(
                f"run_process(args): argument {index} must be str, bytes or a path, "
                f"got {type(item).__name__}"
            )
    return argv


def _text_mode(
    text: bool | None,
    encoding: str | None,
    errors: str | None,
    universal_newlines: bool | None,
) -> tuple[str, str] | None:
    """``(encoding, errors)`` resolved exactly as :class:`subprocess.Popen` does."""
    if not (encoding or errors or text or universal_newlines):
        return None
    if encoding is None:
        import locale

        if sys.version_info >= (3, 11):
            encoding = "utf-8" if sys.flags.utf8_mode else locale.getencoding()
        else:  # pragma: no cover - the TextIOWrapper default of 3.10
            encoding = locale.getpreferredencoding(False)
    import codecs

    codecs.lookup(encoding)  # LookupError now, before anything is started
    return encoding, errors or "strict"


def _input_bytes(
    input: Any, text_mode: tuple[str, str] | None
) -> bytes | memoryview | None:
    if input is None:
        return None
    if text_mode is not None:
        if not isinstance(input, str):
            raise TypeError(
                f"run_process(input=...) must be str in text mode, got {type(input).__name__}"
            )
        return input.encode(*text_mode)
    if isinstance(input, str):
        raise TypeError(
            "run_process(input=...) is str but the call is in binary mode: "
            "pass bytes, or text=True (or an encoding) for text"
        )
    try:
        return memoryview(input).cast("B")
    except TypeError:
        raise TypeError(
            f"run_process(input=...) must be bytes-like or None, got {type(input).__name__}"
        ) from None


def _seconds(value: object, what: str) -> float:
    import math

    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"run_process({what}=...) must be a number of seconds, got {value!r}"
        )
    if math.isnan(value) or math.isinf(value) or value < 0:
        raise ValueError(
            f"run_process({what}=...) must be finite and >= 0, got {value!r}"
        )
    return float(value)


def _budget(timeout: float | None) -> float | None:
    """The tighter of ``timeout`` and the enclosing :func:`deadline`; <= 0: spent."""
    budget: float | None = None
    if timeout is not None:
        import math

        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise TypeError(
                f"run_process(timeout=...) must be a number of seconds or None, got {timeout!r}"
            )
        if math.isnan(timeout):
            raise ValueError("run_process(timeout=...) must be a number, got nan")
        if not math.isinf(timeout):
            budget = float(timeout)
    left = remaining()
    if left is not None and (budget is None or left < budget):
        budget = left
    return budget


def _not_started(call: _Call, budget: float) -> ProcessTimeoutError:
    from .._core.events import emit

    emit(
        "process",
        "timed_out",
        level="warning",
        subject=call.program,
        pid=None,
        seconds=budget,
        killed=False,
        started=False,
    )
    return ProcessTimeoutError(call.args, budget, started=False)


# -- the process group ----------------------------------------------------------------


def _signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to a process group; False when the group is already gone."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - a member changed credentials
        return True
    return True


_PROC = "/proc"


def _read_stat(path: str) -> list[bytes]:
    """The fields of a /proc stat file after the command name.

    A raw descriptor, not a file object: Ctrl-C lands here while a group is
    being ended, and CPython raises it only at a call, so the descriptor is
    already in ``fd`` (and closed by ``finally``) whenever it is raised.
    """
    fd = -1
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        data = os.read(fd, 4096)
    finally:
        if fd >= 0:
            os.close(fd)
    return data.rpartition(b")")[2].split()


def _members(pgid: int) -> list[tuple[int, int, str]] | None:
    """``(pid, ppid, state)`` of every process in group ``pgid``; None without /proc."""
    try:
        # A list, not a scandir iterator: a Ctrl-C arriving between opening
        # an iterator and entering its `with` would leave it unclosed.
        names = os.listdir(_PROC)
    except OSError:  # pragma: no cover - not Linux
        return None
    found = []
    for name in names:
        if not name.isdigit():
            continue
        try:
            fields = _read_stat(f"{_PROC}/{name}/stat")
            if int(fields[2]) == pgid:
                found.append((int(name), int(fields[1]), fields[0].decode()))
        except (OSError, IndexError, ValueError):
            continue  # exited while we looked
    return found


def _group_alive(pgid: int, *, leader_reaped: bool) -> bool:
    """Whether any member of the group still runs; reaps members that are ours.

    Members become our children when their parent dies while we are PID 1 or
    a child subreaper. Their exit statuses are collected here, so none stays
    a zombie of ours. Zombies (of anyone) do not count as running: a group
    whose members have all exited is gone, even before their parents reap them.
    The leader itself is never reaped here (its driver owns its status), only
    after the driver has collected it: ``waitpid(-pgid)`` could otherwise
    steal it.
    """
    if leader_reaped:
        _reap_all(pgid)
    if not _signal_group(pgid, 0):
        return False
    members = _members(pgid)
    if members is None:  # pragma: no cover - without /proc a zombie counts as alive
        return True
    me = os.getpid()
    running = False
    for pid, ppid, state in members:
        if state in ("Z", "X"):
            if ppid == me and pid != pgid:
                _reap_one(pid)
        else:
            running = True
    return running


def _reap_all(pgid: int) -> None:
    while True:
        try:
            pid, _ = os.waitpid(-pgid, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _reap_one(pid: int) -> None:
    # Someone else may have reaped it first.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


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


# -- sync driver ----------------------------------------------------------------------


def _drive(gen: Generator[_Op, Any, _R], perform: Callable[[_Op], Any]) -> _R:
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            op = gen.send(value) if error is None else gen.throw(error)
        except StopIteration as stop:
            result: _R = stop.value
            return result
        value, error = None, None
        try:
            value = perform(op)
        except BaseException as exc:  # noqa: BLE001 - the lifecycle ends the group, then re-raises
            error = exc


def _selector() -> selectors.BaseSelector:
    import selectors

    # poll() needs no fd of its own (epoll would add one per call).
    if hasattr(selectors, "PollSelector"):
        return selectors.PollSelector()
    return selectors.SelectSelector()  # pragma: no cover - no poll()


class _SyncChild:
    """A started child and its pipes, pumped with one selector (no threads).

    Built empty, then :meth:`start`-ed inside the caller's ``try``: a
    ``KeyboardInterrupt`` landing anywhere after the fork (inside ``Popen``,
    in the setup after it) still reaches :meth:`close`, which then kills the
    group; nothing is left running or unreaped.
    """

    pid: int
    proc: subprocess.Popen[bytes]

    def __init__(self) -> None:
        # What close() must end: set from the fork on, None when nothing runs.
        self._spawned: subprocess.Popen[bytes] | None = None
        self._selector = _selector()  # poll(): no fd of its own to leak
        self._chunks: dict[IO[bytes], list[bytes]] = {}
        self._input: memoryview | None = None
        self._offset = 0
        self._pidfd: int | None = None
        self.settled = _Settled()

    def start(self, call: _Call) -> None:
        import selectors

        # The object exists before Popen runs, so the pid it gets at the fork
        # is known to close() even when an interrupt ends Popen early.
        proc: subprocess.Popen[bytes] = subprocess.Popen.__new__(subprocess.Popen)
        self._spawned = self.proc = proc
        before = _children_of_this_thread()
        try:
            subprocess.Popen.__init__(proc, call.argv, **call.popen)
        except OSError as exc:
            # Never forked, or the failed child was reaped by Popen: nothing runs.
            if proc.returncode is not None or proc.pid is None:
                self._spawned = None
            _spawn_failed(call, exc)
            raise
        except BaseException:
            if getattr(proc, "pid", None) is None:
                # An interrupt raised as the fork returned, before Popen stored
                # the pid: the child runs all the same. It is the one new child
                # of this thread.
                after = _children_of_this_thread()
                if before is not None and after is not None:
                    new = after - before
                    if len(new) == 1:
                        proc.pid = new.pop()
            raise
        self.pid = proc.pid
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                self._chunks[stream] = []
                self._selector.register(stream, selectors.EVENT_READ)
        if proc.stdin is not None:
            data = call.data if call.data is not None else b""
            if len(data):
                os.set_blocking(proc.stdin.fileno(), False)
                self._input = memoryview(data)
                self._selector.register(proc.stdin, selectors.EVENT_WRITE)
            else:
                self._close(proc.stdin)
        try:
            self._pidfd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):  # pragma: no cover - not Linux, or too old
            self._pidfd = None  # the leader is polled instead
        else:
            self._selector.register(self._pidfd, selectors.EVENT_READ)

    def perform(self, op: _Op) -> Any:
        if isinstance(op, _Poll):
            return self.proc.poll()
        if isinstance(op, _Pump):
            return self._pump(op.seconds, op.until_exit)
        return self._drain(op.seconds)

    def _pump(self, seconds: float | None, until_exit: bool) -> int | None:
        end = None if seconds is None else time.monotonic() + seconds
        backoff = _POLL_FIRST
        while True:
            if self.proc.returncode is not None and until_exit:
                return self.proc.returncode
            left = None if end is None else end - time.monotonic()
            if left is not None and left <= 0:
                return self.proc.poll()
            wait = left
            if self._pidfd is None and self.proc.returncode is None:
                # No exit notification: poll the leader, like Popen.wait does.
                wait = backoff if left is None else min(backoff, left)
                backoff = min(backoff * 2, _POLL_MAX)
            if self._selector.get_map():
                ready = self._selector.select(wait)
                for key, _ in ready:
                    self._service(key.fileobj)
            elif wait is None:  # pragma: no cover - nothing to watch at all
                self.proc.wait()
            else:
                time.sleep(wait)
            if self._pidfd is None:
                self.proc.poll()

    def _service(self, fileobj: Any) -> None:
        if isinstance(fileobj, int):  # the pidfd
            # The leader has exited: collect its status; the pidfd has done its job.
            self.proc.poll()
            self._forget_pidfd()
        elif fileobj is self.proc.stdin:
            self._feed()
        else:
            data = os.read(fileobj.fileno(), _READ_CHUNK)
            if data:
                self._chunks[fileobj].append(data)
            else:
                self._close(fileobj)

    def _feed(self) -> None:
        stdin = self.proc.stdin
        assert stdin is not None
        assert self._input is not None
        try:
            self._offset += os.write(
                stdin.fileno(), self._input[self._offset : self._offset + _WRITE_CHUNK]
            )
        except BlockingIOError:
            return
        except BrokenPipeError:
            # The child stopped reading: not an error, as in subprocess.
            self._offset = len(self._input)
        if self._offset >= len(self._input):
            self._close(stdin)

    def _drain(self, seconds: float) -> tuple[bytes | None, bytes | None]:
        if self.proc.stdin is not None:
            self._close(self.proc.stdin)
        self._forget_pidfd()
        end = time.monotonic() + seconds
        while self._selector.get_map() and (left := end - time.monotonic()) > 0:
            for key, _ in self._selector.select(left):
                self._service(key.fileobj)
        outputs: list[bytes | None] = []
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is None:
                outputs.append(None)
            else:
                outputs.append(b"".join(self._chunks.pop(stream, [])))
                self._close(stream)
        return outputs[0], outputs[1]

    def _close(self, stream: IO[bytes]) -> None:
        if stream.closed:
            return
        with contextlib.suppress(KeyError):
            self._selector.unregister(stream)
        with contextlib.suppress(BrokenPipeError):
            stream.close()

    def _forget_pidfd(self) -> None:
        if self._pidfd is not None:
            self._selector.unregister(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None

    def close(self) -> None:
        """Release everything; a group the lifecycle did not settle is killed."""
        proc = self._spawned
        if proc is not None:
            for name in ("stdin", "stdout", "stderr"):
                stream = getattr(proc, name, None)
                if stream is not None:
                    self._close(stream)
        self._forget_pidfd()
        self._selector.close()
        if not self.settled.done and proc is not None:
            # Interrupted outside a wait the lifecycle could catch: no grace left.
            _kill_unsettled(proc)


def _children_of_this_thread() -> set[int] | None:
    """Pids of the living (or unreaped) children this thread forked; None without /proc."""
    import threading

    try:
        with open(
            f"{_PROC}/self/task/{threading.get_native_id()}/children", "rb"
        ) as fh:
            return {int(pid) for pid in fh.read().split()}
    except (
        OSError,
        ValueError,
    ):  # pragma: no cover - not Linux, or no CONFIG_PROC_CHILDREN
        return None


def _kill_unsettled(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the group of ``proc``; wait (bounded) until it is gone and reaped."""
    pid: int | None = getattr(proc, "pid", None)
    if pid is None:
        return  # interrupted before the fork: nothing runs
    _signal_group(pid, signal.SIGKILL)
    if proc.returncode is None:
        # Not reaped, so the pid is still this child's. Interrupted before its
        # setsid(), it leads no group yet: the group signal missed it.
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=_DRAIN)
    # SIGKILL is not instant: members orphaned to us (PID 1, subreaper) turn
    # into zombies of ours only once the kernel has torn them down.
    until = time.monotonic() + _DRAIN
    while _group_alive(pid, leader_reaped=proc.returncode is not None):
        if time.monotonic() >= until:
            break
        time.sleep(_POLL_FIRST)


# -- asyncio driver -------------------------------------------------------------------


async def _adrive(gen: Generator[_Op, Any, _R], perform: Callable[[_Op], Any]) -> _R:
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            op = gen.send(value) if error is None else gen.throw(error)
        except StopIteration as stop:
            result: _R = stop.value
            return result
        value, error = None, None
        try:
            value = await perform(op)
        except BaseException as exc:  # noqa: BLE001 - the lifecycle ends the group, then re-raises
            error = exc


@functools.cache
def _protocol_class() -> Callable[[_AsyncChild], asyncio.SubprocessProtocol]:
    # Built on first use: asyncio is imported only by asyncio callers.
    import asyncio

    class Protocol(asyncio.SubprocessProtocol):
        """Collects output and reports the leader's exit into an :class:`_AsyncChild`.

        Its own protocol rather than asyncio's streams: ``Process.wait()``
        also waits for the pipes (3.12+), and a grandchild holding them must
        not keep us from seeing the leader exit.
        """

        def __init__(self, child: _AsyncChild) -> None:
            self.child = child

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.SubprocessTransport)
            for fd in (1, 2):
                if transport.get_pipe_transport(fd) is not None:
                    self.child.chunks[fd] = []
                    self.child.open.add(fd)
            self.child.check_closed()

        def pipe_data_received(self, fd: int, data: bytes | bytearray) -> None:
            self.child.chunks[fd].append(bytes(data))

        def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
            self.child.open.discard(fd)
            self.child.check_closed()

        def process_exited(self) -> None:
            if not self.child.exited.done():
                self.child.exited.set_result(None)

    return Protocol


class _AsyncChild:
    """A started child under the running event loop; its output collected by a protocol."""

    transport: asyncio.SubprocessTransport

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.exited: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.chunks: dict[int, list[bytes]] = {}
        self.open: set[int] = set()
        self.settled = _Settled()

    def check_closed(self) -> None:
        if not self.open and not self.closed.done():
            self.closed.set_result(None)

    @classmethod
    async def spawn(cls, call: _Call) -> _AsyncChild:
        import asyncio

        loop = asyncio.get_running_loop()
        child = cls(loop)
        try:
            transport, _ = await loop.subprocess_exec(
                lambda: _protocol_class()(child), *call.argv, **call.popen
            )
        except OSError as exc:
            _spawn_failed(call, exc)
            raise
        child.transport = transport
        child.pid = transport.get_pid()
        stdin = transport.get_pipe_transport(0)
        if stdin is not None:
            assert isinstance(stdin, asyncio.WriteTransport)
            if call.data is not None and len(call.data):
                # The transport buffers what the pipe cannot take yet, and
                # closes only once the buffer is flushed.
                stdin.write(call.data)
            stdin.close()
        return child

    pid: int

    async def perform(self, op: _Op) -> Any:
        import asyncio

        if isinstance(op, _Pump):
            if op.until_exit:
                await asyncio.wait([self.exited], timeout=op.seconds)
            else:
                await asyncio.sleep(op.seconds or 0.0)
        elif isinstance(op, _Drain):
            stdin = self.transport.get_pipe_transport(0)
            if isinstance(stdin, asyncio.WriteTransport) and not stdin.is_closing():
                stdin.abort()  # nobody is left to read it
            if not self.closed.done():
                await asyncio.wait([self.closed], timeout=op.seconds)
            return tuple(
                b"".join(self.chunks[fd]) if fd in self.chunks else None
                for fd in (1, 2)
            )
        return self.transport.get_returncode()

    def close(self) -> None:
        """Release the transport; a group the lifecycle did not settle is killed."""
        if not self.settled.done:  # pragma: no cover - cancellation lands in waits
            _signal_group(self.pid, signal.SIGKILL)
        self.transport.close()


# -- public entry points --------------------------------------------------------------

# The overloads mirror typeshed's subprocess.run, so mypy infers the same
# ProcessResult[str] / ProcessResult[bytes] as it does CompletedProcess[...].


@overload
def run_process(
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
) -> ProcessResult[str]: ...
@overload
def run_process(
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
) -> ProcessResult[str]: ...
@overload
def run_process(
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
) -> ProcessResult[bytes]: ...
@overload
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
) -> ProcessResult[Any]: ...


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
        return _drive(
            _lifecycle(call, child.pid, started, child.settled), child.perform
        )
    finally:
        child.close()


@overload
async def arun_process(
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
) -> ProcessResult[str]: ...
@overload
async def arun_process(
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
) -> ProcessResult[str]: ...
@overload
async def arun_process(
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
) -> ProcessResult[bytes]: ...
@overload
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
) -> ProcessResult[Any]: ...


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
        return await _adrive(
            _lifecycle(call, child.pid, started, child.settled), child.perform
        )
    finally:
        child.close()


if sys.platform == "win32":  # pragma: no cover - POSIX process groups only
    raise ImportError("paios_reliability.run_process needs a POSIX system")


def _with_traceparent(env: Environment | None) -> Any:
    """``env`` plus ``TRACEPARENT`` of the running span, so the child's trace() joins it."""
    from .._core.trace import traceparent

    value = traceparent()
    if value is None:
        return env
    if env is None:
        return {**os.environ, "TRACEPARENT": value}
    if any(isinstance(k, bytes) for k in env):
        return {**env, b"TRACEPARENT": value.encode()}
    return {**env, "TRACEPARENT": value}
