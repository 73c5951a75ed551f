"""AlertRules: library events become alerts by a documented default table."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import paios_reliability as pr
from paios_reliability._core.events import emit
from paios_reliability.testing import FakeClock


class Recorder:
    """An alert channel that keeps what it is sent."""

    name = "recorder"

    def __init__(self) -> None:
        self.alerts: list[pr.Alert] = []

    def send(self, alert: pr.Alert, /) -> None:
        self.alerts.append(alert)


@pytest.fixture
def recorder() -> Iterator[tuple[Recorder, pr.AlertDispatcher]]:
    rec = Recorder()
    dispatcher = pr.AlertDispatcher([rec])
    yield rec, dispatcher
    dispatcher.close()


def _levels(rec: Recorder, dispatcher: pr.AlertDispatcher) -> list[tuple[str, str]]:
    assert dispatcher.flush(30)
    return [(a.level.value, a.title) for a in rec.alerts]


def test_default_table_levels(recorder: tuple[Recorder, pr.AlertDispatcher]) -> None:
    rec, dispatcher = recorder
    undo = pr.install_default_alerts(dispatcher)
    try:
        emit("circuit_breaker", "opened", level="warning", subject="search")
        emit("config_file", "rolled_back", level="warning", subject="app.toml")
        emit("crash_handler", "unclean_exit_found", level="error", subject="svc")
        emit("heartbeat", "missed", level="critical", subject="daily")
        emit("watchdog", "stall", level="warning", subject="loop")
        emit("leak_monitor", "leak_detected", level="warning", subject="fds")
        emit("retry", "scheduled", subject="github")  # no rule: no alert
    finally:
        undo()
    assert _levels(rec, dispatcher) == [
        ("warning", "Circuit breaker opened: search"),
        ("critical", "Configuration corrupt: app.toml"),
        ("critical", "Unclean exit: svc"),
        ("critical", "Heartbeat missed: daily"),
        ("warning", "Event loop stalled: loop"),
        ("warning", "Resource leak: fds"),
    ]


def test_retry_gave_up_alerts_at_the_fifth_failure_within_an_hour(
    recorder: tuple[Recorder, pr.AlertDispatcher],
) -> None:
    rec, dispatcher = recorder
    clock = FakeClock()
    undo = pr.install_default_alerts(dispatcher, pr.AlertRules(clock=clock))
    try:
        for _ in range(4):
            emit(
                "retry", "gave_up", level="warning", subject="github", reason="attempts"
            )
            clock.advance(60)
        emit("retry", "gave_up", level="info", subject="github", reason="not_retryable")
        assert _levels(rec, dispatcher) == []
        emit("retry", "gave_up", level="warning", subject="github", reason="attempts")
        assert _levels(rec, dispatcher) == [
            ("warning", "Integration keeps failing: github")
        ]
        # Spread over more than an hour: below the threshold, no alert.
        for _ in range(5):
            clock.advance(1000)
            emit(
                "retry", "gave_up", level="warning", subject="slack", reason="deadline"
            )
        assert len(_levels(rec, dispatcher)) == 1
    finally:
        undo()


def test_credentials_expiring_alerts_once_a_day(
    recorder: tuple[Recorder, pr.AlertDispatcher],
) -> None:
    rec, dispatcher = recorder
    clock = FakeClock()
    undo = pr.AlertRules(clock=clock).install(dispatcher)
    try:
        for _ in range(3):
            emit("credentials", "expiring", level="warning", subject="github")
            clock.advance(3600)
        clock.advance(86400)
        emit("credentials", "expiring", level="warning", subject="github")
    finally:
        undo()
    assert _levels(rec, dispatcher) == [
        ("warning", "Credential expiring: github"),
        ("warning", "Credential expiring: github"),
    ]


def test_users_override_and_add_rules(
    recorder: tuple[Recorder, pr.AlertDispatcher],
) -> None:
    rec, dispatcher = recorder
    rules = pr.AlertRules(
        [
            pr.AlertRule("circuit_breaker.opened", None),  # silence a default
            pr.AlertRule("rate_limiter.rejected", "info", title="Throttled"),
        ]
    )
    rules.set(pr.AlertRule("watchdog.stall", "critical"))
    rules.remove("leak_monitor.leak_detected")
    undo = pr.install_default_alerts(dispatcher, rules)
    try:
        emit("circuit_breaker", "opened", subject="search")
        emit("rate_limiter", "rejected", subject="api")
        emit("watchdog", "stall", subject="loop")
        emit("leak_monitor", "leak_detected", subject="fds")
    finally:
        undo()
    assert _levels(rec, dispatcher) == [
        ("info", "Throttled: api"),
        ("critical", "watchdog.stall: loop"),
    ]
    assert {r.event for r in rules.rules} >= {
        "heartbeat.missed",
        "rate_limiter.rejected",
    }


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"event": "nodot", "level": "warning"}, "event"),
        ({"event": "a.b", "level": "loud"}, "level"),
        ({"event": "a.b", "level": "info", "count": 0}, "count"),
        ({"event": "a.b", "level": "info", "per": 0}, "per"),
        ({"event": "a.b", "level": "info", "once_per": float("inf")}, "once_per"),
    ],
)
def test_alert_rule_rejects_bad_values(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        pr.AlertRule(**kwargs)  # type: ignore[arg-type]


def test_a_missed_heartbeat_becomes_an_alert_by_rule(
    recorder: tuple[Recorder, pr.AlertDispatcher],
) -> None:
    rec, dispatcher = recorder
    clock = FakeClock()
    hb = pr.Heartbeat(
        "daily", every=86400, grace=0, store=pr.MemoryStore(), clock=clock
    )
    undo = pr.install_default_alerts(dispatcher)
    try:
        hb.beat()
        clock.advance(86401)
        assert hb.check().state == "missed"
    finally:
        undo()
    assert _levels(rec, dispatcher) == [("critical", "Heartbeat missed: daily")]
