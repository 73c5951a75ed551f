"""Record one tool call; the agent runs this hook after every tool call.

The agent writes the call on stdin as one JSON object, such as
``{"tool": "Bash", "session_id": "s-1", "status": "ok"}``. The hook appends it
to an SQLite log and counts the calls of each tool in a JSON file::

    python hook.py calls.sqlite usage.json < event.json
"""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path


def main() -> None:
    event = json.load(sys.stdin)
    db, usage_file = sys.argv[1], Path(sys.argv[2])
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS calls (tool TEXT, body TEXT)")
        conn.execute(
            "INSERT INTO calls VALUES (?, ?)", (event["tool"], json.dumps(event))
        )
    usage = json.loads(usage_file.read_text()) if usage_file.exists() else {}
    usage[event["tool"]] = usage.get(event["tool"], 0) + 1
    usage_file.write_text(json.dumps(usage, indent=2))


if __name__ == "__main__":
    main()
