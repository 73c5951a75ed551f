"""``paios-reliability health``: run a HealthRegistry."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import add_command, emit, exit_for

__all__ = ["register"]


def _cmd_health(args: argparse.Namespace) -> int:
    from .._observe.health_command import health_command

    status = emit(health_command(args.registry, as_json=args.json))
    # A failing dependency is a transient condition of the service, the same
    # family every other command uses for "unavailable", not a bare 1.
    return 0 if status == 0 else exit_for("SERVICE_UNAVAILABLE")


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add the ``health`` command."""
    health = add_command(
        sub,
        "health",
        help="run a HealthRegistry and print its report",
        description=(
            "Import a HealthRegistry (or a function returning one) given as "
            "MODULE:ATTR, run every check with its time limit and print a "
            "table (or JSON). Exits 0 when ok or degraded and 27 "
            "(SERVICE_UNAVAILABLE) when failing."
        ),
        examples=[
            "paios-reliability health --registry myapp.health:registry",
            "paios-reliability health --registry myapp.health:registry --json",
        ],
        handler=_cmd_health,
    )
    health.add_argument(
        "--registry", required=True, metavar="MODULE:ATTR", help="registry to run"
    )
    health.add_argument("--json", action="store_true", help="print JSON")
