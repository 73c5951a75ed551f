"""Start-up cost of a realistic hook: stdlib versus paios_reliability.

A hook is a short process an agent runtime starts for every tool call, so
its start-up is paid on every call. Each variant here is the same hook: read
one JSON event on stdin, insert it into an SQLite file, count the tool's
usage in a JSON file, exit 0. Variants run alternately in fresh interpreters;
the report is the median wall time of ``RUNS`` runs each and the difference
to the stdlib hook (target: at most +15 ms).

- ``stdlib``: ``sqlite3.connect`` and ``json.load``/``json.dump``.
- ``library``: ``@pr.hook``, ``open_database`` + ``write_transaction``, a
  plain ``ConfigFile`` edited with ``edit()`` (no pydantic).
- ``library-model``: the same with a pydantic model on the ConfigFile, what
  a ConfigFile needed before it could hold a plain JSON object.

Run: ``python benchmarks/hook_startup.py [--runs 20] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STDLIB = """
import json, os, sqlite3, sys
event = json.load(sys.stdin)
conn = sqlite3.connect(sys.argv[1])
conn.execute("CREATE TABLE IF NOT EXISTS events (tool TEXT, body TEXT)")
conn.execute("INSERT INTO events VALUES (?, ?)", (event["tool"], json.dumps(event)))
conn.commit()
conn.close()
path = sys.argv[2]
usage = json.load(open(path)) if os.path.exists(path) else {}
usage[event["tool"]] = usage.get(event["tool"], 0) + 1
with open(path, "w") as fh:
    json.dump(usage, fh)
"""

LIBRARY = """
import json, sys
import paios_reliability as pr

@pr.hook(budget=5.0)
def main():
    event = json.load(sys.stdin)
    with pr.open_database(sys.argv[1]) as conn, pr.write_transaction(conn):
        conn.execute("CREATE TABLE IF NOT EXISTS events (tool TEXT, body TEXT)")
        conn.execute(
            "INSERT INTO events VALUES (?, ?)", (event["tool"], json.dumps(event))
        )
    with pr.ConfigFile(sys.argv[2], default={}).edit() as usage:
        usage[event["tool"]] = usage.get(event["tool"], 0) + 1

main()
"""

LIBRARY_MODEL = """
import json, sys
from pydantic import BaseModel
import paios_reliability as pr

class Usage(BaseModel):
    counts: dict[str, int] = {}

def main():
    event = json.load(sys.stdin)
    with pr.open_database(sys.argv[1]) as conn, pr.write_transaction(conn):
        conn.execute("CREATE TABLE IF NOT EXISTS events (tool TEXT, body TEXT)")
        conn.execute(
            "INSERT INTO events VALUES (?, ?)", (event["tool"], json.dumps(event))
        )
    def bump(usage):
        usage.counts[event["tool"]] = usage.counts.get(event["tool"], 0) + 1
    pr.ConfigFile(sys.argv[2], Usage, default=Usage()).update(bump)

main()
"""

VARIANTS = {"stdlib": STDLIB, "library": LIBRARY, "library-model": LIBRARY_MODEL}
EVENT = json.dumps({"tool": "Bash", "session_id": "s-1", "status": "ok"})


# An installed package runs from compiled bytecode; a shell that disables
# writing it would time the compiler instead of the hook.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def run_once(source: str, directory: Path, name: str) -> float:
    started = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            source,
            str(directory / f"{name}.sqlite"),
            str(directory / f"{name}.json"),
        ],
        input=EVENT,
        capture_output=True,
        text=True,
        check=False,
        env=ENV,
    )
    elapsed = time.perf_counter() - started
    if proc.returncode != 0 or proc.stderr:
        raise RuntimeError(f"{name} hook failed ({proc.returncode}): {proc.stderr}")
    return elapsed * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in args.variants}
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        for name in args.variants:  # warm the OS caches once
            run_once(VARIANTS[name], directory, name)
        for _ in range(args.runs):
            for name in args.variants:
                times[name].append(run_once(VARIANTS[name], directory, name))
    medians = {name: statistics.median(values) for name, values in times.items()}
    base = medians.get("stdlib")
    if args.json:
        print(json.dumps({"runs": args.runs, "median_ms": medians}))
        return
    print(
        f"hook start-up, median of {args.runs} runs (python {sys.version.split()[0]})"
    )
    for name, ms in medians.items():
        extra = "" if base is None or name == "stdlib" else f"  (+{ms - base:.1f} ms)"
        print(f"{name:<15}{ms:>8.1f} ms{extra}")
    if base is not None and "library" in medians:
        over = medians["library"] - base
        verdict = "within" if over <= 15.0 else "OVER"
        print(f"library hook: +{over:.1f} ms ({verdict} the +15 ms target)")


if __name__ == "__main__":
    main()
