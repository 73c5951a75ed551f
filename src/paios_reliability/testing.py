"""Test helpers for code that uses paios_reliability.

- :class:`FakeClock`: time that only moves when told to; sleeps return at once.
- :func:`set_testing`: no primitive waits for real (backoff, rate limits).
- :func:`capture_events`: collect every event emitted inside a block.
- :func:`flaky`: fault injection, fail the first N calls.
- :func:`get_clock`, :func:`is_testing`, :func:`testing_attempts`: what the
  primitives will use right now (the default clock, the testing switch).
- :mod:`golden`: record a run's output once, replay it and compare hashes.

With pytest, the fixtures ``fake_clock`` and ``reliability_events`` are
available without imports (the package registers a pytest plugin), and global
switches changed by a test are put back after it.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar, cast

from ._core.clock import FakeClock, get_clock
from ._core.event import Event
from ._core.events import add_event_hook
from ._core.settings import is_testing, set_testing, testing_attempts
from ._runs import golden

__all__ = [
    "CapturedEvents",
    "FakeClock",
    "Flaky",
    "capture_events",
    "flaky",
    "get_clock",
    "is_testing",
    "golden",
    "set_testing",
    "testing_attempts",
]

# Lives with the other clocks so the doctor checks of the policies can use it
# without importing this public module; documented and imported from here.
FakeClock.__module__ = __name__

P = ParamSpec("P")
T = TypeVar("T")


class CapturedEvents(Sequence[Event]):
    """The events captured by :func:`capture_events`, in emission order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[Event] = []

    def _append(self, event: Event) -> None:
        with self._lock:
            self._events.append(event)

    def __getitem__(self, index: Any) -> Any:
        with self._lock:
            return self._events[index]

    def __len__(self) -> int:
        with self._lock:
            return len(self._events)

    def __iter__(self) -> Iterator[Event]:
        with self._lock:
            return iter(list(self._events))

    def names(self) -> list[str]:
        """Event names, e.g. ``["paios_reliability.retry.scheduled", ...]``."""
        return [e.name for e in self]

    def of(self, name: str) -> list[Event]:
        """Events whose name is ``name`` or ends with ``.name`` (``"retry.scheduled"``)."""
        return [e for e in self if e.name == name or e.name.endswith("." + name)]

    def clear(self) -> None:
        with self._lock:
            self._events.clear()

    def __repr__(self) -> str:
        return f"CapturedEvents({self.names()!r})"


@contextmanager
def capture_events() -> Iterator[CapturedEvents]:
    """Collect every event emitted (by any thread) while the block runs."""
    captured = CapturedEvents()
    with add_event_hook(captured._append):
        yield captured


class Flaky:
    """Fault injection: the decorated function fails its first ``fail_times`` calls.

    Use :func:`flaky` to make one. Counters are shared by all calls and
    thread-safe.

    Attributes:
        calls: Calls made so far.
        failures: Failures injected so far.
    """

    def __init__(
        self,
        fail_times: int,
        exc: BaseException | type[BaseException] | Callable[[int], BaseException],
    ) -> None:
        if fail_times < 0:
            raise ValueError(f"flaky(fail_times=...) must be >= 0, got {fail_times!r}")
        self.fail_times = fail_times
        self._exc = exc
        self._lock = threading.Lock()
        self.calls = 0
        self.failures = 0

    def _next_failure(self) -> BaseException | None:
        with self._lock:
            self.calls += 1
            if self.failures >= self.fail_times:
                return None
            self.failures += 1
            attempt = self.calls
        exc = self._exc
        if isinstance(exc, BaseException):
            return exc
        if isinstance(exc, type):
            made: BaseException = exc(
                f"injected failure {attempt} of {self.fail_times}"
            )
            return made
        return exc(attempt)

    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]:
        if inspect.iscoroutinefunction(fn):
            afn = cast(Callable[P, Awaitable[Any]], fn)

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                failure = self._next_failure()
                if failure is not None:
                    raise failure
                return await afn(*args, **kwargs)

            return cast(Callable[P, T], async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            failure = self._next_failure()
            if failure is not None:
                raise failure
            return fn(*args, **kwargs)

        return wrapper


def flaky(
    fail_times: int,
    exc: BaseException
    | type[BaseException]
    | Callable[[int], BaseException] = ConnectionResetError,
) -> Flaky:
    """Make a decorator whose function raises ``exc`` on its first ``fail_times`` calls.

    Args:
        fail_times: How many calls fail before calls go through.
        exc: An exception instance (raised as is), a class (instantiated with a
            message per call) or a factory taking the 1-based call number.

    Example::

        injector = flaky(2, ConnectionResetError)

        @injector
        def fetch() -> str:
            return "ok"
    """
    return Flaky(fail_times, exc)
