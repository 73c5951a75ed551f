"""Rate limiters side by side, in one process: paios_reliability vs pyrate-limiter, limits.

Run: python benchmarks/bench_ratelimit.py [--quick]

Per non-blocking check (``try_acquire`` / ``hit``), best of several runs:

1. in memory, admitted (a budget that never runs out) and refused (an
   exhausted one);
2. on SQLite (ours vs pyrate-limiter's SQLiteBucket);
3. on a real Redis (started here from ``redis-server`` when it is on PATH):
   ours vs pyrate-limiter's RedisBucket vs limits' moving and fixed windows;
4. exactness: a 10-per-hour budget hammered by 4 threads: how many got in.

Ours is GCRA: one number per limiter, one atomic read-modify-write per check.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import timeit
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import limits
import limits.storage
import limits.strategies
import pyrate_limiter as pyrate

import paios_reliability as pr

QUICK = "--quick" in sys.argv
N = 20_000 if QUICK else 100_000
N_IO = 500 if QUICK else 3_000
REPEAT = 3 if QUICK else 5


def per_call(fn: Callable[[], Any], number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=REPEAT)) / number


def show(title: str, results: dict[str, float]) -> None:
    print(f"\n{title}")
    ours = results["paios_reliability"]
    for name, value in results.items():
        note = "" if name == "paios_reliability" else f"  ({value / ours:5.1f}x ours)"
        print(f"     {name:<34} {value * 1e6:9.2f} us{note}")


HUGE = 10**9  # a budget that never runs out during the run


def memory() -> None:
    ours = pr.RateLimiter("bench", rate=HUGE, per=1, block=False)
    py = pyrate.Limiter(pyrate.Rate(HUGE, pyrate.Duration.SECOND))
    mem = limits.storage.MemoryStorage()
    item = limits.RateLimitItemPerSecond(HUGE)
    moving = limits.strategies.MovingWindowRateLimiter(mem)
    fixed = limits.strategies.FixedWindowRateLimiter(mem)
    gcra_bucket = pyrate.StateBucket([pyrate.Rate(HUGE, pyrate.Duration.SECOND)])
    py_gcra = pyrate.Limiter(gcra_bucket)
    # The log-based limiters keep one entry per call: fewer calls for them.
    n_log = N // 10
    show(
        "1a. in memory, admitted (per check)",
        {
            "paios_reliability": per_call(ours.try_acquire, N),
            "pyrate-limiter (in-memory log)": per_call(
                lambda: py.try_acquire("bench", blocking=False), n_log
            ),
            "pyrate-limiter (GCRA state bucket)": per_call(
                lambda: py_gcra.try_acquire("bench", blocking=False), N
            ),
            "limits (moving window)": per_call(
                lambda: moving.hit(item, "bench"), n_log
            ),
            "limits (fixed window)": per_call(lambda: fixed.hit(item, "bench-f"), N),
        },
    )

    ours_no = pr.RateLimiter("bench-no", rate=1, per=3600, block=False)
    ours_no.try_acquire()
    py_no = pyrate.Limiter(pyrate.Rate(1, pyrate.Duration.HOUR))
    py_no.try_acquire("no", blocking=False)
    one = limits.RateLimitItemPerHour(1)
    moving.hit(one, "no")
    fixed.hit(one, "no-f")
    show(
        "1b. in memory, refused (per check)",
        {
            "paios_reliability": per_call(ours_no.try_acquire, N),
            "pyrate-limiter (in-memory log)": per_call(
                lambda: py_no.try_acquire("no", blocking=False), N
            ),
            "limits (moving window)": per_call(lambda: moving.hit(one, "no"), N),
            "limits (fixed window)": per_call(lambda: fixed.hit(one, "no-f"), N),
        },
    )


def sqlite(tmp: Path) -> None:
    store = pr.SQLiteStore(tmp / "ours.db")
    ours = pr.RateLimiter("bench", rate=HUGE, per=1, block=False, store=store)
    bucket = pyrate.SQLiteBucket.init_from_file(
        [pyrate.Rate(HUGE, pyrate.Duration.SECOND)], db_path=str(tmp / "pyrate.db")
    )
    py = pyrate.Limiter(bucket)
    show(
        "2. on SQLite (one file, WAL), admitted (per check)",
        {
            "paios_reliability": per_call(ours.try_acquire, N_IO),
            "pyrate-limiter (SQLiteBucket)": per_call(
                lambda: py.try_acquire("bench", blocking=False), N_IO
            ),
        },
    )
    store.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def redis_server(tmp: Path) -> Iterator[str | None]:
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    port = _free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        give_up = time.monotonic() + 10
        while time.monotonic() < give_up:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", port), 0.2),
            ):
                break
            time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


def redis(url: str) -> None:
    import redis as redis_py

    store = pr.RedisStore(url, prefix="bench")
    ours = pr.RateLimiter("bench", rate=HUGE, per=1, block=False, store=store)
    client = redis_py.Redis.from_url(url)
    bucket = pyrate.RedisBucket.init(
        [pyrate.Rate(HUGE, pyrate.Duration.SECOND)], client, "pyrate-bench"
    )
    py = pyrate.Limiter(bucket)
    storage = limits.storage.storage_from_string(url)
    item = limits.RateLimitItemPerSecond(HUGE)
    moving = limits.strategies.MovingWindowRateLimiter(storage)
    fixed = limits.strategies.FixedWindowRateLimiter(storage)
    show(
        "3. on a real Redis (loopback), admitted (per check)",
        {
            "paios_reliability": per_call(ours.try_acquire, N_IO),
            "pyrate-limiter (RedisBucket)": per_call(
                lambda: py.try_acquire("bench", blocking=False), N_IO
            ),
            "limits (moving window)": per_call(lambda: moving.hit(item, "bench"), N_IO),
            "limits (fixed window)": per_call(lambda: fixed.hit(item, "bench-f"), N_IO),
        },
    )
    store.close()
    client.close()


def exactness() -> None:
    ours = pr.RateLimiter("exact", rate=10, per=3600, block=False)
    py = pyrate.Limiter(pyrate.Rate(10, pyrate.Duration.HOUR))
    moving = limits.strategies.MovingWindowRateLimiter(limits.storage.MemoryStorage())
    item = limits.RateLimitItemPerHour(10)
    checks: dict[str, Callable[[], bool]] = {
        "paios_reliability": ours.try_acquire,
        "pyrate-limiter": lambda: bool(py.try_acquire("exact", blocking=False)),
        "limits (moving window)": lambda: moving.hit(item, "exact"),
    }
    print("\n4. exactness: 10 per hour, 4 threads x 200 checks (admitted, must be 10)")
    for name, check in checks.items():
        got: list[int] = []
        lock = threading.Lock()
        threads = [
            threading.Thread(target=_hammer, args=(check, got, lock)) for _ in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print(f"     {name:<34} {sum(got):5d}")


def _hammer(check: Callable[[], bool], got: list[int], lock: threading.Lock) -> None:
    n = sum(check() for _ in range(200))
    with lock:
        got.append(n)


def main() -> None:
    print(f"Python {sys.version.split()[0]}, best of {REPEAT}")
    with tempfile.TemporaryDirectory() as tmp:
        memory()
        sqlite(Path(tmp))
        with redis_server(Path(tmp)) as url:
            if url is None:
                print("\n3. (skipped: redis-server is not on PATH)")
            else:
                redis(url)
    exactness()


if __name__ == "__main__":
    main()
