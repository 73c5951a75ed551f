"""Type-checked (mypy --strict), never run: the run-state API keeps its types.

``idempotent`` keeps the wrapped signature (sync and async); locks, leases,
checkpoints and compare-and-set return our own types; wrong calls are caught
(each ``# type: ignore[...]`` must be needed, or warn_unused_ignores fails).
"""

from __future__ import annotations

import pickle
from collections.abc import Coroutine, Mapping
from pathlib import Path
from typing import Any

from typing_extensions import assert_type

import paios_reliability as pr

store = pr.MemoryStore()

# -- locks ----------------------------------------------------------------------------

locks = pr.LockManager(store, owner="worker-1")
lease = locks.acquire("run:42", 30.0, wait=5.0)
assert_type(lease, pr.Lease)
assert_type(lease.token, int)
assert_type(lease.expires_at, float)
assert_type(lease.remaining, float)
assert_type(lease.extend(10.0), float)
assert_type(lease.release(), bool)
with locks.lock("run:42", ttl=10.0, auto_extend=True) as held:
    assert_type(held, pr.Lease)
with locks.acquire("run:43") as same:
    assert_type(same, pr.Lease)
locks.acquire(42)  # type: ignore[arg-type]
locks.acquire("k", ttl="30")  # type: ignore[arg-type]
pr.LockManager(store, owner=1)  # type: ignore[arg-type]


async def use_async_lock() -> None:
    async with locks.lock("run:42") as alease:
        assert_type(alease, pr.Lease)
    alease2 = await locks.aacquire("k", wait=1.0)
    assert_type(alease2, pr.Lease)
    assert_type(await alease2.aextend(), float)
    assert_type(await alease2.arelease(), bool)


# -- idempotency ----------------------------------------------------------------------

assert_type(pr.idempotency_key("run", "step", "op", {"a": 1}), str)
pr.idempotency_key(1, "step", "op")  # type: ignore[arg-type]


@pr.idempotent(store, key=lambda order_id, amount: f"charge:{order_id}", ttl=3600)
def charge(order_id: str, amount: int) -> dict[str, int]:
    return {"amount": amount}


assert_type(charge("o1", 5), dict[str, int])
charge("o1", "5")  # type: ignore[arg-type]
charge(1, 5)  # type: ignore[arg-type]
charge("o1")  # type: ignore[call-arg]


@pr.idempotent(None, serializer=pickle, cache_errors=True)
async def fetch(url: str, *, retries: int = 3) -> bytes:
    return url.encode() * retries


assert_type(fetch("u"), Coroutine[Any, Any, bytes]).close()


async def use_fetch() -> None:
    assert_type(await fetch("u", retries=1), bytes)
    await fetch(b"u")  # type: ignore[arg-type]
    await fetch("u", retries="3")  # type: ignore[arg-type]


idem = pr.IdempotencyStore(store, ttl=60.0, wait=5.0)


def send(to: str, subject: str = "hi") -> int:
    return len(to + subject)


async def asend(to: str) -> int:
    return len(to)


assert_type(idem.run("k", send, "a@example.com", subject="x"), int)


async def use_arun() -> None:
    assert_type(await idem.arun("k", asend, "a"), int)
    await idem.arun("k", asend, 1)  # type: ignore[arg-type]


idem.run("k", send, 5)  # type: ignore[arg-type]
assert_type(idem.decorate(key="fixed")(send)("a"), int)

# -- checkpoints ----------------------------------------------------------------------

checkpoints = pr.CheckpointStore(Path("runs.sqlite"))
checkpoints_on_redis = pr.CheckpointStore(store, retention=3600.0)
assert_type(checkpoints.save("run", "fetch", {"rows": 3}), pr.Checkpoint)
assert_type(checkpoints.save("run", "fetch", None, status="running"), pr.Checkpoint)
checkpoints.save("run", "fetch", None, status="done")  # type: ignore[arg-type]
assert_type(checkpoints.load("run"), dict[str, pr.Checkpoint])
plan = checkpoints.resume_point("run", ["fetch", "parse"], skip_to="parse")
assert_type(plan, pr.ResumePlan)
assert_type(plan.next_step, str | None)
assert_type(plan.remaining, tuple[str, ...])
assert_type(plan.artifacts, Mapping[str, Any])
assert_type(plan.done, bool)


async def use_async_checkpoints() -> None:
    assert_type(await checkpoints.aresume_point("run", ["a"]), pr.ResumePlan)
    assert_type(await checkpoints.asave("run", "a", 1), pr.Checkpoint)
    assert_type(await checkpoints.aload("run"), dict[str, pr.Checkpoint])


checkpoints.resume_point("run", ["a"], force_restart="yes")  # type: ignore[arg-type]

# -- compare-and-set ------------------------------------------------------------------

current = pr.get_versioned(store, "budget")
assert_type(current, pr.Versioned)
assert_type(current.version, int)
result = pr.compare_and_set(store, "budget", current.version, {"spent": 1})
assert_type(result, pr.CASResult)
assert_type(result.ok, bool)


async def use_async_cas() -> None:
    assert_type(await pr.acompare_and_set(store, "b", 0, 1), pr.CASResult)
    assert_type(await pr.aget_versioned(store, "b"), pr.Versioned)


pr.compare_and_set(store, "budget", "1", {})  # type: ignore[arg-type]
