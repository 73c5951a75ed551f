"""State stores: the update contract, atomicity across threads and processes,
and bounded, typed failure (or fail-open) when the store is down."""

from __future__ import annotations

import pickle
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import paios_reliability as pr
from paios_reliability import (
    Bulkhead,
    CircuitBreaker,
    MemoryStore,
    OccurrenceThreshold,
    RateLimiter,
    RedisStore,
    SQLiteStore,
    StoreUnavailableError,
    Throttle,
)
from paios_reliability._stores import _renewal, resolve_store
from paios_reliability.testing import capture_events
from paios_reliability.typing import StateStore
from store_models import eventually


def _raise(error: BaseException) -> None:
    raise error


def key() -> str:
    return f"k-{uuid.uuid4().hex}"


def increment(value: Any) -> tuple[Any, int]:
    new = (value or 0) + 1
    return new, new


# -- the contract, on every store -----------------------------------------------------


def test_implements_the_protocol(store: StateStore) -> None:
    assert isinstance(store, StateStore)


def test_missing_key_reads_none(store: StateStore) -> None:
    assert store.get(key()) is None


def test_update_writes_and_returns_the_result(store: StateStore) -> None:
    k = key()
    assert store.update(k, lambda v: ({"seen": v}, "result"), ttl=60) == "result"
    assert store.get(k) == {"seen": None}
    assert store.update(k, lambda v: ([v, 2], v), ttl=60) == {"seen": None}
    assert store.get(k) == [{"seen": None}, 2]


def test_update_returning_the_same_object_writes_nothing(store: StateStore) -> None:
    k = key()
    store.update(k, lambda v: (5, None), ttl=60)
    seen: list[Any] = []

    def keep(value: Any) -> tuple[Any, str]:
        seen.append(value)
        return value, "kept"

    assert store.update(k, keep, ttl=60) == "kept"
    assert seen == [5]
    assert store.get(k) == 5


def test_update_returning_none_deletes(store: StateStore) -> None:
    k = key()
    store.update(k, lambda v: ("x", None), ttl=60)
    store.update(k, lambda v: (None, None), ttl=60)
    assert store.get(k) is None
    store.update(k, lambda v: ("y", None), ttl=60)
    store.delete(k)
    assert store.get(k) is None
    store.delete(k)  # deleting a missing key is fine


def test_an_error_in_the_update_function_writes_nothing(store: StateStore) -> None:
    k = key()
    store.update(k, lambda v: (1, None), ttl=60)

    def broken(value: Any) -> tuple[Any, None]:
        raise ZeroDivisionError("bug")

    with pytest.raises(ZeroDivisionError):
        store.update(k, broken, ttl=60)
    assert store.get(k) == 1


def test_keys_expire_after_their_ttl(store: StateStore) -> None:
    k = key()
    store.update(k, lambda v: ("short", None), ttl=0.05)
    give_up = time.monotonic() + 10
    while store.get(k) is not None and time.monotonic() < give_up:
        time.sleep(0.01)
    assert store.get(k) is None
    assert store.update(k, increment, ttl=60) == 1  # expired reads as absent


async def test_async_methods(store: StateStore) -> None:
    k = key()
    assert await store.aupdate(k, increment, ttl=60) == 1
    assert await store.aupdate(k, increment, ttl=60) == 2
    assert await store.aget(k) == 2


