"""Heartbeat: a dead man's switch for scheduled jobs.

FakeClock for the schedule; real SQLite files and real processes (the
``heartbeat`` command) for "survives restarts" and "works across processes".
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import paios_reliability as pr
from paios_reliability._core.event import Event
from paios_reliability.testing import FakeClock

DAY = 86400.0


class Recorder:
    """An alert channel that keeps what it is sent."""

    name = "recorder"

    def __init__(self) -> None:
        self.alerts: list[pr.Alert] = []

    def send(self, alert: pr.Alert, /) -> None:
        self.alerts.append(alert)


@pytest.fixture
def events() -> Iterator[list[Event]]:
    seen: list[Event] = []
    restore = pr.add_event_hook(seen.append)
    yield seen
    restore()


def _names(events: list[Event]) -> list[str]:
    return [
        e.name.removeprefix("paios_reliability.")
        for e in events
        if e.level != "debug" and e.primitive == "heartbeat"
    ]


def test_a_skipped_beat_is_missed_once_with_event_and_alert(
    events: list[Event],
) -> None:
    clock = FakeClock()
    recorder = Recorder()
    alerts = pr.AlertDispatcher([recorder])
    hb = pr.Heartbeat(
        "daily-tasks",
        every=DAY,
        grace=3600,
        store=pr.MemoryStore(),
        alerts=alerts,
        clock=clock,
    )
    hb.beat()
    clock.advance(DAY + 3500)
    assert hb.check().state == "ok"
    clock.advance(200)  # past every + grace: today's run never came
    status = hb.check()
    assert (status.state, status.newly_missed) == ("missed", True)
    assert status.overdue == pytest.approx(100)
    again = hb.check()
    assert (again.state, again.newly_missed) == ("missed", False)
    assert alerts.flush(10)
    assert [a.level for a in recorder.alerts] == [pr.AlertLevel.CRITICAL]
    assert "daily-tasks" in recorder.alerts[0].title
    assert _names(events) == ["heartbeat.missed"]
    [missed] = [e for e in events if e.name.endswith("missed")]
    assert missed.level == "critical"

    hb.beat()
    assert _names(events)[-1] == "heartbeat.recovered"
    assert hb.check().state == "ok"
    alerts.close()


def test_a_job_that_never_beats_is_missed_from_the_first_check(
    events: list[Event],
) -> None:
    clock = FakeClock()
    hb = pr.Heartbeat(
        "weekly", every=7 * DAY, grace=0, store=pr.MemoryStore(), clock=clock
    )
    assert hb.check().state == "ok"
    clock.advance(7 * DAY + 1)
    status = hb.check()
    assert (status.state, status.last_beat) == ("missed", None)
    assert _names(events) == ["heartbeat.missed"]


def test_heartbeat_is_a_health_check() -> None:
    clock = FakeClock()
    hb = pr.Heartbeat("job", every=60, grace=0, store=pr.MemoryStore(), clock=clock)
    registry = pr.HealthRegistry()
    registry.add("job", hb.health)
    hb.beat()
    assert registry.run().status == "ok"
    clock.advance(61)
    report = registry.run()
    assert report.status == "failing"
    assert "missed" in report.checks[0].detail


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "paios_reliability", "heartbeat", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_beats_from_another_process_survive_a_restart(tmp_path: Path) -> None:
    db = str(tmp_path / "state.sqlite")
    done = _cli("beat", "nightly", "--db", db)
    assert done.returncode == 0, done.stderr
    after = time.time()
    # A new process (this one, a "restarted" checker) sees the beat.
    store = pr.SQLiteStore(db)
    clock = FakeClock(wall=after)
    hb = pr.Heartbeat("nightly", every=DAY, grace=0, store=store, clock=clock)
    status = hb.check()
    assert status.state == "ok"
    assert status.last_beat is not None
    assert after - 60 < status.last_beat <= after
    store.close()

    checked = _cli("check", "nightly", "--db", db, "--json")
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout)["state"] == "ok"


def test_check_command_exits_1_and_reports_a_missed_beat_once(tmp_path: Path) -> None:
    db = str(tmp_path / "state.sqlite")
    store = pr.SQLiteStore(db)
    # Beat two days ago, seen through a clock set in the past.
    pr.Heartbeat(
        "nightly", every=DAY, store=store, clock=FakeClock(wall=time.time() - 2 * DAY)
    ).beat()
    store.close()
    first = _cli("check", "nightly", "--db", db)
    assert (first.returncode, first.stdout.strip()) == (1, "nightly: missed")
    assert "heartbeat.missed" in first.stderr
    second = _cli("check", "nightly", "--db", db)
    assert second.returncode == 1
    assert "heartbeat.missed" not in second.stderr  # reported once, across processes


def test_heartbeat_command_rejects_bad_input(tmp_path: Path) -> None:
    bad = _cli("beat", "no spaces", "--db", str(tmp_path / "s.sqlite"))
    assert bad.returncode != 0
    assert "name" in bad.stderr


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"every": 0}, "every"),
        ({"every": float("nan")}, "every"),
        ({"every": 1, "grace": -1}, "grace"),
    ],
)
def test_heartbeat_rejects_bad_schedules(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        pr.Heartbeat("x", store=pr.MemoryStore(), **kwargs)  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.just(("beat", 0.0)),
            st.just(("check", 0.0)),
            st.tuples(st.just("advance"), st.floats(0, 3 * DAY)),
        ),
        max_size=40,
    )
)
def test_heartbeat_reports_each_missed_deadline_exactly_once(
    ops: list[tuple[str, float]],
) -> None:
    clock = FakeClock()
    every, grace = DAY, 3600.0
    hb = pr.Heartbeat(
        "p", every=every, grace=grace, store=pr.MemoryStore(), clock=clock
    )
    reported: list[float] = []
    for op, amount in ops:
        if op == "beat":
            hb.beat()
        elif op == "advance":
            clock.advance(amount)
        else:
            status = hb.check()
            late = clock.time() - status.due > grace
            assert (status.state == "missed") == late
            if status.newly_missed:
                assert status.due not in reported
                reported.append(status.due)
            elif late:
                assert status.due in reported
