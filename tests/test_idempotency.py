"""idempotency_key, idempotent and IdempotencyStore: once per key, on every store."""

from __future__ import annotations

import _thread
import asyncio
import hashlib
import inspect
import json
import pickle
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import paios_reliability as pr
from paios_reliability import (
    IdempotencyStore,
    LockConflictError,
    MemoryStore,
    PermanentError,
    StoreUnavailableError,
    idempotency_key,
    idempotent,
)
from paios_reliability._runs.idempotency_steps import claim_step
from paios_reliability._stores import now_ns, seconds_to_ns
from paios_reliability.testing import FakeClock, capture_events
from paios_reliability.typing import StateStore
from store_models import ObservedSQLiteStore, block_writes, eventually

WORKERS = str(Path(__file__).with_name("_proc_runstate_workers.py"))
MODES = ["sync", "async"]


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Body:
    """The side effect: counts its runs, returns (or raises) what it is told."""

    def __init__(self, result: Any = None) -> None:
        self.runs = 0
        self.result = result
        self.error: BaseException | None = None
        self.lock = threading.Lock()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            self.runs += 1
        if self.error is not None:
            raise self.error
        return (
            self.result if self.result is not None else {"args": list(args), **kwargs}
        )


async def run(
    idem: IdempotencyStore, mode: str, key: str, body: Body, *args: Any, **kwargs: Any
) -> Any:
    if mode == "sync":
        return idem.run(key, body, *args, **kwargs)

    async def coroutine(*a: Any, **k: Any) -> Any:
        await asyncio.sleep(0)
        return body(*a, **k)

    return await idem.arun(key, coroutine, *args, **kwargs)


# -- idempotency_key ----------------------------------------------------------------------


def test_idempotency_key_is_sha256_of_the_canonical_json() -> None:
    inputs = {"to": "a@example.com", "n": [1, 2.5, None, True], "é": "ü"}
    document = (
        '{"inputs":{"n":[1,2.5,null,true],"to":"a@example.com","é":"ü"},'
        '"operation":"send_email","run":"run-1","step":"step-2"}'
    )
    expected = hashlib.sha256(document.encode()).hexdigest()
    assert idempotency_key("run-1", "step-2", "send_email", inputs) == expected
    # Pinned: a change here breaks every stored key of every user.
    assert (
        expected == "166152209b10bce3336f8431e6b36382a0162fd511064ad5aad9f7855f860168"
    )


def test_idempotency_key_is_the_same_in_another_process() -> None:
    code = (
        "from paios_reliability import idempotency_key as k;"
        "print(k('r', 's', 'op', {'b': [1, {'c': 2.0}], 'a': 'x'}))"
    )
    other = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert other.stdout.strip() == idempotency_key(
        "r", "s", "op", {"a": "x", "b": [1, {"c": 2.0}]}
    )


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(
    inputs=st.dictionaries(st.text(max_size=6), json_values, max_size=6),
    seed=st.randoms(),
)
def test_idempotency_key_ignores_key_order_and_json_round_trips(
    inputs: dict[str, Any], seed: Any
) -> None:
    items = list(inputs.items())
    seed.shuffle(items)
    shuffled = dict(items)
    key = idempotency_key("run", "step", "op", inputs)
    assert idempotency_key("run", "step", "op", shuffled) == key
    assert idempotency_key("run", "step", "op", json.loads(json.dumps(inputs))) == key
    assert len(key) == 64
    int(key, 16)


@settings(max_examples=100, deadline=None)
@given(
    parts=st.lists(st.text(max_size=8), min_size=4, max_size=4),
    other=st.text(max_size=8),
    which=st.integers(0, 3),
)
def test_idempotency_key_changes_with_every_part(
    parts: list[str], other: str, which: int
) -> None:
    changed = list(parts)
    changed[which] = other
    same = parts[which] == other
    original = idempotency_key(parts[0], parts[1], parts[2], parts[3])
    assert (
        idempotency_key(changed[0], changed[1], changed[2], changed[3]) == original
    ) == same


