"""Looking after an SQLite file: :func:`check_database` and :func:`checkpoint`.

Apart from :mod:`.database` so that a process that only opens a database
and writes to it (a hook) never imports what inspecting one needs.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from .._core.events import emit
from .atomic import describe_os_error, file_kind
from .database import SQLITE_MAGIC, _display, _pragma, _read_header, _readonly_uri

__all__ = ["CheckpointResult", "DatabaseReport", "check_database", "checkpoint"]

_CHECKPOINT_MODES = frozenset({"PASSIVE", "FULL", "RESTART", "TRUNCATE"})
_LARGE_WAL = 64 * 1024 * 1024

CheckpointMode = Literal["PASSIVE", "FULL", "RESTART", "TRUNCATE"]


class CheckpointResult(NamedTuple):
    """Outcome of :func:`checkpoint` (SQLite's ``wal_checkpoint`` row)."""

    busy: bool
    wal_frames: int
    checkpointed_frames: int


def checkpoint(
    conn: sqlite3.Connection, mode: CheckpointMode | str = "PASSIVE"
) -> CheckpointResult:
    """Copy WAL content back into the database file.

    Args:
        conn: An open connection, not inside a transaction.
        mode: ``PASSIVE`` (never waits), ``FULL``, ``RESTART`` or ``TRUNCATE``
            (waits for readers, then truncates the WAL to zero bytes).

    Returns:
        Whether it was blocked, frames in the WAL, frames checkpointed.
    """
    name = str(mode).upper()
    if name not in _CHECKPOINT_MODES:
        raise ValueError(
            f"checkpoint mode must be one of {sorted(_CHECKPOINT_MODES)}, got {mode!r}"
        )
    row = conn.execute(f"PRAGMA wal_checkpoint({name})").fetchone()
    result = CheckpointResult(bool(row[0]), int(row[1]), int(row[2]))
    emit(
        "sqlite",
        "checkpoint",
        level="debug" if not result.busy else "warning",
        subject=getattr(conn, "_paios_path", "?"),
        mode=name,
        busy=result.busy,
        wal_frames=result.wal_frames,
        checkpointed_frames=result.checkpointed_frames,
    )
    return result


@dataclass(frozen=True, slots=True)
class DatabaseReport:
    """What :func:`check_database` found.

    Attributes:
        path: The file checked.
        exists: Whether it exists.
        size: Its size in bytes (0 if missing).
        zero_byte: A 0-byte placeholder (SQLite would silently treat it as a
            new, empty database).
        is_sqlite: Whether it starts with the SQLite header.
        journal_mode: ``wal``, ``delete``... (``None`` if unreadable).
        check: ``"quick_check"`` or ``"integrity_check"``.
        integrity: The check's messages (``("ok",)`` when healthy).
        wal_size: Size of the ``-wal`` file in bytes (0 if none).
        page_size: Bytes per page.
        page_count: Pages in the database file.
        freelist_count: Unused pages (reclaimable by ``VACUUM``).
        problems: One line per problem found; empty when healthy.
        warnings: Things worth knowing that are not damage (not WAL, a large
            WAL file); they do not make ``ok`` false.
    """

    path: str
    exists: bool
    size: int = 0
    zero_byte: bool = False
    is_sqlite: bool = False
    journal_mode: str | None = None
    check: str = "quick_check"
    integrity: tuple[str, ...] = ()
    wal_size: int = 0
    page_size: int | None = None
    page_count: int | None = None
    freelist_count: int | None = None
    problems: tuple[str, ...] = field(default=())
    warnings: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view."""
        return {
            "path": self.path,
            "ok": self.ok,
            "exists": self.exists,
            "size": self.size,
            "zero_byte": self.zero_byte,
            "is_sqlite": self.is_sqlite,
            "journal_mode": self.journal_mode,
            "check": self.check,
            "integrity": list(self.integrity),
            "wal_size": self.wal_size,
            "page_size": self.page_size,
            "page_count": self.page_count,
            "freelist_count": self.freelist_count,
            "problems": list(self.problems),
            "warnings": list(self.warnings),
        }

    def to_text(self) -> str:
        """A few human-readable lines (what ``paios-reliability db check`` prints)."""
        status = "ok" if self.ok else "PROBLEMS"
        lines = [f"{self.path}: {status}"]
        # Sizes and pages of a directory, FIFO or device would only be noise.
        if self.exists and (self.is_sqlite or self.size or self.zero_byte):
            lines.append(
                f"  size {self.size} B, journal {self.journal_mode or '?'}, "
                f"wal {self.wal_size} B, pages {self.page_count if self.page_count is not None else '?'}"
                f" x {self.page_size if self.page_size is not None else '?'} B, "
                f"freelist {self.freelist_count if self.freelist_count is not None else '?'}"
            )
            if self.integrity:
                lines.append(f"  {self.check}: {'; '.join(self.integrity[:5])}")
        lines.extend(f"  problem: {p}" for p in self.problems)
        lines.extend(f"  warning: {w}" for w in self.warnings)
        return "\n".join(lines)


def _header_problem(name: str) -> str | None:
    """Why the file ``name`` cannot be opened as SQLite, judged by its header."""
    try:
        head = _read_header(name)
    except OSError as exc:
        return f"cannot read: {describe_os_error(exc)}"
    if head != SQLITE_MAGIC:
        return f"not an SQLite database (header {head!r})"
    return None


def check_database(
    path: str | os.PathLike[str], *, full: bool = False, busy_timeout_ms: int = 5000
) -> DatabaseReport:
    """Inspect an SQLite file without modifying it.

    Opens it read-only (``mode=ro``), so nothing in the database file changes;
    for a WAL database SQLite may create the empty ``-wal``/``-shm`` side files
    a reader needs. Never raises for a bad file: everything found is in the
    report's ``problems``.

    Args:
        path: The database file.
        full: Run ``integrity_check`` (reads every page and index) instead of
            the faster ``quick_check``.
        busy_timeout_ms: How long to wait for a writer's lock.

    Returns:
        A :class:`DatabaseReport`; ``report.ok`` is true when no problem was
        found.
    """
    name = _display(path)
    check = "integrity_check" if full else "quick_check"
    try:
        st = os.stat(name)
    except FileNotFoundError:
        return DatabaseReport(
            name, exists=False, check=check, problems=("file does not exist",)
        )
    except OSError as exc:
        return DatabaseReport(
            name, exists=False, check=check, problems=(f"cannot stat: {exc}",)
        )
    if stat.S_ISDIR(st.st_mode):
        return DatabaseReport(
            name, exists=True, check=check, problems=("is a directory",)
        )
    kind = file_kind(st.st_mode)
    if kind is not None:
        return DatabaseReport(
            name,
            exists=True,
            check=check,
            problems=(f"is {kind}, not a regular file; not opened",),
        )
    try:
        wal_size = os.path.getsize(name + "-wal")
    except OSError:
        wal_size = 0
    if st.st_size == 0:
        return DatabaseReport(
            name,
            exists=True,
            zero_byte=True,
            check=check,
            wal_size=wal_size,
            problems=(
                "0-byte placeholder: SQLite would silently treat it as a new empty database",
            ),
        )
    unusable = _header_problem(name)
    if unusable is not None:
        return DatabaseReport(
            name,
            exists=True,
            size=st.st_size,
            check=check,
            wal_size=wal_size,
            problems=(unusable,),
        )
    problems: list[str] = []
    facts: dict[str, Any] = {}
    integrity: tuple[str, ...] = ()
    uri = _readonly_uri(name)
    try:
        conn = sqlite3.connect(
            uri, uri=True, timeout=busy_timeout_ms / 1000, isolation_level=None
        )
    except sqlite3.Error as exc:
        problems.append(f"cannot open read-only: {exc}")
    else:
        try:
            for pragma in ("journal_mode", "page_size", "page_count", "freelist_count"):
                facts[pragma] = _pragma(conn, f"PRAGMA {pragma}")
            rows = conn.execute(f"PRAGMA {check}").fetchall()
            integrity = tuple(str(r[0]) for r in rows)
            if integrity != ("ok",):
                problems.extend(f"{check}: {m}" for m in integrity[:20])
        except sqlite3.Error as exc:
            problems.append(f"{check} failed: {exc}")
        finally:
            conn.close()
    warnings: list[str] = []
    journal = facts.get("journal_mode")
    if journal is not None and str(journal).lower() != "wal":
        warnings.append(
            f"journal mode is {journal!r}, not 'wal' (writers will block readers)"
        )
    if wal_size > _LARGE_WAL:
        warnings.append(
            f"WAL file is {wal_size} B: a long-lived reader may be blocking checkpoints"
        )
    return DatabaseReport(
        name,
        exists=True,
        size=st.st_size,
        is_sqlite=True,
        journal_mode=None if journal is None else str(journal).lower(),
        check=check,
        integrity=integrity,
        wal_size=wal_size,
        page_size=facts.get("page_size"),
        page_count=facts.get("page_count"),
        freelist_count=facts.get("freelist_count"),
        problems=tuple(problems),
        warnings=tuple(warnings),
    )
