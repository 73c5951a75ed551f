"""Weighted, multi-window limits side by side: paios_reliability vs limits vs pyrate-limiter.

Run: python benchmarks/bench_weighted.py [--quick]

The budget of an LLM provider: 60 requests per minute, 90,000 tokens per
minute and 1,000,000 tokens per day; each call costs 500 tokens.

- ``paios_reliability``: ``RateLimiter(name, limits=[...]).try_acquire(cost=500)``,
  one atomic update for all three windows.
- ``limits``: ``test()`` every window, then ``hit(cost=)`` every window (its
  documented way to combine limits; three items, not atomic together).
- ``pyrate-limiter``: a limiter for requests (weight 1) and one for tokens
  (two rates, ``weight=500``); a call takes both.

1. time per admitted check in memory, on SQLite (ours and pyrate's
   SQLiteBucket) and on a real Redis (all three; started here from
   ``redis-server`` when it is on PATH);
2. exactness: 50 requests and 1,000 tokens per hour, cost 30, 8 threads x 40
   checks. Exactly 33 calls fit (33 x 30 = 990 tokens). *Charged* is what the
   windows recorded: a library that charges one window for a call another
   refused, or admits past a window, shows it there.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

import limits
import limits.storage
import limits.strategies
import pyrate_limiter as pyrate

import paios_reliability as pr

sys.path.insert(0, str(Path(__file__).parent))
from bench_ratelimit import redis_server

QUICK = "--quick" in sys.argv
N = 5_000 if QUICK else 30_000
N_IO = 300 if QUICK else 2_000
REPEAT = 3 if QUICK else 5
HUGE = 10**12  # budgets that never run out during the timing runs


def per_call(fn: Callable[[], Any], number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=REPEAT)) / number


def show(title: str, results: dict[str, float]) -> None:
    print(f"\n{title}")
    ours = results["paios_reliability"]
    for name, value in results.items():
        note = "" if name == "paios_reliability" else f"  ({value / ours:5.1f}x ours)"
        print(f"     {name:<34} {value * 1e6:9.2f} us{note}")


def ours_limiter(store: pr.StateStore | None, name: str, scale: int) -> pr.RateLimiter:
    return pr.RateLimiter(
        name,
        limits=[
            pr.Limit(60 * scale, per=60, unit="call"),
            pr.Limit(90_000 * scale, per=60),
            pr.Limit(1_000_000 * scale, per=86_400),
        ],
        store=store,
        block=False,
    )


def limits_check(storage: Any, key: str, scale: int) -> Callable[[], bool]:
    moving = limits.strategies.MovingWindowRateLimiter(storage)
    requests = limits.RateLimitItemPerMinute(60 * scale)
    tokens = limits.RateLimitItemPerMinute(90_000 * scale)
    daily = limits.RateLimitItemPerDay(1_000_000 * scale)

    def check() -> bool:
        if not (
            moving.test(requests, key)
            and moving.test(tokens, key, cost=500)
            and moving.test(daily, key, cost=500)
        ):
            return False
        moving.hit(requests, key)
        moving.hit(tokens, key, cost=500)
        moving.hit(daily, key, cost=500)
        return True

    return check


def pyrate_check(
    make: Callable[[list[pyrate.Rate], str], Any], scale: int
) -> Callable[[], bool]:
    requests = pyrate.Limiter(
        make([pyrate.Rate(60 * scale, pyrate.Duration.MINUTE)], "r")
    )
    tokens = pyrate.Limiter(
        make(
            [
                pyrate.Rate(90_000 * scale, pyrate.Duration.MINUTE),
                pyrate.Rate(1_000_000 * scale, pyrate.Duration.DAY),
            ],
            "t",
        )
    )

    def check() -> bool:
        return bool(requests.try_acquire("r", blocking=False)) and bool(
            tokens.try_acquire("t", weight=500, blocking=False)
        )

    return check


def timing(tmp: Path) -> None:
    scale = HUGE // 1_000_000
    mem = ours_limiter(None, "m", scale)
    show(
        "1a. in memory, admitted (per check of three windows, cost 500)",
        {
            "paios_reliability": per_call(lambda: mem.try_acquire(cost=500), N),
            "limits (moving window, test+hit)": per_call(
                limits_check(limits.storage.MemoryStorage(), "m", scale), N // 10
            ),
            "pyrate-limiter (in-memory)": per_call(
                pyrate_check(lambda rates, _: pyrate.InMemoryBucket(rates), scale),
                N // 10,
            ),
        },
    )
    store = pr.SQLiteStore(tmp / "ours.db")
    sq = ours_limiter(store, "s", scale)
    show(
        "1b. on SQLite (WAL), admitted",
        {
            "paios_reliability": per_call(lambda: sq.try_acquire(cost=500), N_IO),
            "pyrate-limiter (SQLiteBucket)": per_call(
                pyrate_check(
                    lambda rates, tag: pyrate.SQLiteBucket.init_from_file(
                        rates, db_path=str(tmp / f"pyrate-{tag}.db"), table=f"t{tag}"
                    ),
                    scale,
                ),
                N_IO,
            ),
        },
    )
    store.close()
    with redis_server(tmp) as url:
        if url is None:
            print("\n1c. (skipped: redis-server is not on PATH)")
            return
        import redis as redis_py

        rstore = pr.RedisStore(url, prefix="bench")
        rl = ours_limiter(rstore, "r", scale)
        client = redis_py.Redis.from_url(url)
        show(
            "1c. on a real Redis (loopback), admitted",
            {
                "paios_reliability": per_call(lambda: rl.try_acquire(cost=500), N_IO),
                "limits (moving window, test+hit)": per_call(
                    limits_check(limits.storage.storage_from_string(url), "r", scale),
                    N_IO,
                ),
                "pyrate-limiter (RedisBucket)": per_call(
                    pyrate_check(
                        lambda rates, tag: pyrate.RedisBucket.init(
                            rates, client, f"pyrate-{tag}"
                        ),
                        scale,
                    ),
                    N_IO,
                ),
            },
        )
        rstore.close()
        client.close()


def exactness() -> None:
    print(
        "\n2. exactness: 50 requests + 1,000 tokens per hour, cost 30, 8 threads x 40"
    )
    print(
        f"     {'':<34} {'admitted':>8} {'charged requests':>17} {'charged tokens':>15}"
    )
    print(f"     {'(exact)':<34} {33:>8} {33:>17} {990:>15}")

    ours = pr.RateLimiter(
        "exact",
        limits=[pr.Limit(50, per=3600, unit="call"), pr.Limit(1000, per=3600)],
        block=False,
    )

    def ours_charged() -> tuple[int, int]:
        assert ours._limits is not None
        free = ours._limits.available()
        return round(50 - free[0]), round(1000 - free[1])

    storage = limits.storage.MemoryStorage()
    moving = limits.strategies.MovingWindowRateLimiter(storage)
    req, tok = limits.RateLimitItemPerHour(50), limits.RateLimitItemPerHour(1000)

    def limits_one() -> bool:
        if not (moving.test(req, "x") and moving.test(tok, "x", cost=30)):
            return False
        moving.hit(req, "x")
        moving.hit(tok, "x", cost=30)
        return True

    def limits_charged() -> tuple[int, int]:
        return (
            50 - moving.get_window_stats(req, "x").remaining,
            1000 - moving.get_window_stats(tok, "x").remaining,
        )

    py_req = pyrate.Limiter(pyrate.Rate(50, pyrate.Duration.HOUR))
    py_tok = pyrate.Limiter(pyrate.Rate(1000, pyrate.Duration.HOUR))
    py_counts = [0, 0]
    py_lock = threading.Lock()

    def pyrate_one() -> bool:
        if not py_req.try_acquire("r", blocking=False):
            return False
        with py_lock:
            py_counts[0] += 1
        if not py_tok.try_acquire("t", weight=30, blocking=False):
            return False
        with py_lock:
            py_counts[1] += 30
        return True

    rows: list[tuple[str, Callable[[], bool], Callable[[], tuple[int, int]]]] = [
        ("paios_reliability", lambda: ours.try_acquire(cost=30), ours_charged),
        ("limits (test+hit)", limits_one, limits_charged),
        (
            "pyrate-limiter (two limiters)",
            pyrate_one,
            lambda: (py_counts[0], py_counts[1]),
        ),
    ]
    for name, check, charged in rows:
        got: list[int] = []
        lock = threading.Lock()
        barrier = threading.Barrier(8)

        def hammer(
            check: Callable[[], bool] = check,
            got: list[int] = got,
            lock: threading.Lock = lock,
            barrier: threading.Barrier = barrier,
        ) -> None:
            barrier.wait()
            n = sum(check() for _ in range(40))
            with lock:
                got.append(n)

        threads = [threading.Thread(target=hammer) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        requests, tokens = charged()
        print(f"     {name:<34} {sum(got):>8} {requests:>17} {tokens:>15}")


def main() -> None:
    print(f"Python {sys.version.split()[0]}, best of {REPEAT}")
    with tempfile.TemporaryDirectory() as tmp:
        timing(Path(tmp))
    exactness()


if __name__ == "__main__":
    main()
