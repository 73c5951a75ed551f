"""Run-state costs, side by side with peer libraries in one process.

Run: ``python benchmarks/bench_runstate.py [--ops N] [--repeat R]``

1. Lock acquire + release (uncontended), per store:
   - memory: ``LockManager(MemoryStore())`` vs ``threading.Lock`` (the floor);
   - one host: ``LockManager(SQLiteStore)`` vs ``filelock.FileLock`` (if
     installed);
   - many hosts: ``LockManager(RedisStore)`` vs redis-py's ``Lock``
     (``SET NX PX`` + Lua compare-and-delete), on a real ``redis-server``
     started here on a free loopback port (skipped if the binary is missing).
2. ``idempotent`` replay (the stored-result path every retry takes), per store.
3. ``CheckpointStore.save`` of a small output on SQLite vs writing the same
   JSON with ``atomic_write`` (fsync + rename) to one file per step.

Targets: a memory lock round trip around 20 us (two events included); on
SQLite on par with filelock. On Redis every store update is a GET plus a
compare-and-set script (the one primitive all three stores share), so an
acquire + release costs 4 round trips where redis-py's lock needs 2: expect
2-5x. Our locks also carry fencing tokens, expiry and holder identity, which
the peers do not. CheckpointStore runs SQLite WAL with synchronous=NORMAL
(durable against process crashes; a power loss may lose the last commits but
never corrupts), while the atomic_write row fsyncs every file.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paios_reliability as pr


def _best(op: Callable[[], object], ops: int, repeat: int) -> float:
    """Best time per operation in seconds over ``repeat`` rounds of ``ops``."""
    best = float("inf")
    for _ in range(repeat):
        gc.disable()
        try:
            start = time.perf_counter()
            for _ in range(ops):
                op()
            elapsed = time.perf_counter() - start
        finally:
            gc.enable()
        best = min(best, elapsed / ops)
    return best


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _redis_server(directory: str) -> Iterator[str | None]:
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    port = _free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    argv += ["--appendonly", "no", "--dir", directory]
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        give_up = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > give_up:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


def _row(
    table: list[tuple[str, str, float, float | None]],
    group: str,
    name: str,
    seconds: float,
    base: float | None,
) -> None:
    table.append((group, name, seconds, base))


def bench_locks(
    tmp: str, url: str | None, ops: int, repeat: int
) -> list[tuple[str, str, float, float | None]]:
    rows: list[tuple[str, str, float, float | None]] = []

    # memory
    floor = threading.Lock()

    def bare() -> None:
        floor.acquire()
        floor.release()

    base = _best(bare, ops * 10, repeat)
    _row(rows, "lock (memory)", "threading.Lock", base, None)
    mem = pr.LockManager(pr.MemoryStore())
    _row(
        rows,
        "lock (memory)",
        "paios LockManager",
        _best(lambda: mem.acquire("k").release(), ops, repeat),
        base,
    )

    # one host
    store = pr.SQLiteStore(os.path.join(tmp, "state.db"))
    ours = pr.LockManager(store)
    sqlite_ours = _best(lambda: ours.acquire("k").release(), ops, repeat)
    try:
        import filelock
    except ImportError:
        peer = None
    else:
        fl = filelock.FileLock(os.path.join(tmp, "peer.lock"))

        def file_lock() -> None:
            fl.acquire()
            fl.release()

        peer = _best(file_lock, ops, repeat)
        _row(rows, "lock (one host)", "filelock.FileLock", peer, None)
    _row(rows, "lock (one host)", "paios LockManager(SQLiteStore)", sqlite_ours, peer)
    store.close()

    # many hosts
    if url is not None:
        import redis

        client = redis.Redis.from_url(url)

        def redis_py() -> None:
            lock = client.lock("peer", timeout=30)
            lock.acquire(blocking=False)
            lock.release()

        peer = _best(redis_py, ops, repeat)
        _row(rows, "lock (many hosts)", "redis-py Lock", peer, None)
        rstore = pr.RedisStore(url, prefix="bench")
        theirs = pr.LockManager(rstore)
        _row(
            rows,
            "lock (many hosts)",
            "paios LockManager(RedisStore)",
            _best(lambda: theirs.acquire("k").release(), ops, repeat),
            peer,
        )
        rstore.close()
        client.close()
    return rows


def bench_idempotent(
    tmp: str, url: str | None, ops: int, repeat: int
) -> list[tuple[str, str, float, float | None]]:
    rows: list[tuple[str, str, float, float | None]] = []

    def plain(x: int) -> dict[str, int]:
        return {"x": x}

    base = _best(lambda: plain(1), ops * 10, repeat)
    _row(rows, "idempotent replay", "plain call", base, None)
    stores: list[tuple[str, pr.typing.StateStore]] = [
        ("memory", pr.MemoryStore()),
        ("sqlite", pr.SQLiteStore(os.path.join(tmp, "idem.db"))),
    ]
    if url is not None:
        stores.append(("redis", pr.RedisStore(url, prefix="bench-idem")))
    for name, store in stores:
        fn = pr.idempotent(store, key="fixed")(plain)
        fn(1)
        _row(
            rows,
            "idempotent replay",
            f"paios idempotent ({name})",
            _best(lambda fn=fn: fn(1), ops, repeat),
            base,
        )
        store.close()
    return rows


def bench_checkpoint(
    tmp: str, ops: int, repeat: int
) -> list[tuple[str, str, float, float | None]]:
    rows: list[tuple[str, str, float, float | None]] = []
    output = {"rows": list(range(20)), "summary": "x" * 200}
    directory = Path(tmp, "steps")
    directory.mkdir()
    counter = iter(range(10**9))

    def json_file() -> None:
        pr.atomic_write(
            directory / f"step-{next(counter) % 50}.json", json.dumps(output)
        )

    peer = _best(json_file, ops, repeat)
    _row(rows, "checkpoint save", "atomic_write(JSON file)", peer, None)
    checkpoints = pr.CheckpointStore(os.path.join(tmp, "runs.sqlite"))
    _row(
        rows,
        "checkpoint save",
        "paios CheckpointStore.save",
        _best(
            lambda: checkpoints.save("run", f"s{next(counter) % 50}", output),
            ops,
            repeat,
        ),
        peer,
    )
    checkpoints.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(
        f"Python {platform.python_version()} on {platform.machine()}; {args.ops} ops x best of {args.repeat}"
    )
    with tempfile.TemporaryDirectory() as tmp, _redis_server(tmp) as url:
        rows = bench_locks(tmp, url, args.ops, args.repeat)
        rows += bench_idempotent(tmp, url, args.ops, args.repeat)
        rows += bench_checkpoint(tmp, max(50, args.ops // 5), args.repeat)
    if url is None:
        print("(redis-server not found: the Redis rows are skipped)")
    print(f"\n{'group':<20} {'contender':<34} {'per op':>10} {'ratio':>8}")
    for group, name, seconds, base in rows:
        ratio = f"{seconds / base:7.2f}x" if base else "   (ref)"
        print(f"{group:<20} {name:<34} {seconds * 1e6:8.1f}us {ratio:>8}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
