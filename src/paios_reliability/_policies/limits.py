"""Weighted, multi-window rate limits: ``RateLimiter(name, limits=[...])``.

LLM providers meter several budgets at once: requests per minute, tokens per
minute, tokens per day. Each :class:`Limit` is one GCRA bucket (see
:mod:`.ratelimit`); all of a limiter's buckets live in **one** store key and
change in **one** pure function inside ``update``, so a call is admitted by
every window or charged to none, on memory, SQLite and Redis alike.

A call that costs ``c`` moves a bucket's theoretical arrival time (TAT) on by
``c`` units (one unit for a per-call limit). With several buckets the call is
placed at the earliest time ``now + wait`` every bucket admits it, and every
bucket is charged *at that time*, so each one sees the call when it really
happens. :meth:`settle` corrects the charge when the real cost is known after
the call (the token count of an LLM answer): a refund moves the TATs back, a
surcharge forward (debt the next callers wait for).
"""

from __future__ import annotations

import math
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from .._core import settings as _config
from .._core.checks import check_number
from .._core.clock import get_clock
from .._core.events import emit
from .._core.exceptions import RateLimitedError
from .._stores import (
    NS,
    adrive,
    drive,
    now_ns,
    seconds_to_ns,
    ttl_seconds,
)

if TYPE_CHECKING:
    from ..typing import Clock, StateStore

__all__ = ["Limit", "Reservation", "WeightedLimits", "weighted_step"]

Unit = Literal["cost", "call"]
# Writes tried with a growing TTL before one is made whatever the horizon.
_HORIZON_ATTEMPTS = 8


@dataclass(frozen=True, slots=True)
class Limit:
    """One window of a :class:`~paios_reliability.RateLimiter`.

    ``Limit(90_000, per=60)`` admits 90,000 units of cost per minute, all of
    them at once from a full bucket (``burst`` defaults to ``rate``);
    ``Limit(60, per=60, unit="call")`` counts calls whatever their cost.

    Attributes:
        rate: Units per ``per`` seconds (> 0).
        per: The window in seconds (> 0).
        burst: Units admitted at once from a full bucket (default ``rate``).
        unit: ``"cost"`` (each call counts its cost) or ``"call"`` (each call
            counts one).
        name: Shown in errors and events (default ``"<rate> per <per>s"``).

    Raises:
        ValueError: On a number that is not finite and > 0, or another unit.
    """

    rate: float
    per: float
    burst: float | None = None
    unit: Unit = "cost"
    name: str | None = None

    def __post_init__(self) -> None:
        check_number("Limit", "rate", self.rate)
        check_number("Limit", "per", self.per)
        if self.burst is not None:
            check_number("Limit", "burst", self.burst)
        if self.unit not in ("cost", "call"):
            raise ValueError(
                f"Limit(unit=...) must be 'cost' or 'call', got {self.unit!r}"
            )

    @property
    def label(self) -> str:
        """The limit's name, or ``"<rate> per <per>s"``."""
        if self.name:
            return self.name
        unit = " calls" if self.unit == "call" else ""
        return f"{self.rate:g}{unit} per {self.per:g}s"


@dataclass(frozen=True, slots=True)
class _Bucket:
    unit_ns: float  # nanoseconds of refill per unit
    capacity: int  # burst * unit_ns
    per_call: bool


class Reservation:
    """What :meth:`RateLimiter.acquire` took; give it to :meth:`RateLimiter.settle`.

    Attributes:
        limiter: The limiter's name.
        cost: The cost charged (the estimate, until settled).
        wait: Seconds the call waited for its slot.
        settled: Whether :meth:`RateLimiter.settle` has corrected it.
    """

    __slots__ = ("_owner", "cost", "limiter", "settled", "wait")

    def __init__(self, owner: object, limiter: str, cost: float, wait: float) -> None:
        self._owner = owner
        self.limiter = limiter
        self.cost = cost
        self.wait = wait
        self.settled = False

    def __repr__(self) -> str:
        return (
            f"<Reservation {self.limiter!r} cost={self.cost:g} "
            f"wait={self.wait:.3g}s{' settled' if self.settled else ''}>"
        )


def _charge(bucket: _Bucket, cost: float) -> int:
    return round((1.0 if bucket.per_call else cost) * bucket.unit_ns)


