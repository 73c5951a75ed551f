"""``paios-reliability mcp``: the stdio MCP servers registered by this user."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ._common import add_group


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add the ``mcp`` command group."""
    commands = add_group(sub, "mcp", help="stdio MCP servers started with run_stdio")
    sweep = commands.add_parser(
        "sweep",
        help="list registered servers whose client is gone; end them with --kill",
    )
    sweep.add_argument(
        "--kill", action="store_true", help="end the orphans (SIGTERM, then SIGKILL)"
    )
    sweep.add_argument(
        "--grace",
        type=float,
        default=3.0,
        help="seconds between SIGTERM and SIGKILL (default 3)",
    )
    sweep.add_argument("--json", action="store_true", help="print JSON")
    sweep.set_defaults(handler=_cmd_sweep)


def _cmd_sweep(args: argparse.Namespace) -> int:
    from .._core.exceptions import ConfigError
    from .._ops.registry import sweep

    if not args.grace > 0:
        raise ConfigError("--grace must be a positive number", code="USAGE_ERROR")
    entries = sweep(kill=args.kill, grace=args.grace)
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "pid": e.pid,
                        "client_pid": e.client_pid,
                        "name": e.name,
                        "state": e.state,
                        "ended": e.ended,
                    }
                    for e in entries
                ],
                indent=2,
            )
        )
        return 0
    live = [e for e in entries if e.state != "gone"]
    if not live:
        print("no registered MCP servers")
        return 0
    print(f"{'PID':>8}  {'CLIENT':>8}  {'STATE':<9} NAME")
    for e in live:
        state = "ended" if e.ended else e.state
        print(f"{e.pid:>8}  {e.client_pid:>8}  {state:<9} {e.name}")
    orphans = [e for e in live if e.state == "orphaned" and not e.ended]
    if orphans and not args.kill:
        print(f"{len(orphans)} orphaned; run with --kill to end them")
    return 0
