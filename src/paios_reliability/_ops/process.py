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
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, Literal, TypeVar, overload

from .._core.exceptions import PermanentError, TimeoutExceeded
from .._policies.timeout import remaining

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

StrOrBytesPath = str | bytes | os.PathLike[str] | os.PathLike[bytes]
Command = StrOrBytesPath | Sequence[StrOrBytesPath]
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
_TAIL = 2000
_SHOWN = 200


# -- secrets in argv ------------------------------------------------------------------

# ``--password X`` / ``-token X``: the option names a secret, the next argument is it.
_OPTION = re.compile(r"^-{1,2}([A-Za-z][A-Za-z0-9_.-]*)$")
# ``--password=X`` in one argument, or ``--password X`` inside a shell script.
_OPTION_VALUE = re.compile(
    r"(?<![\w-])(-{1,2}([A-Za-z][A-Za-z0-9_.-]*))(=|[ \t]+)(\"[^\"]*\"|'[^']*'|[^\s\"']+)"
)
# ``GITHUB_TOKEN=X`` (``env``, ``docker run -e``, ``make VAR=...``).
_ASSIGNMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_.-]*)=(.+)$", re.DOTALL)
# Names that *mention* a secret but whose value is not one.
_NOT_SECRET_TAIL = frozenset(
    {
        "file",
        "files",
        "path",
        "dir",
        "fd",
        "stdin",
        "env",
        "var",
        "cmd",
        "command",
        "name",
        "id",
        "type",
        "length",
        "ttl",
        "prompt",
        "url",
    }
)
_WORDS = re.compile(r"[^A-Za-z0-9]+")
# Token shapes that are secrets whatever option or name carries them.
_USERINFO = re.compile(r"(?<=://)([^/\s:@]+):([^/\s@]+)@")
_TOKEN_SHAPES = re.compile(
    r"\bsk-(?:ant-|proj-)?[A-Za-z0-9_-]{16,}"
    r"|\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{20,}"
    r"|\bgithub_pat_[A-Za-z0-9_]{20,}"
    r"|\bxox[abprs]-[A-Za-z0-9-]{10,}"
    r"|\bAKIA[0-9A-Z]{16}\b"
    r"|\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"
)


def _secret_name(name: str) -> bool:
    from .._core.taxonomy import is_secret_key

    words = [w.lower() for w in _WORDS.split(name) if w]
    return bool(words) and words[-1] not in _NOT_SECRET_TAIL and is_secret_key(name)


def _redact_arg(text: str) -> str:
    from .._core.taxonomy import REDACTED, redact_text

    def option(match: re.Match[str]) -> str:
        if _secret_name(match.group(2)):
            return f"{match.group(1)}{match.group(3)}{REDACTED}"
        return match.group(0)

    text = _OPTION_VALUE.sub(option, text)
    assignment = _ASSIGNMENT.match(text)
    if assignment and _secret_name(assignment.group(1)):
        text = f"{assignment.group(1)}={REDACTED}"
    text = _USERINFO.sub(lambda m: f"{m.group(1)}:{REDACTED}@", text)
    text = _TOKEN_SHAPES.sub(REDACTED, text)
    return redact_text(text)


def redact_argv(argv: Command) -> list[str]:
    """The command as text, with the secrets it carries replaced by ``[REDACTED]``.

    Masks the value after an option that names a secret (``--password X``,
    ``--token=X``, ``--api-key X``, also inside a ``sh -c`` script),
    ``NAME=value`` assignments whose name is secret-looking
    (``GITHUB_TOKEN=...``), passwords in URLs (``https://user:pass@host``),
    well-known token shapes (``sk-...``, ``ghp_...``...) and whatever
    :func:`redact_text` finds. Single-letter options (``-p X``) are too
    ambiguous to mask. Pure function, safe from any thread.

    Args:
        argv: A program name or a sequence of arguments (str, bytes or paths).

    Returns:
        One string per argument, safe for logs, events and error messages.
    """
    from .._core.taxonomy import REDACTED

    items = [argv] if isinstance(argv, (str, bytes, os.PathLike)) else list(argv)
    shown: list[str] = []
    value_follows = False
    for item in items:
        text = _text_of(item)
        if value_follows and not text.startswith("-"):
            shown.append(REDACTED)
            value_follows = False
            continue
        option = _OPTION.match(text)
        value_follows = bool(option and _secret_name(option.group(1)))
        shown.append(text if value_follows else _redact_arg(text))
    return shown