def test_concurrent_threads_lose_no_update(store: StateStore) -> None:
    k = key()

    def work() -> None:
        for _ in range(40):
            store.update(k, increment, ttl=60)

    threads = [threading.Thread(target=work) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert store.get(k) == 200


WORKER = """
import sys
from paios_reliability import RedisStore, SQLiteStore
kind, target, prefix, key = sys.argv[1:5]
store = SQLiteStore(target) if kind == "sqlite" else RedisStore(target, prefix=prefix)
print("ready", flush=True)
sys.stdin.readline()
for _ in range(50):
    store.update(key, lambda v: ((v or 0) + 1, None), ttl=60)
print("done", flush=True)
"""


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_concurrent_processes_lose_no_update(
    kind: str, tmp_path: Path, spawn: Callable[..., Any], request: pytest.FixtureRequest
) -> None:
    if kind == "sqlite":
        target = str(tmp_path / "state.db")
        prefix = "-"
        store: StateStore = SQLiteStore(target)
    else:
        target = request.getfixturevalue("redis_url")
        prefix = f"mp-{uuid.uuid4().hex}"
        store = RedisStore(target, prefix=prefix)
    workers = [spawn(WORKER, kind, target, prefix, "counter") for _ in range(4)]
    for w in workers:
        assert w.read() == "ready"
    for w in workers:
        assert w.process.stdin is not None
        w.process.stdin.write("go\n")
        w.process.stdin.flush()
    assert [w.read(timeout=120) for w in workers] == ["done"] * 4
    assert store.get("counter") == 200
    store.close()


# -- store specifics ---------------------------------------------------------------


def test_memory_store_is_private_state_and_sweeps_expired_keys() -> None:
    store = MemoryStore()
    assert store.shared is False
    for i in range(3000):
        store.update(f"k{i}", lambda v: (1, None), ttl=0.001)
    time.sleep(0.01)
    for i in range(3000):
        store.update(f"fresh{i}", lambda v: (1, None), ttl=60)
    assert len(store) <= 3000 + 1024  # the expired ones were swept
    assert store.cell("c", list) is store.cell("c", dict)


def test_redis_keys_are_namespaced_and_expire(redis_url: str) -> None:
    prefix = f"ns-{uuid.uuid4().hex}"
    store = RedisStore(redis_url, prefix=prefix)
    breaker = CircuitBreaker("payments", store=store, failure_threshold=1)
    breaker.trip()
    limiter = RateLimiter("api", rate=1, per=60, store=store)
    limiter.acquire()
    client = store.client
    keys = sorted(k.decode() for k in client.keys(f"{prefix}:*"))
    assert keys == [f"{prefix}:circuit_breaker:payments", f"{prefix}:rate_limiter:api"]
    for k in keys:
        assert client.pttl(k) > 0
    assert 60_000 < client.pttl(f"{prefix}:rate_limiter:api") <= 121_000
    assert store.shared is True
    store.close()


def test_redis_store_accepts_a_client(redis_url: str) -> None:
    import redis

    # A bounded client (redis-py before 5 leaves socket_timeout unset).
    client = redis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=5.0)
    store = RedisStore(client, prefix=f"c-{uuid.uuid4().hex}")
    assert store.update("k", increment, ttl=60) == 1
    assert store.update("k", increment, ttl=60) == 2
    store.close()  # not ours to close
    assert client.ping()
    client.close()


def test_sqlite_store_uses_wal_and_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = SQLiteStore(path)
    store.update("k", lambda v: ({"a": 1}, None), ttl=60)
    store.close()
    with pytest.raises(ValueError, match="closed"):
        store.get("k")
    again = SQLiteStore(path)
    assert again.get("k") == {"a": 1}
    again.close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_resolve_store_refuses_what_is_not_a_store() -> None:
    assert isinstance(resolve_store(None), MemoryStore)
    with pytest.raises(TypeError, match="StateStore"):
        resolve_store(object())  # type: ignore[arg-type]


def test_store_unavailable_error_is_typed_and_pickles() -> None:
    error = StoreUnavailableError("down", store="redis:h:1")
    assert isinstance(error, pr.TransientError)
    assert error.code == "STORE_UNAVAILABLE"
    assert pr.classify(error).code == "STORE_UNAVAILABLE"
    assert pr.exit_code_for(error) == 28
    clone = pickle.loads(pickle.dumps(error))
    assert (type(clone), clone.store, str(clone)) == (
        StoreUnavailableError,
        "redis:h:1",
        "down",
    )


# -- a store that is down: bounded, typed errors or fail-open --------------------------


def test_sqlite_locked_past_the_busy_timeout_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = SQLiteStore(path, busy_timeout_ms=50)
    store.update("k", increment, ttl=60)
    blocker = pr.open_database(path)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreUnavailableError) as info:
            store.update("k", increment, ttl=60)
        assert info.value.retryable is True
        assert isinstance(info.value.__cause__, pr.ReliabilityError)
        # A closed breaker only reads (WAL readers are never blocked)...
        breaker = CircuitBreaker("b", store=store, failure_threshold=1)
        assert breaker.call(lambda: "read only") == "read only"
        # ... a failure it cannot record is reported, and the error still raised.
        error = ConnectionResetError("down")
        with capture_events() as events, pytest.raises(ConnectionResetError) as raised:
            breaker.call(_raise, error)
        assert raised.value is error
        assert events.of("circuit_breaker.record_lost")
        strict = RateLimiter("l", rate=1, per=60, store=store)
        with pytest.raises(StoreUnavailableError):
            strict.acquire()
        lenient = RateLimiter("l", rate=1, per=60, store=store, fail_open=True)
        with capture_events() as events:
            lenient.acquire()
        assert events.of("rate_limiter.store_unavailable")
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert store.update("k", increment, ttl=60) == 2
    store.close()


