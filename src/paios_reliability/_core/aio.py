"""Which event loop is running, and the few operations that depend on it.

Async policies run under asyncio (directly, or through anyio) and under trio
(through anyio, the ``trio`` extra). asyncio keeps its own fast paths; only
when no asyncio loop runs in this thread do we look further. Anything else
(curio, a coroutine driven by hand, trio without anyio) gets
:class:`UnsupportedEventLoopError` on the first call: a policy must never
misbehave quietly, e.g. by treating "no running event loop" as a transient
failure to retry and then to hide behind a fallback.

Nothing here imports asyncio, anyio or trio at module import time: the check
reads ``sys.modules`` first, so a program that never started a loop pays
nothing.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from .exceptions import UnsupportedEventLoopError

if TYPE_CHECKING:
    from types import ModuleType

__all__ = [
    "ASYNCIO",
    "TRIO",
    "checkpoint",
    "library",
    "require_asyncio",
    "running_asyncio_loop",
    "sleep",
]

ASYNCIO = "asyncio"
TRIO = "trio"

_EXTRA_HINT = "install paios-reliability[trio] (it brings anyio)"


def running_asyncio_loop() -> Any:
    """The asyncio loop running in this thread, or ``None`` (cheap)."""
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return None
    return asyncio._get_running_loop()


def _sniffed() -> str:
    """Best effort name of a non-asyncio async library, for the error text."""
    trio = sys.modules.get("trio")
    if trio is not None:
        try:
            if trio.lowlevel.in_trio_task():
                return TRIO
        except AttributeError:  # pragma: no cover - trio older than 0.23
            pass
    sniffio = sys.modules.get("sniffio")
    if sniffio is not None:
        try:
            name: str = sniffio.current_async_library()
        except Exception:  # noqa: BLE001 - AsyncLibraryNotFoundError and friends
            return "none"
        return name
    return "none"


def _anyio(library: str) -> ModuleType:
    try:
        import anyio
    except ImportError:
        raise UnsupportedEventLoopError(
            f"paios_reliability needs anyio to run under {library}: {_EXTRA_HINT}",
            library=library,
        ) from None
    return anyio


def library(what: str = "an async policy") -> str:
    """``"asyncio"`` or ``"trio"``: the async library running this task.

    Raises:
        UnsupportedEventLoopError: No supported loop runs this code (trio
            without anyio, curio, a coroutine stepped by hand).
    """
    if running_asyncio_loop() is not None:
        return ASYNCIO
    found = _sniffed()
    if found == TRIO:
        _anyio(found)
        return TRIO
    if found == "none":
        raise UnsupportedEventLoopError(
            f"{what} was awaited outside any event loop paios_reliability "
            "knows (asyncio, or trio through anyio)",
            library=found,
        )
    raise UnsupportedEventLoopError(
        f"{what} cannot run under {found}: only asyncio and trio (through "
        "anyio) are supported",
        library=found,
    )


def require_asyncio(what: str, *, discard: object = None) -> None:
    """Raise a clear error unless an asyncio loop runs this code.

    For the parts not yet ported to anyio (store-backed primitives): their
    first async call under trio fails with this instead of an obscure
    ``RuntimeError: no running event loop``. ``discard``: a coroutine the
    caller will now never await, closed so Python does not warn about it.
    """
    if running_asyncio_loop() is None:
        close = getattr(discard, "close", None)
        if callable(close):
            close()
        found = _sniffed()
        raise UnsupportedEventLoopError(
            f"{what} supports only asyncio for now, but runs under {found}",
            library=found,
        )


async def sleep(seconds: float) -> None:
    """Sleep without blocking the loop, whichever supported loop runs."""
    seconds = max(0.0, seconds)
    if running_asyncio_loop() is not None:
        import asyncio

        await asyncio.sleep(seconds)
        return
    await _anyio(library("a sleep")).sleep(seconds)


async def checkpoint() -> None:
    """One scheduling point (a skipped sleep still lets other tasks run)."""
    if running_asyncio_loop() is not None:
        import asyncio

        await asyncio.sleep(0)
        return
    await _anyio(library("a checkpoint")).lowlevel.checkpoint()
