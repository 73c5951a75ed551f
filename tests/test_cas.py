"""compare_and_set / get_versioned: optimistic concurrency on every store."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    rule,
)

import paios_reliability as pr
from paios_reliability import (
    CASResult,
    MemoryStore,
    Versioned,
    acompare_and_set,
    aget_versioned,
    compare_and_set,
    get_versioned,
)
from paios_reliability.testing import capture_events
from paios_reliability.typing import StateStore
from store_models import run_model

WORKERS = str(Path(__file__).with_name("_proc_runstate_workers.py"))
MODES = ["sync", "async"]


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def cas(
    store: StateStore, mode: str, key: str, expected: int, value: Any
) -> CASResult:
    if mode == "sync":
        return compare_and_set(store, key, expected, value)
    return await acompare_and_set(store, key, expected, value)


async def read(store: StateStore, mode: str, key: str) -> Versioned:
    return (
        get_versioned(store, key)
        if mode == "sync"
        else await aget_versioned(store, key)
    )


async def test_a_record_starts_at_version_zero_and_counts_up(
    store: StateStore, mode: str
) -> None:
    assert await read(store, mode, "budget") == Versioned(None, 0)
    assert await cas(store, mode, "budget", 0, {"spent": 1}) == CASResult(
        True, 1, {"spent": 1}
    )
    assert await read(store, mode, "budget") == Versioned({"spent": 1}, 1)
    assert await cas(store, mode, "budget", 1, {"spent": 2}) == CASResult(
        True, 2, {"spent": 2}
    )
    assert await read(store, mode, "budget") == Versioned({"spent": 2}, 2)


async def test_a_stale_version_changes_nothing_and_shows_the_winner(
    store: StateStore, mode: str
) -> None:
    await cas(store, mode, "k", 0, "first")
    with capture_events() as events:
        lost = await cas(store, mode, "k", 0, "second")  # it was created meanwhile
    assert lost == CASResult(False, 1, "first")
    assert events.names()[-1] == "paios_reliability.cas.conflict"
    await cas(store, mode, "k", 1, "third")
    assert await cas(store, mode, "k", 1, "fourth") == CASResult(False, 2, "third")
    assert await cas(store, mode, "k", 5, "future") == CASResult(False, 2, "third")
    assert await read(store, mode, "k") == Versioned("third", 2)


async def test_a_tombstone_keeps_counting_so_old_versions_never_match_again(
    store: StateStore, mode: str
) -> None:
    await cas(store, mode, "k", 0, "v1")
    assert await cas(store, mode, "k", 1, None) == CASResult(True, 2, None)
    assert await read(store, mode, "k") == Versioned(None, 2)
    assert (await cas(store, mode, "k", 0, "again")).ok is False  # no ABA
    assert await cas(store, mode, "k", 2, "again") == CASResult(True, 3, "again")


async def test_values_are_json_and_detached_from_the_caller(
    store: StateStore, mode: str
) -> None:
    value: dict[str, Any] = {"items": (1, 2)}
    await cas(store, mode, "k", 0, value)
    value["items"] = "mutated"
    got = await read(store, mode, "k")
    assert got.value == {"items": [1, 2]}
    got.value["items"].append(3)
    assert (await read(store, mode, "k")).value == {"items": [1, 2]}
    with pytest.raises(TypeError, match="must be JSON"):
        await cas(store, mode, "k", 1, {"s": {1}})
    with pytest.raises(TypeError):
        await cas(store, mode, "k", 1, float("nan"))


@pytest.mark.parametrize("expected", [-1, 1.0, True, "1", None])
def test_expected_version_must_be_a_non_negative_int(expected: Any) -> None:
    with pytest.raises(ValueError, match="expected_version"):
        compare_and_set(MemoryStore(), "k", expected, 1)


def test_bad_key_and_ttl_are_refused() -> None:
    with pytest.raises(ValueError):
        compare_and_set(MemoryStore(), "", 0, 1)
    with pytest.raises(ValueError):
        compare_and_set(MemoryStore(), "k", 0, 1, ttl=0)


def test_records_live_under_their_own_namespace(store: StateStore) -> None:
    compare_and_set(store, "k", 0, 1)
    assert store.get("k") is None
    assert json.loads(json.dumps(store.get("cas:k"))) == {"v": 1, "d": 1}


def test_threads_incrementing_with_retries_lose_no_update(store: StateStore) -> None:
    def work() -> None:
        for _ in range(25):
            while True:
                current = get_versioned(store, "n")
                if compare_and_set(
                    store, "n", current.version, (current.value or 0) + 1
                ).ok:
                    break

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert get_versioned(store, "n") == Versioned(200, 200)


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_processes_incrementing_with_retries_lose_no_update(
    kind: str, tmp_path: Path, spawn: Callable[..., Any], request: pytest.FixtureRequest
) -> None:
    target = (
        str(tmp_path / "state.db")
        if kind == "sqlite"
        else request.getfixturevalue("redis_url")
    )
    prefix = f"mp-{uuid.uuid4().hex}"
    go = tmp_path / "go"
    script = f"import runpy, sys; sys.argv = [{WORKERS!r}, *sys.argv[1:]]; runpy.run_path({WORKERS!r}, run_name='__main__')"
    workers = [
        spawn(script, "cas_increment", kind, target, prefix, "n", "50", str(go))
        for _ in range(4)
    ]
    go.touch()
    for worker in workers:
        assert "conflicts" in json.loads(worker.finish(timeout=120))
    store = (
        pr.SQLiteStore(target)
        if kind == "sqlite"
        else pr.RedisStore(target, prefix=prefix)
    )
    try:
        assert get_versioned(store, "n") == Versioned(200, 200)
    finally:
        store.close()


# -- Hypothesis: against a dict of (value, version) ---------------------------------------


class CASModel(RuleBasedStateMachine):
    def __init__(self, store: StateStore) -> None:
        super().__init__()
        self.store = store
        self.prefix = uuid.uuid4().hex[:8]
        self.model: dict[str, tuple[Any, int]] = {}

    def key(self, index: int) -> str:
        return f"{self.prefix}:{index}"

    @rule(
        index=st.integers(0, 2),
        guess=st.integers(0, 4),
        exact=st.booleans(),
        value=st.none()
        | st.integers()
        | st.text(max_size=4)
        | st.lists(st.integers(), max_size=3),
    )
    def write(self, index: int, guess: int, exact: bool, value: Any) -> None:
        key = self.key(index)
        current, version = self.model.get(key, (None, 0))
        expected = version if exact else guess
        result = compare_and_set(self.store, key, expected, value)
        if expected == version:
            assert result == CASResult(True, version + 1, value)
            self.model[key] = (value, version + 1)
        else:
            assert result == CASResult(False, version, current)

    @invariant()
    def reads_match(self) -> None:
        for index in range(3):
            value, version = self.model.get(self.key(index), (None, 0))
            assert get_versioned(self.store, self.key(index)) == Versioned(
                value, version
            )


@pytest.mark.parametrize(
    ("kind", "examples"), [("memory", 100), ("sqlite", 20), ("redis", 20)]
)
def test_compare_and_set_matches_the_reference_model(
    kind: str, examples: int, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    run_model(
        CASModel, kind, examples=examples, steps=25, tmp_path=tmp_path, request=request
    )


# -- a store is required (finding 17) -------------------------------------------------


async def test_finding_17_store_none_is_refused(mode: str) -> None:
    # A fresh private store per call would let every writer "win".
    with pytest.raises(TypeError, match="store"):
        await cas(None, mode, "budget", 0, {"spent": 1})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="store"):
        await read(None, mode, "budget")  # type: ignore[arg-type]
