"""Per-key policies with bounded memory: CircuitBreaker/RateLimiter/Bulkhead.keyed (issue 19)."""

from __future__ import annotations

import asyncio
import threading
import uuid
from pathlib import Path

import pytest

import paios_reliability as pr
from paios_reliability import Bulkhead, CircuitBreaker, RateLimiter
from paios_reliability.testing import FakeClock, capture_events


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_keyed_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_keys"):
        CircuitBreaker.keyed("b", max_keys=0)
    with pytest.raises(ValueError, match="failure_threshold"):
        CircuitBreaker.keyed("b", failure_threshold=0)
    with pytest.raises(ValueError, match="shared store"):
        RateLimiter.keyed("l", rate=1, per=1, store=pr.MemoryStore())
    with pytest.raises(TypeError, match="needs key="):
        CircuitBreaker.keyed("b")(print)
    keyed = Bulkhead.keyed("h", max_concurrent=1)
    with pytest.raises(ValueError, match="at most 200"):
        keyed.get("x" * 201)
    with pytest.raises(ValueError, match="needs a keyed"):
        pr.resilient(name="s", key=lambda host: host)
    store = pr.SQLiteStore(tmp_path / "s.db")
    assert CircuitBreaker.keyed("b", store=store).get("a").store is store
    store.close()


def test_finding_19_one_bad_host_does_not_trip_the_others() -> None:
    breakers = CircuitBreaker.keyed(
        unique("hosts"), failure_threshold=2, key=lambda host, path: host
    )

    @breakers
    def fetch(host: str, path: str) -> str:
        if host == "bad.example":
            raise ConnectionError("refused")
        return f"{host}{path}"

    for _ in range(2):
        with pytest.raises(ConnectionError):
            fetch("bad.example", "/")
    with pytest.raises(pr.CircuitOpenError):
        fetch("bad.example", "/")
    assert fetch("good.example", "/x") == "good.example/x"
    assert breakers.get("bad.example").stats.state == "open"
    assert breakers.get("good.example").stats.state == "closed"
    assert breakers.get("bad.example").name.endswith(":bad.example")


def test_finding_19_least_recently_used_keys_are_evicted() -> None:
    limiters = RateLimiter.keyed(unique("tenants"), rate=1, per=1, max_keys=3)
    for tenant in ("a", "b", "c"):
        limiters.get(tenant)
    limiters.get("a")  # "a" is now the most recently used
    with capture_events() as events:
        limiters.get("d")
    assert limiters.keys() == ["c", "a", "d"]  # "b" was the least recently used
    assert any(e.name.endswith("keyed.evicted") for e in events)


def test_finding_19_open_breaker_is_never_evicted_before_its_break_ends() -> None:
    clock = FakeClock()
    breakers = CircuitBreaker.keyed(
        unique("tools"), max_keys=2, failure_threshold=1, reset_timeout=30, clock=clock
    )
    breakers.get("bad").trip()
    for key in ("k1", "k2", "k3", "k4"):
        breakers.get(key)
    assert "bad" in breakers  # open: kept however many keys came since
    assert len(breakers) == 2
    clock.advance(30)  # the break is over: a fresh breaker would probe too
    breakers.get("k5")
    breakers.get("k6")
    assert "bad" not in breakers


def test_finding_19_busy_bulkhead_and_spent_limiter_are_kept() -> None:
    bulkheads = Bulkhead.keyed(unique("h"), max_concurrent=1, max_keys=1)
    inside, leave = threading.Event(), threading.Event()

    def hold() -> None:
        with bulkheads.get("busy"):
            inside.set()
            leave.wait(30)

    worker = threading.Thread(target=hold)
    worker.start()
    assert inside.wait(30)
    bulkheads.get("other")
    assert "busy" in bulkheads
    leave.set()
    worker.join(30)
    bulkheads.get("third")
    assert "busy" not in bulkheads

    limiters = RateLimiter.keyed(unique("l"), rate=1, per=3600, max_keys=1, block=False)
    assert limiters.get("spent").try_acquire()
    limiters.get("fresh")
    assert "spent" in limiters  # its bucket is not full again yet
    assert not limiters.get("spent").try_acquire()


def test_finding_19_resilient_key_picks_the_policy_per_call() -> None:
    breakers = CircuitBreaker.keyed(unique("providers"), failure_threshold=1)
    bulkheads = Bulkhead.keyed(unique("providers"), max_concurrent=2)

    @pr.resilient(
        name="complete",
        breaker=breakers,
        bulkhead=bulkheads,
        key=lambda provider, prompt: provider,
    )
    async def complete(provider: str, prompt: str) -> str:
        if provider == "down":
            raise ConnectionError("down")
        return f"{provider}:{prompt}"

    async def main() -> None:
        with pytest.raises(ConnectionError):
            await complete("down", "x")
        with pytest.raises(pr.CircuitOpenError):
            await complete("down", "x")
        assert await complete("up", "x") == "up:x"

    asyncio.run(main())
    assert sorted(breakers.keys()) == ["down", "up"]
    assert sorted(bulkheads.keys()) == ["down", "up"]
    assert "per key (at most 1024 kept)" in complete.policy.describe()  # type: ignore[attr-defined]


def test_finding_19_keyed_state_is_shared_through_the_store(tmp_path: Path) -> None:
    store = pr.SQLiteStore(tmp_path / "keyed.db")
    name = unique("shared")
    one = CircuitBreaker.keyed(name, store=store, failure_threshold=1)
    two = CircuitBreaker.keyed(name, store=store, failure_threshold=1, max_keys=1)
    one.get("host").trip()
    two.get("other")
    two.get("another")  # "other" and "host" may go: state stays in the store
    assert two.get("host").stats.state == "open"
    store.close()


def test_finding_19_keyed_table_is_thread_safe() -> None:
    limiters = RateLimiter.keyed(unique("t"), rate=1000, per=1, max_keys=16)
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        barrier.wait()
        try:
            for i in range(200):
                limiters.get(f"k{(n * 7 + i) % 40}")
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert len(limiters) <= 16 + 40  # bounded: only keys whose state matters stay
