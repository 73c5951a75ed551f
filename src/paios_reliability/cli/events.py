"""``paios-reliability events``: read an event store."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from ._common import add_command, add_group, emit

__all__ = ["register"]


def _cmd_events_query(args: argparse.Namespace) -> int:
    return emit(
        query_command(
            args.db,
            trace=args.trace,
            category=args.category,
            action=args.action,
            since=args.since,
            until=args.until,
            level=args.level,
            service=args.service,
            limit=args.limit or None,
            as_json=args.json,
        )
    )


def query_command(
    db: str | os.PathLike[str],
    *,
    trace: str | None = None,
    category: str | None = None,
    action: str | None = None,
    since: str | None = None,
    until: str | None = None,
    level: str | None = None,
    service: str | None = None,
    limit: int | None = 100,
    as_json: bool = False,
) -> tuple[str, int]:
    """What ``paios-reliability events query DB ...`` prints, and its exit status.

    Opens the store read-only (a missing file is an error, never created).

    Returns:
        ``(text, exit_status)``: one line per event (or a JSON array with
        ``as_json``), oldest first; status 0 (also when nothing matched).

    Raises:
        ReliabilityError: The file is missing or not a database
            (``FILE_NOT_FOUND``, ``DB_NOT_A_DATABASE``), or a bad filter
            (``USAGE_ERROR``); the CLI prints one line and exits with its code.
    """
    from .._observe.eventstore import EventStore

    store = EventStore(db, readonly=True)
    try:
        events = store.query(
            trace_id=trace,
            category=category,
            action=action,
            since=since,
            until=until,
            level=level,
            service=service,
            limit=limit,
        )
    finally:
        store.close()
    if as_json:
        return json.dumps([e.to_dict() for e in events], indent=2), 0
    if not events:
        return "no events matched", 0
    return "\n".join(e.to_line() for e in events), 0


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add the ``events`` command group (``events query``)."""
    events_sub = add_group(
        sub,
        "events",
        help="query an event store (observability.sqlite)",
        description="Read the events an EventStore recorded; never writes.",
        examples=["paios-reliability events query observability.sqlite --since 1h"],
    )
    query = add_command(
        events_sub,
        "query",
        help="list stored events, oldest first",
        description=(
            "Print the stored events that match every filter given, oldest "
            "first, one line each (or a JSON array). The store is opened "
            "read-only; a missing file is an error, never created."
        ),
        examples=[
            "paios-reliability events query observability.sqlite --since 1h",
            "paios-reliability events query observability.sqlite --category circuit_breaker --level warning",
            "paios-reliability events query observability.sqlite --trace 4bf92f3577b34da6 --json",
        ],
        handler=_cmd_events_query,
    )
    query.add_argument("db", help="path of the event store database")
    query.add_argument("--trace", help="only this trace id")
    query.add_argument("--category", help="only this category (primitive)")
    query.add_argument("--action", help="only this action")
    query.add_argument("--since", help="age (30m, 1h, 2d) or ISO time")
    query.add_argument("--until", help="age or ISO time")
    query.add_argument("--level", help="this level or worse")
    query.add_argument("--service", help="only this service")
    query.add_argument(
        "--limit", type=int, default=100, help="at most N events (0: all)"
    )
    query.add_argument("--json", action="store_true", help="print JSON")
