"""Run a Hypothesis state machine against one kind of state store."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test

import paios_reliability as pr
from paios_reliability.typing import StateStore


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
