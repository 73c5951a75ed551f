"""Worker entry points for the multi-process run-state tests.

Run as ``python tests/_proc_runstate_workers.py COMMAND ARGS...``. Commands
that finish print one JSON line with what they did; long-lived ones (the
workflow "zygote") read commands from stdin and answer one line each.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any


def _store(kind: str, target: str, prefix: str) -> Any:
    from paios_reliability import RedisStore, SQLiteStore

    if kind == "sqlite":
        return SQLiteStore(target)
    return RedisStore(target, prefix=prefix)


def _wait_for_go(go: str) -> None:
    # All workers start at (almost) the same moment.
    deadline = time.monotonic() + 60
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            raise SystemExit("start signal never came")
        time.sleep(0.002)


def _append(path: str, line: str) -> None:
    # One write(2) on an O_APPEND descriptor: lines from processes never mix.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def lock_counter(
    kind: str,
    target: str,
    prefix: str,
    key: str,
    counter: str,
    log: str,
    count: str,
    go: str,
) -> dict[str, Any]:
    """Increment a plain file counter ``count`` times, each time under the lock."""
    from paios_reliability import LockManager

    locks = LockManager(_store(kind, target, prefix))
    pid = os.getpid()
    _wait_for_go(go)
    for _ in range(int(count)):
        with locks.lock(key, ttl=30.0, wait=120.0) as lease:
            _append(log, f"enter {lease.token} {pid}\n")
            with open(counter) as fh:
                value = int(fh.read() or "0")
            with open(counter, "w") as fh:  # deliberately not atomic: the lock is
                fh.write(str(value + 1))
            _append(log, f"exit {lease.token} {pid}\n")
    return {"done": int(count)}


def idempotent_once(
    kind: str, target: str, prefix: str, key: str, log: str, go: str
) -> dict[str, Any]:
    """Call one idempotent operation; its body appends to ``log`` and takes a while."""
    from paios_reliability import IdempotencyStore

    store = IdempotencyStore(_store(kind, target, prefix), wait=60.0)

    def body() -> dict[str, Any]:
        _append(log, f"ran {os.getpid()}\n")
        time.sleep(0.3)  # duplicates arrive while it runs
        return {"pid": os.getpid()}

    _wait_for_go(go)
    return {"result": store.run(key, body), "pid": os.getpid()}


def idempotent_hang(kind: str, target: str, prefix: str, key: str, log: str) -> None:
    """Claim ``key`` and hang in the body (the parent kills us with SIGKILL)."""
    from paios_reliability import IdempotencyStore

    store = IdempotencyStore(_store(kind, target, prefix), lease_ttl=1.0)

    def body() -> None:
        _append(log, f"ran {os.getpid()}\n")
        print(json.dumps({"running": os.getpid()}), flush=True)
        time.sleep(120)

    store.run(key, body)


def cas_increment(
    kind: str, target: str, prefix: str, key: str, count: str, go: str
) -> dict[str, Any]:
    """Add one to a versioned counter ``count`` times with compare-and-set retries."""
    from paios_reliability import compare_and_set, get_versioned

    store = _store(kind, target, prefix)
    _wait_for_go(go)
    conflicts = 0
    for _ in range(int(count)):
        while True:
            current = get_versioned(store, key)
            result = compare_and_set(
                store, key, current.version, (current.value or 0) + 1
            )
            if result.ok:
                break
            conflicts += 1
    return {"conflicts": conflicts}


# -- the 5-step workflow that gets SIGKILLed ------------------------------------------

STEPS = ("fetch", "parse", "enrich", "summarise", "publish")


def step_output(step: str, run_id: str) -> dict[str, Any]:
    """What ``step`` produces: deterministic and large enough to take a while to write."""
    return {"step": step, "run": run_id, "blob": f"{run_id}:{step}:" * 2000}


def run_workflow(db: str, run_id: str, log: str, slow: float) -> list[str]:
    """Resume ``run_id`` and run its remaining steps; log every step boundary.

    The log gets ``begin STEP`` before a step's work and ``saved STEP`` after
    its ``completed`` checkpoint committed. Step 3 (``enrich``) busy-works for
    ``slow`` seconds.
    """
    from paios_reliability import CheckpointStore

    with CheckpointStore(db) as checkpoints:
        plan = checkpoints.resume_point(run_id, STEPS)
        ran = []
        for step in plan.remaining:
            checkpoints.save(run_id, step, None, status="running")
            _append(log, f"begin {step}\n")
            # The work (slow in step 3): the SIGKILL lands somewhere in here or
            # in the save below.
            end = time.monotonic() + (slow if step == "enrich" else 0.0)
            while time.monotonic() < end:
                pass
            checkpoints.save(run_id, step, step_output(step, run_id))
            _append(log, f"saved {step}\n")
            ran.append(step)
        return ran


def zygote() -> None:
    """Fork one workflow child per command, quickly (no interpreter start-up).

    stdin: ``run DB RUN_ID LOG SLOW`` → answers the child's pid;
    ``reap PID`` → answers its exit status.
    """

    print("ready", flush=True)
    for line in sys.stdin:
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "run":
            db, run_id, log, slow = parts[1], parts[2], parts[3], float(parts[4])
            pid = os.fork()
            if pid == 0:  # the child: run the workflow, never return into the loop
                code = 0
                try:
                    run_workflow(db, run_id, log, slow)
                except BaseException:
                    import traceback

                    traceback.print_exc()
                    code = 1
                os._exit(code)
            print(pid, flush=True)
        elif parts[0] == "reap":
            _, status = os.waitpid(int(parts[1]), 0)
            print(status, flush=True)


COMMANDS = {
    "lock_counter": lock_counter,
    "idempotent_once": idempotent_once,
    "idempotent_hang": idempotent_hang,
    "cas_increment": cas_increment,
}


def main(argv: list[str]) -> None:
    if argv[0] == "zygote":
        zygote()
        return
    if argv[0] == "workflow":
        ran = run_workflow(argv[1], argv[2], argv[3], float(argv[4]))
        print(json.dumps({"ran": ran}), flush=True)
        return
    result = COMMANDS[argv[0]](*argv[1:])
    if result is not None:
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
