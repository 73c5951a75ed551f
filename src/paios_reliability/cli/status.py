"""``paios-reliability status``: the whole system on one screen."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from ._common import add_source_arguments, sources_from

__all__ = ["register"]

_EPILOG = """\
sources: reliability.toml in the working directory, else in $PAIOS_HOME
(see docs/status.md); flags replace the file's list of the same kind.

exit codes: 0 ok, 1 degraded (needs a look), 2 failing,
10 bad usage, 12 invalid reliability.toml.

examples:
  paios-reliability status
  paios-reliability status --event-store observability.sqlite --state-store state.sqlite
  paios-reliability status --json | jq .breakers
  paios-reliability status --watch 5
"""


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def _use_color(choice: str) -> bool:
    if choice == "always":
        return True
    if choice == "never" or os.environ.get("NO_COLOR"):
        return False
    return sys.stdout.isatty()


def _cmd_status(args: argparse.Namespace) -> int:
    from .._observe.status import collect_status

    sources = sources_from(args)
    color = _use_color(args.color)
    runs = 0
    code = 0
    try:
        while True:
            status = collect_status(sources)
            code = status.exit_code
            text = (
                status.to_json(indent=2) if args.json else status.to_text(color=color)
            )
            if args.watch is not None and not args.json and sys.stdout.isatty():
                # Home and clear: the screen is redrawn in place, not scrolled.
                sys.stdout.write("\x1b[H\x1b[2J")
            print(text, flush=True)
            runs += 1
            if args.watch is None or (args.iterations and runs >= args.iterations):
                return code
            time.sleep(args.watch)
    except KeyboardInterrupt:
        return code


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add the ``status`` command."""
    status = sub.add_parser(
        "status",
        help="one screen: health, breakers, limits, errors, crashes, leaks",
        description="Is everything OK, and if not, what and since when.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_source_arguments(status)
    status.add_argument("--json", action="store_true", help="print JSON")
    status.add_argument(
        "--watch",
        nargs="?",
        const=2.0,
        type=_positive,
        metavar="SECONDS",
        help="redraw every SECONDS (default 2) until Ctrl-C",
    )
    status.add_argument(
        "--iterations",
        type=int,
        default=0,
        metavar="N",
        help="with --watch: stop after N refreshes (0: never)",
    )
    status.add_argument(
        "--color",
        choices=["auto", "always", "never"],
        default="auto",
        help="colour needs the 'status' extra (rich); auto: only on a terminal",
    )
    status.set_defaults(handler=_cmd_status)
