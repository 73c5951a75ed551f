"""The worker threads behind a sync ``timeout``: reused, bounded, accounted for.

Python cannot stop a running thread, so a sync call bounded by ``timeout``
runs on a worker thread and the caller stops waiting when the budget runs
out. This module keeps that cheap and honest:

- Workers are reused. An idle worker waits on a lock for its next job; a
  call hands it the job and waits on the job's own lock. That is two thread
  switches per call instead of starting a thread (about 50x cheaper). At most
  :data:`MAX_IDLE` workers wait idle; one that stays idle for
  :data:`IDLE_SECONDS` ends.
- A job whose caller gave up is *abandoned*, not forgotten: it still counts
  as running until it really ends. Its :class:`Worker` handle (``done()``,
  ``wait()``, ``add_done_callback()``) travels on the ``TimeoutExceeded``, so
  a bulkhead keeps the slot and retry holds back the next attempt until the
  work has ended. At most :func:`max_abandoned` (default
  :data:`DEFAULT_MAX_ABANDONED`) abandoned jobs may run at once in a process;
  past that a new call is refused with :class:`BulkheadFullError` before it
  starts, instead of piling up threads without end.
- Work whose budget is already spent is never started.

Events: ``timeout.abandoned`` (warning) when a caller gives up on a job,
``timeout.abandoned_finished`` (info) when that job finally ends; both carry
``running``, from which the metrics layer keeps the gauge
``paios_reliability_timeout_abandoned_workers`` (policies never import it).
"""

from __future__ import annotations

import _thread
import contextvars
import threading
from collections.abc import Callable
from typing import Any, TypeVar, cast

from .._core.exceptions import BulkheadFullError, TimeoutExceeded
from .._core.settings import Restorer

__all__ = [
    "DEFAULT_MAX_ABANDONED",
    "IDLE_SECONDS",
    "MAX_IDLE",
    "Worker",
    "abandoned_count",
    "max_abandoned",
    "run_bounded",
    "set_max_abandoned",
]

T = TypeVar("T")

DEFAULT_MAX_ABANDONED = 32
MAX_IDLE = 8
IDLE_SECONDS = 30.0


