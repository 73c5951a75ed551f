"""run_process against subprocess.run, side by side in one process.

Run: ``python benchmarks/bench_process.py [--calls N] [--repeat R]``

1. Per-call cost of running ``true``: ``subprocess.run`` and ``run_process``
   (sync), ``asyncio.create_subprocess_exec`` + ``communicate`` and
   ``arun_process`` (async), without and with captured output. The number
   that matters is the ratio: what ending and reaping the group costs on
   every call whose child leaves nothing behind. The fork/exec of the child
   dominates both.
2. How soon a timed-out ``sh -c "sleep 30 & sleep 30"`` call returns
   (``timeout=0.3, grace=0.3``), as an ordinary process and as a child
   subreaper (``prctl(PR_SET_CHILD_SUBREAPER)``, what PID 1 in a container
   is): both sleeps die of SIGTERM, so the call should return right after
   the 0.3 s budget, report ``killed=False`` and leave no zombie of ours.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import json
import logging
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import paios_reliability as pr

PR_SET_CHILD_SUBREAPER = 36


def _best_pair(
    base: Callable[[int], float], ours: Callable[[int], float], calls: int, repeat: int
) -> tuple[float, float]:
    """Best time per call of each, rounds interleaved (the machine may be shared).

    One warm-up round each is discarded: the first forks pay for page faults
    and imports.
    """
    base(max(1, calls // 10))
    ours(max(1, calls // 10))
    best = [float("inf"), float("inf")]
    for _ in range(repeat):
        for index, run in enumerate((base, ours)):
            gc.disable()
            try:
                elapsed = run(calls)
            finally:
                gc.enable()
            best[index] = min(best[index], elapsed / calls)
    return best[0], best[1]


def _sync(fn: Callable[[], object]) -> Callable[[int], float]:
    def run(calls: int) -> float:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        return time.perf_counter() - start

    return run


def _async(fn: Callable[[], Any]) -> Callable[[int], float]:
    async def loop(calls: int) -> float:
        start = time.perf_counter()
        for _ in range(calls):
            await fn()
        return time.perf_counter() - start

    def run(calls: int) -> float:
        return asyncio.run(loop(calls))

    return run


async def _asyncio_exec(capture: bool) -> None:
    pipe = asyncio.subprocess.PIPE if capture else None
    proc = await asyncio.create_subprocess_exec("true", stdout=pipe, stderr=pipe)
    await proc.communicate()


def overhead(calls: int, repeat: int) -> None:
    print(f"per call of `true`, best of {repeat} x {calls} calls")
    print(f"{'variant':<34} {'baseline':>10} {'run_process':>12} {'ratio':>7}")
    for capture in (False, True):
        label = "captured" if capture else "not captured"
        base, ours = _best_pair(
            _sync(
                lambda c=capture: subprocess.run(
                    ["true"], check=False, capture_output=c
                )
            ),
            _sync(lambda c=capture: pr.run_process(["true"], capture_output=c)),
            calls,
            repeat,
        )
        print(
            f"{'sync, ' + label:<34} {base * 1e3:>8.3f}ms {ours * 1e3:>10.3f}ms {ours / base:>7.2f}"
        )
        if not capture:
            # The new session alone (what process groups cost subprocess.run).
            base, ours = _best_pair(
                _sync(
                    lambda: subprocess.run(
                        ["true"], check=False, start_new_session=True
                    )
                ),
                _sync(lambda: pr.run_process(["true"])),
                calls,
                repeat,
            )
            print(
                f"{'sync, vs start_new_session=True':<34} {base * 1e3:>8.3f}ms {ours * 1e3:>10.3f}ms {ours / base:>7.2f}"
            )
        base, ours = _best_pair(
            _async(lambda c=capture: _asyncio_exec(c)),
            _async(lambda c=capture: pr.arun_process(["true"], capture_output=c)),
            calls,
            repeat,
        )
        print(
            f"{'async, ' + label:<34} {base * 1e3:>8.3f}ms {ours * 1e3:>10.3f}ms {ours / base:>7.2f}"
        )


def _zombies_of_mine() -> int:
    me = os.getpid()
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            count += fields[0] == "Z" and int(fields[1]) == me
    return count


def timeouts(subreaper: bool, count: int) -> dict[str, Any]:
    """Runs in a child process (so prctl cannot leak into the caller)."""
    if subreaper:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl failed")
    seconds, killed = [], []
    for _ in range(count):
        start = time.perf_counter()
        try:
            pr.run_process(["sh", "-c", "sleep 30 & sleep 30"], timeout=0.3, grace=0.3)
        except pr.ProcessTimeoutError as exc:
            killed.append(exc.killed)
        seconds.append(time.perf_counter() - start)
    return {"seconds": seconds, "killed": killed, "zombies": _zombies_of_mine()}


def timeout_table(count: int) -> None:
    print(
        f'\n`sh -c "sleep 30 & sleep 30"`, timeout=0.3, grace=0.3, {count} calls each'
    )
    print(f"{'as':<16} {'best':>7} {'worst':>7} {'killed':>8} {'zombies':>8}")
    for subreaper in (False, True):
        done = subprocess.run(
            [
                sys.executable,
                __file__,
                "--timeouts-child",
                str(int(subreaper)),
                str(count),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        report = json.loads(done.stdout)
        name = "subreaper" if subreaper else "plain process"
        print(
            f"{name:<16} {min(report['seconds']):>6.3f}s {max(report['seconds']):>6.3f}s "
            f"{sum(report['killed']):>4}/{len(report['killed']):<3} {report['zombies']:>8}"
        )


def main() -> None:
    logging.disable(logging.CRITICAL)  # the timed_out events are expected here
    if len(sys.argv) == 4 and sys.argv[1] == "--timeouts-child":
        print(json.dumps(timeouts(sys.argv[2] == "1", int(sys.argv[3]))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--timeouts", type=int, default=3)
    options = parser.parse_args()
    print(f"Python {platform.python_version()} on {platform.platform()}")
    overhead(options.calls, options.repeat)
    if sys.platform.startswith("linux"):
        timeout_table(options.timeouts)


if __name__ == "__main__":
    main()