def test_idempotency_key_counts_volatile_looking_inputs_too() -> None:
    # stable_hash ignores "id" and "*_at" by default; an idempotency key must not.
    assert idempotency_key("r", "s", "op", {"id": 1}) != idempotency_key(
        "r", "s", "op", {"id": 2}
    )
    assert idempotency_key("r", "s", "op", {"sent_at": 1}) != idempotency_key(
        "r", "s", "op", {"sent_at": 2}
    )


def test_idempotency_key_refuses_what_has_no_json_form() -> None:
    with pytest.raises(TypeError):
        idempotency_key("r", "s", "op", {"f": object()})
    with pytest.raises(TypeError):
        idempotency_key(1, "s", "op")  # type: ignore[arg-type]


# -- once per key -------------------------------------------------------------------------


async def test_first_call_runs_and_repeats_replay_its_result(
    store: StateStore, mode: str
) -> None:
    idem = IdempotencyStore(store)
    body = Body()
    first = await run(idem, mode, "charge:1", body, 10, currency="EUR")
    assert first == {"args": [10], "currency": "EUR"}
    for _ in range(3):
        assert await run(idem, mode, "charge:1", body, 99, currency="USD") == first
    assert body.runs == 1
    assert await run(idem, mode, "charge:2", body, 7) == {"args": [7]}
    assert body.runs == 2


async def test_replayed_results_come_back_through_json(
    store: StateStore, mode: str
) -> None:
    idem = IdempotencyStore(store)
    body = Body(result=("a", 1, {"nested": (2, 3)}))
    assert await run(idem, mode, "k", body) == ("a", 1, {"nested": (2, 3)})
    assert await run(idem, mode, "k", body) == ["a", 1, {"nested": [2, 3]}]


async def test_results_expire_after_ttl(store: StateStore, mode: str) -> None:
    clock = FakeClock()
    idem = IdempotencyStore(store, ttl=60.0, clock=clock)
    body = Body()
    await run(idem, mode, "k", body)
    clock.advance(59.0)
    await run(idem, mode, "k", body)
    assert body.runs == 1
    clock.advance(1.0)
    await run(idem, mode, "k", body)
    assert body.runs == 2


async def test_a_failed_call_stores_nothing_so_a_retry_runs(
    store: StateStore, mode: str
) -> None:
    idem = IdempotencyStore(store)
    body = Body()
    body.error = ConnectionResetError("flaky")
    with capture_events() as events, pytest.raises(ConnectionResetError):
        await run(idem, mode, "k", body)
    assert "paios_reliability.idempotency.abandoned" in events.names()
    assert store.get("idempotency:k") is None
    body.error = None
    assert await run(idem, mode, "k", body) == {"args": []}
    assert body.runs == 2


async def test_cache_errors_stores_and_replays_the_error(
    store: StateStore, mode: str
) -> None:
    idem = IdempotencyStore(store, cache_errors=True)
    body = Body()
    body.error = ValueError("card declined")
    with pytest.raises(ValueError, match="card declined"):
        await run(idem, mode, "k", body)
    body.error = None
    with pytest.raises(ValueError, match="card declined"):
        await run(idem, mode, "k", body)
    assert body.runs == 1


async def test_a_cached_error_that_cannot_be_rebuilt_replays_as_permanent(
    store: StateStore, mode: str
) -> None:
    idem = IdempotencyStore(store, cache_errors=True)
    body = Body()
    body.error = LockConflictError("held elsewhere", key="x")  # needs key=...
    with pytest.raises(LockConflictError):
        await run(idem, mode, "k", body)
    with pytest.raises(PermanentError) as caught:
        await run(idem, mode, "k", body)
    assert caught.value.code == "LOCK_CONFLICT"
    assert "held elsewhere" in str(caught.value)
    assert (
        caught.value.context["original_type"] == "paios_reliability.LockConflictError"
    )
    assert body.runs == 1


