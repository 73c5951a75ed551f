"""Children for the observability/operations tests.

``python tests/_proc_ops_helpers.py emit DB TAG COUNT GO``: emit COUNT events
    into the event store once the file GO exists; print a JSON summary.
``python tests/_proc_ops_helpers.py memory``: a memory-shaped process driven
    over stdin, one command per line, each answered ``ok``:
    ``hold N`` keeps N more bytes (a leak), ``churn N`` replaces the
    temporary buffer with one of N bytes (garbage that comes and goes),
    ``reset`` drops everything, ``quit`` exits.

Also the module-level targets of the RecyclingWorker tests (imported by the
worker children by name).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from typing import Any

_held: list[bytearray] = []
_state: dict[str, Any] = {"temp": None, "journal": None}


def _touched(n: int) -> bytearray:
    buf = bytearray(n)
    if n:
        buf[::4096] = b"\x01" * len(range(0, n, 4096))  # make the pages resident
    return buf


def memory_child() -> None:
    for line in sys.stdin:
        command, _, arg = line.strip().partition(" ")
        if command == "hold":
            _held.append(_touched(int(arg)))
        elif command == "churn":
            _state["temp"] = None  # free the old garbage before making the new
            _state["temp"] = _touched(int(arg))
        elif command == "reset":
            _held.clear()
            _state["temp"] = None
        elif command == "quit":
            return
        print("ok", flush=True)


def emit_child(db: str, tag: str, count: int, go: str) -> None:
    from paios_reliability import EventStore

    store = EventStore(db, service=tag, batch_size=100, flush_interval=0.05)
    deadline = time.monotonic() + 30
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            raise SystemExit("start signal never came")
        time.sleep(0.002)
    for i in range(count):
        store.emit("load", "tick", seq=i, tag=tag)
    store.close()
    print(json.dumps({"tag": tag, **dataclasses.asdict(store.stats())}), flush=True)


# -- RecyclingWorker targets ---------------------------------------------------


def _journal() -> Any:
    if _state["journal"] is None:
        path = os.environ["PAIOS_TEST_JOURNAL_DIR"]
        _state["journal"] = open(  # noqa: SIM115 - kept open for the process lifetime
            os.path.join(path, f"{os.getpid()}.log"), "a", buffering=1
        )
    return _state["journal"]


def answer(request_id: int) -> tuple[int, int]:
    """A cheap request with a side effect: its id is journalled once per run."""
    _journal().write(f"{request_id}\n")
    return os.getpid(), request_id


def fail_with(kind: str) -> None:
    if kind == "value":
        raise ValueError("bad input 42")
    if kind == "unpicklable":

        class Local(Exception):
            pass

        raise Local("cannot cross processes")
    if kind == "die":
        _journal().write("die\n")
        os._exit(9)
    raise AssertionError(kind)


def sleep_for(seconds: float) -> str:
    time.sleep(seconds)
    return "slept"


def grow(megabytes: int) -> int:
    _held.append(_touched(megabytes << 20))
    return os.getpid()


def whoami() -> int:
    return os.getpid()


if __name__ == "__main__":
    if sys.argv[1] == "memory":
        memory_child()
    elif sys.argv[1] == "emit":
        emit_child(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
    else:
        raise SystemExit(f"unknown command {sys.argv[1]}")
