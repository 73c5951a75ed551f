"""The checks of ``paios-reliability doctor``: one function per primitive, in order.

Each takes a private temporary directory, exercises its primitive for real
(no network, no Redis) and returns a short detail, or raises.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

Check = Callable[[Path], str]

__all__ = ["CHAOS_CHECK", "CHECKS"]


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

    names = ("pydantic", "tenacity", "structlog")
    for name in names:
        __import__(name)
    return ", ".join(f"{n} {version(n)}" for n in names)


def _check_taxonomy(_tmp: Path) -> str:
    import errno

    from .._core.exceptions import TimeoutExceeded
    from .._core.taxonomy import CATALOG, classify, exit_code_for

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
    from .._core.events import emit
    from .._core.trace import trace
    from ..testing import capture_events

    with capture_events() as events, trace(run_id="doctor") as ctx:
        emit("doctor", "ping", level="debug", n=1)
    if events.names() != ["paios_reliability.doctor.ping"]:
        raise AssertionError(f"captured {events.names()}")
    if events[0].trace.get("trace_id") != ctx["trace_id"]:
        raise AssertionError("event lacks the trace context")
    return "hook delivery and trace context"


def _check_clock(_tmp: Path) -> str:
    from .._core.clock import get_clock
    from .._core.settings import is_testing, set_testing
    from ..testing import FakeClock

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


def _check_retry(_tmp: Path) -> str:
    from .._core.settings import set_testing
    from .._policies.retry import retry
    from ..testing import capture_events, flaky

    injector = flaky(2, ConnectionResetError)

    @retry(attempts=5)
    @injector
    def fetch() -> str:
        return "ok"

    bug = flaky(5, KeyError)

    @retry(attempts=5)
    @bug
    def broken() -> str:
        return "never"

    with set_testing(True), capture_events() as events:
        if fetch() != "ok" or injector.calls != 3:
            raise AssertionError(
                f"transient failures not retried: {injector.calls} calls"
            )
        try:
            broken()
        except KeyError:
            pass
        else:
            raise AssertionError("KeyError was swallowed")
    if bug.calls != 1:
        raise AssertionError(f"a permanent error was retried ({bug.calls} calls)")
    return f"2 transient failures absorbed, bug failed fast, {len(events)} events"


def _check_timeouts(_tmp: Path) -> str:
    import asyncio

    from .._core.exceptions import TimeoutExceeded
    from .._policies.timeout import deadline, timeout

    async def slow_block() -> None:
        async with deadline(0.02):
            await asyncio.sleep(1)

    try:
        asyncio.run(slow_block())
    except TimeoutExceeded:
        pass
    else:
        raise AssertionError("async deadline did not cancel")

    @timeout(0.05)
    def stuck() -> None:
        time.sleep(1)

    start = time.monotonic()
    try:
        stuck()
    except TimeoutExceeded:
        pass
    else:
        raise AssertionError("sync timeout did not fire")
    late_ms = (time.monotonic() - start - 0.05) * 1000
    return f"async cancelled; sync returned {late_ms:.0f} ms after its budget"


def _check_boundary(_tmp: Path) -> str:
    from .._policies.boundary import error_boundary

    @error_boundary(fallback="fallback", name="doctor")
    def explode() -> str:
        raise RuntimeError("boom")

    if explode() != "fallback":
        raise AssertionError("error_boundary did not return its fallback")
    return "exception contained, fallback returned"


def _check_process(_tmp: Path) -> str:
    from .._ops.process import ProcessTimeoutError, run_process

    result = run_process(
        [sys.executable, "-c", "import sys; sys.stdout.write(sys.stdin.read())"],
        input=b"x" * 1_000_000,
        capture_output=True,
        timeout=30,
    )
    if len(result.stdout) != 1_000_000:
        raise AssertionError(f"echoed {len(result.stdout)} of 1000000 bytes")
    try:
        run_process([sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.3)
    except ProcessTimeoutError:
        pass
    else:
        raise AssertionError("run_process did not time out")
    return "1 MB through stdin; timed-out process group killed"


def _check_event_store(tmp: Path) -> str:
    from .._core.trace import trace
    from .._observe.eventstore import EventStore

    store = EventStore(tmp / "observability.sqlite", service="doctor")
    try:
        with trace(run_id="doctor") as ctx:
            for i in range(100):
                store.emit("doctor", "tick", n=i, api_key="never-stored")
        found = store.query(trace_id=ctx["trace_id"], limit=None)
    finally:
        store.close()
    if len(found) != 100:
        raise AssertionError(f"stored {len(found)} of 100 events")
    if "never-stored" in repr([e.metadata for e in found]):
        raise AssertionError("a secret reached the event store")
    return "100 events stored and queried by trace, secrets redacted"


def _check_metrics(_tmp: Path) -> str:
    from .._core.exceptions import ConfigError
    from .._observe.metrics import MetricsRegistry

    registry = MetricsRegistry()
    calls = registry.counter(
        "paios_reliability_doctor_calls_total", "Doctor calls", ["tool"]
    )
    calls.inc(tool="search")
    calls.inc(tool="search")
    if registry.value("paios_reliability_doctor_calls_total", tool="search") != 2:
        raise AssertionError("counter did not count")
    try:
        calls.inc(tool="")
    except ConfigError:
        pass
    else:
        raise AssertionError("an empty label value was accepted")
    return "counter counts, empty label rejected"


def _check_health(tmp: Path) -> str:
    from .._observe.health import HealthRegistry

    registry = HealthRegistry()
    registry.add_disk_check(tmp, min_free_mb=1)

    @registry.check(timeout=0.2, critical=False)
    def hangs() -> None:
        time.sleep(2)

    report = registry.run()
    statuses = {c.name: c.status for c in report.checks}
    if report.status != "degraded" or statuses.get("hangs") == "ok":
        raise AssertionError(f"unexpected health report: {report.status} {statuses}")
    return (
        f"{len(report.checks)} checks, a hung check timed out, overall {report.status}"
    )


def _check_service_units(_tmp: Path) -> str:
    import plistlib

    from .._ops.service import render_launchd, render_systemd

    plist = plistlib.loads(
        render_launchd("dev.paios.doctor", [sys.executable, "-V"]).encode()
    )
    unit = render_systemd("paios doctor", [sys.executable, "-V"])
    if plist.get("ThrottleInterval") != 10 or "Restart=on-failure" not in unit:
        raise AssertionError("service units lack restart settings")
    return "launchd plist round-trips; systemd unit restarts on failure"


def _check_sqlite(tmp: Path) -> str:
    from .._data.database import open_database
    from .._data.db_maintenance import check_database
    from .._data.transactions import write_transaction

    path = tmp / "doctor.sqlite"
    with open_database(path) as conn:
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        with write_transaction(conn):
            conn.execute("CREATE TABLE counter (n INTEGER NOT NULL)")
            conn.execute("INSERT INTO counter VALUES (0)")
        for _ in range(50):
            with write_transaction(conn):
                (n,) = conn.execute("SELECT n FROM counter").fetchone()
                conn.execute("UPDATE counter SET n = ?", (n + 1,))
        (final,) = conn.execute("SELECT n FROM counter").fetchone()
    if mode != "wal" or final != 50:
        raise AssertionError(f"journal_mode={mode}, counter={final}")
    report = check_database(path)
    placeholder = tmp / "placeholder.sqlite"
    placeholder.touch()
    if not report.ok or check_database(placeholder).ok:
        raise AssertionError("check_database misjudged a database")
    return "WAL, 50 read-then-write transactions, check_database flags a 0-byte file"


def _check_atomic(tmp: Path) -> str:
    from .._data.atomic import atomic_write

    target = tmp / "settings.json"
    atomic_write(target, '{"v": 1}')
    target.chmod(0o640)
    atomic_write(target, '{"v": 2}')
    leftovers = [p.name for p in tmp.iterdir() if p.name != "settings.json"]
    if (
        target.read_text() != '{"v": 2}'
        or (target.stat().st_mode & 0o777) != 0o640
        or leftovers
    ):
        raise AssertionError(f"atomic_write left {target.read_text()!r}, {leftovers}")
    return "replaced atomically, file mode kept, no temp files left"


def _check_config_file(tmp: Path) -> str:
    from pydantic import BaseModel

    from .._core.exceptions import ConfigError
    from .._data.config_file import ConfigFile

    class Settings(BaseModel):
        port: int
        host: str = "localhost"

    config = ConfigFile(tmp / "settings.json", Settings)
    config.save(Settings(port=8080))
    changed = config.save(Settings(port=9090))
    unchanged = config.save(Settings(port=9090))
    config.rollback()
    if config.load().port != 8080 or not changed.changed or unchanged.changed:
        raise AssertionError("save/rollback did not behave")
    try:
        config.validate({"port": "not-a-port"})
    except ConfigError as exc:
        fields = [field for field, _ in exc.errors]
    else:
        raise AssertionError("invalid config accepted")
    return f"saved, no-op save skipped, rolled back; bad field {fields[0]!r} named"


def _check_credentials(tmp: Path) -> str:
    import datetime as dt

    from .._data.credential_model import Credential
    from .._data.credentials import CredentialStore

    path = tmp / "auth.json"
    store = CredentialStore(path, create=True)
    try:
        soon = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=2)
        store.set(
            "demo",
            Credential.model_validate(
                {"provider": "demo", "token": "s3cr3t-value", "expires_at": soon}
            ),
        )
        for _ in range(100):
            store.record_usage("demo")
        expiring = [name for name, _ in store.expiring()]
        shown = repr(store.get("demo"))
    finally:
        store.close()
    if (
        (path.stat().st_mode & 0o777) != 0o600
        or "s3cr3t-value" in shown
        or expiring != ["demo"]
    ):
        raise AssertionError("credential store: mode, redaction or expiry wrong")
    return "file 0600, token hidden in repr, expiry warning raised"


def _check_signed(tmp: Path) -> str:
    from .._core.exceptions import IntegrityError
    from .._data.signed import read_signed, stable_hash, write_signed

    path = tmp / "run.signed.json"
    key = b"doctor-key"
    write_signed(path, {"step": 3, "output": "ok"}, key)
    if read_signed(path, key) != {"step": 3, "output": "ok"}:
        raise AssertionError("signed round trip failed")
    path.write_text(path.read_text().replace('"ok"', '"tampered"'))
    try:
        read_signed(path, key)
    except IntegrityError:
        pass
    else:
        raise AssertionError("tampering was not detected")
    if stable_hash({"a": 1, "duration_ms": 5}) != stable_hash(
        {"a": 1, "duration_ms": 9}
    ):
        raise AssertionError("stable_hash does not ignore volatile fields")
    return "HMAC round trip, tampering detected, volatile fields ignored"


def _check_breaker(tmp: Path) -> str:
    from .._policies.breaker import doctor_check

    return doctor_check(tmp)


def _check_rate_limiter(tmp: Path) -> str:
    from .._policies.throttle import doctor_check

    return doctor_check(tmp)


def _check_bulkhead(tmp: Path) -> str:
    from .._policies.bulkhead import doctor_check

    return doctor_check(tmp)


def _check_locks(tmp: Path) -> str:
    from .._core.exceptions import LockConflictError
    from .._runs.locks import LockManager
    from .._stores import SQLiteStore

    store = SQLiteStore(tmp / "state.db")
    try:
        locks = LockManager(store, owner="doctor")
        with locks.lock("run:doctor", ttl=30.0) as first:
            try:
                with locks.lock("run:doctor", ttl=30.0):
                    raise AssertionError("a held lock was acquired twice")
            except LockConflictError:
                pass
        with locks.lock("run:doctor", ttl=30.0) as second:
            if second.token <= first.token:
                raise AssertionError("fencing token did not increase")
    finally:
        store.close()
    return "conflict detected, fencing token increased (SQLite store)"


def _check_idempotency(tmp: Path) -> str:
    from .._runs.idempotency import idempotent
    from .._stores import SQLiteStore

    store = SQLiteStore(tmp / "state.db")
    calls: list[int] = []
    try:

        @idempotent(store, key=lambda n: f"charge:{n}", ttl=60.0)
        def charge(n: int) -> int:
            calls.append(n)
            return n * 100

        results = [charge(7), charge(7), charge(7)]
    finally:
        store.close()
    if results != [700, 700, 700] or calls != [7]:
        raise AssertionError(f"ran {len(calls)} times, returned {results}")
    return "3 calls with one key ran the side effect once"


def _check_checkpoints(tmp: Path) -> str:
    from .._runs.checkpoint import CheckpointStore

    steps = ["fetch", "plan", "act", "verify", "report"]
    checkpoints = CheckpointStore(tmp / "runs.db")
    try:
        checkpoints.save("run-1", "fetch", {"pages": 3})
        checkpoints.save("run-1", "plan", {"actions": 2})
        plan = checkpoints.resume_point("run-1", steps)
    finally:
        checkpoints.close()
    if plan.next_step != "act":
        raise AssertionError(f"resume point is {plan.next_step!r}, want 'act'")
    return "2 of 5 steps saved; resumes at 'act'"


def _check_leaks(_tmp: Path) -> str:
    from .._observe.leaks import LeakMonitor, ResourceTracker
    from .._ops.recycle import Recycler
    from ..testing import FakeClock

    def run(growth_per_minute: int) -> bool:
        clock = FakeClock()
        rss = [200 * 2**20]
        monitor = LeakMonitor(source=lambda: rss[0], clock=clock)
        for minute in range(90):
            rss[0] += growth_per_minute
            rss[0] += (
                (30 * 2**20)
                if minute % 3 == 0
                else (-30 * 2**20 if minute % 3 == 2 else 0)
            )
            monitor.sample()
            clock.advance(60)
        return monitor.check().leaking

    if not run(2**20 // 3) or run(0):
        raise AssertionError("leak monitor misjudged growth under a GC sawtooth")
    recycler = Recycler(max_requests=3, jitter=0)
    if [recycler.record() for _ in range(3)] != [False, False, True]:
        raise AssertionError("recycler did not ask for a restart after 3 requests")
    with ResourceTracker("doctor") as tracker:
        timer = tracker.timer(300, lambda: None)
        timer.start()
        leftovers = tracker.alive()
        tracker.close(cancel=True)
    if [r.kind for r in leftovers] != ["timer"]:
        raise AssertionError("resource tracker missed a live timer")
    return "20 MB/h under a sawtooth flagged, flat not; recycler and tracker exact"


def _check_alerts(_tmp: Path) -> str:
    from .._observe.alerts import AlertDispatcher

    class Collect:
        name = "collect"
        blocking = False

        def __init__(self) -> None:
            self.sent: list[str] = []

        def send(self, alert: object) -> None:
            self.sent.append(str(getattr(alert, "title", alert)))

    class Broken:
        name = "broken"
        blocking = False

        def send(self, alert: object) -> None:
            raise ConnectionRefusedError("webhook down")

    collect = Collect()
    alerts = AlertDispatcher([Broken(), collect], service="doctor")
    for _ in range(20):
        alerts.warning("GitHub failing", "HTTP 502", key="integration:github")
    alerts.critical("Database corrupt", key="db")
    alerts.flush()
    if collect.sent != ["GitHub failing", "Database corrupt"]:
        raise AssertionError(f"alerts sent: {collect.sent}")
    return "20 failures -> 1 alert; CRITICAL passes; a broken channel blocks none"


def _check_crash_handler(tmp: Path) -> str:
    db = str(tmp / "observability.sqlite")
    start = (
        "import sys, paios_reliability as pr; "
        f"store = pr.EventStore({db!r}); "
        "h = pr.install_crash_handler(store, service='doctor-child', enable_faulthandler=False); "
    )
    killed = subprocess.run(  # noqa: S603 - our own interpreter, fixed code
        [
            sys.executable,
            "-c",
            start + "import os, signal; os.kill(os.getpid(), signal.SIGKILL)",
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )
    if killed.returncode != -9:
        raise AssertionError(f"child was not killed: {killed.returncode}")
    found = subprocess.run(  # noqa: S603
        [sys.executable, "-c", start + "print(len(h.previous_crashes)); store.close()"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    if found.stdout.strip() != "1":
        raise AssertionError(
            f"SIGKILL not reported at the next start: {found.stdout!r}"
        )
    return "a SIGKILLed process is reported as a crash by the next start"


CHECKS: list[tuple[str, Check]] = [
    ("import", _check_import),
    ("dependencies", _check_dependencies),
    ("taxonomy", _check_taxonomy),
    ("events", _check_events),
    ("clock", _check_clock),
    ("retry", _check_retry),
    ("timeout", _check_timeouts),
    ("error_boundary", _check_boundary),
    ("run_process", _check_process),
    ("sqlite", _check_sqlite),
    ("atomic_write", _check_atomic),
    ("config_file", _check_config_file),
    ("credentials", _check_credentials),
    ("signed_files", _check_signed),
    ("circuit_breaker", _check_breaker),
    ("rate_limiter", _check_rate_limiter),
    ("bulkhead", _check_bulkhead),
    ("locks", _check_locks),
    ("idempotency", _check_idempotency),
    ("checkpoints", _check_checkpoints),
    ("event_store", _check_event_store),
    ("crash_handler", _check_crash_handler),
    ("metrics", _check_metrics),
    ("leaks", _check_leaks),
    ("alerts", _check_alerts),
    ("health", _check_health),
    ("service_units", _check_service_units),
    ("filesystem", _check_filesystem),
]


def _check_chaos(tmp: Path) -> str:
    from .._policies.chaos import doctor_check

    return doctor_check(tmp)


# Run only when asked (doctor --chaos): it switches fault injection on.
CHAOS_CHECK: tuple[str, Check] = ("chaos", _check_chaos)
