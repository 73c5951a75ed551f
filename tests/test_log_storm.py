"""Log storms: repeated identical failures are summarised, not printed N times.

The finding: with the store down, 2,000 calls produced 10,000 tracebacks (6.1
KiB of log per call). The default log hook now writes the first failure in
full, then one counted ``paios_reliability.logging.suppressed`` line per
interval; hooks and the event store still get every event.
"""

from __future__ import annotations

import io
import json
import logging
import socket
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import paios_reliability as pr
from paios_reliability._core import event_log as _event_log
from paios_reliability._core.events import emit
from paios_reliability.testing import FakeClock, capture_events

SUMMARY = "paios_reliability.logging.suppressed"
TRACEBACK = "Traceback (most recent call last)"


@dataclass
class Captured:
    """What the default hook wrote: formatted text and each record's payload."""

    stream: io.StringIO = field(default_factory=io.StringIO)
    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def full(self, name: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r["event"] == name]

    def summaries(self, name: str | None = None) -> list[dict[str, Any]]:
        return [
            r
            for r in self.records
            if r["event"] == SUMMARY and name in (None, r["suppressed_event"])
        ]


@pytest.fixture
def captured() -> Iterator[Captured]:
    out = Captured()

    class Handler(logging.StreamHandler):  # type: ignore[type-arg]
        def emit(self, record: logging.LogRecord) -> None:
            super().emit(record)
            payload = getattr(record, "paios_event", None)
            if isinstance(payload, dict):
                out.records.append(payload)

    handler = Handler(out.stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    logger = logging.getLogger("paios_reliability")
    old_level, old_propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # keep pytest's own capture out of the count
    try:
        yield out
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        logger.propagate = old_propagate


@pytest.fixture
def clock() -> Iterator[FakeClock]:
    fake = FakeClock()
    with fake.install():
        yield fake


def raised(exc: BaseException) -> BaseException:
    """``exc`` with a traceback, as a real failure has one."""
    try:
        raise exc
    except BaseException as caught:
        return caught


def dead_redis_url() -> str:
    with socket.socket() as sock:  # bound, never listening: connections are refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


def test_finding_log_storm_dead_store_behind_a_breaker_writes_o1_tracebacks(
    captured: Captured, clock: FakeClock
) -> None:
    store = pr.RedisStore(dead_redis_url(), timeout=0.5)
    breaker = pr.CircuitBreaker("storm", store=store, fail_open=True)

    @pr.resilient(name="tool", breaker=breaker)
    def tool() -> str:
        return "ok"

    calls = 2000
    try:
        with capture_events() as events:
            for _ in range(calls):
                assert tool() == "ok"  # fail-open: the store is down, calls go through
                clock.advance(0.01)
            # After the interval: the next occurrence writes the count, then
            # itself in full again.
            clock.advance(60.0)
            assert tool() == "ok"
    finally:
        store.close()

    names = Counter(e.name for e in events)
    failures = [n for n, c in names.items() if c >= calls]
    assert failures  # the storm really happened: events for every call...
    for name in failures:
        assert names[name] == calls + 1  # ...and hooks still got every one
    text = captured.text
    # Before: 5 tracebacks and 6.1 KiB per call, 10,000 tracebacks in all.
    assert text.count(TRACEBACK) <= 6 * len(failures)
    assert len(captured.records) == 3 * len(failures)  # full, summary, full
    for name in failures:
        assert len(captured.full(name)) == 2
        (summary,) = captured.summaries(name)
        assert summary["suppressed"] == calls - 1
        assert summary["seconds"] == pytest.approx((calls - 1) * 0.01)
    assert len(text) < 64 * 1024


def test_a_different_error_is_not_suppressed(
    captured: Captured, clock: FakeClock
) -> None:
    for _ in range(5):
        emit(
            "store",
            "unavailable",
            level="error",
            subject="s",
            exc=raised(OSError("down")),
        )
    emit(
        "store",
        "unavailable",
        level="error",
        subject="s",
        exc=raised(TimeoutError("slow")),
    )
    emit(
        "store",
        "unavailable",
        level="error",
        subject="s",
        exc=raised(OSError("disk full")),
    )
    emit(
        "store",
        "unavailable",
        level="error",
        subject="other",
        exc=raised(OSError("down")),
    )
    emit("store", "gone", level="error", subject="s", exc=raised(OSError("down")))
    errors = [
        r.get("error") for r in captured.full("paios_reliability.store.unavailable")
    ]
    assert errors == ["down", "slow", "disk full", "down"]
    assert len(captured.full("paios_reliability.store.gone")) == 1
    assert captured.text.count(TRACEBACK) == 5
    assert captured.summaries() == []


def test_digits_do_not_make_a_failure_different(
    captured: Captured, clock: FakeClock
) -> None:
    for port in range(5000, 5010):
        emit(
            "store",
            "unavailable",
            level="error",
            exc=raised(OSError(f"refused on :{port}")),
        )
    assert len(captured.full("paios_reliability.store.unavailable")) == 1


def test_after_the_interval_a_summary_line_says_how_many_and_how_long(
    captured: Captured, clock: FakeClock
) -> None:
    for _ in range(10):
        emit(
            "breaker",
            "record_lost",
            level="error",
            subject="b",
            exc=raised(OSError("down")),
        )
        clock.advance(1.0)
    assert len(captured.records) == 1
    clock.advance(60.0)
    emit(
        "breaker",
        "record_lost",
        level="error",
        subject="b",
        exc=raised(OSError("down")),
    )
    first, summary, again = captured.records
    assert first["event"] == again["event"] == "paios_reliability.breaker.record_lost"
    assert summary == {
        "event": SUMMARY,
        "suppressed": 9,
        "seconds": 9.0,
        "suppressed_event": "paios_reliability.breaker.record_lost",
        "subject": "b",
        "error_type": "OSError",
        "error": "down",
    }
    (line,) = [x for x in captured.text.splitlines() if SUMMARY in x]
    assert line == (
        f"ERROR paios_reliability {SUMMARY} suppressed=9 seconds=9.0 "
        "suppressed_event='paios_reliability.breaker.record_lost' subject='b' "
        "error_type='OSError' error='down'"
    )


def test_warnings_without_an_exception_are_summarised_too(
    captured: Captured, clock: FakeClock
) -> None:
    for _ in range(100):
        emit("breaker", "opened", level="warning", subject="github")
    for _ in range(100):  # informational events are not failures: all written
        emit("retry", "succeeded", subject="f")
    assert len(captured.full("paios_reliability.breaker.opened")) == 1
    assert len(captured.full("paios_reliability.retry.succeeded")) == 100


def test_a_pending_count_is_written_when_another_failure_arrives_after_its_interval(
    captured: Captured, clock: FakeClock
) -> None:
    for _ in range(3):
        emit("a", "failed", level="error", exc=raised(OSError("a")))
    clock.advance(61.0)
    emit("b", "failed", level="error", exc=raised(OSError("b")))
    (summary,) = captured.summaries("paios_reliability.a.failed")
    assert summary["suppressed"] == 2
    # Swept keys start afresh: the next one is written in full again.
    emit("a", "failed", level="error", exc=raised(OSError("a")))
    assert len(captured.full("paios_reliability.a.failed")) == 2


def test_pending_counts_are_written_at_interpreter_exit() -> None:
    script = textwrap.dedent(
        """
        import logging, sys
        logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(message)s")
        from paios_reliability._core.events import emit
        for _ in range(50):
            try:
                raise OSError("down")
            except OSError as exc:
                emit("store", "unavailable", level="error", subject="db", exc=exc)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.count(TRACEBACK) == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"{SUMMARY} suppressed=49 seconds=")
    assert "suppressed_event='paios_reliability.store.unavailable'" in last


def test_memory_is_bounded_and_evicted_counts_are_written(
    captured: Captured, clock: FakeClock
) -> None:
    with pr.set_log_summary(60.0, max_keys=3):
        for key in range(10):
            for _ in range(4):
                emit(
                    "k",
                    "failed",
                    level="error",
                    subject=f"s{key}",
                    exc=raised(OSError("x")),
                )
        summary = _event_log._summary
        assert summary is not None
        assert len(summary._tallies) <= 3
        evicted = captured.summaries()
        assert [s["subject"] for s in evicted] == [f"s{k}" for k in range(7)]
        assert {s["suppressed"] for s in evicted} == {3}
    # Leaving the setting writes what is pending: nothing is lost.
    assert sum(s["suppressed"] for s in captured.summaries()) == 10 * 3


def test_threads_share_one_count(captured: Captured, clock: FakeClock) -> None:
    threads, per_thread = 8, 250
    barrier = threading.Barrier(threads)

    def worker() -> None:
        barrier.wait(timeout=30)
        for _ in range(per_thread):
            emit(
                "store",
                "unavailable",
                level="error",
                subject="db",
                exc=raised(OSError("down")),
            )

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(timeout=120)
    _event_log.flush_log_summary()
    assert len(captured.full("paios_reliability.store.unavailable")) == 1
    (summary,) = captured.summaries()
    assert summary["suppressed"] == threads * per_thread - 1


def test_switched_off_every_failure_is_written(
    captured: Captured, clock: FakeClock
) -> None:
    with pr.set_log_summary(None):
        for _ in range(20):
            emit("store", "unavailable", level="error", exc=raised(OSError("down")))
    assert len(captured.full("paios_reliability.store.unavailable")) == 20
    assert captured.text.count(TRACEBACK) == 20


def test_the_event_store_still_records_every_event(
    tmp_path: Path, captured: Captured, clock: FakeClock
) -> None:
    store = pr.EventStore(tmp_path / "observability.sqlite")
    try:
        with store.record_library_events(min_level="error"):
            for _ in range(300):
                emit(
                    "store",
                    "unavailable",
                    level="error",
                    subject="db",
                    exc=raised(OSError("x")),
                )
        store.flush()
        assert store.count(category="store", action="unavailable") == 300
    finally:
        store.close()
    assert len(captured.records) == 1


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [((-1.0,), {}), ((float("nan"),), {}), ((float("inf"),), {}), (("60",), {}),
     ((True,), {}), ((60.0,), {"max_keys": 0}), ((60.0,), {"max_keys": 1.5})],
)  # fmt: skip
def test_set_log_summary_rejects_bad_settings(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    with pytest.raises(ValueError, match="set_log_summary"):
        pr.set_log_summary(*args, **kwargs)


def test_set_log_summary_restores_the_previous_setting() -> None:
    before = _event_log._summary
    assert before is not None
    with pr.set_log_summary(5.0, max_keys=7):
        current = _event_log._summary
        assert current is not None
        assert (current.interval, current.max_keys) == (5.0, 7)
        with pr.set_log_summary(None):
            assert _event_log._summary is None
        inner = _event_log._summary
        assert inner is not None
        assert inner.interval == 5.0
    after = _event_log._summary
    assert after is not None
    assert (after.interval, after.max_keys) == (before.interval, before.max_keys)


def test_summary_lines_carry_no_secret(captured: Captured, clock: FakeClock) -> None:
    secret = "sk-proj-Q7pXv2LmN8rT4wZ6yB1cD3eF"
    for _ in range(3):
        emit(
            "http",
            "failed",
            level="error",
            subject=f"https://u:{secret}@api",
            exc=raised(OSError(f"token={secret}")),
        )
    _event_log.flush_log_summary()
    assert len(captured.summaries()) == 1
    assert secret not in captured.text
    assert secret not in json.dumps(captured.records)


# -- the summariser as a state machine -------------------------------------------------


class SummaryMachine(RuleBasedStateMachine):
    """Nothing is lost: every event of a key is either written in full, counted
    in a summary line, or still pending; and two full lines of one key are at
    least one interval apart."""

    INTERVAL = 10.0

    @initialize()
    def setup(self) -> None:
        self.clock = FakeClock()
        self.restore_clock = self.clock.install()
        self.restore_summary = pr.set_log_summary(self.INTERVAL, max_keys=64)
        # (when, payload, level); payload None marks a flush
        self.records: list[tuple[float, dict[str, Any] | None, int]] = []
        self.emitted: Counter[str] = Counter()
        machine = self

        class Handler(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                payload = getattr(record, "paios_event", None)
                if isinstance(payload, dict):
                    machine.records.append(
                        (machine.clock.monotonic(), payload, record.levelno)
                    )

        self.handler = Handler()
        self.logger = logging.getLogger("paios_reliability")
        self.saved = (self.logger.level, self.logger.propagate)
        self.logger.addHandler(self.handler)
        self.logger.setLevel(logging.INFO)
        self.logger.propagate = False

    @rule(
        key=st.sampled_from(["a", "b", "c"]),
        level=st.sampled_from(["error", "warning"]),
    )
    def fail(self, key: str, level: Any) -> None:
        emit("model", key, level=level, exc=raised(OSError(key)))
        self.emitted[f"paios_reliability.model.{key}"] += 1

    @rule(seconds=st.floats(min_value=0.0, max_value=25.0))
    def wait(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @precondition(lambda self: bool(self.emitted))
    @rule()
    def flush(self) -> None:
        _event_log.flush_log_summary()
        self.records.append((self.clock.monotonic(), None, 0))

    def _written(self) -> Counter[str]:
        written: Counter[str] = Counter()
        for _, payload, _level in self.records:
            if payload is None:
                continue
            if payload["event"] == SUMMARY:
                written[payload["suppressed_event"]] += payload["suppressed"]
            else:
                written[payload["event"]] += 1
        return written

    @invariant()
    def nothing_is_lost(self) -> None:
        summary = _event_log._summary
        assert summary is not None
        pending: Counter[str] = Counter()
        for tally in summary._tallies.values():
            pending[tally.name] += tally.suppressed
        assert self._written() + pending == self.emitted

    @invariant()
    def full_lines_are_an_interval_apart(self) -> None:
        last: dict[tuple[str, int], float] = {}
        for when, payload, level in self.records:
            if payload is None:  # a flush forgets every key
                last.clear()
            elif payload["event"] != SUMMARY:
                key = (payload["event"], level)
                if key in last:
                    assert when - last[key] >= self.INTERVAL
                last[key] = when

    def teardown(self) -> None:
        self.logger.removeHandler(self.handler)
        self.logger.setLevel(self.saved[0])
        self.logger.propagate = self.saved[1]
        self.restore_summary()
        self.restore_clock()


def test_summary_state_machine() -> None:
    run_state_machine_as_test(
        SummaryMachine,
        settings=settings(
            max_examples=60,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
