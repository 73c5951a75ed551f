"""Timers, threads and asyncio tasks that are started and never end.

:class:`ResourceTracker` remembers where each tracked resource was created and
reports the ones still alive (on demand, or at exit), so a leak names its
line of code. Memory growth is :class:`~.leaks.LeakMonitor`'s concern.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from .._core.events import emit

if TYPE_CHECKING:
    import asyncio


__all__ = ["ResourceTracker", "TrackedResource"]

T = TypeVar("T")


# -- ResourceTracker ---------------------------------------------------------------

ResourceKind = Literal["thread", "timer", "task"]


@dataclass(frozen=True, slots=True)
class TrackedResource:
    """A timer, thread or task that was still alive when it was checked.

    Attributes:
        kind: ``thread``, ``timer`` or ``task``.
        name: Its name.
        created_at: Where it was created or started (innermost call last).
        age: Seconds since then.
    """

    kind: ResourceKind
    name: str
    created_at: str
    age: float
    extra: Mapping[str, object] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.kind} {self.name!r} alive for {self.age:.1f}s, created at:\n{self.created_at}"


def _creation_site(skip: int) -> str:
    frames = traceback.extract_stack()[: -(skip + 1)]
    here = os.path.dirname(__file__)
    useful = [
        f
        for f in frames
        if not f.filename.startswith(here)
        and "threading.py" not in f.filename
        and "asyncio" not in f.filename
    ]
    return "".join(traceback.format_list(useful[-4:])).rstrip() or "<unknown>"


class ResourceTracker:
    """Report timers, threads and asyncio tasks that outlive their owner.

    Create them through the tracker (:meth:`timer`, :meth:`thread`,
    :meth:`task`), register existing ones (:meth:`track`), or track everything
    started inside a block (:meth:`patch`). :meth:`close` (or leaving
    ``with``) reports what is still alive, with where it was created, as
    ``resource_tracker.leaked`` warning events, and returns it.

    Args:
        name: Subject of the events.
        report_at_exit: Also report leftovers when the interpreter exits (before
            it waits for non-daemon threads, which is exactly when a
            forgotten timer or thread would hang it).

    Objects are held weakly: tracking never keeps anything alive.
    """

    def __init__(
        self, name: str = "resources", *, report_at_exit: bool = False
    ) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._items: dict[int, tuple[weakref.ref[Any], ResourceKind, str, float]] = {}
        self._closed = False
        if report_at_exit:
            register = getattr(threading, "_register_atexit", None)
            try:
                if register is None:
                    raise RuntimeError
                register(self._report_at_exit)
            except RuntimeError:
                atexit.register(self._report_at_exit)

    # -- registering -----------------------------------------------------------

    def track(self, obj: T, *, kind: ResourceKind | None = None, _skip: int = 0) -> T:
        """Track ``obj`` (a ``threading.Thread``/``Timer`` or ``asyncio.Task``); returns it."""
        if kind is None:
            if isinstance(obj, threading.Timer):
                kind = "timer"
            elif isinstance(obj, threading.Thread):
                kind = "thread"
            else:
                kind = "task"
        site = _creation_site(_skip + 1)
        with self._lock:
            self._items[id(obj)] = (weakref.ref(obj), kind, site, time.monotonic())
        return obj

    def timer(
        self,
        interval: float,
        function: Callable[..., object],
        *args: Any,
        **kwargs: Any,
    ) -> threading.Timer:
        """A tracked ``threading.Timer`` (not started yet)."""
        return self.track(
            threading.Timer(interval, function, args, kwargs), kind="timer", _skip=1
        )

    def thread(
        self,
        target: Callable[..., object],
        *args: Any,
        name: str | None = None,
        daemon: bool | None = None,
        **kwargs: Any,
    ) -> threading.Thread:
        """A tracked ``threading.Thread`` (not started yet)."""
        return self.track(
            threading.Thread(
                target=target, args=args, kwargs=kwargs, name=name, daemon=daemon
            ),
            kind="thread",
            _skip=1,
        )

    def task(
        self, coro: Coroutine[Any, Any, T], *, name: str | None = None
    ) -> asyncio.Task[T]:
        """A tracked ``asyncio`` task on the running loop."""
        import asyncio

        return self.track(
            asyncio.get_running_loop().create_task(coro, name=name),
            kind="task",
            _skip=1,
        )

    @contextlib.contextmanager
    def patch(self) -> Iterator[ResourceTracker]:
        """Track every thread (and timer) started, and every task created on the
        running loop, inside the block.

        Threads are caught by wrapping ``threading.Thread.start`` for the
        duration (process-wide: other threads' starts are tracked too); tasks
        by a task factory on the running loop, if any. Both are restored after.
        """
        tracker = self
        original_start = threading.Thread.start

        def start(thread: threading.Thread) -> None:
            tracker.track(thread, _skip=1)
            original_start(thread)

        threading.Thread.start = start  # type: ignore[method-assign,assignment]
        aio = sys.modules.get("asyncio")
        loop = None
        previous_factory = None
        if aio is not None:
            with contextlib.suppress(RuntimeError):
                loop = aio.get_running_loop()
        if loop is not None:
            previous_factory = loop.get_task_factory()

            def factory(the_loop: Any, coro: Any, **kwargs: Any) -> Any:
                if previous_factory is not None:
                    made = previous_factory(the_loop, coro, **kwargs)
                else:
                    made = aio.Task(coro, loop=the_loop, **kwargs)  # type: ignore[union-attr]
                tracker.track(made, kind="task", _skip=1)
                return made

            loop.set_task_factory(factory)
        try:
            yield self
        finally:
            threading.Thread.start = original_start  # type: ignore[method-assign]
            if loop is not None:
                loop.set_task_factory(previous_factory)

    # -- reporting -------------------------------------------------------------

    def alive(self) -> list[TrackedResource]:
        """Tracked resources that are still alive (pending timers, running
        threads, unfinished tasks), oldest first."""
        now = time.monotonic()
        out: list[tuple[float, TrackedResource]] = []
        with self._lock:
            items = list(self._items.items())
        for key, (ref, kind, site, created) in items:
            obj = ref()
            if obj is None or not _is_alive(obj, kind):
                with self._lock:
                    self._items.pop(key, None)
                continue
            name = obj.get_name() if kind == "task" else obj.name
            out.append((created, TrackedResource(kind, str(name), site, now - created)))
        out.sort(key=lambda pair: pair[0])
        return [resource for _, resource in out]

    def close(self, *, cancel: bool = False) -> list[TrackedResource]:
        """Report (and return) what is still alive; later calls report nothing.

        Args:
            cancel: Also cancel leftover timers and tasks (threads cannot be
                stopped from outside; they are only reported).
        """
        if self._closed:
            return []
        leftovers = self.alive()
        for resource in leftovers:
            emit(
                "resource_tracker",
                "leaked",
                level="warning",
                subject=self.name,
                kind=resource.kind,
                name=resource.name,
                age=round(resource.age, 3),
                created_at=resource.created_at,
            )
        if cancel:
            with self._lock:
                refs = [(ref(), kind) for ref, kind, _, _ in self._items.values()]
            for obj, kind in refs:
                if obj is not None and kind in ("timer", "task"):
                    with contextlib.suppress(Exception):
                        obj.cancel()
        self._closed = True
        return leftovers

    def _report_at_exit(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def __enter__(self) -> ResourceTracker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> ResourceTracker:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ResourceTracker({self.name!r}, {len(self._items)} tracked)"


def _is_alive(obj: Any, kind: ResourceKind) -> bool:
    if kind == "task":
        return not obj.done()
    return bool(obj.is_alive())  # a thread or timer never started is not alive
