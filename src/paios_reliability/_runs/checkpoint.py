"""Checkpoints: resume a multi-step run where it stopped.

A run saves one checkpoint per step (``running`` when it starts, ``completed``
with its output when it ends). :meth:`CheckpointStore.resume_point` turns them
into a :class:`ResumePlan`: which steps are done (and their outputs), which one
runs next. Each save is one atomic write: an SQLite ``BEGIN IMMEDIATE``
transaction (via :func:`~paios_reliability.open_database`) or one
``store.update`` on a state store. A process killed in the middle of a step
therefore leaves that step ``running`` (or absent), never ``completed``.

Outputs are stored as canonical JSON with a SHA-256 checksum that is verified
on every read: a changed row raises :class:`IntegrityError` rather than feeding
a damaged artifact into the next step.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from .._core.clock import get_clock
from .._core.events import emit
from .._stores import check_name, check_number
from .checkpoint_backends import (
    _DONE,
    _PRIMITIVE,
    _decode,
    _encode,
    _SQLiteBackend,
    _StoreBackend,
)

if TYPE_CHECKING:
    from ..typing import Clock, StateStore

__all__ = ["Checkpoint", "CheckpointStatus", "CheckpointStore", "ResumePlan"]

CheckpointStatus = Literal["running", "completed", "failed", "skipped"]
_STATUSES = frozenset({"running", "completed", "failed", "skipped"})
_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One step's saved state.

    Attributes:
        run_id: The run.
        step: The step's name.
        status: ``running`` | ``completed`` | ``failed`` | ``skipped``.
        output: The step's output (JSON data; ``None`` if none was saved).
        seq: Order in which the run first saved this step (1, 2, ...).
        created_at: Wall-clock time of the first save (epoch seconds).
        updated_at: Wall-clock time of the last save.
    """

    run_id: str
    step: str
    status: CheckpointStatus
    output: Any
    seq: int
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class ResumePlan:
    """Where a run stands and what to do next.

    Attributes:
        run_id: The run.
        steps: All steps of the workflow, in order.
        completed: Steps that are done (``completed`` or ``skipped``), in order.
        remaining: Steps still to run, in order (``next_step`` first).
        next_step: The first step to run, or ``None`` when the run is done.
        artifacts: The outputs of the ``completed`` steps, by step.
        restarted: ``force_restart`` cleared earlier checkpoints.
        skipped: Steps marked ``skipped`` (by ``skip_to``, now or before).
    """

    run_id: str
    steps: tuple[str, ...]
    completed: tuple[str, ...]
    remaining: tuple[str, ...]
    next_step: str | None
    artifacts: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    restarted: bool = False
    skipped: tuple[str, ...] = ()

    @property
    def done(self) -> bool:
        """Whether every step is done."""
        return self.next_step is None

    def should_run(self, step: str) -> bool:
        """Whether ``step`` still has to run (it is in :attr:`remaining`)."""
        return step in self.remaining


# -- the public class -----------------------------------------------------------------


def _check_steps(steps: Iterable[str]) -> tuple[str, ...]:
    if isinstance(steps, str):
        raise TypeError("steps must be a sequence of step names, not one string")
    names = tuple(steps)
    for name in names:
        check_name("checkpoint step", name)
    if len(set(names)) != len(names):
        raise ValueError(f"step names must be unique, got {list(names)!r}")
    return names


