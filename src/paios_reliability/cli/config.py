"""``paios-reliability config``: configuration files."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import add_command, add_group, problem_exit, require_file

__all__ = ["register"]


def _cmd_config_validate(args: argparse.Namespace) -> int:
    from .._data.config_validate import config_validate

    path = require_file(args.path, what="config file")
    report = config_validate(path, args.model, dry_run=args.dry_run)
    print(report.to_text().rstrip("\n"))
    return 0 if report.ok else problem_exit(path, "CONFIG_INVALID")


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add the ``config`` command group (``config validate``)."""
    config_sub = add_group(
        sub,
        "config",
        help="configuration files",
        description="Check configuration files against their pydantic models.",
        examples=[
            "paios-reliability config validate settings.json --model myapp.settings:Settings"
        ],
    )
    validate = add_command(
        config_sub,
        "validate",
        help="validate a config file against a model",
        description=(
            "Load a JSON or TOML file and validate it against a pydantic model "
            "given as MODULE:CLASS; never writes. Every invalid field is named. "
            "The module is imported from the current directory first, then "
            "from PYTHONPATH."
        ),
        examples=[
            "paios-reliability config validate settings.json --model myapp.settings:Settings",
            "paios-reliability config validate settings.json --model myapp.settings:Settings --dry-run",
        ],
        handler=_cmd_config_validate,
    )
    validate.add_argument("path", help="the configuration file")
    validate.add_argument(
        "--model",
        required=True,
        metavar="MODULE:CLASS",
        help="the pydantic model, e.g. myapp.settings:Settings",
    )
    validate.add_argument(
        "--dry-run", action="store_true", help="also show the diff save would write"
    )
