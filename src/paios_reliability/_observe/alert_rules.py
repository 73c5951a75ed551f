"""Events become alerts by rule: a documented default table users can change.

Every library event already says what happened; :class:`AlertRules` says
which of them a person must hear about, how urgently, and how often. Rules
are keyed by event name (``circuit_breaker.opened``) and can require a
number of occurrences within a window (``count``/``per``, counted per
subject) or allow at most one alert per subject per ``once_per`` seconds.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .._core.event import Event
    from .._core.settings import Restorer
    from ..typing import Clock
    from .alerts import AlertDispatcher

__all__ = ["DEFAULT_ALERT_RULES", "AlertRule", "AlertRules", "install_default_alerts"]

_MAX_KEYS = 10_000
_PREFIX = "paios_reliability."


@dataclass(frozen=True, slots=True)
class AlertRule:
    """When an event becomes an alert.

    Attributes:
        event: The event name without the ``paios_reliability.`` prefix,
            e.g. ``circuit_breaker.opened``.
        level: ``info`` | ``warning`` | ``critical``, or ``None`` to never
            alert on this event (overrides a default).
        count: Occurrences (per subject) within ``per`` seconds that raise
            the alert; 1 alerts on every occurrence.
        per: The window for ``count``, in seconds.
        once_per: At most one alert per subject per this many seconds.
        when: Only events for which this returns true count.
        title: The alert's title (default: derived from the event).
    """

    event: str
    level: str | None
    count: int = 1
    per: float = 3600.0
    once_per: float | None = None
    when: Callable[[Event], bool] | None = None
    title: str | None = None

    def __post_init__(self) -> None:
        event: object = self.event
        count: object = self.count
        if not isinstance(event, str) or event.count(".") < 1:
            raise ValueError(
                f"AlertRule(event=...) must be '<primitive>.<action>', got {self.event!r}"
            )
        if self.level is not None and self.level not in ("info", "warning", "critical"):
            raise ValueError(
                f"AlertRule(level=...) must be info, warning, critical or None, "
                f"got {self.level!r}"
            )
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(
                f"AlertRule(count=...) must be an int >= 1, got {self.count!r}"
            )
        windows: tuple[tuple[str, object], ...] = (
            ("per", self.per),
            ("once_per", self.once_per),
        )
        for label, value in windows:
            if value is not None and not (
                isinstance(value, (int, float)) and 0 < value < float("inf")
            ):
                raise ValueError(
                    f"AlertRule({label}=...) must be positive, got {value!r}"
                )


def _gave_up_for_real(event: Event) -> bool:
    # A non-retryable error is the caller's business, not an outage.
    return event.fields.get("reason") != "not_retryable"


DEFAULT_ALERT_RULES: tuple[AlertRule, ...] = (
    AlertRule(
        "circuit_breaker.opened",
        "warning",
        once_per=900.0,
        title="Circuit breaker opened",
    ),
    AlertRule(
        "retry.gave_up",
        "warning",
        count=5,
        per=3600.0,
        when=_gave_up_for_real,
        title="Integration keeps failing",
    ),
    AlertRule("config_file.rolled_back", "critical", title="Configuration corrupt"),
    AlertRule("config_file.restored", "critical", title="Configuration corrupt"),
    AlertRule("checkpoint.corrupt", "critical", title="Checkpoint corrupt"),
    AlertRule("signed_file.rejected", "critical", title="Signed file rejected"),
    AlertRule("crash_handler.recorded", "critical", title="Crash"),
    AlertRule("crash_handler.unclean_exit_found", "critical", title="Unclean exit"),
    AlertRule(
        "credentials.expiring",
        "warning",
        once_per=86400.0,
        title="Credential expiring",
    ),
    AlertRule("heartbeat.missed", "critical", title="Heartbeat missed"),
    AlertRule("watchdog.stall", "warning", once_per=900.0, title="Event loop stalled"),
    AlertRule("watchdog.hang", "warning", once_per=900.0, title="Worker hung"),
    AlertRule(
        "leak_monitor.leak_detected", "warning", once_per=3600.0, title="Resource leak"
    ),
    AlertRule(
        "mcp.orphan_found", "warning", once_per=3600.0, title="Orphaned MCP server"
    ),
    AlertRule("process.exit_forced", "warning", title="Process forced to exit"),
)
"""The default table; see the "Events become alerts" section of docs/liveness.md."""


class AlertRules:
    """A table of :class:`AlertRule` by event name, usable as an event hook.

    Alerts are sent without a dispatcher ``key``: the rules decide how often
    an event alerts, so the dispatcher's noise threshold does not hold them
    back a second time.

    Thread-safe: counting state is behind a lock and bounded (10,000
    subjects; the oldest are forgotten first).

    Args:
        rules: Rules to start with (later ones replace earlier ones for the
            same event).
        defaults: Start from :data:`DEFAULT_ALERT_RULES` (then ``rules``).
        clock: Time source for windows (default: the process clock).
    """

    __slots__ = ("_clock", "_counts", "_last", "_lock", "_rules")

    def __init__(
        self,
        rules: Iterable[AlertRule] = (),
        *,
        defaults: bool = True,
        clock: Clock | None = None,
    ) -> None:
        from .._core.clock import get_clock

        self._rules: dict[str, AlertRule] = {}
        for rule in (*(DEFAULT_ALERT_RULES if defaults else ()), *rules):
            self._rules[rule.event] = rule
        self._clock = get_clock(clock)
        # Re-entrant: a signal handler's event may be decided while this
        # thread is inside decide().
        self._lock = threading.RLock()
        self._counts: collections.OrderedDict[tuple[str, str], collections.deque[float]]
        self._counts = collections.OrderedDict()
        self._last: collections.OrderedDict[tuple[str, str], float] = (
            collections.OrderedDict()
        )

    @property
    def rules(self) -> tuple[AlertRule, ...]:
        """The rules, by event name."""
        return tuple(self._rules[k] for k in sorted(self._rules))

    def set(self, rule: AlertRule) -> None:
        """Add ``rule``, replacing any rule for the same event."""
        with self._lock:
            self._rules[rule.event] = rule

    def remove(self, event: str) -> None:
        """Drop the rule for ``event`` (no error when absent)."""
        with self._lock:
            self._rules.pop(event, None)

    def decide(self, event: Event) -> AlertRule | None:
        """The rule that turns ``event`` into an alert now, or ``None``.

        Counts the event towards its rule's window as a side effect.
        """
        name = event.name.removeprefix(_PREFIX)
        rule = self._rules.get(name)
        if rule is None or rule.level is None:
            return None
        if rule.when is not None and not rule.when(event):
            return None
        key = (name, str(event.subject))
        now = self._clock.monotonic()
        with self._lock:
            if rule.count > 1:
                times = self._counts.get(key)
                if times is None:
                    times = self._counts[key] = collections.deque(maxlen=rule.count)
                    _bound(self._counts)
                times.append(now)
                if len(times) < rule.count or now - times[0] > rule.per:
                    return None
                times.clear()
            if rule.once_per is not None:
                last = self._last.get(key)
                if last is not None and now - last < rule.once_per:
                    return None
                self._last[key] = now
                _bound(self._last)
        return rule

    def install(self, dispatcher: AlertDispatcher) -> Restorer:
        """Send an alert through ``dispatcher`` for every event a rule selects.

        Returns:
            A :class:`~paios_reliability.Restorer` that removes the hook.
        """
        from .._core.events import add_event_hook

        def hook(event: Event) -> None:
            if event.primitive == "alerts":  # never alert about alerting
                return
            rule = self.decide(event)
            if rule is None or rule.level is None:
                return
            _send(dispatcher, rule.level, rule, event)

        return add_event_hook(hook)

    def __repr__(self) -> str:
        return f"AlertRules({len(self._rules)} rules)"


def _bound(table: collections.OrderedDict[tuple[str, str], Any]) -> None:
    while len(table) > _MAX_KEYS:
        table.popitem(last=False)


def _send(
    dispatcher: AlertDispatcher, level: str, rule: AlertRule, event: Event
) -> None:
    from .alert_model import AlertLevel

    name = event.name.removeprefix(_PREFIX)
    subject = f": {event.subject}" if event.subject else ""
    title = (rule.title or name) + subject
    parts = [f"{name}{subject}"]
    if rule.count > 1:
        parts.append(f"{rule.count} times within {rule.per:g} s")
    if event.exc is not None:
        parts.append(type(event.exc).__name__)
    # No key: the rule already decided how often this alerts, and the
    # dispatcher's own noise threshold would hold it back a second time.
    dispatcher.alert(
        AlertLevel(level),
        title[:200],
        "; ".join(parts),
        alert_key=f"{name}:{event.subject}",
        event=name,
        trace_id=event.trace.get("trace_id"),
    )


def install_default_alerts(
    dispatcher: AlertDispatcher, rules: AlertRules | None = None
) -> Restorer:
    """Turn library events into alerts by :data:`DEFAULT_ALERT_RULES` (or ``rules``).

    Args:
        dispatcher: Where the alerts go.
        rules: A table to use instead (e.g. ``AlertRules([...])`` adding or
            overriding rules on top of the defaults).

    Returns:
        A :class:`~paios_reliability.Restorer` that stops it.
    """
    return (rules if rules is not None else AlertRules()).install(dispatcher)