async def test_cancellation_and_ctrl_c_never_cache_even_with_cache_errors(
    store: StateStore, mode: str
) -> None:
    idem = IdempotencyStore(store, cache_errors=True)
    body = Body()
    body.error = KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt):
        await run(idem, mode, "k", body)
    body.error = None
    await run(idem, mode, "k", body)
    assert body.runs == 2


async def test_a_result_json_cannot_hold_fails_loudly_and_stores_nothing(
    store: StateStore, mode: str
) -> None:
    idem = IdempotencyStore(store)
    body = Body(result={"s": {1, 2}})
    with pytest.raises(TypeError, match="serializer=pickle"):
        await run(idem, mode, "k", body)
    assert store.get("idempotency:k") is None
    with pytest.raises(TypeError):
        await run(idem, mode, "k", body)
    assert body.runs == 2


class _Refusing:
    """A serializer that fails as pickle does on a lambda (not a TypeError)."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def dumps(self, value: object) -> bytes:
        raise self.error

    def loads(self, data: bytes) -> object:
        return pickle.loads(data)


@pytest.mark.parametrize(
    "error",
    [pickle.PicklingError("cannot pickle a lambda"), RecursionError("deep")],
    ids=["PicklingError", "RecursionError"],
)
async def test_any_serializer_error_is_a_type_error_and_drops_the_claim(
    store: StateStore, mode: str, error: Exception
) -> None:
    # The claim must be ended, not left renewing: the next call runs at once
    # instead of waiting for a duplicate that no longer exists.
    idem = IdempotencyStore(store, serializer=_Refusing(error), wait=0)
    body = Body()
    with pytest.raises(TypeError, match="cannot be stored") as info:
        await run(idem, mode, "k", body)
    assert info.value.__cause__ is error
    assert store.get("idempotency:k") is None
    with pytest.raises(TypeError, match="cannot be stored"):
        await run(idem, mode, "k", body)
    assert body.runs == 2


def test_ctrl_c_while_serializing_drops_the_claim(store: StateStore) -> None:
    idem = IdempotencyStore(store, serializer=_Refusing(KeyboardInterrupt()), wait=0)
    body = Body()
    with pytest.raises(KeyboardInterrupt):
        idem.run("k", body)
    assert store.get("idempotency:k") is None


async def test_pickle_serializer_stores_any_object(
    store: StateStore, mode: str
) -> None:
    idem = IdempotencyStore(store, serializer=pickle)
    body = Body(result={"s": {1, 2}, "t": (1, 2)})
    await run(idem, mode, "k", body)
    assert await run(idem, mode, "k", body) == {"s": {1, 2}, "t": (1, 2)}
    assert body.runs == 1


def test_forget_lets_the_next_call_run(store: StateStore) -> None:
    idem = IdempotencyStore(store)
    body = Body()
    idem.run("k", body)
    idem.forget("k")
    idem.run("k", body)
    assert body.runs == 2


def test_events(store: StateStore) -> None:
    idem = IdempotencyStore(store)
    with capture_events() as events:
        idem.run("k", Body())
        idem.run("k", Body())
    ours = [n for n in events.names() if ".idempotency." in n]
    assert ours == [
        "paios_reliability.idempotency.claimed",
        "paios_reliability.idempotency.stored",
        "paios_reliability.idempotency.hit",
    ]


# -- concurrent duplicates ----------------------------------------------------------------


def test_eight_threads_with_one_key_run_the_body_once(store: StateStore) -> None:
    idem = IdempotencyStore(store, wait=30.0)
    started = threading.Event()
    runs: list[int] = []

    def body(caller: int) -> dict[str, int]:
        runs.append(caller)
        started.set()
        time.sleep(0.2)  # the duplicates arrive while it runs
        return {"winner": caller}

    results: list[Any] = [None] * 8
    barrier = threading.Barrier(8)

    def call(i: int) -> None:
        barrier.wait(10)
        results[i] = idem.run("k", body, i)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(runs) == 1
    assert results == [{"winner": runs[0]}] * 8


async def test_eight_coroutines_with_one_key_run_the_body_once(
    store: StateStore,
) -> None:
    idem = IdempotencyStore(store, wait=30.0)
    runs: list[int] = []

    async def body(caller: int) -> dict[str, int]:
        runs.append(caller)
        await asyncio.sleep(0.2)
        return {"winner": caller}

    results = await asyncio.wait_for(
        asyncio.gather(*(idem.arun("k", body, i) for i in range(8))), 60
    )
    assert len(runs) == 1
    assert list(results) == [{"winner": runs[0]}] * 8


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_eight_processes_with_one_key_run_the_body_once(
    kind: str, tmp_path: Path, spawn: Callable[..., Any], request: pytest.FixtureRequest
) -> None:
    target = (
        str(tmp_path / "state.db")
        if kind == "sqlite"
        else request.getfixturevalue("redis_url")
    )
    prefix = f"mp-{uuid.uuid4().hex}"
    log, go = tmp_path / "log", tmp_path / "go"
    script = f"import runpy, sys; sys.argv = [{WORKERS!r}, *sys.argv[1:]]; runpy.run_path({WORKERS!r}, run_name='__main__')"
    workers = [
        spawn(
            script,
            "idempotent_once",
            kind,
            target,
            prefix,
            "order:7",
            str(log),
            str(go),
        )
        for _ in range(8)
    ]
    go.touch()
    outputs = [json.loads(w.finish(timeout=120)) for w in workers]
    ran = log.read_text().splitlines()
    assert len(ran) == 1  # the body ran exactly once, in one process
    winner = int(ran[0].split()[1])
    assert [o["result"] for o in outputs] == [{"pid": winner}] * 8
    assert len({o["pid"] for o in outputs}) == 8


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_a_claimant_killed_mid_call_is_taken_over_after_its_lease(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    target = (
        str(tmp_path / "state.db")
        if kind == "sqlite"
        else request.getfixturevalue("redis_url")
    )
    prefix = f"kill-{uuid.uuid4().hex}"
    log = tmp_path / "log"
    child = subprocess.Popen(
        [
            sys.executable,
            WORKERS,
            "idempotent_hang",
            kind,
            target,
            prefix,
            "k",
            str(log),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert "running" in child.stdout.readline()  # it holds the claim now
        store = (
            pr.SQLiteStore(target)
            if kind == "sqlite"
            else pr.RedisStore(target, prefix=prefix)
        )
        with pytest.raises(LockConflictError):  # alive: a duplicate does not run
            IdempotencyStore(store, wait=0.0).run("k", Body())
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        body = Body()
        with capture_events() as events:
            # Waits (polling) until the dead claim's 1 s lease runs out, then runs.
            assert IdempotencyStore(store, wait=30.0).run("k", body) == {"args": []}
        assert body.runs == 1
        assert "paios_reliability.idempotency.taken_over" in events.names()
        assert len(log.read_text().splitlines()) == 1
        store.close()
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(10)
        if child.stdout is not None:
            child.stdout.close()


# -- waiting, renewing, store trouble -----------------------------------------------------


def _claim_by_another(
    store: StateStore, key: str, clock: FakeClock, lease: float
) -> None:
    now = now_ns(clock, store.shared)
    store.update(
        f"idempotency:{key}",
        lambda data: claim_step(data, now, "someone-else", seconds_to_ns(lease)),
        ttl=3600,
    )


async def test_a_duplicate_gives_up_after_wait_with_a_lock_conflict(
    store: StateStore, mode: str
) -> None:
    clock = FakeClock()
    _claim_by_another(store, "k", clock, lease=30.0)
    idem = IdempotencyStore(store, wait=2.0, clock=clock)
    body = Body()
    with capture_events() as events, pytest.raises(LockConflictError) as caught:
        await run(idem, mode, "k", body)
    assert body.runs == 0
    assert caught.value.holder == "someone-else"
    assert 2.0 - 1e-6 <= sum(clock.sleeps) <= 2.0 + 1e-6
    assert "paios_reliability.idempotency.waiting" in events.names()
    assert "paios_reliability.idempotency.conflict" in events.names()


async def test_an_expired_claim_is_taken_over(store: StateStore, mode: str) -> None:
    clock = FakeClock()
    _claim_by_another(store, "k", clock, lease=5.0)
    idem = IdempotencyStore(store, wait=30.0, clock=clock)
    body = Body()
    with capture_events() as events:
        await run(idem, mode, "k", body)
    assert body.runs == 1
    assert 5.0 - 1e-6 <= sum(clock.sleeps) < 30.0
    taken = events.of("idempotency.taken_over")
    assert [e.fields["previous"] for e in taken] == ["someone-else"]


def _wait_until(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    give_up = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < give_up, "condition never became true"
        time.sleep(0.005)


def test_a_long_call_keeps_its_claim_alive(store: StateStore) -> None:
    clock = FakeClock()
    idem = IdempotencyStore(store, lease_ttl=0.3, wait=0.0, clock=clock)
    duplicate = Body()

    def long_call() -> str:
        for _ in range(5):  # 1 s of fake time against a 0.3 s claim
            clock.advance(0.2)
            target = now_ns(clock, store.shared) + seconds_to_ns(0.3)
            _wait_until(lambda t=target: store.get("idempotency:k")["x"] == t)
            with pytest.raises(LockConflictError):  # still claimed: no second run
                idem.run("k", duplicate)
        return "done"

    assert idem.run("k", long_call) == "done"
    assert duplicate.runs == 0
    assert idem.run("k", duplicate) == "done"


def test_a_store_that_is_down_never_runs_the_body(
    redis_server_factory: Callable[[], Any],
) -> None:
    server = redis_server_factory()
    store = pr.RedisStore(server.url, prefix="down")
    idem = IdempotencyStore(store)
    server.stop()
    body = Body()
    with pytest.raises(StoreUnavailableError):
        idem.run("k", body)
    assert body.runs == 0


# -- the decorator ------------------------------------------------------------------------


def test_decorator_keeps_the_signature_and_runs_once_per_key() -> None:
    store = MemoryStore()
    calls: list[tuple[str, int]] = []

    @idempotent(store, key=lambda order_id, **_: f"charge:{order_id}")
    def charge(order_id: str, amount: int) -> dict[str, Any]:
        """Charge the card."""
        calls.append((order_id, amount))
        return {"order": order_id, "amount": amount}

    assert charge.__name__ == "charge"
    assert charge.__doc__ == "Charge the card."
    assert (
        str(inspect.signature(charge))
        == "(order_id: 'str', amount: 'int') -> 'dict[str, Any]'"
    )
    assert charge("o1", 5) == {"order": "o1", "amount": 5}
    assert charge("o1", 6) == {"order": "o1", "amount": 5}  # same key: replayed
    assert charge(amount=7, order_id="o1") == {"order": "o1", "amount": 5}
    assert charge("o2", 6) == {"order": "o2", "amount": 6}
    assert calls == [("o1", 5), ("o2", 6)]


async def test_async_decorator_stays_a_coroutine_function() -> None:
    calls = 0

    @idempotent(MemoryStore(), key="fixed")
    async def fetch(url: str) -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        return url.upper()

    assert inspect.iscoroutinefunction(fetch)
    assert await fetch("a") == "A"
    assert await fetch("b") == "A"
    assert calls == 1


def test_default_key_comes_from_the_function_and_all_its_arguments() -> None:
    calls = 0

    @idempotent(MemoryStore())
    def send(to: str, body: str = "hi") -> int:
        nonlocal calls
        calls += 1
        return calls

    assert send("a") == 1
    assert send("a", "hi") == 1  # the default counts as given
    assert send(to="a", body="hi") == 1
    assert send("a", "bye") == 2
    assert send("b") == 3


def test_default_key_needs_json_arguments() -> None:
    @idempotent(MemoryStore())
    def use(thing: object) -> None:
        return None

    with pytest.raises(TypeError, match="pass key="):
        use(object())


def test_key_function_must_return_a_string() -> None:
    @idempotent(MemoryStore(), key=lambda x: x)
    def use(x: Any) -> None:
        return None

    with pytest.raises(TypeError, match="not a non-empty str"):
        use(5)


@pytest.mark.parametrize(
    "kwargs", [{"ttl": 0}, {"wait": -1}, {"lease_ttl": 0}, {"serializer": object()}]
)
def test_bad_settings_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises((TypeError, ValueError)):
        IdempotencyStore(MemoryStore(), **kwargs)


# -- renewals never wait on another store (finding 1) ---------------------------------


def test_finding_01_a_stuck_store_never_delays_claim_renewals_on_another(
    tmp_path: Path,
) -> None:
    # An unrelated auto-renewed lock on an SQLite file that a backup holds: its
    # renewal waits on the file. A claim on a healthy store must still be
    # renewed, or a duplicate takes over and runs the body a second time.
    path = tmp_path / "locks.db"
    stuck = ObservedSQLiteStore(path, busy_timeout_ms=30_000)
    lease = pr.LockManager(stuck).acquire("nightly", ttl=0.3)
    blocker = block_writes(path)
    try:
        lease.start_renewing()
        assert eventually(lambda: stuck.in_flight > 0, 30)  # it waits on the file
        clock = FakeClock()
        healthy = MemoryStore()
        idem = IdempotencyStore(healthy, lease_ttl=0.3, wait=0.0, clock=clock)
        duplicate = Body()

        def long_call() -> str:
            for _ in range(4):  # 0.6 s of fake time against a 0.3 s claim
                clock.advance(0.15)
                target = now_ns(clock, False) + seconds_to_ns(0.3)
                assert eventually(
                    lambda t=target: healthy.get("idempotency:charge:1")["x"] == t
                ), "the claim was not renewed while another store was stuck"
            with pytest.raises(LockConflictError):  # still claimed: no second run
                idem.run("charge:1", duplicate)
            return "done"

        assert idem.run("charge:1", long_call) == "done"
        assert duplicate.runs == 0
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
        lease.release()
        stuck.close()


# -- after the body ran, no retryable error (finding 2) -------------------------------


async def test_finding_02_a_store_error_after_the_body_ran_is_retried_not_raised(
    tmp_path: Path, mode: str
) -> None:
    # The body runs; right then another process takes the file's write lock,
    # so the first attempt to store the result fails. The result must still be
    # stored (a retry of the write), the caller get it, a repeat replay it.
    path = tmp_path / "state.db"
    store = pr.SQLiteStore(path, busy_timeout_ms=100)
    idem = IdempotencyStore(store, lease_ttl=30.0)
    blockers: list[sqlite3.Connection] = []
    body = Body(result={"charged": 1})

    def side_effect(*args: Any) -> Any:
        blockers.append(block_writes(path))
        return body(*args)

    def writer_finishes(event: pr.Event) -> None:
        if event.name == "paios_reliability.store.unavailable" and blockers:
            blocker = blockers.pop()
            blocker.execute("COMMIT")
            blocker.close()

    with capture_events() as events, pr.add_event_hook(writer_finishes):
        if mode == "sync":
            result = idem.run("charge:1", side_effect)
        else:

            async def aside_effect() -> Any:
                return side_effect()

            result = await idem.arun("charge:1", aside_effect)
    assert result == {"charged": 1}
    assert not blockers  # the write did fail once, and then succeeded
    assert len(events.of("store.unavailable")) == 1
    assert events.of("idempotency.stored")
    assert not events.of("idempotency.record_lost")
    assert await run(idem, mode, "charge:1", Body()) == {"charged": 1}
    assert body.runs == 1
    store.close()


async def test_finding_02_a_store_down_after_the_body_ran_returns_the_result(
    tmp_path: Path, mode: str
) -> None:
    # The store stays locked until the call is over: the result is returned
    # anyway (the side effect happened), with an error event naming the key.
    path = tmp_path / "state.db"
    store = pr.SQLiteStore(path, busy_timeout_ms=50)
    idem = IdempotencyStore(store, lease_ttl=0.5)
    blockers: list[sqlite3.Connection] = []
    body = Body(result="sent")

    def side_effect(*args: Any) -> Any:
        blockers.append(block_writes(path))
        return body(*args)

    with capture_events() as events:
        if mode == "sync":
            result = idem.run("email:1", side_effect)
        else:

            async def aside_effect() -> Any:
                return side_effect()

            result = await idem.arun("email:1", aside_effect)
    blockers[0].execute("ROLLBACK")
    blockers[0].close()
    assert result == "sent"
    [lost] = events.of("idempotency.record_lost")
    assert (lost.level, lost.subject) == ("error", "email:1")
    assert lost.fields["attempts"] >= 2  # retried before giving up
    assert isinstance(lost.exc, StoreUnavailableError)
    assert body.runs == 1
    store.close()


def test_finding_02_the_docstring_says_what_happens_after_fn_ran() -> None:
    doc = " ".join((IdempotencyStore.run.__doc__ or "").split())
    assert "record_lost" in doc
    assert "claim the key; ``fn`` was not run" in doc


# -- interrupted while claiming: no phantom claim (finding 5) -------------------------


async def test_finding_05_a_claim_cancelled_while_the_store_waits_is_dropped(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.db"
    store = ObservedSQLiteStore(path)
    store.get("warm")
    idem = IdempotencyStore(store, wait=0.0, lease_ttl=30.0)
    blocker = block_writes(path)
    body = Body()

    async def send_email() -> Any:
        return body()

    task = asyncio.ensure_future(idem.arun("email:1", send_email))
    for _ in range(10_000):  # the claim's update now waits on the file
        await asyncio.sleep(0.001)
        if store.in_flight:
            break
    assert store.in_flight
    task.cancel()
    await asyncio.sleep(0.01)
    blocker.execute("COMMIT")  # the writer finishes: the claim lands
    blocker.close()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert body.runs == 0
    # Nobody is left "running" under this key: a retry runs at once.
    assert idem.run("email:1", body) == {"args": []}
    assert body.runs == 1
    store.close()


class _InterruptedAfterUpdate(pr.SQLiteStore):
    """A real SQLite store on which Ctrl-C arrives just after one update landed."""

    armed = False

    def update(self, key: str, fn: Callable[[Any], Any], *, ttl: float) -> Any:
        result = super().update(key, fn, ttl=ttl)
        if self.armed:
            self.armed = False
            _thread.interrupt_main()  # raised at the next bytecode: right here
        return result


def test_finding_05_ctrl_c_after_the_claim_landed_drops_it(tmp_path: Path) -> None:
    store = _InterruptedAfterUpdate(tmp_path / "state.db")
    idem = IdempotencyStore(store, wait=0.0, lease_ttl=30.0)
    body = Body()
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        store.armed = True
        with pytest.raises(KeyboardInterrupt):
            idem.run("email:1", body)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert body.runs == 0
    assert store.get("idempotency:email:1") is None  # the claim was taken back
    assert idem.run("email:1", body) == {"args": []}
    assert body.runs == 1
    store.close()
