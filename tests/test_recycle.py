"""Recycler (a Hypothesis state machine) and RecyclingWorker (real child processes)."""

from __future__ import annotations

import asyncio
import collections
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from paios_reliability import (
    ConfigError,
    PermanentError,
    Recycler,
    RecyclingWorker,
    TimeoutExceeded,
)
from paios_reliability.testing import capture_events

TARGETS = "_proc_ops_helpers"


@pytest.fixture
def journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where worker children record every request they run (one file per pid)."""
    directory = tmp_path / "journal"
    directory.mkdir()
    monkeypatch.setenv("PAIOS_TEST_JOURNAL_DIR", str(directory))
    return directory


def journalled(directory: Path) -> collections.Counter[str]:
    seen: collections.Counter[str] = collections.Counter()
    for path in directory.glob("*.log"):
        seen.update(path.read_text().split())
    return seen


@pytest.fixture(params=["sync", "async"])
def call(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """worker.call or worker.acall, driven the same way."""

    def sync_call(worker: RecyclingWorker[Any], *args: Any) -> Any:
        return worker.call(*args)

    def async_call(worker: RecyclingWorker[Any], *args: Any) -> Any:
        return asyncio.run(worker.acall(*args))

    return sync_call if request.param == "sync" else async_call


@pytest.fixture
def workers() -> Iterator[Callable[..., RecyclingWorker[Any]]]:
    made: list[RecyclingWorker[Any]] = []

    def make(target: str, **options: Any) -> RecyclingWorker[Any]:
        worker: RecyclingWorker[Any] = RecyclingWorker(target, **options)
        made.append(worker)
        return worker

    yield make
    for worker in made:
        worker.close()


def test_5000_requests_with_max_requests_100_restart_50_times_answering_each_once(
    journal: Path, workers: Callable[..., RecyclingWorker[Any]]
) -> None:
    worker = workers(f"{TARGETS}:answer", max_requests=100, jitter=0)
    with capture_events() as events:
        answers = [worker.call(i) for i in range(5000)]
    worker.close()
    assert [request for _, request in answers] == list(range(5000))
    per_pid = collections.Counter(pid for pid, _ in answers)
    assert len(per_pid) == 50
    assert set(per_pid.values()) == {100}
    assert worker.restarts == 50
    assert worker.requests == 5000
    assert journalled(journal) == collections.Counter(str(i) for i in range(5000))
    recycled = events.of("recycling_worker.recycled")
    assert len(recycled) == 50
    assert {e.fields["reason"] for e in recycled} == {"max_requests"}
    assert {e.fields["exit_code"] for e in recycled} == {0}  # exited on request


def test_jitter_is_drawn_once_per_worker(
    journal: Path, workers: Callable[..., RecyclingWorker[Any]]
) -> None:
    worker = workers(f"{TARGETS}:answer", max_requests=20, jitter=10, seed=3)
    answers = [worker.call(i) for i in range(600)]
    served = list(collections.Counter(pid for pid, _ in answers).values())
    full = served[:-1]  # the last worker may still be serving
    assert all(20 <= n <= 30 for n in full)
    assert len(set(full)) > 1  # not all workers recycle at the same count
    assert 20 <= worker.restarts <= 30
    assert sum(journalled(journal).values()) == 600


def test_exceptions_cross_back_unchanged(
    journal: Path,
    workers: Callable[..., RecyclingWorker[Any]],
    call: Callable[..., Any],
) -> None:
    worker = workers(f"{TARGETS}:fail_with")
    with pytest.raises(ValueError, match="bad input 42"):
        call(worker, "value")
    with pytest.raises(PermanentError) as info:
        call(worker, "unpicklable")
    assert info.value.code == "PROCESS_FAILED"
    assert "cannot cross processes" in str(info.value)
    assert "Local" in str(info.value.context["remote_traceback"])
    assert worker.restarts == 0  # errors are answers, not deaths


def test_a_child_dying_mid_request_fails_that_request_once_and_recovers(
    journal: Path,
    workers: Callable[..., RecyclingWorker[Any]],
    call: Callable[..., Any],
) -> None:
    dying = workers(f"{TARGETS}:fail_with")
    with capture_events() as events, pytest.raises(PermanentError) as info:
        call(dying, "die")
    assert info.value.code == "PROCESS_FAILED"
    assert "not retried" in str(info.value)
    assert journalled(journal)["die"] == 1  # ran once, never again
    assert len(events.of("recycling_worker.died")) == 1
    with pytest.raises(ValueError, match="bad input"):
        call(dying, "value")  # a fresh child serves the next request


def test_request_timeout_kills_the_child_and_the_next_call_works(
    workers: Callable[..., RecyclingWorker[Any]], call: Callable[..., Any]
) -> None:
    worker = workers(f"{TARGETS}:sleep_for", request_timeout=0.5)
    first = None
    with pytest.raises(TimeoutExceeded):
        first = call(worker, 30)
    assert first is None
    assert call(worker, 0) == "slept"


def test_rss_limit_recycles_between_requests(
    workers: Callable[..., RecyclingWorker[Any]],
) -> None:
    worker = workers(f"{TARGETS}:grow", max_rss_mb=60, max_requests=0)
    with capture_events() as events:
        pids = [worker.call(25) for _ in range(6)]
    assert worker.restarts >= 2
    assert len(set(pids)) >= 2
    reasons = {e.fields["reason"] for e in events.of("recycling_worker.recycled")}
    assert reasons == {"max_rss"}
    assert all(e.fields["rss_mb"] > 60 for e in events.of("recycling_worker.recycled"))


def test_a_callable_target_is_sent_by_reference(
    workers: Callable[..., RecyclingWorker[Any]],
) -> None:
    import _proc_ops_helpers

    worker: RecyclingWorker[int] = RecyclingWorker(_proc_ops_helpers.whoami)
    try:
        assert worker.call() == worker.pid != os.getpid()
    finally:
        worker.close()
    with pytest.raises(ConfigError):
        RecyclingWorker(lambda: 1)


def test_a_target_that_cannot_be_loaded_fails_clearly(
    workers: Callable[..., RecyclingWorker[Any]],
) -> None:
    worker = workers("no_such_module_xyz:fn")
    with pytest.raises(PermanentError, match="could not load its target") as info:
        worker.call()
    assert info.value.code == "PROCESS_FAILED"


def test_unpicklable_arguments_are_a_usage_error_and_keep_the_child(
    workers: Callable[..., RecyclingWorker[Any]],
) -> None:
    worker = workers(f"{TARGETS}:whoami")
    pid = worker.call()
    with pytest.raises(ConfigError, match="cannot be pickled"):
        worker.call(lambda: None)
    assert worker.call() == pid


def test_close_is_idempotent_and_final(
    workers: Callable[..., RecyclingWorker[Any]],
) -> None:
    worker = workers(f"{TARGETS}:whoami")
    worker.call()
    with capture_events() as events:
        worker.close()
        worker.close()
    assert len(events.of("recycling_worker.stopped")) == 1
    assert worker.pid is None
    with pytest.raises(PermanentError, match="closed"):
        worker.call()


# -- Recycler ------------------------------------------------------------------------


def test_recycler_limits_and_validation() -> None:
    recycler = Recycler(3, jitter=0)
    assert [recycler.record() for _ in range(4)] == [False, False, True, True]
    assert recycler.due
    recycler.reset()
    assert recycler.count == 0
    assert not recycler.due
    assert not Recycler(0).record(10**6)  # 0 disables recycling
    a, b = Recycler(1000, 50, seed=1), Recycler(1000, 50, seed=1)
    assert a.limit == b.limit
    assert 1000 <= a.limit <= 1050
    with pytest.raises(ConfigError):
        Recycler(-1)


class RecyclerModel(RuleBasedStateMachine):
    """Recycler against a plain reference count."""

    def __init__(self) -> None:
        super().__init__()
        self.recycler = Recycler(10, jitter=5, seed=7)
        self.count = 0

    @rule(n=st.integers(1, 4))
    def record(self, n: int) -> None:
        self.count += n
        assert self.recycler.record(n) == (self.count >= self.recycler.limit)

    @rule()
    def reset(self) -> None:
        self.recycler.reset()
        self.count = 0

    @invariant()
    def consistent(self) -> None:
        assert self.recycler.count == self.count
        assert 10 <= self.recycler.limit <= 15
        assert self.recycler.due == (self.count >= self.recycler.limit)


TestRecyclerModel = RecyclerModel.TestCase
TestRecyclerModel.settings = settings(
    max_examples=100, stateful_step_count=30, deadline=None
)
