"""``paios-reliability heartbeat``: beat or check a Heartbeat from a shell script."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ._common import add_group


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add the ``heartbeat`` command group."""
    commands = add_group(sub, "heartbeat", help="dead man's switch for scheduled jobs")
    beat = commands.add_parser("beat", help="record that the job NAME ran now")
    check = commands.add_parser(
        "check", help="exit 1 (and report once) if NAME missed its beat"
    )
    for cmd in (beat, check):
        cmd.add_argument("name", help="the heartbeat's name")
        cmd.add_argument("--db", required=True, help="SQLite state store path")
        cmd.add_argument(
            "--every",
            type=float,
            default=86400.0,
            help="seconds between expected beats (default 86400)",
        )
        cmd.add_argument("--grace", type=float, help="extra seconds (default every/10)")
    check.add_argument("--json", action="store_true", help="print JSON")
    beat.set_defaults(handler=_cmd_beat)
    check.set_defaults(handler=_cmd_check)


def _heartbeat(args: argparse.Namespace) -> Any:
    from .._core.exceptions import ConfigError
    from .._ops.heartbeat import Heartbeat
    from .._stores._sqlite import SQLiteStore

    try:
        return Heartbeat(
            args.name, every=args.every, grace=args.grace, store=SQLiteStore(args.db)
        )
    except ValueError as exc:
        raise ConfigError(str(exc), code="USAGE_ERROR") from exc


def _cmd_beat(args: argparse.Namespace) -> int:
    _heartbeat(args).beat()
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    status = _heartbeat(args).check()
    if args.json:
        print(
            json.dumps(
                {
                    "name": status.name,
                    "state": status.state,
                    "last_beat": status.last_beat,
                    "due": status.due,
                    "overdue": status.overdue,
                }
            )
        )
    else:
        print(f"{status.name}: {status.state}")
    if status.newly_missed:
        # The event is recorded for the event store and alert rules; a shell
        # script that runs this check sees the first report of a miss here.
        print(
            f"paios_reliability.heartbeat.missed: {status.name} is "
            f"{status.overdue:.0f}s overdue",
            file=sys.stderr,
        )
    return 1 if status.state == "missed" else 0
