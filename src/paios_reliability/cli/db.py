"""``paios-reliability db``: SQLite database checks."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ._common import add_command, add_group, exit_for

__all__ = ["register"]


def _cmd_db_check(args: argparse.Namespace) -> int:
    from .._data.db_maintenance import check_database

    reports = [check_database(path, full=args.full) for path in args.paths]
    if args.fix:
        return _fix_databases(args, reports)
    if args.json:
        print(json.dumps([r.to_dict() for r in reports], indent=2, default=str))
    else:
        print("\n\n".join(r.to_text().rstrip("\n") for r in reports))
    for report in reports:
        if report.ok:
            continue
        # A missing file is FILE_NOT_FOUND in every command; only a file that
        # is there and damaged is DB_CORRUPT.
        if not report.exists:
            return exit_for("FILE_NOT_FOUND")
        if "is a directory" in report.problems:
            return exit_for("IS_A_DIRECTORY")
        return exit_for("DB_CORRUPT")
    return 0


def _fix_databases(args: argparse.Namespace, reports: list[Any]) -> int:
    from .._data.quarantine import quarantine_placeholder

    fixes = [
        quarantine_placeholder(path, quarantine=args.quarantine)
        for path, report in zip(args.paths, reports, strict=True)
        if not report.ok
    ]
    moved = {f.path for f in fixes if f.action == "moved"}
    if args.json:
        print(
            json.dumps(
                {
                    "reports": [r.to_dict() for r in reports],
                    "fixes": [f.to_dict() for f in fixes],
                },
                indent=2,
                default=str,
            )
        )
    else:
        print("\n\n".join(r.to_text().rstrip("\n") for r in reports))
        print("\nfix:" if fixes else "\nfix: nothing to do")
        for f in fixes:
            print(f"  {f.to_text()}")
    left = [
        r
        for path, r in zip(args.paths, reports, strict=True)
        if not r.ok and path not in moved
    ]
    return exit_for("DB_CORRUPT") if left else 0


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add the ``db`` command group (``db check``)."""
    db_sub = add_group(
        sub,
        "db",
        help="SQLite database checks",
        description="Inspect SQLite databases without changing them.",
        examples=["paios-reliability db check state.sqlite"],
    )
    check = add_command(
        db_sub,
        "check",
        help="inspect databases (changes nothing unless --fix)",
        description=(
            "Open each database read-only and report its size, journal mode, "
            "page counts, WAL size and the result of quick_check (or "
            "integrity_check with --full). A 0-byte placeholder, a file that is "
            "not SQLite and a damaged image are problems. The first failing "
            "path sets the exit code."
        ),
        examples=[
            "paios-reliability db check state.sqlite",
            "paios-reliability db check --full a.sqlite b.sqlite",
            "paios-reliability db check --json state.sqlite",
            "paios-reliability db check --fix --quarantine /tmp/q state.sqlite",
        ],
        handler=_cmd_db_check,
    )
    check.add_argument("paths", nargs="+", metavar="PATH", help="database files")
    check.add_argument(
        "--full", action="store_true", help="integrity_check instead of quick_check"
    )
    check.add_argument("--json", action="store_true", help="print JSON")
    check.add_argument(
        "--fix",
        action="store_true",
        help="move 0-byte placeholder databases to a quarantine folder "
        "(never deletes, never touches a file with content)",
    )
    check.add_argument(
        "--quarantine",
        metavar="DIR",
        help="with --fix: where to (default .paios-quarantine next to each file)",
    )
