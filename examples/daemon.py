"""A long-running daemon adopting paios_reliability.

- ``install_crash_handler`` first: an uncaught exception, a SIGTERM, or a
  death that runs no Python at all (SIGKILL, OOM, segfault - found at the next
  start) is recorded in the ``EventStore``.
- SIGTERM is a request to stop: the current iteration finishes, the loop ends,
  the process exits 0 (the crash handler records ``lifecycle.sigterm`` and
  closes its running marker, so the next start reports no crash).
- Ctrl-C (SIGINT) stops the same way but exits 130, as shells expect, also
  when the daemon was started with SIGINT ignored (a background job of a
  script).
- A ``LeakMonitor`` samples memory in the background; a ``HealthRegistry``
  checks the event database, the disk and the monitor every few iterations
  and records the report.

Run it::

    python examples/daemon.py --events observability.sqlite --interval 1

``--max-iterations N`` stops after N iterations (tests and one-shot runs).
It prints ``daemon: ready`` on stdout once its signal handlers are installed.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

import paios_reliability as pr

SERVICE = "example-daemon"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="An example daemon loop.")
    parser.add_argument("--events", default="observability.sqlite")
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--health-every", type=int, default=10)
    parser.add_argument("--max-iterations", type=int, default=None)
    args = parser.parse_args(argv)

    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    try:
        store = pr.EventStore(args.events, service=SERVICE)
        # Our handler first: the crash handler records the signal, then calls
        # it instead of exiting at once, so the loop ends at a clean point.
        signal.signal(signal.SIGTERM, request_stop)
        # Started with SIGINT ignored (a background job of a script, some
        # supervisors), Python keeps ignoring it and Ctrl-C would never stop
        # the daemon: take SIGINT over explicitly, as SIGTERM.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        handler = pr.install_crash_handler(store, service=SERVICE)
    except Exception as exc:  # noqa: BLE001 - one clear line, a stable exit code
        print(f"daemon: {type(exc).__name__}: {exc}", file=sys.stderr)
        return pr.exit_code_for(exc)

    for crash in handler.previous_crashes:
        print(f"daemon: previous run ended badly: {crash.action}", file=sys.stderr)

    monitor = pr.LeakMonitor(name=SERVICE).start(interval=60.0)
    health = pr.HealthRegistry(name=SERVICE)
    health.add_database_check(args.events, name="events_db")
    health.add_disk_check(args.events)
    health.add_leak_check(monitor)

    iteration = 0
    try:
        # Inside the try: a Ctrl-C may arrive while this line is being written.
        print("daemon: ready", flush=True)
        with pr.trace(service=SERVICE):
            while not stop.is_set():
                iteration += 1
                store.emit("daemon", "tick", level="debug", iteration=iteration)
                if iteration == 1 or iteration % max(1, args.health_every) == 0:
                    report = health.run()
                    store.emit(
                        "health",
                        "checked",
                        level="info" if report.ok else "error",
                        status=report.status,
                    )
                if args.max_iterations is not None and iteration >= args.max_iterations:
                    break
                stop.wait(args.interval)
    except KeyboardInterrupt:
        store.emit("lifecycle", "interrupted", level="warning", iteration=iteration)
        print(f"daemon: interrupted after {iteration} iterations", file=sys.stderr)
        return 130
    finally:
        monitor.stop()
    store.emit("lifecycle", "stopped", iteration=iteration)
    print(f"daemon: stopped after {iteration} iterations", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
