"""Cost of ``collect_status`` (the ``status`` command) on a large event store.

Run: ``python benchmarks/bench_status.py [--events N] [--rounds N]``

Fills a fresh event store with N events (default 100 000: a mix of info
calls, errors under a few codes spread over two days, crashes and leak
warnings) plus a state store with 50 breakers, then times
``collect_status`` (median and worst of the rounds in this process, and
the first call in a fresh process, which also pays for importing the
primitives' state code). Target: < 300 ms for 100 000 events.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import paios_reliability as pr


def fill(directory: Path, events: int) -> pr.StatusSources:
    path = directory / "observability.sqlite"
    now = time.time()
    with pr.EventStore(path, service="bench", batch_size=5000) as store:
        for i in range(events):
            ts = now - (i % 172_800)  # two days, half of them in the window
            if i % 10 == 0:
                store.emit("tool", "failed", level="error", code=f"CODE_{i % 7}", ts=ts)
            elif i % 5000 == 1:
                store.emit(
                    "crash", "unclean_exit", level="critical", reason="SIGKILL", ts=ts
                )
            elif i % 3000 == 2:
                store.emit(
                    "leak_monitor",
                    "leak_detected",
                    level="warning",
                    subject="rss",
                    ts=ts,
                )
            else:
                store.emit("tool", "called", tool="search", seq=i, ts=ts)
    state = pr.SQLiteStore(directory / "state.sqlite")
    for n in range(50):
        pr.CircuitBreaker(f"breaker-{n}", store=state).trip()
    state.close()
    return pr.load_status_sources(
        cwd=str(directory),
        environ={},
        event_stores=[str(path)],
        state_stores=[str(directory / "state.sqlite")],
    )


_FIRST_CALL = """
import json, sys, time
import paios_reliability as pr
sources = pr.StatusSources(**json.loads(sys.argv[1]))
start = time.perf_counter()
pr.collect_status(sources)
print(time.perf_counter() - start)
"""


def first_call_ms(sources: pr.StatusSources) -> float:
    given = {"event_stores": sources.event_stores, "state_stores": sources.state_stores}
    out = subprocess.run(
        [sys.executable, "-c", _FIRST_CALL, json.dumps(given)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return round(float(out) * 1000, 2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sources = fill(Path(tmp), args.events)
        times = []
        for _ in range(args.rounds):
            start = time.perf_counter()
            status = pr.collect_status(sources)
            times.append(time.perf_counter() - start)
        print(
            json.dumps(
                {
                    "events": args.events,
                    "breakers": len(status.breakers),
                    "error_codes": len(status.errors),
                    "median_ms": round(statistics.median(times) * 1000, 2),
                    "max_ms": round(max(times) * 1000, 2),
                    "fresh_process_first_call_ms": first_call_ms(sources),
                    "target_ms": 300,
                }
            )
        )


if __name__ == "__main__":
    main()
