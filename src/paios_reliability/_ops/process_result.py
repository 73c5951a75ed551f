"""What a child process leaves behind: its result, or the error that says what went wrong.

:class:`ProcessResult`, :class:`ProcessError` and :class:`ProcessTimeoutError`
are the standard library's ``CompletedProcess``, ``CalledProcessError`` and
``TimeoutExpired`` (so existing ``except`` clauses keep working), plus our
catalog codes and redacted, bounded output tails.
"""

from __future__ import annotations

import signal
import subprocess
from typing import TYPE_CHECKING, Any, TypeVar

from .._core.exceptions import PermanentError, TimeoutExceeded
from .argv import Command, _show, _tail, redact_argv

if TYPE_CHECKING:
    pass

__all__ = ["ProcessError", "ProcessResult", "ProcessTimeoutError"]

_T = TypeVar("_T")


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
