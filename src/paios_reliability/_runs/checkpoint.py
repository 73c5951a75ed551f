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

import hashlib
import json
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from .._core.clock import get_clock
from .._core.events import emit
from .._core.exceptions import IntegrityError
from .._stores import check_name, check_seconds

if TYPE_CHECKING:
    import sqlite3

    from ..typing import Clock, StateStore

__all__ = ["Checkpoint", "CheckpointStatus", "CheckpointStore", "ResumePlan"]

CheckpointStatus = Literal["running", "completed", "failed", "skipped"]
_STATUSES = frozenset({"running", "completed", "failed", "skipped"})
_DONE = frozenset({"completed", "skipped"})
_PRIMITIVE = "checkpoint"
_EMPTY: Mapping[str, Any] = MappingProxyType({})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS paios_checkpoints (
    run_id TEXT NOT NULL,
    step TEXT NOT NULL,
    seq INTEGER NOT NULL,
    status TEXT NOT NULL,
    output TEXT NOT NULL,
    checksum TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (run_id, step)
) WITHOUT ROWID
"""


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


def _encode(output: Any) -> tuple[str, str]:
    from .._data.signed import canonical_json

    data = canonical_json(output, exclude=())
    return data.decode("utf-8", "surrogatepass"), hashlib.sha256(data).hexdigest()


def _decode(run_id: str, step: str, text: str, checksum: str, where: str) -> Any:
    data = text.encode("utf-8", "surrogatepass")
    if hashlib.sha256(data).hexdigest() != checksum:
        emit(
            _PRIMITIVE, "corrupt", level="error", subject=run_id, step=step, store=where
        )
        raise IntegrityError(
            f"checkpoint {step!r} of run {run_id!r} in {where} fails its checksum "
            "(changed outside paios_reliability?); resume with force_restart=True "
            "or skip_to=... to run past it",
            context={"run_id": run_id, "step": step, "store": where},
        )
    return json.loads(text)


# -- backends: the same five operations on SQLite and on a state store ------------------


class _SQLiteBackend:
    """Checkpoints in an SQLite file: one row per (run, step)."""

    def __init__(self, path: str, busy_timeout_ms: int) -> None:
        self.path = path
        self.where = path
        self._busy_timeout_ms = busy_timeout_ms
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self._closed = False
        self._abandoned: list[sqlite3.Connection] = []

    def _connection(self) -> sqlite3.Connection:
        # Called with self._lock held.
        if self._closed:
            raise ValueError(f"CheckpointStore({self.path!r}) is closed")
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        if self._conn is not None:
            # Inherited through fork(): never use or close it here.
            self._abandoned.append(self._conn)
            self._conn = None
        from .._data.database import open_database
        from .._data.transactions import write_transaction

        conn = open_database(
            self.path, busy_timeout_ms=self._busy_timeout_ms, check_same_thread=False
        )
        try:
            with write_transaction(conn):
                conn.execute(_SCHEMA)
        except BaseException:
            conn.close()
            raise
        self._conn, self._pid = conn, os.getpid()
        return conn

    def _records(self, conn: sqlite3.Connection, run_id: str) -> list[tuple[Any, ...]]:
        return list(
            conn.execute(
                "SELECT step, status, output, checksum, seq, created_at, updated_at "
                "FROM paios_checkpoints WHERE run_id = ? ORDER BY seq",
                (run_id,),
            )
        )

    def save(
        self,
        run_id: str,
        step: str,
        *,
        status: str,
        text: str,
        checksum: str,
        now: float,
    ) -> tuple[Any, ...]:
        from .._data.transactions import write_transaction

        with self._lock:
            conn = self._connection()
            with write_transaction(conn):
                row = conn.execute(
                    "SELECT seq, created_at FROM paios_checkpoints "
                    "WHERE run_id = ? AND step = ?",
                    (run_id, step),
                ).fetchone()
                if row is None:
                    (seq,) = conn.execute(
                        "SELECT COALESCE(MAX(seq), 0) + 1 FROM paios_checkpoints "
                        "WHERE run_id = ?",
                        (run_id,),
                    ).fetchone()
                    created = now
                else:
                    seq, created = row
                conn.execute(
                    "INSERT OR REPLACE INTO paios_checkpoints (run_id, step, seq, "
                    "status, output, checksum, created_at, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (run_id, step, seq, status, text, checksum, created, now),
                )
        return (step, status, text, checksum, seq, created, now)

    def load(self, run_id: str) -> list[tuple[Any, ...]]:
        from .._data.transactions import read_transaction

        with self._lock:
            conn = self._connection()
            with read_transaction(conn):
                return self._records(conn, run_id)

    def prepare(
        self,
        run_id: str,
        clear_all: bool,
        clear: Sequence[str],
        skip: Sequence[str],
        now: float,
    ) -> list[tuple[Any, ...]]:
        """Apply a restart / skip, then read the run (one transaction)."""
        from .._data.transactions import read_transaction, write_transaction

        with self._lock:
            conn = self._connection()
            if not (clear_all or clear or skip):
                with read_transaction(conn):
                    return self._records(conn, run_id)
            with write_transaction(conn):
                if clear_all:
                    conn.execute(
                        "DELETE FROM paios_checkpoints WHERE run_id = ?", (run_id,)
                    )
                conn.executemany(
                    "DELETE FROM paios_checkpoints WHERE run_id = ? AND step = ?",
                    [(run_id, s) for s in clear],
                )
                text, checksum = _encode(None)
                for name in skip:
                    row = conn.execute(
                        "SELECT status, seq, created_at FROM paios_checkpoints "
                        "WHERE run_id = ? AND step = ?",
                        (run_id, name),
                    ).fetchone()
                    if row is not None and row[0] in _DONE:
                        continue
                    if row is None:
                        (seq,) = conn.execute(
                            "SELECT COALESCE(MAX(seq), 0) + 1 FROM paios_checkpoints "
                            "WHERE run_id = ?",
                            (run_id,),
                        ).fetchone()
                        created = now
                    else:
                        _, seq, created = row
                    conn.execute(
                        "INSERT OR REPLACE INTO paios_checkpoints (run_id, step, seq, "
                        "status, output, checksum, created_at, updated_at) "
                        "VALUES (?, ?, ?, 'skipped', ?, ?, ?, ?)",
                        (run_id, name, seq, text, checksum, created, now),
                    )
                return self._records(conn, run_id)

    def delete(self, run_id: str) -> None:
        from .._data.transactions import write_transaction

        with self._lock:
            conn = self._connection()
            with write_transaction(conn):
                conn.execute(
                    "DELETE FROM paios_checkpoints WHERE run_id = ?", (run_id,)
                )

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conn, self._conn = self._conn, None
            if conn is not None and self._pid == os.getpid():
                conn.close()


def _store_save(
    data: Any, step: str, *, status: str, text: str, checksum: str, now: float
) -> tuple[Any, tuple[Any, ...]]:
    steps = dict(data["s"]) if data is not None else {}
    seq = data["n"] if data is not None else 1
    old = steps.get(step)
    if old is None:
        entry = [seq, status, text, checksum, now, now]
        seq += 1
    else:
        entry = [old[0], status, text, checksum, old[4], now]
    steps[step] = entry
    return {"n": seq, "s": steps}, (
        step,
        status,
        text,
        checksum,
        entry[0],
        entry[4],
        now,
    )


def _store_rows(data: Any) -> list[tuple[Any, ...]]:
    if data is None:
        return []
    rows = [(name, e[1], e[2], e[3], e[0], e[4], e[5]) for name, e in data["s"].items()]
    return sorted(rows, key=lambda r: r[4])


def _store_prepare(
    data: Any,
    clear_all: bool,
    clear: Sequence[str],
    skip: Sequence[str],
    now: float,
) -> tuple[Any, list[tuple[Any, ...]]]:
    if not (clear_all or clear or skip):
        return data, _store_rows(data)
    steps: dict[str, Any] = {} if data is None or clear_all else dict(data["s"])
    seq = 1 if data is None else data["n"]
    for name in clear:
        steps.pop(name, None)
    text, checksum = _encode(None)
    for name in skip:
        old = steps.get(name)
        if old is None:
            steps[name] = [seq, "skipped", text, checksum, now, now]
            seq += 1
        elif old[1] not in _DONE:
            steps[name] = [old[0], "skipped", text, checksum, old[4], now]
    new = {"n": seq, "s": steps} if steps else None
    return new, _store_rows(new)


class _StoreBackend:
    """Checkpoints in a state store: one record per run, one update per save."""

    def __init__(self, store: StateStore, retention: float) -> None:
        self.store = store
        self.where = repr(store)
        self._ttl = retention

    @staticmethod
    def _key(run_id: str) -> str:
        return f"{_PRIMITIVE}:{run_id}"

    def save(
        self,
        run_id: str,
        step: str,
        *,
        status: str,
        text: str,
        checksum: str,
        now: float,
    ) -> tuple[Any, ...]:
        def apply(data: Any) -> tuple[Any, tuple[Any, ...]]:
            return _store_save(
                data, step, status=status, text=text, checksum=checksum, now=now
            )

        return self.store.update(self._key(run_id), apply, ttl=self._ttl)

    def load(self, run_id: str) -> list[tuple[Any, ...]]:
        return _store_rows(self.store.get(self._key(run_id)))

    def prepare(
        self,
        run_id: str,
        clear_all: bool,
        clear: Sequence[str],
        skip: Sequence[str],
        now: float,
    ) -> list[tuple[Any, ...]]:
        def apply(data: Any) -> tuple[Any, list[tuple[Any, ...]]]:
            return _store_prepare(data, clear_all, clear, skip, now)

        return self.store.update(self._key(run_id), apply, ttl=self._ttl)

    def delete(self, run_id: str) -> None:
        self.store.delete(self._key(run_id))

    def close(self) -> None:
        """The caller owns the state store; nothing to release here."""


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
                check_seconds("CheckpointStore", "retention", retention),
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
