"""``@hook``: an entry point that always exits with its code, within its budget.

A hook is a short process an agent runtime starts for every tool call (or
prompt, or session event) and waits for: a hook that crashes with a traceback
or a non-zero code can block the call, and one that hangs holds up the agent.
:func:`hook` makes the process end with ``exit_code`` within ``budget``
seconds whatever happens inside: an exception, ``sys.exit(3)``, Ctrl-C,
SIGTERM, a lock that never frees, a call stuck in C code.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import threading
import time
from collections.abc import Callable

from .._core.budget import set_budget_deadline
from .._core.events import emit
from .._core.typing_lite import TYPE_CHECKING, overload

if TYPE_CHECKING:
    from typing import Any, NoReturn, ParamSpec

    P = ParamSpec("P")

__all__ = ["hook"]


def _margin(budget: float) -> float:
    """How long before the budget ends the watchdog fires (exit takes time)."""
    return min(0.25, budget * 0.1)


class _Watchdog:
    """Ends the process with ``exit_code`` at ``at`` (monotonic), whatever it does.

    Runs in a daemon thread and takes no lock the stuck thread may hold:
    the event is emitted from a helper thread it waits on only briefly, the
    line to stderr is one ``os.write``, and the exit is ``os._exit``.
    """

    def __init__(self, at: float, exit_code: int, name: str, budget: float) -> None:
        self.at = at
        self.exit_code = exit_code
        self.name = name
        self.budget = budget
        self.done = threading.Event()
        self.thread = threading.Thread(
            target=self._run, name=f"hook-watchdog:{name}", daemon=True
        )

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        if self.done.wait(max(0.0, self.at - time.monotonic())):
            return
        try:
            reporter = threading.Thread(
                target=emit,
                args=("hook", "budget_exceeded"),
                kwargs={
                    "level": "error",
                    "subject": self.name,
                    "budget": self.budget,
                    "exit_code": self.exit_code,
                },
                daemon=True,
            )
            # Fails once the interpreter is shutting down (stuck in atexit):
            # the exit below must happen all the same.
            reporter.start()
            reporter.join(0.05)
        finally:
            line = (
                f"paios_reliability: hook {self.name} ran out of its "
                f"{self.budget:g}s budget; exiting {self.exit_code}\n"
            )
            with contextlib.suppress(OSError):
                os.write(2, line.encode("utf-8", "replace"))
            os._exit(self.exit_code)


def _report_failure(name: str, exc: BaseException, exit_code: int) -> None:
    from .._core.taxonomy import classify, redact_text

    try:
        code = classify(exc).code
    except Exception:  # noqa: BLE001 - a report must never fail the exit
        code = "UNKNOWN"
    emit("hook", "failed", level="error", subject=name, exc=exc, code=code)
    text = redact_text(f"{type(exc).__name__}: {exc}".splitlines()[0][:500])
    with contextlib.suppress(Exception):
        sys.stderr.write(
            f"paios_reliability: hook {name} failed ({code}): {text}; "
            f"exiting {exit_code}\n"
        )


def _sigterm_raises() -> Callable[[], None]:
    """Turn SIGTERM into an exception the hook catches (main thread only)."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return lambda: None  # the program has its own plan for SIGTERM

    def on_term(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, on_term)

    def restore() -> None:
        signal.signal(signal.SIGTERM, previous)

    return restore


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


@overload
def hook(fn: Callable[P, Any], /) -> Callable[P, NoReturn]: ...


@overload
def hook(
    *, budget: float = 5.0, exit_code: int = 0, name: str | None = None
) -> Callable[[Callable[P, Any]], Callable[P, NoReturn]]: ...


def hook(
    fn: Callable[P, Any] | None = None,
    /,
    *,
    budget: float = 5.0,
    exit_code: int = 0,
    name: str | None = None,
) -> Any:
    """Make ``fn`` a hook entry point: calling it ends the process.

    ::

        @pr.hook(budget=5.0)
        def main() -> None:
            event = json.load(sys.stdin)
            ...

        if __name__ == "__main__":
            main()

    Calling the decorated function runs ``fn`` (an ``async def`` under
    ``asyncio.run``), flushes stdout and stderr and exits the process with
    ``exit_code``, in every case:

    - ``fn`` returns, or calls ``sys.exit(0)``: exit ``exit_code``.
    - ``fn`` raises anything (also ``sys.exit(3)``, ``KeyboardInterrupt``
      from Ctrl-C, SIGTERM turned into ``SystemExit``): a ``hook.failed``
      event (error, with the exception) and one redacted line on stderr
      naming the error and its catalog code; exit ``exit_code``.
    - ``fn`` is still running shortly before ``budget`` seconds: a
      ``hook.budget_exceeded`` event, one line on stderr, and the process
      ends at once (``os._exit``, from a watchdog thread, so even a call
      stuck in C code cannot keep it).

    Inside, every library lock wait (a :class:`ConfigFile`'s, a
    :class:`CredentialStore`'s, ``write_transaction``'s) is capped by what
    is left of the budget, so it fails with a clear
    :class:`LockConflictError` (handled as above) instead of being cut off.

    Args:
        fn: The entry point (``@hook`` without arguments takes the defaults).
        budget: Seconds the whole process may take, from the call.
        exit_code: The code the process always ends with (0: a hook must
            never block the agent).
        name: For events and the stderr line; default: the function's name.

    Raises:
        ValueError: At decoration, if ``budget`` is not positive or
            ``exit_code`` is not in 0-255.
    """
    if not budget > 0:
        raise ValueError(f"hook budget must be > 0 seconds, got {budget!r}")
    if isinstance(exit_code, bool) or not 0 <= exit_code <= 255:
        raise ValueError(f"hook exit_code must be 0-255, got {exit_code!r}")

    def decorate(func: Callable[P, Any]) -> Callable[P, NoReturn]:
        label: str = name or str(getattr(func, "__qualname__", repr(func)))

        @functools.wraps(func)
        def run(*args: P.args, **kwargs: P.kwargs) -> NoReturn:
            started = time.monotonic()
            margin = _margin(budget)
            watchdog = _Watchdog(started + budget - margin, exit_code, label, budget)
            watchdog.start()
            # Lock waits end before the watchdog does, so they fail cleanly.
            set_budget_deadline(started + budget - 2 * margin)
            restore = _sigterm_raises()
            try:
                result = func(*args, **kwargs)
                # An async def's coroutine; told apart without importing
                # inspect or asyncio (tens of ms a sync hook need not pay).
                if type(result).__name__ == "coroutine" and hasattr(result, "send"):
                    import asyncio

                    asyncio.run(result)
            except SystemExit as exc:
                if exc.code not in (None, 0):
                    _report_failure(label, exc, exit_code)
            except BaseException as exc:  # noqa: BLE001 - a hook ends with its code
                _report_failure(label, exc, exit_code)
            else:
                emit(
                    "hook",
                    "finished",
                    level="debug",
                    subject=label,
                    elapsed=round(time.monotonic() - started, 4),
                )
            finally:
                restore()
                _flush()
            # The watchdog stays armed through exit: atexit work (a pending
            # usage flush, a thread the hook left running) is bounded too.
            raise SystemExit(exit_code)

        return run

    if fn is not None:
        return decorate(fn)
    return decorate