def _text_of(item: object) -> str:
    if isinstance(item, (str, bytes, os.PathLike)):
        return os.fsdecode(item)
    return repr(item)


def _show(cmd: object) -> str:
    import shlex

    try:
        text = shlex.join(redact_argv(cmd))  # type: ignore[arg-type]
    except TypeError:
        text = "<unprintable command>"
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def _program(cmd: object) -> str:
    try:
        shown = redact_argv(cmd)  # type: ignore[arg-type]
    except TypeError:
        return "?"
    return shown[0] if shown else "?"


def _tail(data: str | bytes | None, limit: int = _TAIL) -> str:
    from .._core.taxonomy import redact_text

    if not data:
        return ""
    text = data[-limit:]
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return redact_text(text.strip())


# -- results and errors ---------------------------------------------------------------


class ProcessResult(subprocess.CompletedProcess[_T]):
    """What a finished :func:`run_process` call produced: a :class:`subprocess.CompletedProcess`.

    ``args``, ``returncode``, ``stdout`` and ``stderr`` are exactly what
    :func:`subprocess.run` gives for the same call (``stdout``/``stderr`` are
    ``None`` when not captured, ``bytes``, or ``str`` in text mode).

    Attributes:
        duration: Wall-clock seconds from start until the child exited and
            its process group was gone.
    """

    def __init__(
        self,
        args: Command,
        returncode: int,
        stdout: _T | None = None,
        stderr: _T | None = None,
        *,
        duration: float = 0.0,
    ) -> None:
        super().__init__(args, returncode, stdout, stderr)
        self.duration = duration

    @property
    def ok(self) -> bool:
        """Whether the process exited with status 0."""
        return self.returncode == 0

    def check_returncode(self) -> None:
        """Raise :class:`ProcessError` (a ``CalledProcessError``) if the status is not 0."""
        if self.returncode:
            raise ProcessError(self.returncode, self.args, self.stdout, self.stderr)

    def __repr__(self) -> str:
        # Never the raw argv or output: a repr ends up in logs.
        parts = [f"args={redact_argv(self.args)!r}", f"returncode={self.returncode!r}"]
        for name in ("stdout", "stderr"):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{name}=<{len(value)} {type(value).__name__}>")
        parts.append(f"duration={self.duration:.6f}")
        return f"{type(self).__name__}({', '.join(parts)})"


class ProcessError(subprocess.CalledProcessError, PermanentError):
    """A process run with ``check=True`` exited with a non-zero status.

    Both a :class:`subprocess.CalledProcessError` (same constructor and
    attributes, so ``except subprocess.CalledProcessError`` catches it) and a
    :class:`PermanentError` (code ``PROCESS_FAILED``; retry policies do not
    retry it). ``cmd`` is the command as given; ``str()``, ``repr()``,
    ``context`` and events show it with its secrets redacted.

    Attributes:
        returncode: Exit status (``-N``: killed by signal ``N``).
        cmd: The command as passed to :func:`run_process`.
        output: Captured stdout (alias ``stdout``), or ``None``.
        stderr: Captured stderr, or ``None``.
    """

    default_code = "PROCESS_FAILED"

    def __init__(
        self,
        returncode: int,
        cmd: Command,
        output: Any = None,
        stderr: Any = None,
        *,
        message: str = "",
        retryable: bool | None = None,
    ) -> None:
        subprocess.CalledProcessError.__init__(self, returncode, cmd, output, stderr)
        if not message:
            message = f"{_show(cmd)} {_status(returncode)}"
            last = _tail(stderr, 300).splitlines()
            if last:
                message += f": {last[-1]}"
        PermanentError.__init__(
            self,
            message,
            retryable=retryable,
            context={
                "argv": _safe_argv(cmd),
                "returncode": returncode,
                "stderr_tail": _tail(stderr),
            },
        )

    __str__ = PermanentError.__str__


