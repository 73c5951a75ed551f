"""Run a Hypothesis state machine against one kind of state store; store helpers."""

from __future__ import annotations

import functools
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test

import paios_reliability as pr
from paios_reliability.typing import StateStore

R = TypeVar("R")


def new_store(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> StateStore:
    """A fresh, empty store of ``kind`` (memory, sqlite or redis)."""
    if kind == "memory":
        return pr.MemoryStore()
    if kind == "sqlite":
        return pr.SQLiteStore(tmp_path / "hyp.db")
    return pr.RedisStore(
        request.getfixturevalue("redis_url"), prefix=f"hyp-{uuid.uuid4().hex}"
    )


def run_model(
    machine: Callable[[StateStore], RuleBasedStateMachine],
    kind: str,
    *,
    examples: int,
    steps: int,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    """Check ``machine`` (built on a fresh store of ``kind``) against its model."""
    store = new_store(kind, tmp_path, request)
    try:
        run_state_machine_as_test(
            functools.partial(machine, store),
            settings=settings(
                max_examples=examples,
                stateful_step_count=steps,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
    finally:
        store.close()


# -- real stores with a window onto what they are doing -------------------------------


class ObservedSQLiteStore(pr.SQLiteStore):
    """A real SQLite store that counts the updates in flight.

    Tests use it to know, without sleeping, that an update (a renewal, an
    acquire) is waiting on a file another connection holds with
    ``BEGIN IMMEDIATE``: any update in flight once the blocker holds the
    write lock waits for it.
    """

    def __init__(self, path: Path, *, busy_timeout_ms: int = 30_000) -> None:
        super().__init__(path, busy_timeout_ms=busy_timeout_ms)
        self._count_lock = threading.Lock()
        self.in_flight = 0

    def update(self, key: str, fn: Callable[[Any], tuple[Any, R]], *, ttl: float) -> R:
        with self._count_lock:
            self.in_flight += 1
        try:
            return super().update(key, fn, ttl=ttl)
        finally:
            with self._count_lock:
                self.in_flight -= 1


def block_writes(path: Path) -> sqlite3.Connection:
    """Another connection holding ``path``'s write lock (a backup, a long writer)."""
    blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN IMMEDIATE")
    return blocker


def eventually(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Whether ``predicate`` became true within ``timeout`` seconds (polling)."""
    give_up = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > give_up:
            return False
        time.sleep(0.002)
    return True
