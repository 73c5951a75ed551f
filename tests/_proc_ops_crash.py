"""Child process for the crash-handler tests: dies in the way it is told to.

Run as ``python tests/_proc_ops_crash.py MODE DB SERVICE [MARKER]``. Every mode
first installs the crash handler (which is also "the next start" that finds an
earlier unclean exit), then prints one JSON line ``{"ready": pid, ...}``.

Modes: ``clean``, ``raise``, ``thread``, ``asyncio``, ``sigterm`` (waits for
the parent's SIGTERM), ``wait`` (waits to be killed with SIGKILL), ``os_exit``,
``segfault``, ``chained`` (a user excepthook installed first must still run),
``twice`` (installs twice, then raises), ``read`` (prints what the store holds).
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import threading
import time


def _emit_line(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def main() -> None:
    mode, db, service = sys.argv[1], sys.argv[2], sys.argv[3]
    marker = sys.argv[4] if len(sys.argv) > 4 else None
    from paios_reliability import EventStore, install_crash_handler, trace

    if mode == "chained":

        def user_hook(exc_type: type, exc: BaseException, tb: object) -> None:
            print("USER HOOK RAN", file=sys.stderr, flush=True)

        sys.excepthook = user_hook
    if marker:

        def at_exit() -> None:
            with open(marker, "w") as fh:
                fh.write("atexit ran")

        atexit.register(at_exit)

    store = EventStore(db, service=service)
    handler = install_crash_handler(store, service=service, enable_faulthandler=True)
    found = [
        {
            "action": e.action,
            "pid": e.metadata.get("pid"),
            "fault": e.metadata.get("faulthandler"),
        }
        for e in handler.previous_crashes
    ]
    if mode == "twice":
        again = install_crash_handler(store, service=service)
        assert again is handler
    if mode == "read":
        crash = store.last_crash(service)
        runs = store._run(
            lambda conn: conn.execute(
                "SELECT pid, status FROM runs WHERE service = ? ORDER BY id", (service,)
            ).fetchall(),
            write=False,
        )
        _emit_line(
            ready=os.getpid(),
            previous=found,
            last_crash=None if crash is None else crash.to_dict(),
            runs=[list(r) for r in runs],
            lifecycle=[
                e.action for e in store.query(category="lifecycle", service=service)
            ],
        )
        return
    _emit_line(ready=os.getpid(), previous=found, fault_path=handler.fault_path)

    if mode == "clean":
        return
    if mode in ("raise", "chained", "twice"):
        # A daemon binds its run's trace for the whole process; spans nest in it.
        root = trace(run_id="run-7").__enter__()
        with trace(step="s1") as ctx:
            assert ctx["trace_id"] == root["trace_id"]
            _emit_line(trace_id=ctx["trace_id"])
            raise RuntimeError("boom in main token=hunter2")
    if mode == "thread":

        def work() -> None:
            raise ValueError("boom in thread")

        thread = threading.Thread(target=work, name="worker-1")
        thread.start()
        thread.join()
        return  # Python exits 0 here: the thread's death is only in the store
    if mode == "asyncio":
        import asyncio

        async def failing() -> None:
            raise KeyError("boom in task")

        async def run() -> None:
            handler.watch_loop()
            task = asyncio.get_running_loop().create_task(failing())
            await asyncio.sleep(0.05)
            del task  # never awaited: the loop reports it when it is collected
            import gc

            gc.collect()
            await asyncio.sleep(0.05)

        asyncio.run(run())
        return
    if mode in ("sigterm", "wait"):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            time.sleep(0.05)
        raise SystemExit("nobody signalled us")
    if mode == "os_exit":
        os._exit(7)
    if mode == "segfault":
        import ctypes
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core dump files
        ctypes.string_at(0)
    raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