def weighted_step(
    state: Any,
    *,
    now: int,
    charges: Sequence[int],
    capacities: Sequence[int],
    limit: int | None,
) -> tuple[list[int], tuple[bool, int, int]]:
    """One admission across every bucket (runs inside ``store.update``).

    Args:
        state: The stored TATs (one int per bucket), or anything else for
            fresh buckets.
        now: The current time (ns).
        charges: What the call costs in each bucket (ns of refill).
        capacities: Each bucket's burst (ns of refill).
        limit: Longest wait (ns) accepted; ``0`` admits only at once,
            ``None`` waits as long as needed.

    Returns:
        The new TATs (the stored ones when refused) and ``(admitted, wait
        in ns, index of the bucket that set the wait)``.
    """
    tats = _tats(state, len(charges))
    wait, worst = 0, -1
    for i, tat in enumerate(tats):
        need = (tat if tat > now else now) + charges[i] - capacities[i] - now
        if need > wait:
            wait, worst = need, i
    if limit is not None and wait > limit:
        return tats, (False, wait, worst)
    at = now + wait
    new = [
        (tat if tat > at else at) + charge
        for tat, charge in zip(tats, charges, strict=True)
    ]
    return new, (True, wait, worst)


def settle_step(
    state: Any, *, now: int, buckets: Sequence[_Bucket], delta: float
) -> tuple[list[int], None]:
    """Move the cost buckets' TATs by ``delta`` units (refund when negative)."""
    tats = _tats(state, len(buckets))
    new = []
    for bucket, tat in zip(buckets, tats, strict=True):
        if bucket.per_call or delta == 0:
            new.append(tat)
            continue
        moved = max(tat, now) + round(delta * bucket.unit_ns) if delta > 0 else tat
        if delta < 0:
            # A refund never makes a bucket fuller than full (a TAT before now).
            moved = max(tat + round(delta * bucket.unit_ns), min(tat, now))
        new.append(moved)
    return new, None


def _tats(state: Any, count: int) -> list[int]:
    if (
        type(state) is list
        and len(state) == count
        and all(type(t) is int for t in state)
    ):
        return state  # never mutated: every step builds a new list
    if (
        isinstance(state, list)
        and len(state) == count
        and all(isinstance(t, int) and not isinstance(t, bool) for t in state)
    ):
        return list(state)
    return [0] * count  # fresh, or written by another configuration


def check_limits(limits: object) -> tuple[Limit, ...]:
    """``limits`` as a tuple, or ``ValueError`` saying what is wrong."""
    if (
        isinstance(limits, (str, bytes))
        or not isinstance(limits, Sequence)
        or not limits
        or not all(isinstance(x, Limit) for x in limits)
    ):
        raise ValueError(
            f"RateLimiter(limits=...) must be a non-empty list of Limit, got {limits!r}"
        )
    return tuple(limits)


def check_cost(owner: str, label: str, cost: object) -> float:
    """A finite number >= 0, else ``ValueError`` naming the limiter."""
    if (
        isinstance(cost, bool)
        or not isinstance(cost, (int, float))
        or not math.isfinite(cost)
        or cost < 0
    ):
        raise ValueError(
            f"rate limiter {owner!r}: {label} must be a finite number >= 0, got {cost!r}"
        )
    return float(cost)


def settlement(
    owner: object, name: str, reservation: object, actual_cost: object
) -> float:
    """Check a settlement and mark the reservation settled; returns the delta."""
    if not isinstance(reservation, Reservation) or reservation._owner is not owner:
        raise ValueError(
            f"rate limiter {name!r}: settle() takes a Reservation this limiter "
            f"returned, got {reservation!r}"
        )
    if reservation.settled:
        raise ValueError(f"{reservation!r} is already settled")
    actual = check_cost(name, "actual_cost", actual_cost)
    delta = actual - reservation.cost
    reservation.settled = True
    reservation.cost = actual
    emit(
        "rate_limiter", "settled", level="debug", subject=name, delta=delta, cost=actual
    )
    return delta


