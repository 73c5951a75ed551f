"""The circuit breaker's pure state machine: states, transitions, stats. No I/O, no clock.

Every function takes the state and the time and returns the new state and
the transitions it made, so the same rules run in memory, on SQLite and on
Redis, and a stateful test can check them against a reference model.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

__all__ = ["CircuitBreakerStats"]

State = Literal["closed", "open", "half_open"]

CLOSED, OPEN, HALF_OPEN = 0, 1, 2
_PHASES: tuple[State, State, State] = ("closed", "open", "half_open")
SUCCESS, IGNORED, FAILURE = 1, 0, -1
_BUCKETS = 10  # the failure-rate window is kept as this many time buckets
_PRIMITIVE = "circuit_breaker"

# A ticket is what admission hands to the call: (epoch, permit); permit 0 is a
# call admitted while closed, >0 a half-open probe. _NO_TICKET: admitted
# without the store (fail-open), nothing to record.
Ticket = tuple[int, int]
_NO_TICKET: Ticket = (-1, -1)


# -- the pure state machine ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Config:
    threshold: int | None  # consecutive failures that open; None: rule off
    reset_ns: int  # first break duration; also the life of a probe permit
    reset_max_ns: int | None  # growing break duration cap; None: constant
    half_open_max: int
    rate: float | None  # failure ratio that opens; None: rule off
    bucket_ns: int
    minimum_calls: int


@dataclass(frozen=True, slots=True)
class _State:
    phase: int = CLOSED
    epoch: int = 0
    failures: int = 0  # consecutive counted failures while closed
    opened_at: int = 0
    open_until: int = 0  # first probe allowed at this time
    opens: int = 0  # opens since the last close (grows the break)
    probes: tuple[tuple[int, int], ...] = ()  # (permit, issued at) in flight
    successes: int = 0  # successful probes in this half-open period
    next_permit: int = 1
    buckets: tuple[tuple[int, int, int], ...] = ()  # (index, calls, failures)

    def to_json(self) -> list[Any]:
        return [
            self.phase,
            self.epoch,
            self.failures,
            self.opened_at,
            self.open_until,
            self.opens,
            [list(p) for p in self.probes],
            self.successes,
            self.next_permit,
            [list(b) for b in self.buckets],
        ]

    @classmethod
    def from_json(cls, data: Any) -> _State:
        if data is None:
            return _INITIAL
        (phase, epoch, failures, opened_at, open_until, opens, probes, successes,
         next_permit, buckets) = data  # fmt: skip
        return cls(
            phase,
            epoch,
            failures,
            opened_at,
            open_until,
            opens,
            tuple((p[0], p[1]) for p in probes),
            successes,
            next_permit,
            tuple((b[0], b[1], b[2]) for b in buckets),
        )


_INITIAL = _State()

# What a transition reports: (action, fields) for an event.
Transition = tuple[str, dict[str, Any]]


def _break_ns(cfg: _Config, opens: int) -> int:
    if cfg.reset_max_ns is None or opens <= 1:
        return cfg.reset_ns
    # Integers cannot overflow; the exponent clamp keeps the number small.
    return min(cfg.reset_ns << min(opens - 1, 64), cfg.reset_max_ns)


def _window(
    cfg: _Config, buckets: tuple[tuple[int, int, int], ...], now: int
) -> tuple[tuple[int, int, int], ...]:
    oldest = now // cfg.bucket_ns - _BUCKETS + 1
    if not buckets or buckets[0][0] >= oldest:
        return buckets
    return tuple(b for b in buckets if b[0] >= oldest)


def _effective(s: _State, now: int) -> tuple[_State, list[Transition]]:
    """Open turns half-open lazily, at the first look after the break."""
    if s.phase == OPEN and now >= s.open_until:
        return (
            replace(s, phase=HALF_OPEN, epoch=s.epoch + 1, probes=(), successes=0),
            [("half_opened", {})],
        )
    return s, []


def _open(
    cfg: _Config, s: _State, now: int, reason: str, **fields: Any
) -> tuple[_State, list[Transition]]:
    opens = 1 if s.phase == CLOSED else s.opens + 1
    duration = _break_ns(cfg, opens)
    new = _State(
        phase=OPEN,
        epoch=s.epoch + 1,
        opened_at=now,
        open_until=now + duration,
        opens=opens,
        next_permit=s.next_permit,
    )
    return new, [("opened", {"reason": reason, "open_for": duration / 1e9, **fields})]


def _close(s: _State, reason: str) -> tuple[_State, list[Transition]]:
    return _State(epoch=s.epoch + 1, next_permit=s.next_permit), [
        ("closed", {"reason": reason})
    ]


def admit(
    cfg: _Config, s: _State, now: int
) -> tuple[_State, Ticket | int, list[Transition]]:
    """Admit a call or refuse it.

    Returns the new state, then a ticket ``(epoch, permit)`` for an admitted
    call or the nanoseconds until a call could be admitted, then transitions.
    """
    s, events = _effective(s, now)
    if s.phase == CLOSED:
        return s, (s.epoch, 0), events
    if s.phase == OPEN:
        return s, s.open_until - now, events
    live = tuple(p for p in s.probes if now - p[1] < cfg.reset_ns)
    if len(live) < cfg.half_open_max:
        permit = s.next_permit
        s = replace(s, probes=(*live, (permit, now)), next_permit=permit + 1)
        return s, (s.epoch, permit), events
    return s, min(p[1] for p in live) + cfg.reset_ns - now, events


def record(
    cfg: _Config, s: _State, now: int, ticket: Ticket, outcome: int
) -> tuple[_State, list[Transition]]:
    """Apply the outcome of an admitted call (SUCCESS, FAILURE or IGNORED)."""
    epoch, permit = ticket
    if epoch != s.epoch:
        return s, []  # admitted in an earlier period: it no longer counts
    if s.phase == CLOSED:
        if outcome == IGNORED:
            return s, []
        failures = s.failures + 1 if outcome == FAILURE else 0
        if cfg.threshold is not None and failures >= cfg.threshold:
            return _open(cfg, s, now, "consecutive_failures", failures=failures)
        buckets = s.buckets
        if cfg.rate is not None:
            index = now // cfg.bucket_ns
            buckets = _window(cfg, buckets, now)
            failed = 1 if outcome == FAILURE else 0
            if buckets and buckets[-1][0] == index:
                last = buckets[-1]
                buckets = (*buckets[:-1], (index, last[1] + 1, last[2] + failed))
            else:
                buckets = (*buckets, (index, 1, failed))
            calls = sum(b[1] for b in buckets)
            failed_calls = sum(b[2] for b in buckets)
            if calls >= cfg.minimum_calls and failed_calls / calls >= cfg.rate:
                return _open(
                    cfg, s, now, "failure_rate", calls=calls, failed_calls=failed_calls
                )
        if failures == s.failures and buckets is s.buckets:
            return s, []
        return replace(s, failures=failures, buckets=buckets), []
    if s.phase == HALF_OPEN:
        probes = tuple(p for p in s.probes if p[0] != permit)
        if len(probes) == len(s.probes):
            return s, []  # its permit already expired and was re-armed
        if outcome == FAILURE:
            return _open(cfg, s, now, "probe_failed")
        if outcome == SUCCESS:
            successes = s.successes + 1
            if successes >= cfg.half_open_max:
                return _close(s, "probes_succeeded")
            return replace(s, probes=probes, successes=successes), []
        return replace(s, probes=probes), []
    return s, []


def trip(cfg: _Config, s: _State, now: int) -> tuple[_State, list[Transition]]:
    """Open by hand, now, for the (growing) break duration."""
    return _open(cfg, s, now, "manual")


def reset(s: _State) -> tuple[_State, list[Transition]]:
    """Close by hand and forget every count."""
    return _close(s, "manual")


# -- stats --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CircuitBreakerStats:
    """A snapshot of a breaker (of the shared state, on a shared store).

    Attributes:
        name: The breaker's name.
        state: ``"closed"``, ``"open"`` or ``"half_open"``.
        consecutive_failures: Counted failures in a row while closed.
        window_calls: Counted calls in the failure-rate window (0 when the
            rate rule is off).
        window_failures: Failures among them.
        opens: Times opened since the last close (grows the break duration).
        retry_after: Seconds until a probe is allowed, when open.
        probes_in_flight: Half-open probes running now.
    """

    name: str
    state: State
    consecutive_failures: int
    window_calls: int
    window_failures: int
    opens: int
    retry_after: float | None
    probes_in_flight: int


def _stats(name: str, cfg: _Config, s: _State, now: int) -> CircuitBreakerStats:
    s, _ = _effective(s, now)
    buckets = _window(cfg, s.buckets, now) if s.phase == CLOSED else ()
    live = [p for p in s.probes if now - p[1] < cfg.reset_ns]
    return CircuitBreakerStats(
        name=name,
        state=_PHASES[s.phase],
        consecutive_failures=s.failures,
        window_calls=sum(b[1] for b in buckets),
        window_failures=sum(b[2] for b in buckets),
        opens=s.opens,
        retry_after=(s.open_until - now) / 1e9 if s.phase == OPEN else None,
        probes_in_flight=len(live),
    )