class ProcessTimeoutError(subprocess.TimeoutExpired, TimeoutExceeded):
    """A process ran out of time; its whole process group was terminated.

    Also a :class:`subprocess.TimeoutExpired` (``cmd``, ``timeout``,
    ``output``/``stdout``, ``stderr``), a :class:`TimeoutExceeded` and a
    builtin :class:`TimeoutError`: every ``except`` a caller already has
    catches it.

    Attributes:
        cmd: The command as passed to :func:`run_process`.
        timeout: The budget in seconds (the tighter of ``timeout`` and an
            enclosing :func:`deadline`); also ``seconds``.
        output: What it wrote to stdout before it was stopped (alias
            ``stdout``): ``bytes`` even in text mode, as in
            ``subprocess``; ``None`` when stdout was not captured.
        stderr: The same for stderr.
        killed: Whether ``SIGKILL`` was needed after the grace period.
        started: False when the budget was spent before the process could
            start (it never ran).
    """

    def __init__(
        self,
        cmd: Command,
        timeout: float,
        output: bytes | None = None,
        stderr: bytes | None = None,
        *,
        message: str = "",
        killed: bool = False,
        started: bool = True,
    ) -> None:
        subprocess.TimeoutExpired.__init__(self, cmd, timeout, output, stderr)
        self.killed = killed
        self.started = started
        if not message:
            if started:
                message = f"{_show(cmd)} did not finish within {timeout:g}s; its process group was terminated"
            else:
                message = f"{_show(cmd)} was not started: its time budget ({timeout:g}s) was already spent"
        TimeoutExceeded.__init__(
            self,
            message,
            seconds=timeout,
            context={
                "argv": _safe_argv(cmd),
                "killed": killed,
                "started": started,
                "stdout_tail": _tail(output),
                "stderr_tail": _tail(stderr),
            },
        )

    __str__ = TimeoutExceeded.__str__


for _cls in (ProcessError, ProcessResult, ProcessTimeoutError):
    _cls.__module__ = "paios_reliability"


def _status(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"was killed by signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with status {returncode}"


def _safe_argv(cmd: object) -> list[str]:
    try:
        return redact_argv(cmd)  # type: ignore[arg-type]
    except TypeError:
        return ["<unprintable command>"]


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


def _members(pgid: int) -> list[tuple[int, int, str]] | None:
    """``(pid, ppid, state)`` of every process in group ``pgid``; None without /proc."""
    try:
        entries = os.scandir(_PROC)
    except OSError:  # pragma: no cover - not Linux
        return None
    found = []
    with entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            try:
                with open(f"{_PROC}/{entry.name}/stat", "rb") as stat:
                    fields = stat.read().rpartition(b")")[2].split()
                if int(fields[2]) == pgid:
                    found.append((int(entry.name), int(fields[1]), fields[0].decode()))
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
    """A started child and its pipes, pumped with one selector (no threads)."""

    def __init__(self, call: _Call) -> None:
        import selectors

        try:
            self.proc = subprocess.Popen(call.argv, **call.popen)  # noqa: S603 - argv, no shell
        except OSError as exc:
            _spawn_failed(call, exc)
            raise
        self.pid = self.proc.pid
        self._selector = _selector()
        self._chunks: dict[IO[bytes], list[bytes]] = {}
        self._input: memoryview | None = None
        self._offset = 0
        self._pidfd: int | None = None
        self.settled = _Settled()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                self._chunks[stream] = []
                self._selector.register(stream, selectors.EVENT_READ)
        if self.proc.stdin is not None:
            data = call.data if call.data is not None else b""
            if len(data):
                os.set_blocking(self.proc.stdin.fileno(), False)
                self._input = memoryview(data)
                self._selector.register(self.proc.stdin, selectors.EVENT_WRITE)
            else:
                self._close(self.proc.stdin)
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
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                self._close(stream)
        self._forget_pidfd()
        self._selector.close()
        if not self.settled.done:
            # Interrupted outside a wait the lifecycle could catch: no grace left.
            _signal_group(self.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=_DRAIN)
            _group_alive(self.pid, leader_reaped=self.proc.returncode is not None)


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
    child = _SyncChild(call)
    try:
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