class WeightedLimits:
    """The engine behind ``RateLimiter(name, limits=[...])`` (one store key)."""

    __slots__ = (
        "_buckets",
        "_capacities",
        "_charges",
        "_clock",
        "_horizon",
        "_key",
        "_store",
        "limits",
        "name",
    )

    def __init__(
        self,
        name: str,
        limits: Sequence[Limit],
        store: StateStore,
        clock: Clock | None,
    ) -> None:
        self.name = name
        self.limits = check_limits(limits)
        self._buckets = tuple(
            _Bucket(
                unit_ns=seconds_to_ns(x.per) / x.rate,
                capacity=round(
                    (x.rate if x.burst is None else x.burst)
                    * seconds_to_ns(x.per)
                    / x.rate
                ),
                per_call=x.unit == "call",
            )
            for x in self.limits
        )
        self._store = store
        self._clock = clock
        self._key = f"rate_limiter:{name}:limits"
        self._horizon = max(b.capacity for b in self._buckets)
        self._capacities = tuple(b.capacity for b in self._buckets)
        # The charges of the last cost seen: most callers use one or a few.
        self._charges: tuple[float, tuple[int, ...]] = (math.nan, ())

    def check_cost(self, cost: object) -> float:
        """``cost`` as a float, or a clear error when no window could ever admit it."""
        if self._charges[0] == cost and type(cost) in (int, float):
            return float(cost)
        cost = check_cost(self.name, "cost", cost)
        charges = tuple(_charge(bucket, cost) for bucket in self._buckets)
        for limit, bucket, charge in zip(
            self.limits, self._buckets, charges, strict=True
        ):
            if charge > bucket.capacity:
                raise ValueError(
                    f"rate limiter {self.name!r}: cost {cost:g} exceeds the burst of "
                    f"limit {limit.label!r}; no wait would ever admit it"
                )
        self._charges = (cost, charges)
        return cost

    def charges(self, cost: float) -> tuple[int, ...]:
        """What ``cost`` takes from each bucket (after :meth:`check_cost`)."""
        last, charges = self._charges
        if last == cost:
            return charges
        self.check_cost(cost)
        return self._charges[1]

    def _now(self) -> int:
        return now_ns(get_clock(self._clock), self._store.shared)

    def _writes(
        self, cost: float, limit: int | None
    ) -> Generator[tuple[str, Any], Any, tuple[bool, int, int]]:
        """One admission; each write's TTL covers its furthest TAT (see ratelimit)."""
        horizon = self._horizon if limit is None else self._horizon + limit
        attempt = 0
        charges, capacities = self.charges(cost), self._capacities
        while True:
            attempt += 1
            final = limit is not None or attempt >= _HORIZON_ATTEMPTS
            now = self._now()
            bound = None if final else horizon

            def step(data: Any, now: int = now, bound: int | None = bound) -> Any:
                new, decision = weighted_step(
                    data, now=now, charges=charges, capacities=capacities, limit=limit
                )
                needed = max(new) - now
                if bound is not None and decision[0] and needed > bound:
                    return data, (decision, needed)
                return new, (decision, 0)

            decision, needed = yield ("update", (step, ttl_seconds(horizon / NS)))
            if not needed:
                return decision  # type: ignore[no-any-return]
            horizon = max(needed, 2 * horizon)
            self._horizon = horizon

    def _settle_writes(self, delta: float) -> Generator[tuple[str, Any], Any, None]:
        now = self._now()
        buckets = self._buckets
        debt = max(0.0, delta) * max(b.unit_ns for b in buckets)
        ttl = ttl_seconds((self._horizon + debt) / NS)

        def step(data: Any) -> Any:
            return settle_step(data, now=now, buckets=buckets, delta=delta)

        yield ("update", (step, ttl))

    def decide(self, cost: float, limit: int | None) -> tuple[bool, int, int]:
        clock = get_clock(self._clock)
        return drive(
            self._writes(cost, limit), self._store, self._key, ttl=0, clock=clock
        )

    async def adecide(self, cost: float, limit: int | None) -> tuple[bool, int, int]:
        clock = get_clock(self._clock)
        return await adrive(
            self._writes(cost, limit), self._store, self._key, ttl=0, clock=clock
        )

    def refused(self, wait: int, worst: int, cost: float) -> RateLimitedError:
        retry_after = wait / NS
        label = self.limits[worst].label if worst >= 0 else "?"
        emit(
            "rate_limiter",
            "rejected",
            subject=self.name,
            retry_after=retry_after,
            cost=cost,
            limit=label,
        )
        return RateLimitedError(
            f"rate limiter {self.name!r} is out of budget in limit {label!r} "
            f"(cost {cost:g}); retry in {retry_after:.3f}s",
            retry_after=retry_after,
            context={"limiter": self.name, "limit": label},
        )

    def pause(self, wait: int) -> float:
        if wait <= 0 or _config.is_testing():
            return 0.0
        emit(
            "rate_limiter", "delayed", level="debug", subject=self.name, wait=wait / NS
        )
        return wait / NS

    def settle(self, delta: float) -> None:
        drive(
            self._settle_writes(delta),
            self._store,
            self._key,
            ttl=0,
            clock=get_clock(self._clock),
        )

    async def asettle(self, delta: float) -> None:
        await adrive(
            self._settle_writes(delta),
            self._store,
            self._key,
            ttl=0,
            clock=get_clock(self._clock),
        )

    def available(self) -> list[float]:
        """Units each window would admit now (no change)."""
        now = self._now()
        tats = _tats(self._store.get(self._key), len(self._buckets))
        return [
            max(0.0, (b.capacity - max(0, tat - now)) / b.unit_ns)
            for b, tat in zip(self._buckets, tats, strict=True)
        ]
