"""Retry budgets: retries allowed only while they stay a share of recent calls.

A retry policy bounds the attempts of *one* call. When a downstream dies,
every caller retries at once and the load multiplies by the attempt count (a
retry storm). A :class:`RetryBudget` bounds retries across *all* callers that
share it (threads, tasks, and on a shared store every process): a retry is
allowed only while the retries of the last ``window`` seconds stay under
``ratio`` of the calls of that window, plus a floor of ``min_per_second``
retries per second so that a quiet service can still retry.

The state is a sliding window of ten buckets kept in one store key, changed
by one pure function inside ``update`` (so memory, SQLite and Redis behave
alike). Calls are counted in the caller's process and reach the store in
batches, once per bucket while calls flow and with every retry decision: the
success path touches no shared store, and a retry decision always sees its
own process's calls exactly.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._core.clock import get_clock
from .._core.events import emit
from .._stores import (
    StoreUnavailableError,
    check_name,
    check_number,
    now_ns,
    resolve_store,
    seconds_to_ns,
    ttl_seconds,
)

if TYPE_CHECKING:
    from ..typing import Clock, StateStore

__all__ = ["BudgetDecision", "RetryBudget", "RetryBudgetState", "budget_step"]

# The window is kept as this many buckets: a call leaves the window at most
# one bucket (window / 10) late.
BUCKETS = 10
# Float slack in "retries <= ratio * calls + floor": 0.1 * 3 must admit 0.3.
_EPSILON = 1e-9

# One bucket: [bucket number, calls, retries].
Bucket = list[int]
# What a withdrawal answers: (allowed, calls in the window, retries in the window).
BudgetDecision = tuple[bool, int, int]


def budget_step(
    state: Any,
    *,
    now: int,
    buckets: int,
    deposit_bucket: int,
    deposits: int,
    withdraw: bool,
    ratio: float,
    floor: float,
) -> tuple[list[Bucket] | None, BudgetDecision]:
    """One atomic change of a budget's window (runs inside ``store.update``).

    Args:
        state: The stored buckets (``[[bucket, calls, retries], ...]``), or
            ``None`` for a fresh budget.
        now: The current bucket number.
        buckets: How many buckets the window holds.
        deposit_bucket: The bucket the ``deposits`` calls were made in.
        deposits: Calls to add (counted by the caller since its last flush).
        withdraw: Whether a retry is asked for.
        ratio: Retries allowed per call in the window.
        floor: Retries allowed in the window whatever the calls.

    Returns:
        The new buckets (``None`` when empty) and ``(allowed, calls,
        retries)``: the window's totals before the retry was taken.
    """
    oldest = now - buckets + 1
    kept: list[Bucket] = []
    if isinstance(state, list):
        kept.extend(
            [entry[0], entry[1], entry[2]]
            for entry in state
            if isinstance(entry, list)
            and len(entry) == 3
            and all(isinstance(x, int) for x in entry)
            and oldest <= entry[0] <= now
        )
    by_number = {entry[0]: entry for entry in kept}

    def bucket(number: int) -> Bucket:
        found = by_number.get(number)
        if found is None:
            found = by_number[number] = [number, 0, 0]
            kept.append(found)
        return found

    if deposits > 0 and oldest <= deposit_bucket <= now:
        bucket(deposit_bucket)[1] += deposits
    calls = sum(entry[1] for entry in kept)
    retries = sum(entry[2] for entry in kept)
    allowed = False
    if withdraw:
        allowed = retries + 1 <= ratio * calls + floor + _EPSILON
        if allowed:
            bucket(now)[2] += 1
    kept = [entry for entry in kept if entry[1] or entry[2]]
    kept.sort()
    return (kept or None), (allowed, calls, retries)


@dataclass(frozen=True, slots=True)
class RetryBudgetState:
    """What a budget's window holds now (:meth:`RetryBudget.snapshot`).

    Attributes:
        calls: Calls counted in the window (this process's unflushed ones included).
        retries: Retries taken in the window.
        available: Retries that would be allowed now (``>= 0``).
    """

    calls: int
    retries: int
    available: int


class RetryBudget:
    """Retries allowed only while they stay under ``ratio`` of recent calls.

    Give it to :func:`~paios_reliability.retry` (``retry(budget=...)``) or to
    :func:`~paios_reliability.resilient` (``retry_budget=...``). Every call of
    a decorated function counts once; every retry (attempt 2, 3, ...) takes
    one from the budget before its wait. A retry is allowed while::

        retries_in_window + 1 <= ratio * calls_in_window + min_per_second * window

    When it is not, retrying ends at once: the caller gets the last error with
    a note saying the budget is exhausted (reason ``budget_exhausted`` in the
    ``retry.gave_up`` event), and ``retry_budget.exhausted`` is emitted. With a
    dead downstream, load stays near ``1 + ratio`` times the call rate instead
    of ``attempts`` times.

    Budgets of the same ``name`` on one shared store (SQLite, Redis) are one
    budget for every process. Calls are counted in the process and written to
    the store once per bucket (``window / 10`` seconds) while calls flow and
    with every retry decision, so the healthy path does no store I/O at all;
    another process sees a call at most one bucket late. Thread-safe and
    usable from any number of tasks.

    A store that cannot be reached never fails the call: the counted calls of
    that flush are dropped (the budget only gets stricter), a retry is refused
    (or allowed with ``fail_open=True``), and ``retry_budget.store_unavailable``
    is emitted.

    Args:
        name: Identifies the budget in events, notes and the store.
        ratio: Retries allowed per call in the window (>= 0; 0.2 = 20%).
        min_per_second: Retries per second allowed whatever the call rate, so
            that a service with few calls can still retry (>= 0).
        window: The sliding window in seconds (> 0).
        store: Where the window lives (default: private memory).
        fail_open: Allow retries when the store is unreachable.
        clock: Time source (default: the process clock at call time).

    Raises:
        ValueError: On an empty name or a number out of range.
    """

    __slots__ = (
        "_bucket_ns",
        "_clock",
        "_floor",
        "_key",
        "_lock",
        "_pending",
        "_pending_bucket",
        "_store",
        "_ttl",
        "fail_open",
        "min_per_second",
        "name",
        "ratio",
        "window",
    )

    def __init__(
        self,
        name: str,
        *,
        ratio: float = 0.2,
        min_per_second: float = 10,
        window: float = 10.0,
        store: StateStore | None = None,
        fail_open: bool = False,
        clock: Clock | None = None,
    ) -> None:
        owner = "RetryBudget"
        self.name = check_name(owner, name)
        self.ratio = check_number(owner, "ratio", ratio, zero=True)
        self.min_per_second = check_number(
            owner, "min_per_second", min_per_second, zero=True
        )
        self.window = check_number(owner, "window", window)
        if not isinstance(fail_open, bool):
            raise TypeError(
                f"RetryBudget(fail_open=...) must be a bool, got {fail_open!r}"
            )
        self.fail_open = fail_open
        self._floor = self.min_per_second * self.window
        self._bucket_ns = max(1, seconds_to_ns(self.window) // BUCKETS)
        self._store = resolve_store(store)
        self._clock = clock
        self._key = f"retry_budget:{name}"
        self._ttl = ttl_seconds(self.window)
        self._lock = threading.Lock()
        self._pending = 0
        self._pending_bucket = 0

    @property
    def store(self) -> StateStore:
        return self._store

    def __repr__(self) -> str:
        return (
            f"RetryBudget({self.name!r}, ratio={self.ratio!r}, "
            f"min_per_second={self.min_per_second!r}, window={self.window!r})"
        )

    # -- counting calls -----------------------------------------------------------

    def _now(self) -> int:
        return now_ns(get_clock(self._clock), self._store.shared) // self._bucket_ns

    def _count_call(self) -> tuple[int, int] | None:
        """Count one call; returns the batch to flush when its bucket is over."""
        now = self._now()
        with self._lock:
            if now == self._pending_bucket:
                self._pending += 1
                return None
            due = (self._pending_bucket, self._pending)
            self._pending_bucket, self._pending = now, 1
        return due if due[1] else None

    def _take_pending(self) -> tuple[int, int, int]:
        now = self._now()
        with self._lock:
            due = (self._pending_bucket, self._pending)
            self._pending_bucket, self._pending = now, 0
        return now, due[0], due[1]

    def _step(self, now: int, bucket: int, deposits: int, withdraw: bool) -> Any:
        ratio, floor = self.ratio, self._floor

        def step(state: Any) -> tuple[list[Bucket] | None, BudgetDecision]:
            return budget_step(
                state,
                now=now,
                buckets=BUCKETS,
                deposit_bucket=bucket,
                deposits=deposits,
                withdraw=withdraw,
                ratio=ratio,
                floor=floor,
            )

        return step

    def deposit(self) -> None:
        """Count one call (a decorated function does it on every call).

        Never raises because of the store.
        """
        due = self._count_call()
        if due is not None:
            self._flush(due)

    async def adeposit(self) -> None:
        """:meth:`deposit` without blocking the event loop."""
        due = self._count_call()
        if due is not None:
            await self._aflush(due)

    def _flush(self, due: tuple[int, int], now: int | None = None) -> None:
        now = self._now() if now is None else now
        step = self._step(now, due[0], due[1], False)
        try:
            self._store.update(self._key, step, ttl=self._ttl)
        except StoreUnavailableError as exc:
            self._store_down(exc)

    async def _aflush(self, due: tuple[int, int], now: int | None = None) -> None:
        now = self._now() if now is None else now
        step = self._step(now, due[0], due[1], False)
        try:
            await self._store.aupdate(self._key, step, ttl=self._ttl)
        except StoreUnavailableError as exc:
            self._store_down(exc)

    def flush(self) -> None:
        """Write the calls this process counted to the store now.

        Calls otherwise reach the store once per bucket or with the next
        retry decision; call this before a process exits, or when another
        process must see them at once. Never raises because of the store.
        """
        now, bucket, deposits = self._take_pending()
        if deposits:
            self._flush((bucket, deposits), now)

    async def aflush(self) -> None:
        """:meth:`flush` without blocking the event loop."""
        now, bucket, deposits = self._take_pending()
        if deposits:
            await self._aflush((bucket, deposits), now)

    # -- taking retries -----------------------------------------------------------

    def withdraw(self) -> BudgetDecision:
        """Ask for one retry: ``(allowed, calls, retries)`` of the window.

        Atomic against every other caller of the budget (one store update,
        which also writes this process's counted calls). An allowed retry is
        counted at once; a refused one emits ``retry_budget.exhausted``.
        """
        now, bucket, deposits = self._take_pending()
        try:
            decision: BudgetDecision = self._store.update(
                self._key, self._step(now, bucket, deposits, True), ttl=self._ttl
            )
        except StoreUnavailableError as exc:
            return self._store_down(exc)
        return self._decided(decision)

    async def awithdraw(self) -> BudgetDecision:
        """:meth:`withdraw` without blocking the event loop."""
        now, bucket, deposits = self._take_pending()
        try:
            decision: BudgetDecision = await self._store.aupdate(
                self._key, self._step(now, bucket, deposits, True), ttl=self._ttl
            )
        except StoreUnavailableError as exc:
            return self._store_down(exc)
        return self._decided(decision)

    def try_withdraw(self) -> bool:
        """Take one retry if the budget allows it; ``True`` when taken."""
        return self.withdraw()[0]

    async def atry_withdraw(self) -> bool:
        """:meth:`try_withdraw` without blocking the event loop."""
        return (await self.awithdraw())[0]

    def _decided(self, decision: BudgetDecision) -> BudgetDecision:
        allowed, calls, retries = decision
        if not allowed:
            emit(
                "retry_budget",
                "exhausted",
                level="warning",
                subject=self.name,
                calls=calls,
                retries=retries,
                ratio=self.ratio,
                window=self.window,
            )
        return decision

    def _store_down(self, exc: StoreUnavailableError) -> BudgetDecision:
        emit(
            "retry_budget",
            "store_unavailable",
            level="error",
            subject=self.name,
            exc=exc,
            fail_open=self.fail_open,
        )
        return (self.fail_open, 0, 0)

    def explain(self, decision: BudgetDecision) -> str:
        """Why a retry was refused, in words (for the note on the error)."""
        _, calls, retries = decision
        if calls == 0 and retries == 0 and not self.fail_open:
            return f"{self.name}: no retry allowed (window empty or store unavailable)"
        return (
            f"{self.name}: {retries} retries against {calls} calls in the last "
            f"{self.window:g}s (ratio={self.ratio:g}, "
            f"min_per_second={self.min_per_second:g})"
        )

    # -- reading ------------------------------------------------------------------

    def snapshot(self) -> RetryBudgetState:
        """The window now, without changing it (this process's counted calls included).

        Raises:
            StoreUnavailableError: When the store cannot be read.
        """
        return self._state(self._store.get(self._key))

    async def asnapshot(self) -> RetryBudgetState:
        """:meth:`snapshot` without blocking the event loop."""
        return self._state(await self._store.aget(self._key))

    def _state(self, stored: Any) -> RetryBudgetState:
        now = self._now()
        with self._lock:
            bucket, pending = self._pending_bucket, self._pending
        _, (_, calls, retries) = budget_step(
            stored,
            now=now,
            buckets=BUCKETS,
            deposit_bucket=bucket,
            deposits=pending,
            withdraw=False,
            ratio=self.ratio,
            floor=self._floor,
        )
        room = self.ratio * calls + self._floor - retries + _EPSILON
        return RetryBudgetState(calls, retries, max(0, int(room)))
