"""``paios-reliability credentials``: credential store status."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ._common import add_command, add_group, exit_for, problem_exit, require_file

__all__ = ["register"]


def _cmd_credentials_status(args: argparse.Namespace) -> int:
    from .._data.credential_status import credential_status

    path = require_file(args.path, what="credential store")
    report = credential_status(path)
    print(
        json.dumps(report.to_dict(), indent=2, default=str)
        if args.json
        else report.to_text().rstrip("\n")
    )
    if report.ok:
        return 0
    if any(p.get("state") == "expired" for p in report.profiles):
        return exit_for("CREDENTIAL_EXPIRED")
    # No profile could be read: the file itself is the problem.
    return problem_exit(path, "CONFIG_INVALID")


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add the ``credentials`` command group (``credentials status``)."""
    creds_sub = add_group(
        sub,
        "credentials",
        help="credential store status (never prints secrets)",
        description="Inspect a CredentialStore file; secrets are never printed.",
        examples=["paios-reliability credentials status ~/.myapp/credentials.json"],
    )
    status = add_command(
        creds_sub,
        "status",
        help="expiry and usage of every credential",
        description=(
            "List every profile of a CredentialStore file with its provider, "
            "expiry, last use and state (ok, expiring, expired), and warn when "
            "the file mode is looser than 0600. Never prints a token. Exits 33 "
            "(CREDENTIAL_EXPIRED) when a profile has expired and 12 "
            "(CONFIG_INVALID) when the file cannot be read as a store."
        ),
        examples=[
            "paios-reliability credentials status credentials.json",
            "paios-reliability credentials status --json credentials.json",
        ],
        handler=_cmd_credentials_status,
    )
    status.add_argument("path", help="the credential store file")
    status.add_argument("--json", action="store_true", help="print JSON")
