"""The system status: one picture built from the stores an operator already has.

``paios-reliability status`` (and the ``/api/status`` endpoint) answer "is
everything OK, and if not, what and since when" from the sources named in a
small TOML file (``reliability.toml``)::

    [status]
    event_stores = ["observability.sqlite"]          # EventStore files
    state_stores = ["state.sqlite", "redis://localhost:6379/0"]
    health = "myapp.health:registry"                 # HealthRegistry module:attr
    credentials = ["credentials.json"]               # CredentialStore files
    window = "24h"                                   # errors, crashes, leaks

    [status.capacity]                                # optional: bulkhead sizes
    llm = 8

Everything is read, never written: event stores and SQLite state stores are
opened read-only (``mode=ro``), so a status run never creates a file, never
takes a write lock and never changes what the primitives see. Reading is
done with aggregate SQL over indexed columns, so a store of 100 000 events
is summarised in a few milliseconds.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from .status_sources import StatusSources
from .status_text import _iso

if TYPE_CHECKING:
    from .health import HealthRegistry

__all__ = [
    "BreakerStatus",
    "ErrorGroup",
    "SystemStatus",
    "UsageStatus",
    "collect_status",
]

OverallStatus = Literal["ok", "degraded", "failing"]
_RANK: dict[str, int] = {"ok": 0, "degraded": 1, "failing": 2}
# A status run reads other processes' files: it must not wait long on a
# writer holding a lock, and it must never block a writer.
_BUSY_MS = 2000


# -- the picture -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BreakerStatus:
    """One circuit breaker as its shared state store holds it.

    Attributes:
        store: The state store it was read from.
        name: The breaker's name.
        state: ``closed`` | ``open`` | ``half_open``.
        since: When it last opened (epoch seconds), ``None`` when it never has.
        failures: Consecutive counted failures while closed.
        opens: Opens since the last close.
        retry_after: Seconds until a probe is allowed, when open.
    """

    store: str
    name: str
    state: str
    since: float | None
    failures: int
    opens: int
    retry_after: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "name": self.name,
            "state": self.state,
            "since": _iso(self.since),
            "failures": self.failures,
            "opens": self.opens,
            "retry_after": None
            if self.retry_after is None
            else round(self.retry_after, 3),
        }


@dataclass(frozen=True, slots=True)
class UsageStatus:
    """A bulkhead (leases in use) or a rate limiter (reserved backlog).

    Attributes:
        store: The state store it was read from.
        kind: ``bulkhead`` or ``rate_limiter``.
        name: Its name.
        in_use: Bulkhead: live leases. Rate limiter: seconds of reserved
            slots ahead of now (0 when idle).
        capacity: Bulkhead ``max_concurrent`` from ``[status.capacity]``,
            ``None`` when not configured (or for a rate limiter).
        waiting: Callers queued (bulkhead).
    """

    store: str
    kind: str
    name: str
    in_use: float
    capacity: int | None
    waiting: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "kind": self.kind,
            "name": self.name,
            "in_use": self.in_use,
            "capacity": self.capacity,
            "waiting": self.waiting,
        }


@dataclass(frozen=True, slots=True)
class ErrorGroup:
    """Error events of one code in the window.

    Attributes:
        code: The event's ``code`` field, else its error type, else its name.
        count: How many.
        first: Oldest (epoch seconds).
        last: Newest (epoch seconds).
        service: The service of the newest one.
    """

    code: str
    count: int
    first: float
    last: float
    service: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "count": self.count,
            "first": _iso(self.first),
            "last": _iso(self.last),
            "service": self.service,
        }


@dataclass(frozen=True, slots=True)
class SystemStatus:
    """Everything :func:`collect_status` found, and the verdict.

    Attributes:
        status: ``ok``, ``degraded`` (something needs a look: an open
            breaker, an expiring credential, a crash or leak in the window,
            a degraded health check, an unreadable event store) or
            ``failing`` (a failing health check, an unusable or expired
            credential, an unreachable state store).
        reasons: One line per finding that made it not ``ok``.
        generated_at: When the picture was taken (epoch seconds).
        window: Seconds of history summarised.
        health: The health report as a dict, ``None`` without a registry.
        breakers, usage, errors: See the element types.
        crashes: Crash events in the window, newest first (at most 20).
        leaks: Per leak monitor: last action, time, slope in MB/h.
        processes: Runs marked running in the event stores, with ``alive``
            (``None`` when on another host).
        credentials: Per store: path, ok, problems, warnings, and the
            profiles that are expiring or expired.
        event_stores: Per store: path, events, bytes, oldest, newest.
    """

    status: OverallStatus
    reasons: tuple[str, ...]
    generated_at: float
    window: float
    health: Mapping[str, Any] | None = None
    breakers: tuple[BreakerStatus, ...] = ()
    usage: tuple[UsageStatus, ...] = ()
    errors: tuple[ErrorGroup, ...] = ()
    crashes: tuple[Mapping[str, Any], ...] = ()
    leaks: tuple[Mapping[str, Any], ...] = ()
    processes: tuple[Mapping[str, Any], ...] = ()
    credentials: tuple[Mapping[str, Any], ...] = ()
    event_stores: tuple[Mapping[str, Any], ...] = ()

    @property
    def exit_code(self) -> int:
        """0 ok, 1 degraded, 2 failing (the ``status`` command's exit code)."""
        return _RANK[self.status]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view (times as ISO 8601 UTC)."""
        return {
            "status": self.status,
            "exit_code": self.exit_code,
            "reasons": list(self.reasons),
            "generated_at": _iso(self.generated_at),
            "window_seconds": self.window,
            "health": None if self.health is None else dict(self.health),
            "breakers": [b.to_dict() for b in self.breakers],
            "usage": [u.to_dict() for u in self.usage],
            "errors": [e.to_dict() for e in self.errors],
            "crashes": [dict(c) for c in self.crashes],
            "leaks": [dict(x) for x in self.leaks],
            "processes": [dict(p) for p in self.processes],
            "credentials": [dict(c) for c in self.credentials],
            "event_stores": [dict(s) for s in self.event_stores],
        }

    def to_json(self, *, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, default=str)

    def to_text(self, *, color: bool = False) -> str:
        """The one-screen view (plain, or coloured by rich when installed)."""
        from .status_text import render

        return render(self, color=color)


class _Findings:
    __slots__ = ("reasons", "status")

    def __init__(self) -> None:
        self.status: OverallStatus = "ok"
        self.reasons: list[str] = []

    def add(self, level: OverallStatus, reason: str) -> None:
        if _RANK[level] > _RANK[self.status]:
            self.status = level
        self.reasons.append(f"{level}: {reason}")


def _read_only(path: str) -> sqlite3.Connection:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} does not exist")
    from urllib.parse import quote

    conn = sqlite3.connect(
        f"file:{quote(os.path.abspath(path))}?mode=ro",
        uri=True,
        timeout=_BUSY_MS / 1000,
        check_same_thread=False,
    )
    conn.execute(f"PRAGMA busy_timeout = {_BUSY_MS}")
    return conn


# -- state stores --------------------------------------------------------------


_STATUS_PRIMITIVES = ("circuit_breaker", "bulkhead", "rate_limiter")


def _state_rows(
    url: str, primitives: Sequence[str] = _STATUS_PRIMITIVES
) -> list[tuple[str, Any]]:
    """Every live (key, value) of those primitives in a store, read without writing."""
    if url.startswith(("redis://", "rediss://", "unix://")):
        return _redis_rows(url, primitives)
    conn = _read_only(url)
    try:
        like = " OR ".join("key LIKE ?" for _ in primitives)
        rows = conn.execute(
            f"SELECT key, value FROM paios_state WHERE expires_at > ? AND ({like})",  # noqa: S608 - placeholders only
            (time.time(), *(f"{p}:%" for p in primitives)),
        ).fetchall()
    finally:
        conn.close()
    return [(k, json.loads(v)) for k, v in rows]


def _redis_rows(url: str, primitives: Sequence[str]) -> list[tuple[str, Any]]:
    import redis

    url, _, prefix = url.partition("#")
    prefix = prefix or "paios"
    client = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
    try:
        keys: list[bytes] = []
        for primitive in primitives:
            keys.extend(client.scan_iter(match=f"{prefix}:{primitive}:*", count=500))
        values = client.mget(keys) if keys else []
    finally:
        client.close()
    strip = len(prefix) + 1
    return [
        (k.decode()[strip:], json.loads(v))
        for k, v in zip(keys, values, strict=True)
        if v is not None
    ]


def _shown(url: str) -> str:
    """A store URL fit for output: no password (redis://:pw@host)."""
    from .._core.taxonomy import redact_text

    return redact_text(url.partition("#")[0])


def _state_sections(
    url: str, capacity: Mapping[str, int], now: float
) -> tuple[list[BreakerStatus], list[UsageStatus]]:
    from .._policies.breaker_state import _PHASES, OPEN, _effective, _State
    from .._policies.bulkhead_engines import _pruned

    now_ns = int(now * 1e9)
    breakers: list[BreakerStatus] = []
    usage: list[UsageStatus] = []
    shown = _shown(url)
    for key, value in _state_rows(url):
        primitive, _, name = key.partition(":")
        try:
            if primitive == "circuit_breaker":
                s, _ = _effective(_State.from_json(value), now_ns)
                breakers.append(
                    BreakerStatus(
                        store=shown,
                        name=name,
                        state=_PHASES[s.phase],
                        since=s.opened_at / 1e9 if s.opened_at else None,
                        failures=s.failures,
                        opens=s.opens,
                        retry_after=(s.open_until - now_ns) / 1e9
                        if s.phase == OPEN
                        else None,
                    )
                )
            elif primitive == "bulkhead":
                leases, waiters, _, _ = _pruned(value, now_ns)
                usage.append(
                    UsageStatus(
                        shown,
                        "bulkhead",
                        name,
                        len(leases),
                        capacity.get(name),
                        len(waiters),
                    )
                )
            elif primitive == "rate_limiter" and isinstance(value, int):
                backlog = max(0, value - now_ns) / 1e9
                usage.append(
                    UsageStatus(shown, "rate_limiter", name, round(backlog, 3), None, 0)
                )
        except (TypeError, ValueError, KeyError, IndexError, AttributeError):
            # A value written by another version: show the rest.
            continue
    breakers.sort(key=lambda b: (b.store, b.name))
    usage.sort(key=lambda u: (u.store, u.kind, u.name))
    return breakers, usage


# -- event stores ----------------------------------------------------------------


_ERRORS_SQL = """
SELECT COALESCE(json_extract(metadata, '$.code'),
                json_extract(metadata, '$.error_code'),
                json_extract(metadata, '$.error_type'),
                category || '.' || action) AS code,
       count(*), min(ts), max(ts), service
FROM events
WHERE ts >= ? AND level IN ('error', 'critical')
GROUP BY code ORDER BY count(*) DESC, code LIMIT 50
"""

_CRASHES_SQL = """
SELECT ts, service, action, json_extract(metadata, '$.reason'),
       json_extract(metadata, '$.error_type'), json_extract(metadata, '$.pid')
FROM events WHERE category = 'crash' AND ts >= ? ORDER BY ts DESC LIMIT 20
"""

_LEAKS_SQL = """
SELECT service, json_extract(metadata, '$.subject') AS monitor, action, max(ts),
       json_extract(metadata, '$.slope_mb_per_hour'), count(*)
FROM events WHERE category = 'leak_monitor' AND ts >= ?
  AND action IN ('leak_detected', 'leak_cleared')
GROUP BY service, monitor
"""


def _event_sections(
    path: str, since: float
) -> tuple[
    dict[str, Any],
    list[ErrorGroup],
    list[dict[str, Any]],
    list[dict[str, Any]],
    list[dict[str, Any]],
]:
    conn = _read_only(path)
    try:
        total, oldest, newest = conn.execute(
            "SELECT count(*), min(ts), max(ts) FROM events"
        ).fetchone()
        store = {
            "path": path,
            "events": total,
            "bytes": sum(
                os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p)
            ),
            "oldest": _iso(oldest),
            "newest": _iso(newest),
        }
        errors = [
            ErrorGroup(str(code), n, first, last, service)
            for code, n, first, last, service in conn.execute(_ERRORS_SQL, (since,))
        ]
        crashes = [
            {
                "time": _iso(ts),
                "service": service,
                "kind": action,
                "reason": reason or error_type,
                "pid": pid,
            }
            for ts, service, action, reason, error_type, pid in conn.execute(
                _CRASHES_SQL, (since,)
            )
        ]
        # SQLite's bare-column rule: with max(ts), the other columns come from
        # that newest row, so `action` is the monitor's last word.
        leaks = [
            {
                "service": service,
                "monitor": monitor,
                "leaking": action == "leak_detected",
                "last": _iso(ts),
                "slope_mb_per_hour": slope,
                "events": n,
            }
            for service, monitor, action, ts, slope, n in conn.execute(
                _LEAKS_SQL, (since,)
            )
        ]
        host = socket.gethostname()
        processes = []
        for service, run_host, pid, started in conn.execute(
            "SELECT service, host, pid, started FROM runs WHERE status = 'running' "
            "ORDER BY started DESC LIMIT 50"
        ):
            processes.append(
                {
                    "service": service,
                    "host": run_host,
                    "pid": pid,
                    "started": _iso(started),
                    "alive": _alive(pid) if run_host == host else None,
                }
            )
    finally:
        conn.close()
    return store, errors, crashes, leaks, processes


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


# -- collecting ------------------------------------------------------------------


def _describe(exc: BaseException) -> str:
    from .._core.taxonomy import redact_text

    return redact_text(f"{type(exc).__name__}: {exc}")


def _health(spec: str | HealthRegistry, found: _Findings) -> dict[str, Any] | None:
    try:
        from .health_command import _load_registry

        if isinstance(spec, str):
            # Like `python -m`: modules in the working directory can be named.
            if os.getcwd() not in sys.path and "" not in sys.path:
                sys.path.insert(0, os.getcwd())
            spec = _load_registry(spec)
        report = spec.run()
    except Exception as exc:  # noqa: BLE001 - a broken registry is a finding
        found.add("failing", f"health registry {spec}: {_describe(exc)}")
        return None
    for check in report.checks:
        if check.status == "failing" and check.critical:
            found.add("failing", f"health check {check.name}: {check.detail}")
        elif check.status != "ok":
            found.add("degraded", f"health check {check.name}: {check.detail}")
    return report.to_dict()


def _state(
    sources: StatusSources, now: float, found: _Findings
) -> tuple[list[BreakerStatus], list[UsageStatus]]:
    breakers: list[BreakerStatus] = []
    usage: list[UsageStatus] = []
    for url in sources.state_stores:
        try:
            store_breakers, store_usage = _state_sections(url, sources.capacity, now)
        except Exception as exc:  # noqa: BLE001 - an unreachable store is a finding
            found.add("failing", f"state store {_shown(url)}: {_describe(exc)}")
            continue
        breakers.extend(store_breakers)
        usage.extend(store_usage)
    for b in breakers:
        if b.state != "closed":
            since_text = f" since {_iso(b.since)}" if b.since else ""
            found.add("degraded", f"breaker {b.name} is {b.state}{since_text}")
    for u in usage:
        if u.capacity is not None and u.in_use >= u.capacity:
            found.add(
                "degraded", f"bulkhead {u.name} is full ({int(u.in_use)}/{u.capacity})"
            )
    return breakers, usage


@dataclass(slots=True)
class _EventPicture:
    stores: list[dict[str, Any]] = field(default_factory=list)
    errors: list[ErrorGroup] = field(default_factory=list)
    crashes: list[dict[str, Any]] = field(default_factory=list)
    leaks: list[dict[str, Any]] = field(default_factory=list)
    processes: list[dict[str, Any]] = field(default_factory=list)


def _events(sources: StatusSources, since: float, found: _Findings) -> _EventPicture:
    pic = _EventPicture()
    for path in sources.event_stores:
        try:
            s, e, c, lk, p = _event_sections(path, since)
        except Exception as exc:  # noqa: BLE001 - an unreadable store is a finding
            found.add("degraded", f"event store {path}: {_describe(exc)}")
            continue
        pic.stores.append(s)
        pic.errors.extend(e)
        pic.crashes.extend(c)
        pic.leaks.extend(lk)
        pic.processes.extend(p)
    pic.errors.sort(key=lambda g: (-g.count, g.code))
    pic.crashes.sort(key=lambda c: c["time"] or "", reverse=True)
    if pic.crashes:
        last = pic.crashes[0]
        found.add(
            "degraded",
            f"{len(pic.crashes)} crash(es) in the window, last {last['time']} "
            f"({last['service']}: {last['reason']})",
        )
    for leak in pic.leaks:
        if leak["leaking"]:
            found.add(
                "degraded",
                f"leak monitor {leak['monitor']} ({leak['service']}) reports a leak "
                f"since {leak['last']}",
            )
    for proc in pic.processes:
        if proc["alive"] is False:
            found.add(
                "degraded",
                f"{proc['service']} pid {proc['pid']} is marked running but is gone "
                "(an unclean exit not yet recorded)",
            )
    return pic


def _credentials(paths: Sequence[str], found: _Findings) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in paths:
        # Imported only when needed: it pulls in pydantic (~0.3 s cold).
        from .._data.credential_status import credential_status

        report = credential_status(path)
        attention = [
            {k: p.get(k) for k in ("name", "provider", "state", "expires_at")}
            for p in report.profiles
            if p.get("state") != "ok"
        ]
        out.append(
            {
                "path": report.path,
                "ok": report.ok,
                "profiles": len(report.profiles),
                "attention": attention,
                "problems": list(report.problems),
                "warnings": list(report.warnings),
            }
        )
        for problem in report.problems:
            found.add("failing", f"credentials {path}: {problem}")
        for a in attention:
            level: OverallStatus = "failing" if a["state"] == "expired" else "degraded"
            found.add(
                level,
                f"credential {a['name']} in {path} is {a['state']} "
                f"(expires {a['expires_at']})",
            )
    return out


def collect_status(
    sources: StatusSources,
    *,
    now: float | None = None,
    health: HealthRegistry | None = None,
) -> SystemStatus:
    """Read every source once and judge the whole.

    Never raises because a source is bad: an unreadable event store, an
    unreachable state store or a health registry that cannot be loaded is
    itself a finding (with the reason), so the picture is as complete as
    the sources allow. Writes nothing. Safe to call from several threads
    (every call opens its own read-only connections).

    Args:
        sources: What to read (see :func:`load_status_sources`).
        now: The time to judge at (epoch seconds); the wall clock when
            ``None``.
        health: A registry to run instead of loading ``sources.health``
            (a process reporting on itself).

    Returns:
        The :class:`SystemStatus`.
    """
    now = time.time() if now is None else now
    found = _Findings()
    spec = health if health is not None else sources.health
    report = _health(spec, found) if spec else None
    breakers, usage = _state(sources, now, found)
    pic = _events(sources, now - sources.window, found)
    credentials = _credentials(sources.credentials, found)
    return SystemStatus(
        status=found.status,
        reasons=tuple(found.reasons),
        generated_at=now,
        window=sources.window,
        health=report,
        breakers=tuple(breakers),
        usage=tuple(usage),
        errors=tuple(pic.errors),
        crashes=tuple(pic.crashes),
        leaks=tuple(pic.leaks),
        processes=tuple(pic.processes),
        credentials=tuple(credentials),
        event_stores=tuple(pic.stores),
    )
