"""Cost of recording an event, side by side in one process.

Run: ``python benchmarks/bench_eventstore.py [--events N] [--naive N]``

- ``EventStore.emit`` as the caller sees it (append to the buffer), and
  amortised including the batched write (emit N events, then ``flush``): the
  target is <= 20 us per event amortised.
- The naive way: one ``INSERT`` + commit per event on a WAL database with the
  same settings (what most services do first).
- The naive way without a commit per event (autocommit off, one commit at the
  end: fast, but an event is not durable until someone remembers to commit).

Each variant writes into its own fresh file in a temporary directory.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import paios_reliability as pr


def bench_store(directory: Path, events: int) -> tuple[float, float]:
    store = pr.EventStore(directory / "store.sqlite", service="bench", batch_size=500)
    store.emit("warm", "up")
    store.flush()
    gc.disable()
    try:
        start = time.perf_counter()
        for i in range(events):
            store.emit("tool", "called", level="info", tool="search", seq=i, status=200)
        emitted = time.perf_counter()
        store.flush()
        done = time.perf_counter()
    finally:
        gc.enable()
    assert store.stats().written == events + 1, store.stats()
    store.close()
    return (emitted - start) / events, (done - start) / events


def _naive_conn(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA busy_timeout = 5000")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute(
        "CREATE TABLE events (id INTEGER PRIMARY KEY, ts REAL, trace_id TEXT, "
        "span_id TEXT, service TEXT, category TEXT, action TEXT, level TEXT, metadata TEXT)"
    )
    return conn


def bench_naive(directory: Path, events: int, *, commit_each: bool) -> float:
    conn = _naive_conn(directory / f"naive-{commit_each}.sqlite")
    sql = "INSERT INTO events VALUES (NULL, ?, ?, ?, ?, ?, ?, ?, ?)"
    gc.disable()
    try:
        start = time.perf_counter()
        if not commit_each:
            conn.execute("BEGIN")
        for i in range(events):
            meta = json.dumps({"tool": "search", "seq": i, "status": 200})
            if commit_each:
                conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                sql, (time.time(), None, None, "bench", "tool", "called", "info", meta)
            )
            if commit_each:
                conn.execute("COMMIT")
        if not commit_each:
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - start
    finally:
        gc.enable()
    conn.close()
    return elapsed / events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--naive", type=int, default=3_000)
    args = parser.parse_args()
    print(
        f"Python {platform.python_version()} on {platform.system()} {platform.machine()}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        runs = []
        for i in range(3):
            (directory / f"r{i}").mkdir()
            runs.append(bench_store(directory / f"r{i}", args.events))
        caller, amortised = min(runs, key=lambda pair: pair[1])
        per_event_commit = bench_naive(directory, args.naive, commit_each=True)
        one_commit = bench_naive(directory, args.events, commit_each=False)
    rows = [
        ("EventStore.emit (caller)", caller),
        ("EventStore amortised (emit + batched write)", amortised),
        ("naive INSERT + COMMIT per event", per_event_commit),
        ("naive INSERT, one COMMIT at the end (not durable)", one_commit),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"{'variant'.ljust(width)}  {'us/event':>9}  {'vs amortised':>12}")
    for name, seconds in rows:
        print(
            f"{name.ljust(width)}  {seconds * 1e6:9.2f}  {seconds / amortised:11.2f}x"
        )
    target = 20e-6
    verdict = "OK" if amortised <= target else "OVER TARGET"
    print(f"amortised {amortised * 1e6:.2f} us/event; target <= 20 us: {verdict}")
    print(
        f"naive per-event commit is {per_event_commit / amortised:.0f}x the amortised cost"
    )
    if amortised > target:
        sys.exit(1)


if __name__ == "__main__":
    main()
