"""``paios-reliability doctor``: a self-check of every primitive on embedded defaults.

Each check exercises one primitive for real (in a private temporary directory,
with no network and no Redis) and reports ok/FAIL with a short detail and its
duration. Checks never share state, so one failure never hides another.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .doctor_checks import CHAOS_CHECK, CHECKS

__all__ = ["CheckResult", "register", "run_checks"]


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    ok: bool
    detail: str
    seconds: float
    error: BaseException | None = None


def run_checks(
    only: frozenset[str] | None = None, *, chaos: bool = False
) -> list[CheckResult]:
    """Run every check (or those named in ``only``) and return their results.

    With ``chaos``, also rehearse the call policies under injected faults.

    The events the checks provoke on purpose (a caught error, a timeout) are
    kept out of the terminal: the table is the output.

    Raises:
        ConfigError: ``USAGE_ERROR`` when ``only`` names a check that does not
            exist (a typo must never pass as "0 failed"); the message lists
            the valid names.
    """
    if only is not None:
        valid = [name for name, _ in (*CHECKS, *([CHAOS_CHECK] if chaos else []))]
        unknown = sorted(only - set(valid))
        if unknown:
            from .._core.exceptions import ConfigError

            raise ConfigError(
                f"unknown check(s): {', '.join(unknown)}; valid checks: "
                + ", ".join(valid),
                code="USAGE_ERROR",
            )
    import logging

    logger = logging.getLogger("paios_reliability")
    propagate, level = logger.propagate, logger.level
    logger.propagate = False
    logger.setLevel(logging.CRITICAL + 1)
    try:
        return _run_checks(only, chaos)
    finally:
        logger.propagate = propagate
        logger.setLevel(level)


def _run_checks(only: frozenset[str] | None, chaos: bool = False) -> list[CheckResult]:
    results = []
    for name, check in [*CHECKS, *([CHAOS_CHECK] if chaos else [])]:
        if only is not None and name not in only:
            continue
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix=f"paios-doctor-{name}-") as tmp:
            try:
                detail = check(Path(tmp))
            except Exception as exc:  # noqa: BLE001 - a failing check is a result
                results.append(
                    CheckResult(
                        name,
                        False,
                        f"{type(exc).__name__}: {exc}",
                        time.perf_counter() - start,
                        exc,
                    )
                )
                continue
        results.append(CheckResult(name, True, detail, time.perf_counter() - start))
    return results


def render_table(results: list[CheckResult]) -> str:
    """A plain-text table (no colours) of check results."""
    rows = [("CHECK", "STATUS", "TIME", "DETAIL")]
    rows += [
        (r.name, "ok" if r.ok else "FAIL", f"{r.seconds * 1000:.0f} ms", r.detail)
        for r in results
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True))
        + "  "
        + row[3]
        for row in rows
    ]
    failed = sum(not r.ok for r in results)
    lines.append("")
    lines.append(f"{len(results) - failed} ok, {failed} failed")
    return "\n".join(lines)


def _cmd_doctor(args: argparse.Namespace) -> int:
    from ._common import exit_for

    only = frozenset(args.check) if args.check else None
    results = run_checks(only, chaos=args.chaos)
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "check": r.name,
                        "ok": r.ok,
                        "detail": r.detail,
                        "seconds": round(r.seconds, 4),
                    }
                    for r in results
                ],
                indent=2,
            )
        )
    else:
        print(render_table(results))
    failed = [r for r in results if not r.ok]
    if not failed:
        return 0
    from .._core.taxonomy import exit_code_for

    error = failed[0].error
    return exit_code_for(error) if error is not None else exit_for("RELIABILITY_ERROR")


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add the ``doctor`` command."""
    from ._common import add_command

    doctor = add_command(
        sub,
        "doctor",
        help="self-check every primitive on embedded defaults",
        description=(
            "Exercise every primitive for real, each in its own temporary "
            "directory (no network, no Redis), and print one row per check "
            "with its status, time and detail. Takes 1-3 seconds. Exits with "
            "the first failing check's exit code. Checks: "
            + ", ".join(name for name, _ in CHECKS)
            + "."
        ),
        examples=[
            "paios-reliability doctor",
            "paios-reliability doctor --check sqlite --check locks",
            "paios-reliability doctor --json",
            "paios-reliability doctor --chaos",
        ],
        handler=_cmd_doctor,
    )
    doctor.add_argument("--json", action="store_true", help="print results as JSON")
    doctor.add_argument(
        "--check",
        action="append",
        metavar="NAME",
        help="run only this check (repeatable; see the list above)",
    )
    doctor.add_argument(
        "--chaos",
        action="store_true",
        help="also rehearse retry, breaker and failover under injected faults",
    )
