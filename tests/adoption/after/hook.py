"""Record one tool call; the agent runs this hook after every tool call.

The agent writes the call on stdin as one JSON object, such as
``{"tool": "Bash", "session_id": "s-1", "status": "ok"}``. The hook appends it
to an SQLite log and counts the calls of each tool in a JSON file::

    python hook.py calls.sqlite usage.json < event.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import paios_reliability as pr


@pr.hook(budget=10.0)
def main() -> None:
    event = json.load(sys.stdin)
    db, usage_file = sys.argv[1], Path(sys.argv[2])
    with pr.open_database(db) as conn, pr.write_transaction(conn):
        conn.execute("CREATE TABLE IF NOT EXISTS calls (tool TEXT, body TEXT)")
        conn.execute(
            "INSERT INTO calls VALUES (?, ?)", (event["tool"], json.dumps(event))
        )
    with pr.ConfigFile(usage_file, default={}).edit() as usage:
        usage[event["tool"]] = usage.get(event["tool"], 0) + 1


if __name__ == "__main__":
    main()