class Worker:
    """One job on a worker thread, as the caller and outer layers see it.

    ``done()`` tells whether the work has ended; ``wait(seconds)`` blocks
    until it does (``True``) or the time is up (``False``);
    ``add_done_callback(fn)`` calls ``fn()`` when it ends (at once, on the
    calling thread, if it already has; otherwise on the worker thread).
    Pickles as a finished handle: the thread does not cross processes.
    """

    __slots__ = (
        "_abandoned",
        "_args",
        "_callbacks",
        "_ctx",
        "_done",
        "_finished",
        "_fn",
        "_kwargs",
        "_state",
        "error",
        "name",
        "value",
    )

    def __init__(
        self,
        name: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        ctx: contextvars.Context,
    ) -> None:
        self.name = name
        self._fn: Callable[..., Any] | None = fn
        self._args = args
        self._kwargs = kwargs
        self._ctx = ctx
        self._done = _thread.allocate_lock()
        self._done.acquire()
        self._state = _thread.allocate_lock()
        self._finished = False
        self._abandoned = False
        self._callbacks: list[Callable[[], object]] = []
        self.value: Any = None
        self.error: BaseException | None = None

    def __repr__(self) -> str:
        state = "done" if self._finished else "running"
        if self._abandoned:
            state += ", abandoned"
        return f"<Worker {self.name} {state}>"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_finished_worker, (self.name,))

    def done(self) -> bool:
        """Whether the work has ended (returned or raised)."""
        return self._finished

    def wait(self, seconds: float | None = None) -> bool:
        """Block until the work ends or ``seconds`` pass; True if it ended."""
        if self._finished:
            return True
        got = (
            self._done.acquire()
            if seconds is None
            else self._done.acquire(timeout=max(0.0, seconds))
        )
        if got:
            self._done.release()  # let every other waiter through as well
        return got or self._finished

    def add_done_callback(self, fn: Callable[[], object]) -> None:
        """Call ``fn()`` once the work has ended; exceptions are logged."""
        with self._state:
            if not self._finished:
                self._callbacks.append(fn)
                return
        _call_quietly(fn)

    # -- on the worker thread ---------------------------------------------------

    def _run(self) -> None:
        fn, self._fn = self._fn, None
        assert fn is not None
        try:
            self.value = self._ctx.run(fn, *self._args, **self._kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller as is
            self.error = exc
        self._args, self._kwargs = (), {}
        with self._state:
            self._finished = True
            abandoned = self._abandoned
            callbacks, self._callbacks = self._callbacks, []
        self._done.release()
        if abandoned:
            # Nobody will read the outcome: drop it (and the frames it holds).
            self.value = self.error = None
            _POOL.abandoned_ended(self)
        for callback in callbacks:
            _call_quietly(callback)

    # -- on the calling thread ----------------------------------------------------

    def _abandon(self) -> bool:
        """Mark abandoned unless it finished meanwhile; True if abandoned."""
        with self._state:
            if self._finished:
                return False
            self._abandoned = True
            return True


def _finished_worker(name: str) -> Worker:
    worker = Worker(name, lambda: None, (), {}, contextvars.Context())
    worker._fn = None
    worker._finished = True
    worker._done.release()
    return worker


def _call_quietly(fn: Callable[[], object]) -> None:
    try:
        fn()
    except Exception:  # a callback must not kill a worker thread
        import logging

        logging.getLogger("paios_reliability.timeout").exception(
            "done callback %r of an abandoned worker failed", fn
        )


class _Thread:
    """A reusable daemon worker: waits for a job, runs it, goes back idle."""

    __slots__ = ("go", "job", "thread")

    def __init__(self) -> None:
        self.go = _thread.allocate_lock()
        self.go.acquire()
        self.job: Worker | None = None
        self.thread = threading.Thread(
            target=self._loop, name="paios-timeout:idle", daemon=True
        )

    def _loop(self) -> None:
        current = threading.current_thread()
        while True:
            if not self.go.acquire(timeout=IDLE_SECONDS):
                if _POOL.retire(self):
                    return
                # A caller claimed us just as we timed out: its go comes now.
                self.go.acquire()
            job, self.job = self.job, None
            assert job is not None
            current.name = f"paios-timeout:{job.name}"
            job._run()
            current.name = "paios-timeout:idle"
            if not _POOL.give_back(self):
                return


class _Pool:
    __slots__ = ("abandoned", "idle", "limit", "lock")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.idle: list[_Thread] = []
        self.abandoned = 0
        self.limit = DEFAULT_MAX_ABANDONED

    def start(self, job: Worker) -> None:
        with self.lock:
            if self.abandoned >= self.limit:
                running = self.abandoned
            else:
                running = -1
                worker = self.idle.pop() if self.idle else None
        if running >= 0:
            from .._core.events import emit

            emit("timeout", "refused", level="error", subject=job.name, running=running)
            raise BulkheadFullError(
                f"{job.name}() was not started: {running} timed-out calls "
                f"are still running in abandoned worker threads (the limit is "
                f"{self.limit}); the work they do is stuck or far slower than "
                "its timeout",
                context={"function": job.name, "abandoned": running},
            )
        if worker is None:
            worker = _Thread()
            worker.job = job
            worker.go.release()
            worker.thread.start()
            return
        worker.job = job
        worker.go.release()

    def give_back(self, worker: _Thread) -> bool:
        with self.lock:
            if len(self.idle) >= MAX_IDLE:
                return False
            self.idle.append(worker)
            return True

    def retire(self, worker: _Thread) -> bool:
        """An idle worker timed out: leave, unless a caller just claimed it."""
        with self.lock:
            if worker in self.idle:
                self.idle.remove(worker)
                return True
            return False

    def abandoned_started(self, job: Worker, seconds: float, budget: float) -> int:
        with self.lock:
            self.abandoned += 1
            running = self.abandoned
        from .._core.events import emit

        emit(
            "timeout",
            "abandoned",
            level="warning",
            subject=job.name,
            seconds=seconds,
            budget=budget,
            running=running,
        )
        return running

    def abandoned_ended(self, job: Worker) -> None:
        with self.lock:
            self.abandoned -= 1
            running = self.abandoned
        from .._core.events import emit

        emit("timeout", "abandoned_finished", subject=job.name, running=running)


_POOL = _Pool()


def abandoned_count() -> int:
    """How many abandoned (timed-out) sync calls are still running now."""
    return _POOL.abandoned


def max_abandoned() -> int:
    """The per-process limit of abandoned sync calls running at once."""
    return _POOL.limit


def set_max_abandoned(limit: int) -> Restorer:
    """Change the per-process limit of abandoned calls; returns a restorer."""
    given: object = limit
    if isinstance(given, bool) or not isinstance(given, int) or given < 1:
        raise ValueError(f"set_max_abandoned(limit) must be an int >= 1, got {limit!r}")
    with _POOL.lock:
        previous, _POOL.limit = _POOL.limit, limit

    def undo() -> None:
        with _POOL.lock:
            _POOL.limit = previous

    return Restorer(undo)


def run_bounded(
    fn: Callable[..., T],
    name: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    seconds: float,
    budget: float,
    ctx: contextvars.Context,
    describe: Callable[[], str],
) -> T:
    """Run ``fn`` on a worker thread and wait at most ``budget`` seconds.

    Args:
        fn: The sync function.
        name: Its name, for events and errors.
        args: Positional arguments.
        kwargs: Keyword arguments.
        seconds: The timeout as configured (for the error and events).
        budget: What is left of it (and of any enclosing deadline) now.
        ctx: The context the call runs in (deadline, trace ids).
        describe: Words for the budget in the error text.

    Raises:
        TimeoutExceeded: The budget ran out, or was spent before the start
            (then ``fn`` never ran and ``worker`` is ``None``); otherwise
            ``worker`` is the still-running :class:`Worker`.
        BulkheadFullError: Too many abandoned calls still run; ``fn`` never ran.
    """
    if budget <= 0.0:
        raise TimeoutExceeded(
            f"{name}() was not started: its time budget ({describe()}) was "
            "already spent",
            seconds=seconds,
            context={"function": name, "started": False},
        )
    job = Worker(name, fn, args, kwargs, ctx)
    _POOL.start(job)
    # A job that finished just as the budget ran out is not abandoned: its
    # outcome is still ours.
    if not job._done.acquire(timeout=budget) and job._abandon():
        running = _POOL.abandoned_started(job, seconds, budget)
        error = TimeoutExceeded(
            f"{name}() did not finish within {describe()}; it keeps running "
            f"in an abandoned worker thread ({running} running now)",
            seconds=seconds,
            context={"function": name, "started": True},
        )
        error.worker = job
        raise error
    failure = job.error
    if failure is not None:
        job.error = None  # break the frame <-> exception cycle
        raise failure
    return cast(T, job.value)
