"""Process-wide switches: on/off and testing mode.

Every setter returns a :class:`Restorer` that puts back the value it replaced,
so switches nest (``with set_testing(True): with set_testing(False): ...``)
and a test can never leak its setting into the next one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["Restorer", "is_active", "is_testing", "set_active", "set_testing"]


class _Switches:
    """One immutable snapshot of the switches (swapped whole, never changed)."""

    __slots__ = ("active", "testing", "testing_attempts")

    def __init__(
        self,
        *,
        active: bool = True,
        testing: bool = False,
        testing_attempts: int | None = None,
    ) -> None:
        self.active = active
        self.testing = testing
        self.testing_attempts = testing_attempts

    def but(self, **changes: bool | int | None) -> _Switches:
        """A copy with ``changes`` applied."""
        values = {name: getattr(self, name) for name in self.__slots__}
        return _Switches(**{**values, **changes})


_lock = threading.Lock()
_state = _Switches()


class Restorer:
    """Undoes one change of global state, once.

    Call it, or use it as a context manager. Calling it twice is harmless.
    """

    __slots__ = ("_done", "_undo")

    def __init__(self, undo: Callable[[], None]) -> None:
        self._undo = undo
        self._done = False

    def __call__(self) -> None:
        if not self._done:
            self._done = True
            self._undo()

    def __enter__(self) -> Restorer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self()


def swap_global(
    namespace: dict[str, object], name: str, new: object, lock: threading.Lock
) -> Restorer:
    """Set a module global under ``lock``; the :class:`Restorer` puts the old value back.

    ``namespace`` is the module's ``globals()``, ``name`` the global's name.
    """
    with lock:
        old, namespace[name] = namespace[name], new

    def undo() -> None:
        with lock:
            namespace[name] = old

    return Restorer(undo)


def _swap(new: _Switches) -> Restorer:
    return swap_global(globals(), "_state", new, _lock)


def snapshot() -> Restorer:
    """Return a restorer that brings back the current switches (test isolation)."""
    current = _state

    def undo() -> None:
        global _state  # noqa: PLW0603
        with _lock:
            _state = current

    return Restorer(undo)


def set_active(active: bool) -> Restorer:
    """Turn the call policies (retries, breakers, limiters) on or off globally.

    With ``False``, decorated functions are called once, straight through:
    useful to take the library out of the picture when debugging.

    Returns:
        A :class:`Restorer` that brings back the previous value.
    """
    return _swap(_state.but(active=bool(active)))


def is_active() -> bool:
    """Whether the call policies are switched on."""
    return _state.active


def set_testing(testing: bool = True, *, attempts: int | None = None) -> Restorer:
    """Switch testing mode on or off.

    In testing mode no primitive ever really waits: backoff sleeps, rate-limit
    waits and polling intervals are skipped. With ``attempts``, retries are
    also capped at that many attempts.

    Args:
        testing: Whether testing mode is on.
        attempts: Optional cap on retry attempts while testing (>= 1).

    Returns:
        A :class:`Restorer` that brings back the previous value; restorers nest.

    Raises:
        ValueError: If ``attempts`` is less than 1.
    """
    if attempts is not None and attempts < 1:
        raise ValueError(f"set_testing(attempts=...) must be >= 1, got {attempts!r}")
    return _swap(_state.but(testing=bool(testing), testing_attempts=attempts))


def is_testing() -> bool:
    """Whether testing mode is on."""
    return _state.testing


def testing_attempts() -> int | None:
    """The retry-attempt cap of testing mode, if any."""
    return _state.testing_attempts if _state.testing else None
