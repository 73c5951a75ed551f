"""A CLI hook run once per tool call, adopting paios_reliability.

An agent runtime starts this script for every tool call and writes one JSON
event on its stdin, e.g.::

    {"tool": "search", "session_id": "s-1", "status": "ok", "duration_ms": 120}

The hook counts calls per tool in a small SQLite state file (opened with
``open_database``: WAL, busy timeout, refuses a file that is not a database;
updated in ``write_transaction``: ``BEGIN IMMEDIATE``, so concurrent hooks
lose no update) and appends the event to the shared ``EventStore``.

On any error it prints exactly one line on stderr and exits with the stable
code of ``exit_code_for`` (11 for malformed input, 43 for a database file that
is not a database, ...); a file it cannot trust is never modified.

Run it::

    echo '{"tool": "search", "status": "ok"}' | python examples/hook.py --db hook_state.sqlite
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import paios_reliability as pr

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tool_calls (
    tool TEXT PRIMARY KEY,
    calls INTEGER NOT NULL,
    errors INTEGER NOT NULL
)
"""


def parse_event(raw: str) -> dict[str, Any]:
    """The event on stdin, checked; malformed input raises (``MALFORMED_DATA``)."""
    event = json.loads(raw)  # a JSONDecodeError is classified MALFORMED_DATA
    if not isinstance(event, dict):
        raise pr.PermanentError(
            "the event must be a JSON object", code="MALFORMED_DATA"
        )
    tool = event.get("tool")
    if not isinstance(tool, str) or not tool:
        raise pr.PermanentError(
            "the event needs a non-empty string 'tool'", code="MALFORMED_DATA"
        )
    if event.get("status", "ok") not in ("ok", "error"):
        raise pr.PermanentError(
            "'status' must be 'ok' or 'error'", code="MALFORMED_DATA"
        )
    return event


def record(db_path: str, event: dict[str, Any]) -> int:
    """Count the call in the state database; returns the tool's call count."""
    failed = int(event.get("status", "ok") == "error")
    # A missing file is created (first run); a 0-byte placeholder or a file
    # that is not SQLite is refused before anything is written to it.
    with pr.open_database(db_path) as conn, pr.write_transaction(conn):
        conn.execute(_SCHEMA)
        conn.execute(
            "INSERT INTO tool_calls (tool, calls, errors) VALUES (?, 1, ?) "
            "ON CONFLICT(tool) DO UPDATE SET calls = calls + 1, errors = errors + ?",
            (event["tool"], failed, failed),
        )
        (calls,) = conn.execute(
            "SELECT calls FROM tool_calls WHERE tool = ?", (event["tool"],)
        ).fetchone()
    return int(calls)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Record one tool call.")
    parser.add_argument("--db", default="hook_state.sqlite")
    parser.add_argument("--events", default="observability.sqlite")
    args = parser.parse_args(argv)
    events = pr.EventStore(args.events, service="hook")
    try:
        event = parse_event(sys.stdin.read())
        calls = record(args.db, event)
        events.emit(
            "hook",
            "tool_call",
            level="error" if event.get("status") == "error" else "info",
            tool=event["tool"],
            session_id=str(event.get("session_id", "")),
            calls=calls,
        )
    except Exception as exc:  # noqa: BLE001 - a hook reports, it never tracebacks
        failure = pr.classify(exc)
        events.emit("hook", "failed", level="error", code=failure.code, error=str(exc))
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"hook: {failure.code}: {message}", file=sys.stderr)
        return pr.exit_code_for(exc)
    else:
        return 0
    finally:
        events.close()


if __name__ == "__main__":
    sys.exit(main())
