"""``paios-reliability doctor``: a self-check of every primitive on embedded defaults.

Each check exercises one primitive for real (in a private temporary directory,
with no network and no Redis) and reports ok/FAIL with a short detail and its
duration. Checks never share state, so one failure never hides another.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CheckResult", "run_checks"]

Check = Callable[[Path], str]


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    ok: bool
    detail: str
    seconds: float
    error: BaseException | None = None


def _check_import(_tmp: Path) -> str:
    code = (
        "import sys, time; t = time.perf_counter(); import paios_reliability; "
        "ms = (time.perf_counter() - t) * 1000; "
        "heavy = [m for m in ('pydantic', 'tenacity', 'structlog', 'redis') if m in sys.modules]; "
        "print(f'{ms:.1f} ' + ','.join(heavy))"
    )
    out = subprocess.run(  # noqa: S603 - our own interpreter, fixed code
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    if len(out) > 1:
        raise AssertionError(f"import paios_reliability loaded {out[1]}")
    return f"import {out[0]} ms, no heavy modules"


def _check_dependencies(_tmp: Path) -> str:
    from importlib.metadata import version

    names = ("pydantic", "tenacity", "structlog", "wrapt")
    for name in names:
        __import__(name)
    return ", ".join(f"{n} {version(n)}" for n in names)


def _check_taxonomy(_tmp: Path) -> str:
    import errno

    from ._exceptions import TimeoutExceeded
    from ._taxonomy import CATALOG, classify, exit_code_for

    cases: list[tuple[BaseException, str, bool]] = [
        (OSError(errno.ECONNRESET, "reset"), "CONNECTION_RESET", True),
        (OSError(errno.ENOENT, "missing"), "FILE_NOT_FOUND", False),
        (TimeoutExceeded("slow"), "TIMEOUT", True),
        (KeyError("k"), "PROGRAMMING_ERROR", False),
        (KeyboardInterrupt(), "INTERRUPTED", False),
    ]
    for exc, code, retryable in cases:
        got = classify(exc)
        if (got.code, got.retryable) != (code, retryable):
            raise AssertionError(
                f"{exc!r} -> {got.code}/{got.retryable}, want {code}/{retryable}"
            )
    bad = [e.code for e in CATALOG if not 10 <= e.exit_code <= 49]
    if bad:
        raise AssertionError(f"exit codes out of range: {bad}")
    if exit_code_for(None) != 0:
        raise AssertionError("exit_code_for(None) != 0")
    return f"{len(CATALOG)} codes, {len(cases)} samples classified"


def _check_events(_tmp: Path) -> str:
    from ._events import emit
    from ._observe import trace
    from .testing import capture_events

    with capture_events() as events, trace(run_id="doctor") as ctx:
        emit("doctor", "ping", level="debug", n=1)
    if events.names() != ["paios_reliability.doctor.ping"]:
        raise AssertionError(f"captured {events.names()}")
    if events[0].trace.get("trace_id") != ctx["trace_id"]:
        raise AssertionError("event lacks the trace context")
    return "hook delivery and trace context"


def _check_clock(_tmp: Path) -> str:
    from ._clock import get_clock
    from ._config import is_testing, set_testing
    from .testing import FakeClock

    clock = FakeClock()
    with clock.install():
        get_clock().sleep(5.0)
    if clock.monotonic() != 5.0 or clock.sleeps != [5.0]:
        raise AssertionError("FakeClock did not advance")
    with set_testing(True):
        inner = is_testing()
    if not inner or is_testing():
        raise AssertionError("set_testing() did not restore")
    return "FakeClock and set_testing restorer"


def _check_filesystem(tmp: Path) -> str:
    path = tmp / "probe"
    with path.open("wb") as fh:
        fh.write(b"x" * 4096)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(path, tmp / "probe2")
    free = os.statvfs(tmp)
    free_mb = free.f_bavail * free.f_frsize / 1e6
    return f"temp dir writable with fsync, {free_mb:,.0f} MB free"


CHECKS: list[tuple[str, Check]] = [
    ("import", _check_import),
    ("dependencies", _check_dependencies),
    ("taxonomy", _check_taxonomy),
    ("events", _check_events),
    ("clock", _check_clock),
    ("filesystem", _check_filesystem),
]


def run_checks(only: frozenset[str] | None = None) -> list[CheckResult]:
    """Run every check (or those named in ``only``) and return their results."""
    results = []
    for name, check in CHECKS:
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
