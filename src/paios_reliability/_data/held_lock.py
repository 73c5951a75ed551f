"""Holding a lock that belongs to one thread across an ``async with`` block."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator, Callable

__all__ = ["_held_in_thread"]


@contextlib.asynccontextmanager
async def _held_in_thread(
    locked: Callable[[], contextlib.AbstractContextManager[None]],
) -> AsyncIterator[None]:
    """Hold ``locked()`` in one worker thread for the duration of the block.

    The thread and inter-process locks belong to the thread that took them,
    and asyncio's worker threads change between calls; so one thread takes
    the lock, waits for the block to end and lets the lock go itself.
    """
    import asyncio

    loop = asyncio.get_running_loop()
    acquired: asyncio.Future[None] = loop.create_future()
    release = threading.Event()

    def settle(error: BaseException | None) -> None:
        if acquired.done():
            return
        if error is None:
            acquired.set_result(None)
        else:
            acquired.set_exception(error)

    def hold() -> None:
        try:
            with locked():
                loop.call_soon_threadsafe(settle, None)
                release.wait()
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting task
            with contextlib.suppress(RuntimeError):  # the loop has closed
                loop.call_soon_threadsafe(settle, exc)

    holder = threading.Thread(target=hold, name="config-file-lock", daemon=True)
    holder.start()
    try:
        await acquired
        yield
    finally:
        release.set()
        await asyncio.to_thread(holder.join)
