"""Health checks: is this service fine, limping, or failing — and why.

A :class:`HealthRegistry` holds named checks (sync or async functions), each
with a timeout and a *critical* flag. :meth:`HealthRegistry.run` (or
:meth:`~HealthRegistry.arun`) runs them all concurrently and returns a
:class:`HealthReport`:

- ``failing`` when a critical check fails (or times out);
- ``degraded`` when a non-critical check fails or any check reports
  ``degraded``;
- ``ok`` otherwise.

A check returns ``None``/``True`` (ok), ``False`` (failing), a string (ok,
with that detail), or a ``(status, detail)`` pair; an exception means failing
with the error as detail. Ready-made checks cover SQLite databases, config
files, credentials, circuit breakers, leak monitors, disk space and TCP/HTTP
endpoints.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import inspect
import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from .._core.events import emit
from .._core.exceptions import ConfigError

if TYPE_CHECKING:
    from .leaks import LeakMonitor

__all__ = [
    "HealthCheckResult",
    "HealthRegistry",
    "HealthReport",
]

HealthStatus = Literal["ok", "degraded", "failing"]
CheckValue = bool | str | tuple[str, str] | None
CheckFn = Callable[[], CheckValue] | Callable[[], Awaitable[CheckValue]]
F = TypeVar("F", bound=Callable[..., Any])
_STATUSES = ("ok", "degraded", "failing")
_ALIASES = {
    "warning": "degraded",
    "warn": "degraded",
    "error": "failing",
    "fail": "failing",
}


@dataclass(frozen=True, slots=True)
class HealthCheckResult:
    """The outcome of one check.

    Attributes:
        name: The check's name.
        status: ``ok`` | ``degraded`` | ``failing``.
        detail: What it found (or the error).
        duration: Seconds it took (up to its timeout).
        critical: Whether its failure makes the whole report failing.
    """

    name: str
    status: HealthStatus
    detail: str
    duration: float
    critical: bool

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view."""
        return {
            "name": self.name,
            "status": self.status,
            "detail": self.detail,
            "duration": round(self.duration, 4),
            "critical": self.critical,
        }


