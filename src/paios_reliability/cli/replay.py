"""``paios-reliability replay check``: golden runs in CI."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import add_group

__all__ = ["register"]

_EPILOG = """\
Replays TARGET (module:function, no arguments) --times times in this process
and once in each of --processes fresh worker processes, and compares the
stable_hash of every output with the one in GOLDEN (volatile keys such as
timestamps and ids excluded). --record (re)writes GOLDEN from one run.

exit codes: 0 every replay matches (or recorded), 1 a replay differs,
10 bad usage, 12 GOLDEN is not a golden record.

examples:
  paios-reliability replay check tests/golden/plan.json --target myapp.plan:golden_run --record
  paios-reliability replay check tests/golden/plan.json --target myapp.plan:golden_run --times 5 --processes 2
"""


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 0 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1000, got {value}")
    return value


def _cmd_check(args: argparse.Namespace) -> int:
    from .._runs import golden

    if args.record:
        digest = golden.record(args.golden, args.target)
        print(f"{args.golden}: recorded {digest[:12]}")
        return 0
    result = golden.check(
        args.golden, args.target, times=args.times, processes=args.processes
    )
    print(result.explain())
    return 0 if result.ok else 1


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add the ``replay`` command group."""
    replay_sub = add_group(sub, "replay", help="golden runs: replay and compare hashes")
    check = replay_sub.add_parser(
        "check",
        help="replay a run and compare its output hash with the golden file",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("golden", metavar="GOLDEN", help="the golden JSON file")
    check.add_argument(
        "--target",
        required=True,
        metavar="MODULE:FUNCTION",
        help="the function whose output the golden file records",
    )
    check.add_argument("--times", type=_count, default=3, help="in-process replays")
    check.add_argument(
        "--processes", type=_count, default=0, help="replays in fresh processes"
    )
    check.add_argument("--record", action="store_true", help="write GOLDEN instead")
    check.set_defaults(handler=_cmd_check)
