"""What a ``run_process`` call asks for, checked and prepared before anything starts."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, Any

from .._policies.timeout import remaining
from .argv import Command, StrOrBytesPath, _program
from .process_result import (
    ProcessTimeoutError,
)

__all__: list[str] = []


File = int | IO[Any] | None
Environment = Mapping[str, StrOrBytesPath] | Mapping[bytes, StrOrBytesPath]


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