@dataclass(frozen=True, slots=True)
class HealthReport:
    """Every check's outcome and the overall status.

    Attributes:
        status: ``ok`` | ``degraded`` | ``failing``.
        checks: One result per check, in registration order.
        timestamp: When the run started (seconds since the epoch).
        duration: Seconds the whole run took.
    """

    status: HealthStatus
    checks: tuple[HealthCheckResult, ...]
    timestamp: float
    duration: float

    @property
    def ok(self) -> bool:
        """True unless failing (degraded still serves)."""
        return self.status != "failing"

    @property
    def exit_code(self) -> int:
        """0 when ok or degraded, 1 when failing (for CLIs and probes)."""
        return 0 if self.ok else 1

    def __getitem__(self, name: str) -> HealthCheckResult:
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view."""
        return {
            "status": self.status,
            "timestamp": _dt.datetime.fromtimestamp(self.timestamp, _dt.timezone.utc)
            .isoformat()
            .replace("+00:00", "Z"),
            "duration": round(self.duration, 4),
            "checks": [c.to_dict() for c in self.checks],
        }

    def to_json(self, *, indent: int | None = None) -> str:
        """The report as JSON."""
        return json.dumps(self.to_dict(), indent=indent)

    def to_text(self) -> str:
        """A small table: one line per check, then the overall status."""
        width = max([len(c.name) for c in self.checks] + [5])
        lines = [
            f"{c.name.ljust(width)}  {c.status.upper():<8}  {c.duration * 1000:7.1f} ms  "
            f"{'' if c.critical else '(non-critical) '}{c.detail}".rstrip()
            for c in self.checks
        ]
        lines.append(f"{'overall'.ljust(width)}  {self.status.upper()}")
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class _Check:
    name: str
    fn: CheckFn
    timeout: float
    critical: bool
    is_async: bool


def _interpret(value: object) -> tuple[HealthStatus, str]:
    if value is None or value is True:
        return "ok", ""
    if value is False:
        return "failing", "check returned False"
    if isinstance(value, str):
        return "ok", value
    if isinstance(value, tuple) and len(value) == 2:
        status = _ALIASES.get(str(value[0]), str(value[0]))
        if status in _STATUSES:
            return status, str(value[1])  # type: ignore[return-value]
    return "failing", f"check returned an unusable value: {value!r}"


def _describe(exc: BaseException) -> str:
    from .._core.redaction import redact_text

    code = getattr(exc, "code", None)
    prefix = f"{code}: " if isinstance(code, str) else f"{type(exc).__name__}: "
    return redact_text(prefix + str(exc))[:1000]


class HealthRegistry:
    """Named health checks with timeouts; run them all with :meth:`run`.

    Args:
        default_timeout: Seconds a check may take unless it says otherwise.
        name: Subject of events (``health.checked`` per run).

    A sync check runs in its own daemon thread so a hung one is abandoned at
    its timeout (and reported failing; a check still hanging from an earlier
    run is not started again). Thread-safe.
    """

    def __init__(self, *, default_timeout: float = 5.0, name: str = "health") -> None:
        if not default_timeout > 0:
            raise ConfigError(
                f"default_timeout must be > 0, got {default_timeout!r}",
                code="USAGE_ERROR",
            )
        self.default_timeout = float(default_timeout)
        self.name = name
        self._lock = threading.Lock()
        self._checks: dict[str, _Check] = {}
        self._hung: dict[str, threading.Thread] = {}

    # -- registering -------------------------------------------------------------

    def add(
        self,
        name: str,
        fn: CheckFn,
        *,
        timeout: float | None = None,
        critical: bool = True,
    ) -> None:
        """Register ``fn`` (sync or async, no arguments) as check ``name``.

        Raises:
            ConfigError: ``USAGE_ERROR`` for a duplicate name or bad timeout.
        """
        if not isinstance(name, str) or not name.strip():  # type: ignore[redundant-expr]
            raise ConfigError(
                "a health check needs a non-empty name", code="USAGE_ERROR"
            )
        limit = self.default_timeout if timeout is None else float(timeout)
        if not limit > 0:
            raise ConfigError(
                f"timeout must be > 0, got {timeout!r}", code="USAGE_ERROR"
            )
        check = _Check(name, fn, limit, bool(critical), inspect.iscoroutinefunction(fn))
        with self._lock:
            if name in self._checks:
                raise ConfigError(
                    f"health check {name!r} is already registered", code="USAGE_ERROR"
                )
            self._checks[name] = check

    @overload
    def check(self, fn: F, /) -> F: ...

    @overload
    def check(
        self,
        name: str | None = None,
        /,
        *,
        timeout: float | None = None,
        critical: bool = True,
    ) -> Callable[[F], F]: ...

    def check(
        self,
        name: str | F | None = None,
        /,
        *,
        timeout: float | None = None,
        critical: bool = True,
    ) -> Callable[[F], F] | F:
        """Decorator registering a check (``@registry.check`` or
        ``@registry.check("db", timeout=2, critical=False)``).

        The function is returned unchanged.
        """
        if callable(name):
            fn = name
            self.add(fn.__name__, fn, timeout=timeout, critical=critical)
            return fn

        def decorate(fn: F) -> F:
            self.add(name or fn.__name__, fn, timeout=timeout, critical=critical)
            return fn

        return decorate

    def remove(self, name: str) -> None:
        """Unregister check ``name`` (no error if absent)."""
        with self._lock:
            self._checks.pop(name, None)

    @property
    def names(self) -> list[str]:
        """Registered check names, in order."""
        with self._lock:
            return list(self._checks)

    # -- running -----------------------------------------------------------------

    def _start_sync(
        self, check: _Check, done: Callable[[HealthStatus, str, float], None]
    ) -> threading.Thread | None:
        with self._lock:
            hung = self._hung.get(check.name)
            if hung is not None and hung.is_alive():
                done("failing", "still running from an earlier run (hung)", 0.0)
                return None
            self._hung.pop(check.name, None)

        def target() -> None:
            start = time.perf_counter()
            try:
                status, detail = _interpret(check.fn())
            except Exception as exc:  # noqa: BLE001 - a failing check is a result
                status, detail = "failing", _describe(exc)
            done(status, detail, time.perf_counter() - start)

        thread = threading.Thread(
            target=target, name=f"paios-health-{check.name}", daemon=True
        )
        thread.start()
        return thread

    def _finish(
        self,
        started: float,
        results: dict[str, HealthCheckResult],
        checks: list[_Check],
        wall: float,
    ) -> HealthReport:
        ordered = tuple(results[c.name] for c in checks)
        status: HealthStatus = "ok"
        for result in ordered:
            if result.status == "failing" and result.critical:
                status = "failing"
                break
            if result.status != "ok":
                status = "degraded"
        report = HealthReport(status, ordered, wall, time.perf_counter() - started)
        emit(
            "health",
            "checked",
            level="debug"
            if status == "ok"
            else "warning"
            if status == "degraded"
            else "error",
            subject=self.name,
            status=status,
            failing=[c.name for c in ordered if c.status == "failing"],
            degraded=[c.name for c in ordered if c.status == "degraded"],
        )
        return report

    def run(self) -> HealthReport:
        """Run every check concurrently (async ones on a private event loop).

        Returns after the slowest check finished or hit its timeout.
        """
        with self._lock:
            checks = list(self._checks.values())
        started = time.perf_counter()
        wall = time.time()
        results: dict[str, HealthCheckResult] = {}
        lock = threading.Lock()

        def recorder(check: _Check) -> Callable[[HealthStatus, str, float], None]:
            def done(status: HealthStatus, detail: str, duration: float) -> None:
                with lock:
                    results.setdefault(
                        check.name,
                        HealthCheckResult(
                            check.name, status, detail, duration, check.critical
                        ),
                    )

            return done

        sync_checks = [c for c in checks if not c.is_async]
        async_checks = [c for c in checks if c.is_async]
        threads = [
            (check, self._start_sync(check, recorder(check)), time.monotonic())
            for check in sync_checks
        ]
        if async_checks:
            runner = threading.Thread(
                target=self._run_async_in_thread,
                args=(async_checks, recorder),
                name="paios-health-async",
                daemon=True,
            )
            runner.start()
            runner.join(max(c.timeout for c in async_checks) + 1.0)
        for check, thread, t0 in threads:
            if thread is None:
                continue
            thread.join(max(0.0, check.timeout - (time.monotonic() - t0)))
            if thread.is_alive():
                with self._lock:
                    self._hung[check.name] = thread
                recorder(check)(
                    "failing", f"timed out after {check.timeout:g}s", check.timeout
                )
        for check in async_checks:
            recorder(check)(
                "failing", f"timed out after {check.timeout:g}s", check.timeout
            )
        return self._finish(started, results, checks, wall)

    def _run_async_in_thread(
        self,
        checks: list[_Check],
        recorder: Callable[[_Check], Callable[[HealthStatus, str, float], None]],
    ) -> None:
        import asyncio

        async def main() -> None:
            await asyncio.gather(*(self._run_async(c, recorder(c)) for c in checks))

        asyncio.run(main())

    async def _run_async(
        self, check: _Check, done: Callable[[HealthStatus, str, float], None]
    ) -> None:
        import asyncio

        start = time.perf_counter()
        try:
            value = await asyncio.wait_for(check.fn(), check.timeout)  # type: ignore[arg-type]
            status, detail = _interpret(value)
        except asyncio.TimeoutError:
            status, detail = "failing", f"timed out after {check.timeout:g}s"
        except Exception as exc:  # noqa: BLE001 - a failing check is a result
            status, detail = "failing", _describe(exc)
        done(status, detail, time.perf_counter() - start)

    async def arun(self) -> HealthReport:
        """Run every check concurrently without blocking the event loop.

        Async checks run on the current loop; sync ones in daemon threads.
        """
        import asyncio

        with self._lock:
            checks = list(self._checks.values())
        started = time.perf_counter()
        wall = time.time()
        loop = asyncio.get_running_loop()
        results: dict[str, HealthCheckResult] = {}

        def recorder(check: _Check) -> Callable[[HealthStatus, str, float], None]:
            def done(status: HealthStatus, detail: str, duration: float) -> None:
                results.setdefault(
                    check.name,
                    HealthCheckResult(
                        check.name, status, detail, duration, check.critical
                    ),
                )

            return done

        async def run_sync(check: _Check) -> None:
            future: asyncio.Future[tuple[HealthStatus, str, float]] = (
                loop.create_future()
            )

            def done(status: HealthStatus, detail: str, duration: float) -> None:
                def settle() -> None:
                    if not future.done():
                        future.set_result((status, detail, duration))

                # The run may be over (a hung check finishing late): its loop
                # may be closed, and nobody is waiting any more.
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(settle)

            thread = self._start_sync(check, done)
            try:
                status, detail, duration = await asyncio.wait_for(
                    asyncio.shield(future), check.timeout
                )
            except asyncio.TimeoutError:
                if thread is not None and thread.is_alive():
                    with self._lock:
                        self._hung[check.name] = thread
                status, detail, duration = (
                    "failing",
                    f"timed out after {check.timeout:g}s",
                    check.timeout,
                )
            recorder(check)(status, detail, duration)

        await asyncio.gather(
            *(
                self._run_async(c, recorder(c)) if c.is_async else run_sync(c)
                for c in checks
            )
        )
        return self._finish(started, results, checks, wall)

    # -- ready-made checks ------------------------------------------------------------

    def add_database_check(
        self,
        path: str | os.PathLike[str],
        *,
        name: str = "database",
        timeout: float | None = None,
        critical: bool = True,
    ) -> None:
        """Check an SQLite file with :func:`check_database` (quick_check).

        Problems → failing; warnings (not WAL, a large WAL) → degraded.
        """
        target = os.fspath(path)

        def database() -> CheckValue:
            from .._data.db_maintenance import check_database

            report = check_database(target)
            if report.problems:
                return "failing", "; ".join(report.problems)
            if report.warnings:
                return "degraded", "; ".join(report.warnings)
            return f"{report.journal_mode}, {report.size} bytes"

        self.add(name, database, timeout=timeout, critical=critical)

    def add_config_check(
        self,
        config: Any,
        *,
        name: str = "config",
        timeout: float | None = None,
        critical: bool = True,
    ) -> None:
        """Check that a :class:`ConfigFile` loads and validates."""

        def config_valid() -> CheckValue:
            config.load()
            return f"{getattr(config, 'path', 'config')} is valid"

        self.add(name, config_valid, timeout=timeout, critical=critical)

    def add_credentials_check(
        self,
        store: Any,
        *,
        within: _dt.timedelta | None = None,
        name: str = "credentials",
        timeout: float | None = None,
        critical: bool = True,
    ) -> None:
        """Check a :class:`CredentialStore`: expired → failing, expiring → degraded."""

        def credentials() -> CheckValue:
            due = store.expiring(within)
            now = _dt.datetime.now(_dt.timezone.utc)
            expired = [
                n for n, c in due if c.expires_at is not None and c.expires_at <= now
            ]
            soon = [n for n, c in due if n not in expired]
            if expired:
                return "failing", f"expired: {', '.join(expired)}" + (
                    f"; expiring: {', '.join(soon)}" if soon else ""
                )
            if soon:
                return "degraded", f"expiring: {', '.join(soon)}"
            return "no credential expires soon"

        self.add(name, credentials, timeout=timeout, critical=critical)

    def add_breaker_check(
        self,
        *breakers: Any,
        name: str = "breakers",
        timeout: float | None = None,
        critical: bool = False,
    ) -> None:
        """Check circuit breakers: any open → failing, half-open → degraded.

        Non-critical by default: an open breaker means a dependency is down
        and we are failing fast, which is the service working as designed.
        """
        if not breakers:
            raise ConfigError(
                "add_breaker_check() needs at least one breaker", code="USAGE_ERROR"
            )

        def breaker_states() -> CheckValue:
            states = [(str(b.name), str(b.state)) for b in breakers]
            detail = ", ".join(f"{n}: {s}" for n, s in states)
            if any(s == "open" for _, s in states):
                return "failing", detail
            if any(s == "half_open" for _, s in states):
                return "degraded", detail
            return detail

        self.add(name, breaker_states, timeout=timeout, critical=critical)

    def add_leak_check(
        self,
        monitor: LeakMonitor,
        *,
        name: str = "memory",
        timeout: float | None = None,
        critical: bool = False,
    ) -> None:
        """Check a :class:`LeakMonitor`: a detected leak → failing (non-critical
        by default: the service still works, but plan a restart)."""

        def memory() -> CheckValue:
            report = monitor.last_report if monitor.running else monitor.check()
            if report is None:
                report = monitor.check()
            if report.leaking:
                return "failing", report.reason
            return report.reason

        self.add(name, memory, timeout=timeout, critical=critical)

    def add_disk_check(
        self,
        path: str | os.PathLike[str] = ".",
        *,
        min_free_mb: float = 500.0,
        min_free_ratio: float = 0.05,
        name: str = "disk",
        timeout: float | None = None,
        critical: bool = True,
    ) -> None:
        """Check free space where ``path`` lives: below either floor → failing,
        below twice a floor → degraded (SQLite needs room to checkpoint)."""
        target = os.fspath(path)

        def disk() -> CheckValue:
            usage = shutil.disk_usage(target)
            free_mb = usage.free / (1 << 20)
            ratio = usage.free / usage.total if usage.total else 0.0
            detail = f"{free_mb:.0f} MiB free ({ratio:.1%}) at {target}"
            if free_mb < min_free_mb or ratio < min_free_ratio:
                return "failing", detail
            if free_mb < 2 * min_free_mb or ratio < 2 * min_free_ratio:
                return "degraded", detail
            return detail

        self.add(name, disk, timeout=timeout, critical=critical)

    def add_tcp_check(
        self,
        host: str,
        port: int,
        *,
        name: str | None = None,
        timeout: float | None = None,
        critical: bool = True,
    ) -> None:
        """Check that a TCP connection to ``host:port`` can be opened."""
        limit = self.default_timeout if timeout is None else timeout

        def tcp() -> CheckValue:
            start = time.perf_counter()
            with socket.create_connection((host, port), timeout=limit):
                pass
            return f"connected in {(time.perf_counter() - start) * 1000:.1f} ms"

        self.add(name or f"tcp:{host}:{port}", tcp, timeout=timeout, critical=critical)

    def add_http_check(
        self,
        url: str,
        *,
        expect: Sequence[int] = range(200, 400),
        name: str | None = None,
        timeout: float | None = None,
        critical: bool = True,
    ) -> None:
        """Check that ``GET url`` answers with a status in ``expect``."""
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"not an http(s) URL: {url!r}", code="USAGE_ERROR")
        limit = self.default_timeout if timeout is None else timeout

        def http() -> CheckValue:
            import urllib.error
            import urllib.request

            request = urllib.request.Request(url, method="GET")  # noqa: S310 - scheme checked above
            try:
                with urllib.request.urlopen(request, timeout=limit) as response:  # noqa: S310
                    status = int(response.status)
            except urllib.error.HTTPError as exc:
                status = int(exc.code)
            if status not in expect:
                return "failing", f"HTTP {status}"
            return f"HTTP {status}"

        self.add(name or f"http:{url}", http, timeout=timeout, critical=critical)

    def __repr__(self) -> str:
        return f"HealthRegistry({self.names!r})"
