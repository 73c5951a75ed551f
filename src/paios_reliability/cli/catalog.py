"""``paios-reliability catalog``: the stable error codes and exit codes."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ._common import add_command

__all__ = ["register"]


def _cmd_catalog(args: argparse.Namespace) -> int:
    from .._core.exceptions import ConfigError
    from .._core.taxonomy import CATALOG

    entries = list(CATALOG)
    if args.code:
        wanted = {c.upper() for c in args.code}
        unknown = sorted(wanted - {e.code for e in entries})
        if unknown:
            raise ConfigError(
                f"unknown error code(s): {', '.join(unknown)}", code="USAGE_ERROR"
            )
        entries = [e for e in entries if e.code in wanted]
    if args.markdown:
        print(CATALOG.to_markdown(), end="")
    elif args.json:
        print(
            json.dumps(
                [
                    {
                        "code": e.code,
                        "kind": e.kind,
                        "exit_code": e.exit_code,
                        "recovery": e.recovery,
                        "summary": e.summary,
                    }
                    for e in entries
                ],
                indent=2,
            )
        )
    else:
        width = max(len(e.code) for e in entries)
        print(
            f"{'EXIT':>4}  {'CODE'.ljust(width)}  {'KIND':<9}  {'RECOVERY':<19}  SUMMARY"
        )
        for e in sorted(entries, key=lambda e: (e.exit_code, e.code)):
            print(
                f"{e.exit_code:>4}  {e.code.ljust(width)}  {e.kind:<9}  {e.recovery:<19}  {e.summary}"
            )
    return 0


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add the ``catalog`` command."""
    catalog = add_command(
        sub,
        "catalog",
        help="list the stable error codes and exit codes",
        description=(
            "List every stable error code with its kind (transient or permanent), "
            "the process exit code every command uses for it, the recovery mode "
            "and a one-line summary. Give codes to show only those."
        ),
        examples=[
            "paios-reliability catalog",
            "paios-reliability catalog FILE_NOT_FOUND DB_CORRUPT",
            "paios-reliability catalog --json",
            "paios-reliability catalog --markdown > codes.md",
        ],
        handler=_cmd_catalog,
    )
    fmt = catalog.add_mutually_exclusive_group()
    fmt.add_argument(
        "--markdown", action="store_true", help="the full table as Markdown"
    )
    fmt.add_argument("--json", action="store_true", help="as JSON")
    catalog.add_argument("code", nargs="*", help="only these codes")
