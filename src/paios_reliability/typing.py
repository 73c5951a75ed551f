"""Public protocols: the seams users implement or substitute.

Nothing here imports a third-party package, so annotating against these types
is free at run time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ._events import Event
    from ._taxonomy import Failure

__all__ = ["Classifier", "Clock", "EventHook"]


@runtime_checkable
class Clock(Protocol):
    """A source of time and a way to wait.

    ``monotonic()`` measures durations and deadlines; ``time()`` is the wall
    clock (seconds since the epoch) for timestamps. Both sleeps must accept 0
    and return promptly for it.
    """

    def monotonic(self) -> float: ...

    def time(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...

    async def asleep(self, seconds: float) -> None: ...


class EventHook(Protocol):
    """Receives every event a primitive emits.

    A hook must be fast and thread-safe; it is called on the thread (or task)
    that caused the event. An exception raised by a hook is logged and
    swallowed: a hook can never break the call that emitted the event.
    """

    def __call__(self, event: Event, /) -> None: ...


class Classifier(Protocol):
    """Decides whether an exception is transient or permanent."""

    def __call__(self, exc: BaseException, /) -> Failure: ...
