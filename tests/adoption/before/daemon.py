"""Run queued jobs: poll a directory for job files and run each one.

A job file ``<name>.json`` holds ``{"argv": [...], "timeout": seconds}``. The
daemon deletes it, runs the command, prints the outcome, and polls again.
SIGTERM stops it after the current job; Ctrl-C (SIGINT) interrupts it::

    python daemon.py jobs/
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from pathlib import Path


def run_job(path: Path) -> None:
    job = json.loads(path.read_text())
    path.unlink()
    try:
        done = subprocess.run(
            job["argv"],
            capture_output=True,
            text=True,
            timeout=job["timeout"],
            check=False,
        )
    except subprocess.TimeoutExpired:
        print(f"{path.stem}: timed out", flush=True)
    else:
        print(f"{path.stem}: exit {done.returncode}", flush=True)


def main() -> int:
    jobs = Path(sys.argv[1])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        print("ready", flush=True)
        while not stop.is_set():
            for path in sorted(jobs.glob("*.json")):
                run_job(path)
            stop.wait(0.05)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        return 130
    print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
