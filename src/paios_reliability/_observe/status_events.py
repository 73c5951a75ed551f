"""Pages of one event store's events, read-only, for the status HTTP API."""

from __future__ import annotations

from typing import Any

from .._core.exceptions import ConfigError
from .status import _read_only

__all__ = ["read_events"]


def read_events(
    path: str,
    *,
    category: str | None = None,
    action: str | None = None,
    level: str | None = None,
    service: str | None = None,
    trace_id: str | None = None,
    since: float | None = None,
    until: float | None = None,
    before_id: int | None = None,
    after_id: int | None = None,
    limit: int = 100,
) -> list[Any]:
    """Events of one store through a read-only connection, for paging.

    With ``after_id`` the events come oldest first (a stream resuming after
    the last one it sent); otherwise newest first, below ``before_id`` when
    given (the next page of a listing).

    Raises:
        ConfigError: ``USAGE_ERROR`` for an unknown level.
        sqlite3.Error, OSError: The store cannot be opened or read.
    """
    from .eventstore_schema import _LEVELNO, LEVELS
    from .stored_event import _row_to_event

    clauses: list[str] = []
    params: list[Any] = []
    for column, value in (
        ("category", category),
        ("action", action),
        ("service", service),
        ("trace_id", trace_id),
    ):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if level is not None:
        if level not in _LEVELNO:
            raise ConfigError(
                f"unknown level {level!r}; use one of {list(LEVELS)}",
                code="USAGE_ERROR",
            )
        wanted = [n for n in LEVELS if _LEVELNO[n] >= _LEVELNO[level]]
        clauses.append(f"level IN ({', '.join('?' * len(wanted))})")
        params.extend(wanted)
    for clause, bound in (
        ("ts >= ?", since),
        ("ts <= ?", until),
        ("id < ?", before_id),
        ("id > ?", after_id),
    ):
        if bound is not None:
            clauses.append(clause)
            params.append(bound)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    order = "ASC" if after_id is not None else "DESC"
    columns = "id, ts, trace_id, span_id, service, category, action, level, metadata"
    sql = f"SELECT {columns} FROM events {where} ORDER BY id {order} LIMIT ?"  # noqa: S608 - clauses are ours, values bound
    conn = _read_only(path)
    try:
        rows = conn.execute(sql, [*params, int(limit)]).fetchall()
    finally:
        conn.close()
    return [_row_to_event(row) for row in rows]