class CheckpointStore:
    """Saved step outputs that let a crashed or stopped run resume where it was.

    ::

        checkpoints = CheckpointStore("runs.sqlite")
        plan = checkpoints.resume_point(run_id, STEPS)
        outputs = dict(plan.artifacts)
        for step in plan.remaining:
            checkpoints.save(run_id, step, None, status="running")
            outputs[step] = STEP_FUNCTIONS[step](outputs)
            checkpoints.save(run_id, step, outputs[step])

    Guarantees:

    - Every :meth:`save` is atomic: after a crash (even ``kill -9`` or power
      loss mid-write) a step reads as its previous state or its new state,
      never as a mixture; a step killed before its ``completed`` save commits
      never reads as completed.
    - :meth:`resume_point` never repeats a step that is completed and never
      skips one that is not (unless you say so with ``skip_to``).
    - Outputs are verified (SHA-256) on every read.
    - The ``a*`` methods run the work in a worker thread: they never block
      the event loop.

    Several processes may share one file (WAL, busy timeout); use a
    :class:`~paios_reliability.LockManager` lock on the run id if two workers
    might run the *same* run.

    Args:
        path_or_store: An SQLite file path (created when missing, opened with
            :func:`~paios_reliability.open_database`) or any
            :class:`~paios_reliability.typing.StateStore` (e.g. a
            :class:`RedisStore` to resume on another host).
        retention: On a state store, seconds a run's checkpoints live after
            its last save (default 30 days). SQLite files keep them until
            :meth:`delete`.
        busy_timeout_ms: SQLite busy timeout for a path.
        clock: Time source for the timestamps.

    Events (``paios_reliability.checkpoint.*``): ``saved`` (debug),
    ``resumed``, ``restarted``, ``skipped``, ``deleted`` (info), ``corrupt``
    (error).
    """

    def __init__(
        self,
        path_or_store: str | os.PathLike[str] | StateStore,
        *,
        retention: float = 30 * 86_400.0,
        busy_timeout_ms: int = 5000,
        clock: Clock | None = None,
    ) -> None:
        self._clock = clock
        self._backend: _SQLiteBackend | _StoreBackend
        if isinstance(path_or_store, (str, os.PathLike)):
            if busy_timeout_ms < 0:
                raise ValueError(
                    f"busy_timeout_ms must be >= 0, got {busy_timeout_ms!r}"
                )
            self._backend = _SQLiteBackend(
                os.fspath(path_or_store), int(busy_timeout_ms)
            )
        else:
            from .._stores import resolve_store

            self._backend = _StoreBackend(
                resolve_store(path_or_store),
                check_number("CheckpointStore", "retention", retention),
            )

    def __repr__(self) -> str:
        return f"CheckpointStore({self._backend.where!r})"

    def _now(self) -> float:
        return get_clock(self._clock).time()

    def _checkpoint(self, run_id: str, row: tuple[Any, ...]) -> Checkpoint:
        step, status, text, checksum, seq, created, updated = row
        output = _decode(run_id, step, text, checksum, self._backend.where)
        return Checkpoint(
            run_id, step, status, output, int(seq), float(created), float(updated)
        )

    # -- sync -----------------------------------------------------------------

    def save(
        self,
        run_id: str,
        step: str,
        output: Any = None,
        status: CheckpointStatus = "completed",
    ) -> Checkpoint:
        """Record ``step`` of ``run_id`` as ``status`` with ``output``, atomically.

        Save ``status="running"`` when a step starts and the default
        ``"completed"`` (with its output) when it ends; a later save of the
        same step replaces the earlier one.

        Args:
            run_id: The run.
            step: The step's name.
            output: JSON-like data (datetimes, dataclasses, pydantic models
                are converted as by :func:`~paios_reliability.stable_hash`).
            status: ``running`` | ``completed`` | ``failed`` | ``skipped``.

        Returns:
            The saved :class:`Checkpoint` (its output as JSON reads it back).

        Raises:
            TypeError: ``output`` has no JSON form.
            ValueError: Unknown ``status``, empty ``run_id`` or ``step``.
        """
        check_name("checkpoint run_id", run_id)
        check_name("checkpoint step", step)
        if status not in _STATUSES:
            raise ValueError(
                f"status must be one of {sorted(_STATUSES)}, got {status!r}"
            )
        text, checksum = _encode(output)
        row = self._backend.save(
            run_id, step, status=status, text=text, checksum=checksum, now=self._now()
        )
        emit(
            _PRIMITIVE, "saved", level="debug", subject=run_id, step=step, status=status
        )
        return self._checkpoint(run_id, row)

    def load(self, run_id: str) -> dict[str, Checkpoint]:
        """Every checkpoint of ``run_id``, by step, in the order first saved.

        Raises:
            IntegrityError: A stored output fails its checksum.
        """
        check_name("checkpoint run_id", run_id)
        return {
            row[0]: self._checkpoint(run_id, row) for row in self._backend.load(run_id)
        }

    def resume_point(
        self,
        run_id: str,
        steps: Sequence[str],
        *,
        force_restart: bool = False,
        skip_to: str | None = None,
    ) -> ResumePlan:
        """Plan the rest of ``run_id``: done steps, their outputs, what runs next.

        A step is done when its checkpoint is ``completed`` (or ``skipped``);
        ``running`` (killed mid-step) and ``failed`` steps run again. Steps
        run in the order given; done steps are never in
        :attr:`ResumePlan.remaining`.

        Args:
            run_id: The run.
            steps: Every step of the workflow, in order (unique names).
            force_restart: Delete the run's checkpoints first: everything runs.
            skip_to: Start at this step: steps before it that are not done
                are marked ``skipped`` (durably), and this step and all after
                it have their checkpoints cleared, so they run again.

        Raises:
            ValueError: ``skip_to`` is not one of ``steps``; duplicate steps.
            IntegrityError: A stored output fails its checksum.
        """
        check_name("checkpoint run_id", run_id)
        names = _check_steps(steps)
        clear: tuple[str, ...] = ()
        skip: tuple[str, ...] = ()
        if skip_to is not None:
            if skip_to not in names:
                raise ValueError(
                    f"skip_to={skip_to!r} is not one of the steps {list(names)!r}"
                )
            at = names.index(skip_to)
            skip, clear = names[:at], names[at:]
        rows = self._backend.prepare(
            run_id, bool(force_restart), clear, skip, self._now()
        )
        records = {row[0]: row for row in rows}
        completed: list[str] = []
        remaining: list[str] = []
        skipped: list[str] = []
        artifacts: dict[str, Any] = {}
        for name in names:
            row = records.get(name)
            if row is not None and row[1] in _DONE:
                completed.append(name)
                if row[1] == "completed":
                    artifacts[name] = self._checkpoint(run_id, row).output
                else:
                    skipped.append(name)
            else:
                remaining.append(name)
        plan = ResumePlan(
            run_id=run_id,
            steps=names,
            completed=tuple(completed),
            remaining=tuple(remaining),
            next_step=remaining[0] if remaining else None,
            artifacts=MappingProxyType(artifacts),
            restarted=bool(force_restart),
            skipped=tuple(skipped),
        )
        if force_restart:
            emit(_PRIMITIVE, "restarted", subject=run_id)
        if skip_to is not None:
            emit(
                _PRIMITIVE,
                "skipped",
                subject=run_id,
                skip_to=skip_to,
                skipped=list(skip),
            )
        emit(
            _PRIMITIVE,
            "resumed",
            subject=run_id,
            next_step=plan.next_step,
            completed=len(plan.completed),
            remaining=len(plan.remaining),
        )
        return plan

    def delete(self, run_id: str) -> None:
        """Forget every checkpoint of ``run_id``."""
        check_name("checkpoint run_id", run_id)
        self._backend.delete(run_id)
        emit(_PRIMITIVE, "deleted", subject=run_id)

    def close(self) -> None:
        """Close the SQLite connection (a state store stays open: it is yours)."""
        self._backend.close()

    def __enter__(self) -> CheckpointStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- async: the same work in a worker thread ----------------------------------

    async def asave(
        self,
        run_id: str,
        step: str,
        output: Any = None,
        status: CheckpointStatus = "completed",
    ) -> Checkpoint:
        """:meth:`save` without blocking the event loop."""
        import asyncio

        return await asyncio.to_thread(self.save, run_id, step, output, status)

    async def aload(self, run_id: str) -> dict[str, Checkpoint]:
        """:meth:`load` without blocking the event loop."""
        import asyncio

        return await asyncio.to_thread(self.load, run_id)

    async def aresume_point(
        self,
        run_id: str,
        steps: Sequence[str],
        *,
        force_restart: bool = False,
        skip_to: str | None = None,
    ) -> ResumePlan:
        """:meth:`resume_point` without blocking the event loop."""
        import asyncio

        return await asyncio.to_thread(
            self.resume_point,
            run_id,
            steps,
            force_restart=force_restart,
            skip_to=skip_to,
        )

    async def adelete(self, run_id: str) -> None:
        """:meth:`delete` without blocking the event loop."""
        import asyncio

        await asyncio.to_thread(self.delete, run_id)
