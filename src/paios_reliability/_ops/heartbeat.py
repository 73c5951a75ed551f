"""A dead man's switch: notice a scheduled job that did not run.

A daily-tasks runner that crashed at start-up, a cron entry lost in a
migration, a laptop asleep at 03:00: a job that never runs raises no error,
so nothing reports it. A :class:`Heartbeat` turns its absence into an event,
a health check result and an alert. The job calls :meth:`Heartbeat.beat`
(or ``paios-reliability heartbeat beat NAME --db PATH`` from a shell script)
each time it completes; anything that runs regularly (a service, its health
endpoint, a cron-driven ``heartbeat check``) calls :meth:`Heartbeat.check`.
State lives in a :class:`~paios_reliability.typing.StateStore`, so it
survives restarts and is shared by every process that opens the same store.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from .._core.checks import check_number

if TYPE_CHECKING:
    from .._observe.alerts import AlertDispatcher
    from .._observe.health import CheckValue
    from ..typing import Clock, StateStore

__all__ = ["Heartbeat", "HeartbeatStatus"]

HeartbeatState = Literal["ok", "missed"]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")
_MIN_TTL = 30 * 86400.0


@dataclass(frozen=True, slots=True)
class HeartbeatStatus:
    """What :meth:`Heartbeat.check` found.

    Attributes:
        name: The heartbeat's name.
        state: ``ok`` (the last beat is recent enough) or ``missed``.
        last_beat: Wall-clock time of the last beat (seconds since the
            epoch), ``None`` if it never beat.
        due: When the next beat is due (``last_beat + every``, or
            ``watched_since + every`` before the first beat).
        overdue: Seconds past ``due + grace`` (0 when not missed).
        newly_missed: Whether this check is the first to see this miss (it
            emitted the event and raised the alert).
    """

    name: str
    state: HeartbeatState
    last_beat: float | None
    due: float
    overdue: float
    newly_missed: bool


class Heartbeat:
    """A job that must beat every ``every`` seconds, with ``grace`` to spare.

    Args:
        name: Names the job in the store, events and alerts (letters,
            digits, ``_ . : -``; at most 100).
        every: Seconds between two expected beats (86400 for a daily job).
        grace: Extra seconds before a late beat counts as missed (default:
            a tenth of ``every``).
        store: Where the beats are kept (a :class:`~paios_reliability.SQLiteStore`
            shares them between processes and survives restarts).
        alerts: An :class:`~paios_reliability.AlertDispatcher` that gets a
            CRITICAL alert for every missed beat.
        clock: Time source (wall time: the schedule is calendar time).

    Raises:
        ValueError: On a bad name, ``every`` or ``grace``.
    """

    __slots__ = ("_alerts", "_clock", "_key", "every", "grace", "name", "store")

    def __init__(
        self,
        name: str,
        *,
        every: float,
        grace: float | None = None,
        store: StateStore,
        alerts: AlertDispatcher | None = None,
        clock: Clock | None = None,
    ) -> None:
        from .._core.clock import get_clock

        given: object = name
        if not isinstance(given, str) or not _NAME.match(given):
            raise ValueError(
                f"Heartbeat name {name!r} is invalid: 1-100 letters, digits, '_.:-'"
            )
        self.name = name
        self.every = check_number("Heartbeat", "every", every)
        self.grace = (
            self.every / 10
            if grace is None
            else check_number("Heartbeat", "grace", grace, zero=True)
        )
        self.store = store
        self._alerts = alerts
        self._clock = get_clock(clock)
        self._key = f"heartbeat:{name}"

    @property
    def _ttl(self) -> float:
        return max(_MIN_TTL, 10 * (self.every + self.grace))

    def beat(self) -> None:
        """Record that the job ran now.

        Emits ``heartbeat.beat`` (debug), and ``heartbeat.recovered`` (info)
        when it follows a reported miss. Safe from any thread and process.

        Raises:
            StoreUnavailableError: If the store cannot be reached.
        """
        from .._core.events import emit

        now = self._clock.time()

        def record(value: Any) -> tuple[dict[str, Any], bool]:
            old = value if isinstance(value, dict) else {}
            was_missed = old.get("reported_due") is not None
            return {"last": now, "beats": int(old.get("beats", 0)) + 1}, was_missed

        was_missed = self.store.update(self._key, record, ttl=self._ttl)
        emit("heartbeat", "beat", level="debug", subject=self.name, at=now)
        if was_missed:
            emit("heartbeat", "recovered", level="info", subject=self.name, at=now)

    def check(self) -> HeartbeatStatus:
        """Whether the job beat on schedule; report a miss once.

        A miss is reported once per missed deadline, across processes: a
        ``heartbeat.missed`` event (critical) and, with ``alerts``, a
        CRITICAL alert. Before the first beat, the schedule starts at the
        first check.

        Raises:
            StoreUnavailableError: If the store cannot be reached.
        """
        from .._core.events import emit

        now = self._clock.time()
        every, grace = self.every, self.grace

        def inspect(value: Any) -> tuple[Any, tuple[float | None, float, bool]]:
            old = dict(value) if isinstance(value, dict) else {}
            changed = False
            raw_last = old.get("last")
            last = float(raw_last) if isinstance(raw_last, (int, float)) else None
            raw_since = old.get("since")
            since = float(raw_since) if isinstance(raw_since, (int, float)) else None
            if last is None and since is None:
                old["since"] = since = now
                changed = True
            start = last if last is not None else since
            assert start is not None
            due = start + every
            newly = now > due + grace and old.get("reported_due") != due
            if newly:
                old["reported_due"] = due
                changed = True
            return (old if changed else value), (last, due, newly)

        last, due, newly = self.store.update(self._key, inspect, ttl=self._ttl)
        overdue = max(0.0, now - due - grace)
        state: HeartbeatState = "missed" if overdue > 0 else "ok"
        if newly:
            emit(
                "heartbeat",
                "missed",
                level="critical",
                subject=self.name,
                last_beat=last,
                due=due,
                overdue=round(overdue, 3),
            )
            if self._alerts is not None:
                when = (
                    "never beat"
                    if last is None
                    else f"{_ago(now - last)} since the last beat"
                )
                self._alerts.critical(
                    f"Heartbeat missed: {self.name}",
                    f"{self.name} should beat every {_ago(every)}; {when}.",
                    key=f"heartbeat.missed:{self.name}",
                )
        return HeartbeatStatus(self.name, state, last, due, overdue, newly)

    def health(self) -> CheckValue:
        """A :class:`~paios_reliability.HealthRegistry` check: ``registry.add(name, hb.health)``.

        Returns ``("failing", ...)`` when the beat is missed, else an ``ok``
        text with the time of the next expected beat.
        """
        status = self.check()
        if status.state == "missed":
            return ("failing", f"{self.name}: missed, {_ago(status.overdue)} overdue")
        return (
            "ok",
            f"{self.name}: next beat due in {_ago(status.due - self._clock.time())}",
        )

    def __repr__(self) -> str:
        return f"Heartbeat(name={self.name!r}, every={self.every}, grace={self.grace})"


def _ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
