"""What a switched-off ``chaos(...)`` layer costs per call.

Run: ``python benchmarks/bench_chaos.py [--calls N] [--repeat R]``

The same trivial function bare and under ``chaos(fault_rate=1.0)`` with chaos
switched off (the production setting): the difference is the added time per
call. Target: under 50 ns. A second line shows the cost switched on with
every rate at 0 (a draw per call, nothing injected).
"""

from __future__ import annotations

import argparse
import timeit
from collections.abc import Callable

import paios_reliability as pr


def best(fn: Callable[[], object], calls: int, repeat: int) -> float:
    return min(timeit.repeat(fn, number=calls, repeat=repeat)) / calls


def bare() -> int:
    return 1


def plain(*args: object, **kwargs: object) -> int:
    """The cheapest possible wrapper: what any decorator costs at least."""
    return bare(*args, **kwargs)  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    off = pr.chaos(fault_rate=1.0)(bare)
    on = pr.chaos()(bare)
    with pr.set_chaos(False):
        # Interleaved rounds: a loaded machine slows every line alike.
        base = wrapper = wrapped = float("inf")
        for _ in range(args.repeat):
            base = min(base, best(bare, args.calls, 1))
            wrapper = min(wrapper, best(plain, args.calls, 1))
            wrapped = min(wrapped, best(off, args.calls, 1))
    with pr.set_chaos(True):
        drawing = best(on, args.calls // 10, args.repeat)
    print(f"bare call                      {base * 1e9:8.1f} ns")
    print(
        f"plain pass-through wrapper     {wrapper * 1e9:8.1f} ns  (+{(wrapper - base) * 1e9:.1f} ns)"
    )
    print(
        f"chaos off (fault_rate=1.0)     {wrapped * 1e9:8.1f} ns  (+{(wrapped - base) * 1e9:.1f} ns)"
    )
    print(
        f"chaos on, all rates 0          {drawing * 1e9:8.1f} ns  (+{(drawing - base) * 1e9:.1f} ns)"
    )


if __name__ == "__main__":
    main()