def test_sqlite_path_that_cannot_exist_is_unavailable_and_not_retryable(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(tmp_path / "missing-dir" / "state.db")
    with pytest.raises(StoreUnavailableError) as info:
        store.get("k")
    assert info.value.retryable is False
    limiter = RateLimiter("l", rate=1, per=60, store=store, fail_open=True)
    with capture_events() as events:
        limiter.acquire()
        limiter.acquire()  # no budget check possible: let through
    assert len(events.of("rate_limiter.store_unavailable")) == 2


def test_redis_stopped_mid_run_then_restarted(
    redis_server_factory: Callable[[], Any],
) -> None:
    server = redis_server_factory()
    store = RedisStore(server.url, prefix="down", timeout=0.5)
    strict = CircuitBreaker("b", store=store, failure_threshold=2)
    lenient = CircuitBreaker("b", store=store, failure_threshold=2, fail_open=True)
    limiter = RateLimiter("l", rate=1, per=3600, store=store, block=False)
    open_limiter = RateLimiter("l", rate=1, per=3600, store=store, fail_open=True)
    bulkhead = Bulkhead("h", max_concurrent=1, store=store)
    open_bulkhead = Bulkhead("h", max_concurrent=1, store=store, fail_open=True)
    throttle = Throttle(60, store=store)
    threshold = OccurrenceThreshold(2, 60, store=store, fail_open=True)
    assert strict.call(lambda: "up") == "up"
    limiter.acquire()

    server.stop()
    runs: list[str] = []
    for attempt in (
        lambda: store.get("x"),
        lambda: store.update("x", increment, ttl=60),
        lambda: strict.call(runs.append, "strict"),
        limiter.acquire,
        lambda: bulkhead.call(runs.append, "bulkhead"),
        lambda: throttle.allow("k"),
    ):
        with pytest.raises(StoreUnavailableError) as info:
            attempt()
        assert info.value.code == "STORE_UNAVAILABLE"
        assert "redis:127.0.0.1" in str(info.value)
    assert runs == []
    with capture_events() as events:
        assert lenient.call(lambda: "through") == "through"
        open_limiter.acquire()
        assert open_bulkhead.call(lambda: "inside") == "inside"
        assert threshold.record("k") is True  # better a duplicate alert than none
    names = events.names()
    for primitive in (
        "circuit_breaker",
        "rate_limiter",
        "bulkhead",
        "occurrence_threshold",
    ):
        assert f"paios_reliability.{primitive}.store_unavailable" in names

    server.start()  # same port, empty (no persistence)
    assert store.update("x", increment, ttl=60) == 1
    assert strict.state == "closed"
    assert strict.call(lambda: "recovered") == "recovered"
    limiter.acquire()
    assert bulkhead.call(lambda: "back") == "back"
    assert throttle.allow("k") is True
    store.close()


def test_a_hung_redis_gives_a_bounded_error(
    redis_server_factory: Callable[[], Any],
) -> None:
    import os
    import signal

    server = redis_server_factory()
    store = RedisStore(server.url, prefix="hung", timeout=0.3)
    assert store.update("k", increment, ttl=60) == 1
    assert server.process is not None
    os.kill(server.process.pid, signal.SIGSTOP)  # alive, accepting, never answering
    try:
        with pytest.raises(StoreUnavailableError, match="Timeout"):
            store.get("k")
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
    assert store.get("k") == 1
    store.close()


def test_doctor_checks_pass(tmp_path: Path) -> None:
    from paios_reliability._policies import breaker as _breaker
    from paios_reliability._policies import bulkhead as _bulkhead
    from paios_reliability._policies import throttle as _throttle

    for check in (
        _breaker.doctor_check,
        _throttle.doctor_check,
        _bulkhead.doctor_check,
    ):
        detail = check(tmp_path)
        assert isinstance(detail, str)
        assert "SQLite" in detail


# -- a passed-in Redis client must bound its calls (finding 6) ------------------------


@pytest.fixture
def silent_server() -> Any:
    """A TCP server that accepts connections and never answers (a stuck Redis)."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    yield server.getsockname()[1]
    server.close()


def test_finding_06_a_client_without_socket_timeout_is_refused(
    silent_server: int,
) -> None:
    import redis

    client = redis.Redis(host="127.0.0.1", port=silent_server, socket_timeout=None)
    with pytest.raises(ValueError, match="socket_timeout") as info:
        RedisStore(client, prefix="x")
    assert "URL" in str(info.value)  # and says what to do instead
    blocking = redis.Redis(
        connection_pool=redis.BlockingConnectionPool(
            host="127.0.0.1", port=silent_server, socket_timeout=1.0, timeout=None
        )
    )
    with pytest.raises(ValueError, match="timeout"):
        RedisStore(blocking, prefix="x")
    client.close()
    blocking.close()


def test_finding_06_a_bounded_client_on_a_silent_server_gives_a_bounded_error(
    silent_server: int,
) -> None:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    client = redis.Redis(
        host="127.0.0.1",
        port=silent_server,
        socket_timeout=0.2,
        retry=Retry(NoBackoff(), 0),
    )
    store = RedisStore(client, prefix="x")
    breaker = CircuitBreaker("dep", store=store, fail_open=True)
    outcomes: list[Any] = []

    def calls() -> None:
        with pytest.raises(StoreUnavailableError):
            store.get("k")
        outcomes.append(breaker.call(lambda: "let through"))

    worker = threading.Thread(target=calls, daemon=True)
    worker.start()
    worker.join(30)  # a hang is infinite; this takes about 2 x 0.2 s
    assert outcomes == ["let through"]
    client.close()


# -- SQLite waits its busy timeout, not twice that (finding 8) ------------------------


def test_finding_08_sqlite_store_gives_up_within_its_busy_timeout(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.db"
    store = SQLiteStore(path, busy_timeout_ms=1000)
    store.update("k", increment, ttl=60)
    blocker = pr.open_database(path)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError):
            store.update("k", increment, ttl=60)
        took = time.monotonic() - started
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert 0.9 <= took < 1.5  # it waited its busy timeout, never about twice it
    assert store.update("k", increment, ttl=60) == 2
    store.close()


# -- renewal lanes: one per store, bounded (findings 1 and 20) ------------------------


class RenewalLanes(RuleBasedStateMachine):
    """Registrations on several stores: each store on one lane, lanes bounded.

    Intervals are long, so no callback runs: this checks the bookkeeping that
    decides which renewals could ever wait on each other.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stores = [object() for _ in range(_renewal.MAX_LANES + 4)]
        self.live: list[tuple[int, _renewal.Renewal]] = []

    @rule(index=st.integers(0, _renewal.MAX_LANES + 3))
    def register(self, index: int) -> None:
        renewal = _renewal.renew(self.stores[index], 3600.0, lambda: True)
        self.live.append((index, renewal))

    @precondition(lambda self: self.live)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        position = data.draw(st.integers(0, len(self.live) - 1))
        _, renewal = self.live.pop(position)
        renewal.cancel()
        assert not renewal.active

    @invariant()
    def each_store_has_one_lane_and_lanes_are_bounded(self) -> None:
        registry = _renewal._registry
        with registry.lock:
            lanes = list(registry.lanes)
            by_store = dict(registry.by_store)
            entries = {id(r): lane for lane in lanes for r in lane.entries}
        assert len(lanes) <= _renewal.MAX_LANES
        using = {index for index, _ in self.live}
        assert {id(self.stores[i]) for i in using} == set(by_store)
        for index, renewal in self.live:
            assert renewal.active
            assert entries[id(renewal)] is by_store[id(self.stores[index])]
        if len(using) <= _renewal.MAX_LANES:
            # Below the bound no two stores share a lane.
            assert len(set(map(id, by_store.values()))) == len(by_store)

    def teardown(self) -> None:
        for _, renewal in self.live:
            renewal.cancel()


def test_renewal_lanes_keep_stores_apart_within_the_thread_bound() -> None:
    run_state_machine_as_test(
        RenewalLanes,
        settings=settings(max_examples=60, stateful_step_count=40, deadline=None),
    )


def test_a_stuck_lane_delays_no_other_store_and_lanes_end_when_idle() -> None:
    stuck, healthy = object(), object()
    release = threading.Event()
    calls: list[str] = []

    def hang() -> bool:
        calls.append("stuck")
        release.wait(30)
        return False

    def tick() -> bool:
        calls.append("healthy")
        return calls.count("healthy") < 5

    _renewal.renew(stuck, 0.01, hang)
    assert eventually(lambda: "stuck" in calls)
    _renewal.renew(healthy, 0.01, tick)
    assert eventually(lambda: calls.count("healthy") == 5)  # while the other hangs
    release.set()
    assert eventually(lambda: _renewal.active_renewals() == 0)
    assert eventually(lambda: not _renewal._registry.lanes, 30)  # threads ended
