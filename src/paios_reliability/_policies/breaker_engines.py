"""Where a breaker's state lives: a cell in memory, or a key on a shared store."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from .._core.clock import SYSTEM_CLOCK, get_clock
from .._stores import (
    NS,
    StoreUnavailableError,
    complete,
    now_ns,
    ttl_seconds,
)
from .breaker_state import (
    _BUCKETS,
    _INITIAL,
    _NO_TICKET,
    _PRIMITIVE,
    CLOSED,
    FAILURE,
    IGNORED,
    OPEN,
    SUCCESS,
    Ticket,
    Transition,
    _State,
    admit,
    record,
)

if TYPE_CHECKING:
    from ..typing import StateStore
    from .breaker import CircuitBreaker


__all__: list[str] = []

R = TypeVar("R")
_monotonic = time.monotonic


# -- engines: where the state lives -------------------------------------------------


class _Cell:
    """The state of one breaker name in a MemoryStore, with its lock.

    ``closed_ticket`` is the ticket for a call admitted while closed, or
    ``None`` when not closed: one atomic attribute read admits a call.
    """

    __slots__ = ("closed_ticket", "lock", "state")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.state = _INITIAL
        self.closed_ticket: Ticket | None = (0, 0)

    def set(self, s: _State) -> None:
        # Called with the lock held.
        self.state = s
        self.closed_ticket = (s.epoch, 0) if s.phase == CLOSED else None


class _LocalEngine:
    __slots__ = ("_cell", "_cfg", "_simple", "_slow_ns", "breaker")

    local = True  # no I/O: async callers may use the sync methods

    def __init__(self, breaker: CircuitBreaker, cell: _Cell) -> None:
        self.breaker = breaker
        self._cfg = breaker._cfg
        self._cell = cell
        self._slow_ns = breaker._slow_ns
        # A success needs the lock only to reset a failure count.
        self._simple = breaker._cfg.rate is None and breaker._slow_ns is None

    def _now(self) -> int:
        clock = get_clock(self.breaker._clock)
        if clock is SYSTEM_CLOCK:  # the common case, one call instead of three
            return int(_monotonic() * NS)
        return now_ns(clock, False)

    def enter(self) -> Ticket:
        cell = self._cell
        ticket = cell.closed_ticket
        if ticket is not None:
            return ticket
        now = self._now()
        s = cell.state
        if s.phase == OPEN and now < s.open_until:
            # Rejecting changes nothing: decide on the immutable snapshot,
            # without the lock (the fail-fast hot path).
            raise self.breaker._rejection(s.open_until - now, OPEN)
        with cell.lock:
            s, result, events = admit(self._cfg, cell.state, now)
            if s is not cell.state:
                cell.set(s)
        if events:
            self.breaker._emit(events)
        if isinstance(result, int):
            raise self.breaker._rejection(result, s.phase)
        return result

    def exit(self, ticket: Ticket, outcome: int, started: int) -> None:
        cell = self._cell
        if (
            outcome == SUCCESS
            and self._simple
            and ticket[1] == 0
            and cell.state.failures == 0
        ):
            return  # the hot path: nothing to reset, nothing to count
        if outcome == IGNORED and ticket[1] == 0:
            return
        now = self._now()
        if (
            outcome == SUCCESS
            and self._slow_ns is not None
            and now - started >= self._slow_ns
        ):
            outcome = FAILURE
        with cell.lock:
            s, events = record(self._cfg, cell.state, now, ticket, outcome)
            if s is not cell.state:
                cell.set(s)
        if events:
            self.breaker._emit(events)

    def started(self) -> int:
        return self._now() if self._slow_ns is not None else 0

    def apply(
        self, fn: Callable[[_State, int], tuple[_State, list[Transition]]]
    ) -> None:
        cell = self._cell
        now = self._now()
        with cell.lock:
            s, events = fn(cell.state, now)
            cell.set(s)
        self.breaker._emit(events)

    def snapshot(self) -> tuple[_State, int]:
        return self._cell.state, self._now()

    async def aenter(self) -> Ticket:
        return self.enter()

    async def aexit(self, ticket: Ticket, outcome: int, started: int) -> None:
        self.exit(ticket, outcome, started)


class _StoreEngine:
    """The breaker on a StateStore: one atomic update per state change."""

    __slots__ = ("_cfg", "_key", "_slow_ns", "_store", "_ttl", "breaker")

    local = False

    def __init__(self, breaker: CircuitBreaker, store: StateStore) -> None:
        self.breaker = breaker
        self._cfg = breaker._cfg
        self._store = store
        self._key = f"{_PRIMITIVE}:{breaker.name}"
        self._slow_ns = breaker._slow_ns
        cfg = breaker._cfg
        longest = (
            max(cfg.reset_ns, cfg.reset_max_ns or 0, cfg.bucket_ns * _BUCKETS) / 1e9
        )
        self._ttl = max(ttl_seconds(longest), 7 * 86400.0)

    def _now(self) -> int:
        return now_ns(get_clock(self.breaker._clock), self._store.shared)

    def started(self) -> int:
        return self._now() if self._slow_ns is not None else 0

    # Each operation has a pure step (shared by sync and async) and two
    # three-line drivers.

    def _admit_step(
        self, now: int
    ) -> Callable[[Any], tuple[Any, tuple[Ticket | int, int, list[Transition]]]]:
        cfg = self._cfg

        def step(data: Any) -> tuple[Any, tuple[Ticket | int, int, list[Transition]]]:
            s = _State.from_json(data)
            new, result, events = admit(cfg, s, now)
            return (data if new is s else new.to_json()), (result, new.phase, events)

        return step

    def _record_step(
        self, ticket: Ticket, outcome: int, now: int
    ) -> Callable[[Any], tuple[Any, list[Transition]]]:
        cfg = self._cfg

        def step(data: Any) -> tuple[Any, list[Transition]]:
            s = _State.from_json(data)
            new, events = record(cfg, s, now, ticket, outcome)
            return (data if new is s else new.to_json()), events

        return step

    def _admitted(self, outcome: tuple[Ticket | int, int, list[Transition]]) -> Ticket:
        result, phase, events = outcome
        if events:
            self.breaker._emit(events)
        if isinstance(result, int):
            raise self.breaker._rejection(result, phase)
        return result

    def _outcome(self, outcome: int, started: int, now: int) -> int:
        if (
            outcome == SUCCESS
            and self._slow_ns is not None
            and now - started >= self._slow_ns
        ):
            return FAILURE
        return outcome

    def _run(self, step: Callable[[Any], tuple[Any, R]]) -> R:
        return self._store.update(self._key, step, ttl=self._ttl)

    async def _arun(self, step: Callable[[Any], tuple[Any, R]]) -> R:
        return await self._store.aupdate(self._key, step, ttl=self._ttl)

    def enter(self) -> Ticket:
        try:
            return self._admitted(self._run(self._admit_step(self._now())))
        except StoreUnavailableError as exc:
            return self.breaker._store_down(exc)

    async def aenter(self) -> Ticket:
        step = self._admit_step(self._now())

        async def give_back(
            outcome: tuple[Ticket | int, int, list[Transition]],
        ) -> None:
            # Cancelled while the store admitted us: hand the permit back.
            if not isinstance(outcome[0], int):
                await self.aexit(outcome[0], IGNORED, 0)

        try:
            return self._admitted(await complete(self._arun(step), give_back))
        except StoreUnavailableError as exc:
            return self.breaker._store_down(exc)

    def exit(self, ticket: Ticket, outcome: int, started: int) -> None:
        if ticket is _NO_TICKET or (outcome == IGNORED and ticket[1] == 0):
            return
        now = self._now()
        step = self._record_step(ticket, self._outcome(outcome, started, now), now)
        try:
            events = self._run(step)
        except StoreUnavailableError as exc:
            self.breaker._record_lost(exc)
            return
        if events:
            self.breaker._emit(events)

    async def aexit(self, ticket: Ticket, outcome: int, started: int) -> None:
        if ticket is _NO_TICKET or (outcome == IGNORED and ticket[1] == 0):
            return
        now = self._now()
        step = self._record_step(ticket, self._outcome(outcome, started, now), now)
        try:
            # Even a second cancellation must not lose a probe's release.
            events = await complete(self._arun(step))
        except StoreUnavailableError as exc:
            self.breaker._record_lost(exc)
            return
        if events:
            self.breaker._emit(events)

    def apply(
        self, fn: Callable[[_State, int], tuple[_State, list[Transition]]]
    ) -> None:
        now = self._now()

        def step(data: Any) -> tuple[Any, list[Transition]]:
            new, events = fn(_State.from_json(data), now)
            return new.to_json(), events

        self.breaker._emit(self._store.update(self._key, step, ttl=self._ttl))

    def snapshot(self) -> tuple[_State, int]:
        return _State.from_json(self._store.get(self._key)), self._now()
