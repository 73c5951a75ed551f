"""classify(), is_retryable(), exit_code_for(), audit_event(), parse_retry_after().

The table at the top uses real exceptions: HTTP errors raised by httpx,
requests, urllib and aiohttp against a real loopback server, OSErrors from real
system calls, real SQLite lock/corruption/constraint errors.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import email.utils
import errno
import http.server
import json
import math
import os
import re
import socket
import sqlite3
import struct
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pydantic
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import paios_reliability as pr
import sdk_shapes
from paios_reliability._core.catalog import CATALOG
from paios_reliability._core.redaction import json_safe, redact_text
from paios_reliability._core.taxonomy import parse_retry_after
from paios_reliability.testing import set_testing
from strategies import (
    ERRNOS,
    INTERRUPTS,
    PERMANENT_STATUSES,
    SENTINEL_PREFIX,
    TRANSIENT_STATUSES,
    Hostile,
    StatusError,
    contexts_with_secrets,
    hostile_exceptions,
    retry_after_values,
)

WEEK = 7 * 24 * 3600.0
HYPOTHESIS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

# -- real things to fail against -------------------------------------------------


class _StatusHandler(http.server.BaseHTTPRequestHandler):
    """``GET /status/503?retry_after=7`` answers 503 with that Retry-After."""

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        status = int(url.path.rsplit("/", 1)[-1])
        query = urllib.parse.parse_qs(url.query)
        body = b"nope"
        self.send_response(status)
        for value in query.get("retry_after", []):
            self.send_header("Retry-After", value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class Env:
    base_url: str
    closed_port: int
    silent_port: int
    tmp: Path


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _StatusHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    with socket.socket() as probe:  # a port nobody listens on any more
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    silent = socket.socket()  # accepts connections (backlog), never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        yield Env(
            base_url=f"http://127.0.0.1:{server.server_address[1]}",
            closed_port=closed_port,
            silent_port=silent.getsockname()[1],
            tmp=tmp_path_factory.mktemp("taxonomy"),
        )
    finally:
        silent.close()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def catch(fn: Callable[[], object]) -> BaseException:
    try:
        fn()
    except BaseException as exc:
        return exc
    raise AssertionError(f"{fn!r} did not raise")


def httpx_status(status: int, headers: dict[str, str] | None = None) -> BaseException:
    request = httpx.Request("GET", "https://api.example.test/v1/items")
    response = httpx.Response(status, headers=headers, request=request)
    return catch(response.raise_for_status)


def requests_status(
    env: Env, status: int, retry_after: str | None = None
) -> BaseException:
    query = f"?retry_after={urllib.parse.quote(retry_after)}" if retry_after else ""
    response = requests.get(f"{env.base_url}/status/{status}{query}", timeout=10)
    with response:
        return catch(response.raise_for_status)


def urllib_status(
    env: Env, status: int, retry_after: str | None = None
) -> BaseException:
    query = f"?retry_after={urllib.parse.quote(retry_after)}" if retry_after else ""
    exc = catch(
        lambda: urllib.request.urlopen(
            f"{env.base_url}/status/{status}{query}", timeout=10
        )
    )
    assert isinstance(exc, urllib.error.HTTPError)
    exc.close()
    return exc


def aiohttp_status(
    env: Env, status: int, retry_after: str | None = None
) -> BaseException:
    async def fetch() -> None:
        query = f"?retry_after={retry_after}" if retry_after else ""
        timeout = aiohttp.ClientTimeout(total=10)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(f"{env.base_url}/status/{status}{query}") as response,
        ):
            response.raise_for_status()

    exc = catch(lambda: asyncio.run(fetch()))
    assert isinstance(exc, aiohttp.ClientResponseError)
    return exc


def http_date(seconds_from_now: float) -> str:
    when = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=seconds_from_now)
    return email.utils.format_datetime(when, usegmt=True)


def refused(env: Env) -> BaseException:
    with socket.socket() as sock:
        return catch(lambda: sock.connect(("127.0.0.1", env.closed_port)))


def reset_by_peer() -> BaseException:
    """A real ECONNRESET: the server closes with SO_LINGER 0 (an RST)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname(), timeout=5)
        conn, _ = server.accept()
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()
        with client:
            return catch(lambda: [client.recv(10) for _ in range(3)])


def broken_pipe() -> BaseException:
    a, b = socket.socketpair()
    b.close()
    with a:
        return catch(lambda: [a.sendall(b"x" * 65536) for _ in range(4)])


def would_block() -> BaseException:
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        return catch(lambda: a.recv(1))


def not_executable(env: Env) -> BaseException:
    """EACCES even for root: exec() needs an execute bit for everyone."""
    script = env.tmp / "not-executable.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o644)
    return catch(lambda: subprocess.run([str(script)], check=False, timeout=10))


def link_directory(env: Env) -> BaseException:
    """EPERM even for root: hard links to directories are forbidden."""
    target = env.tmp / "a-directory"
    target.mkdir(exist_ok=True)
    return catch(lambda: os.link(target, env.tmp / "dir-link"))


def sqlite_locked(env: Env) -> BaseException:
    path = env.tmp / "locked.sqlite"
    holder = sqlite3.connect(path, isolation_level=None)
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        holder.execute("CREATE TABLE IF NOT EXISTS t (x)")
        holder.execute("BEGIN IMMEDIATE")
        return catch(lambda: other.execute("BEGIN IMMEDIATE"))
    finally:
        holder.execute("ROLLBACK")
        other.close()
        holder.close()


def sqlite_not_a_database(env: Env) -> BaseException:
    path = env.tmp / "garbage.sqlite"
    path.write_bytes(os.urandom(64) + b"this is not a database" * 200)
    conn = sqlite3.connect(path)
    try:
        return catch(lambda: conn.execute("SELECT * FROM sqlite_master").fetchall())
    finally:
        conn.close()


def sqlite_unique(env: Env) -> BaseException:
    # The column names contain "locked" and "busy": text matching must not
    # turn a constraint violation into a transient lock error.
    conn = sqlite3.connect(env.tmp / "unique.sqlite")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS jobs (locked_busy TEXT UNIQUE)")
        conn.execute("INSERT OR IGNORE INTO jobs VALUES ('a')")
        return catch(lambda: conn.execute("INSERT INTO jobs VALUES ('a')"))
    finally:
        conn.close()


class Item(pydantic.BaseModel):
    name: str
    count: int


class VendorSDKError(Exception):
    """Something no table knows about."""


async def _cancelled() -> BaseException:
    task = asyncio.ensure_future(asyncio.sleep(10))
    await asyncio.sleep(0)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError as exc:
        return exc
    raise AssertionError("not cancelled")


async def _async_timeout() -> BaseException:
    try:
        await asyncio.wait_for(asyncio.sleep(10), timeout=0.001)
    except asyncio.TimeoutError as exc:
        return exc
    raise AssertionError("no timeout")


def _assertion() -> None:
    assert 1 + 1 == 3, "arithmetic"


def _not_implemented() -> None:
    raise NotImplementedError("later")


def _recv_timeout(env: Env) -> BaseException:
    with socket.create_connection(("127.0.0.1", env.silent_port), timeout=5) as sock:
        sock.settimeout(0.05)
        return catch(lambda: sock.recv(1))


@dataclass(frozen=True)
class Case:
    id: str
    make: Callable[[Env], BaseException]
    kind: str
    code: str
    retry_after: float | None = None


T, P = "transient", "permanent"
H = {"Retry-After": "7"}
CASES: list[Case] = [
    # httpx: real HTTPStatusError from real Request/Response objects
    Case("httpx-400", lambda e: httpx_status(400), P, "HTTP_BAD_REQUEST"),
    Case("httpx-401", lambda e: httpx_status(401), P, "HTTP_UNAUTHORIZED"),
    Case("httpx-403", lambda e: httpx_status(403), P, "HTTP_FORBIDDEN"),
    Case("httpx-404", lambda e: httpx_status(404), P, "HTTP_NOT_FOUND"),
    Case("httpx-405", lambda e: httpx_status(405), P, "HTTP_METHOD_NOT_ALLOWED"),
    Case("httpx-408", lambda e: httpx_status(408), T, "HTTP_REQUEST_TIMEOUT"),
    Case("httpx-409", lambda e: httpx_status(409), P, "HTTP_CONFLICT"),
    Case("httpx-410", lambda e: httpx_status(410), P, "HTTP_GONE"),
    Case("httpx-422", lambda e: httpx_status(422), P, "HTTP_UNPROCESSABLE"),
    Case("httpx-425", lambda e: httpx_status(425), T, "HTTP_TOO_EARLY"),
    Case("httpx-429-seconds", lambda e: httpx_status(429, {"Retry-After": "12"}), T, "HTTP_TOO_MANY_REQUESTS", 12.0),
    Case("httpx-429-date-past", lambda e: httpx_status(429, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}), T, "HTTP_TOO_MANY_REQUESTS", 0.0),
    Case("httpx-500", lambda e: httpx_status(500), T, "HTTP_INTERNAL_SERVER_ERROR"),
    Case("httpx-502", lambda e: httpx_status(502), T, "HTTP_BAD_GATEWAY"),
    Case("httpx-503", lambda e: httpx_status(503, H), T, "HTTP_SERVICE_UNAVAILABLE", 7.0),
    Case("httpx-504", lambda e: httpx_status(504), T, "HTTP_GATEWAY_TIMEOUT"),
    Case("httpx-418", lambda e: httpx_status(418), P, "HTTP_CLIENT_ERROR"),
    Case("httpx-599", lambda e: httpx_status(599), T, "HTTP_SERVER_ERROR"),
    Case("httpx-connect-refused", lambda e: catch(lambda: httpx.get(f"http://127.0.0.1:{e.closed_port}/", timeout=5)), T, "CONNECTION_ERROR"),
    Case("httpx-read-timeout", lambda e: catch(lambda: httpx.get(f"http://127.0.0.1:{e.silent_port}/", timeout=0.1)), T, "TIMEOUT"),
    # requests, urllib, aiohttp against a real loopback HTTP server
    Case("requests-404", lambda e: requests_status(e, 404), P, "HTTP_NOT_FOUND"),
    Case("requests-422", lambda e: requests_status(e, 422), P, "HTTP_UNPROCESSABLE"),
    Case("requests-503-retry-after", lambda e: requests_status(e, 503, "30"), T, "HTTP_SERVICE_UNAVAILABLE", 30.0),
    Case("requests-connection-error", lambda e: catch(lambda: requests.get(f"http://127.0.0.1:{e.closed_port}/", timeout=5)), T, "CONNECTION_ERROR"),
    Case("requests-read-timeout", lambda e: catch(lambda: requests.get(f"http://127.0.0.1:{e.silent_port}/", timeout=0.1)), T, "TIMEOUT"),
    Case("urllib-403", lambda e: urllib_status(e, 403), P, "HTTP_FORBIDDEN"),
    Case("urllib-429-retry-after", lambda e: urllib_status(e, 429, "5"), T, "HTTP_TOO_MANY_REQUESTS", 5.0),
    Case("urllib-502", lambda e: urllib_status(e, 502), T, "HTTP_BAD_GATEWAY"),
    Case("urllib-url-error-refused", lambda e: catch(lambda: urllib.request.urlopen(f"http://127.0.0.1:{e.closed_port}/", timeout=5)), T, "CONNECTION_REFUSED"),
    Case("aiohttp-400", lambda e: aiohttp_status(e, 400), P, "HTTP_BAD_REQUEST"),
    Case("aiohttp-503-retry-after", lambda e: aiohttp_status(e, 503, "9"), T, "HTTP_SERVICE_UNAVAILABLE", 9.0),
    # OSError from real system calls
    Case("connect-ECONNREFUSED", refused, T, "CONNECTION_REFUSED"),
    Case("recv-ECONNRESET", lambda e: reset_by_peer(), T, "CONNECTION_RESET"),
    Case("send-EPIPE", lambda e: broken_pipe(), T, "BROKEN_PIPE"),
    Case("recv-EAGAIN", lambda e: would_block(), T, "TRY_AGAIN"),
    Case("open-ENOENT", lambda e: catch(lambda: open(e.tmp / "missing.txt")), P, "FILE_NOT_FOUND"),  # noqa: SIM115
    Case("open-dir-EISDIR", lambda e: catch(lambda: open(e.tmp, "w")), P, "IS_A_DIRECTORY"),  # noqa: SIM115
    Case("exec-EACCES", not_executable, P, "PERMISSION_DENIED"),
    Case("link-dir-EPERM", link_directory, P, "OPERATION_NOT_PERMITTED"),
    Case("mkdir-EEXIST", lambda e: catch(e.tmp.mkdir), P, "FILE_EXISTS"),
    Case("gaierror", lambda e: catch(lambda: socket.getaddrinfo("nonexistent.invalid", 80, flags=socket.AI_NUMERICHOST)), T, "DNS_FAILURE"),
    Case("socket-timeout", _recv_timeout, T, "TIMEOUT"),
    # OSError(errno.X, ...) as C extensions and libraries raise them
    Case("ETIMEDOUT", lambda e: OSError(errno.ETIMEDOUT, "Connection timed out"), T, "CONNECTION_TIMEOUT"),
    Case("ECONNRESET", lambda e: OSError(errno.ECONNRESET, "reset"), T, "CONNECTION_RESET"),
    Case("EPIPE", lambda e: OSError(errno.EPIPE, "pipe"), T, "BROKEN_PIPE"),
    Case("EHOSTUNREACH", lambda e: OSError(errno.EHOSTUNREACH, "no route"), T, "HOST_UNREACHABLE"),
    Case("ENETUNREACH", lambda e: OSError(errno.ENETUNREACH, "no net"), T, "NETWORK_UNREACHABLE"),
    Case("EAGAIN", lambda e: OSError(errno.EAGAIN, "again"), T, "TRY_AGAIN"),
    Case("EBUSY", lambda e: OSError(errno.EBUSY, "busy"), T, "RESOURCE_BUSY"),
    Case("EPERM", lambda e: OSError(errno.EPERM, "not permitted"), P, "OPERATION_NOT_PERMITTED"),
    Case("EACCES", lambda e: OSError(errno.EACCES, "denied"), P, "PERMISSION_DENIED"),
    Case("ENOSPC", lambda e: OSError(errno.ENOSPC, "full"), P, "DISK_FULL"),
    Case("ConnectionResetError-bare", lambda e: ConnectionResetError(), T, "CONNECTION_RESET"),
    # SQLite, for real
    Case("sqlite-locked", sqlite_locked, T, "DB_LOCKED"),
    Case("sqlite-not-a-database", sqlite_not_a_database, P, "DB_NOT_A_DATABASE"),
    Case("sqlite-unique", sqlite_unique, P, "DB_CONSTRAINT"),
    # data
    Case("pydantic-validation", lambda e: catch(lambda: Item.model_validate({"name": 1})), P, "VALIDATION_ERROR"),
    Case("json-decode", lambda e: catch(lambda: json.loads("{")), P, "MALFORMED_DATA"),
    Case("unicode-decode", lambda e: catch(lambda: b"\xff".decode("utf-8")), P, "MALFORMED_DATA"),
    # timeouts
    Case("TimeoutError", lambda e: TimeoutError("slow"), T, "TIMEOUT"),
    Case("asyncio.TimeoutError", lambda e: asyncio.run(_async_timeout()), T, "TIMEOUT"),
    Case("futures.TimeoutError", lambda e: catch(lambda: concurrent.futures.Future().result(timeout=0)), T, "TIMEOUT"),
    # interruptions: never retried
    Case("KeyboardInterrupt", lambda e: KeyboardInterrupt(), P, "INTERRUPTED"),
    Case("SystemExit", lambda e: catch(lambda: sys.exit(3)), P, "SYSTEM_EXIT"),
    Case("GeneratorExit", lambda e: GeneratorExit(), P, "INTERRUPTED"),
    Case("asyncio.CancelledError", lambda e: asyncio.run(_cancelled()), P, "CANCELLED"),
    Case("futures.CancelledError", lambda e: concurrent.futures.CancelledError(), P, "CANCELLED"),
    # the eight programming errors, raised for real
    Case("TypeError", lambda e: catch(lambda: 1 + "a"), P, "PROGRAMMING_ERROR"),  # type: ignore[operator]
    Case("ValueError", lambda e: catch(lambda: int("x")), P, "PROGRAMMING_ERROR"),
    Case("KeyError", lambda e: catch(lambda: {}["k"]), P, "PROGRAMMING_ERROR"),
    Case("AttributeError", lambda e: catch(lambda: None.x), P, "PROGRAMMING_ERROR"),  # type: ignore[attr-defined]
    Case("IndexError", lambda e: catch(lambda: [][0]), P, "PROGRAMMING_ERROR"),  # noqa: PLE0643
    Case("AssertionError", lambda e: catch(_assertion), P, "PROGRAMMING_ERROR"),
    Case("NotImplementedError", lambda e: catch(_not_implemented), P, "PROGRAMMING_ERROR"),
    Case("ZeroDivisionError", lambda e: catch(lambda: 1 / 0), P, "PROGRAMMING_ERROR"),
    # the unknown
    Case("unknown-custom", lambda e: VendorSDKError("?"), T, "UNCLASSIFIED"),
    Case("RuntimeError", lambda e: RuntimeError("?"), T, "UNCLASSIFIED"),
]  # fmt: skip


OUR_CASES = [
    Case(f"ours-{cls.__name__}", lambda e, cls=cls: _ours(cls), T if cls.default_retryable else P, cls.default_code)
    for cls in [
        pr.ReliabilityError, pr.TransientError, pr.PermanentError, pr.TimeoutExceeded,
        pr.CircuitOpenError, pr.RateLimitedError, pr.BulkheadFullError,
        pr.LockConflictError, pr.ConfigError, pr.CredentialError,
        pr.CredentialMissingError, pr.CredentialExpiredError, pr.PolicyDeniedError,
        pr.ApprovalRequiredError, pr.CapabilityDeniedError, pr.IntegrityError,
    ]
]  # fmt: skip


def _ours(cls: type[pr.ReliabilityError]) -> pr.ReliabilityError:
    if cls is pr.CircuitOpenError:
        return pr.CircuitOpenError(breaker_name="github")
    if cls is pr.LockConflictError:
        return pr.LockConflictError(key="job-1")
    return cls("it failed")


def test_table_is_big_enough() -> None:
    assert len(CASES) + len(OUR_CASES) >= 40
    assert len({c.id for c in CASES + OUR_CASES}) == len(CASES) + len(OUR_CASES)


@pytest.mark.parametrize("case", CASES + OUR_CASES, ids=lambda c: c.id)
def test_classify_table(case: Case, env: Env) -> None:
    exc = case.make(env)
    failure = pr.classify(exc)

    expected = (case.kind, case.code, case.kind == "transient", case.retry_after)
    assert expected == (
        failure.kind,
        failure.code,
        failure.retryable,
        failure.retry_after,
    )
    assert pr.is_retryable(exc) is failure.retryable
    assert pr.exit_code_for(exc) == CATALOG[case.code].exit_code


def test_http_date_retry_after_from_a_real_response() -> None:
    exc = httpx_status(429, {"Retry-After": http_date(120)})

    failure = pr.classify(exc)

    assert (failure.kind, failure.code) == ("transient", "HTTP_TOO_MANY_REQUESTS")
    assert failure.retry_after is not None
    assert 100 <= failure.retry_after <= 120


def test_real_exceptions_are_what_the_table_claims(env: Env) -> None:
    # The table is only worth something if the objects are the real thing.
    assert isinstance(httpx_status(503), httpx.HTTPStatusError)
    assert isinstance(requests_status(env, 503), requests.HTTPError)
    assert isinstance(refused(env), ConnectionRefusedError)
    assert reset_by_peer().errno == errno.ECONNRESET  # type: ignore[attr-defined]
    assert broken_pipe().errno == errno.EPIPE  # type: ignore[attr-defined]
    assert not_executable(env).errno == errno.EACCES  # type: ignore[attr-defined]
    assert link_directory(env).errno == errno.EPERM  # type: ignore[attr-defined]
    assert "database is locked" in str(sqlite_locked(env))
    assert "not a database" in str(sqlite_not_a_database(env))
    assert isinstance(sqlite_unique(env), sqlite3.IntegrityError)
    assert isinstance(asyncio.run(_cancelled()), asyncio.CancelledError)
    assert isinstance(asyncio.run(_async_timeout()), asyncio.TimeoutError)


@pytest.mark.parametrize("exc_type", INTERRUPTS, ids=lambda t: t.__qualname__)
def test_interrupts_are_never_retryable_even_when_a_rule_matches(
    exc_type: type[BaseException],
) -> None:
    exc = exc_type()
    with (
        CATALOG.register("TRANSIENT", type=BaseException),
        CATALOG.register("UNCLASSIFIED", predicate=lambda e: True),
    ):
        assert pr.is_retryable(exc) is False
        assert pr.classify(exc).kind == "permanent"


def test_an_exception_that_is_also_a_keyboard_interrupt_is_not_retryable() -> None:
    class Hybrid(Exception, KeyboardInterrupt):
        pass

    with CATALOG.register("TRANSIENT", type=Exception):
        assert pr.classify(Hybrid()).code == "INTERRUPTED"
        assert pr.is_retryable(Hybrid()) is False


def test_interrupt_with_a_hostile_class_attribute_is_not_retryable() -> None:
    class Sneaky(KeyboardInterrupt):
        @property
        def __class__(self) -> type:  # type: ignore[override]
            raise RuntimeError("no class for you")

    assert pr.is_retryable(Sneaky()) is False


def test_an_os_error_with_a_hostile_errno_is_still_an_os_error() -> None:
    exc = ChildProcessError(1, "")
    exc.errno = Hostile()  # type: ignore[assignment]
    assert pr.classify(exc).code == "OS_ERROR"


def test_classify_rejects_non_exceptions() -> None:
    with pytest.raises(TypeError, match="exception instance"):
        pr.classify(ValueError)  # type: ignore[arg-type]


def test_our_error_with_unknown_code_follows_its_retryable_flag() -> None:
    transient = pr.TransientError("x", code="VENDOR_HICCUP")
    permanent = pr.PermanentError("x", code="VENDOR_REFUSAL")

    assert (pr.classify(transient).kind, pr.classify(transient).code) == (
        "transient",
        "VENDOR_HICCUP",
    )
    assert (pr.exit_code_for(transient), pr.exit_code_for(permanent)) == (29, 41)


def test_retryable_flag_wins_over_the_kind_of_its_code_and_keeps_the_family() -> None:
    exc = pr.TransientError("odd", code="HTTP_NOT_FOUND")
    failure = pr.classify(exc)
    assert (failure.kind, failure.code, failure.retryable) == (
        "transient",
        "HTTP_NOT_FOUND",
        True,
    )
    assert pr.exit_code_for(exc) == exc.exit_code == 29
    assert pr.exit_code_for(pr.PermanentError("odd", code="DB_LOCKED")) == 41


def test_our_retry_after_is_reported_and_sanitised() -> None:
    assert pr.classify(pr.RateLimitedError(retry_after=2.5)).retry_after == 2.5
    assert (
        pr.classify(pr.CircuitOpenError(breaker_name="b", retry_after=-1)).retry_after
        is None
    )
    assert pr.classify(pr.RateLimitedError(retry_after=math.nan)).retry_after is None
    assert pr.classify(pr.RateLimitedError(retry_after=math.inf)).retry_after is None
    assert pr.classify(pr.RateLimitedError(retry_after=10**9)).retry_after == WEEK


def test_url_error_wrapping_a_timeout_is_a_timeout() -> None:
    exc = urllib.error.URLError(TimeoutError("timed out"))
    assert pr.classify(exc).code == "TIMEOUT"


def test_exit_code_for_success_and_clean_exits() -> None:
    assert pr.exit_code_for(None) == 0
    assert pr.exit_code_for(SystemExit(0)) == 0
    assert pr.exit_code_for(SystemExit()) == 0
    assert pr.exit_code_for(SystemExit(2)) == CATALOG["SYSTEM_EXIT"].exit_code
    assert (
        pr.exit_code_for(SystemExit("fatal: no config"))
        == CATALOG["SYSTEM_EXIT"].exit_code
    )


def test_exit_code_for_honours_user_rules_for_our_errors_too() -> None:
    exc = pr.PolicyDeniedError("no")
    assert pr.exit_code_for(exc) == CATALOG["POLICY_DENIED"].exit_code
    with CATALOG.register("APPROVAL_REQUIRED", type=pr.PolicyDeniedError):
        assert pr.classify(exc).code == "APPROVAL_REQUIRED"
        assert (
            pr.exit_code_for(exc)
            == exc.exit_code
            == CATALOG["APPROVAL_REQUIRED"].exit_code
        )


# -- Hypothesis: classify, exit_code_for, audit_event never break ------------------


def _is_interrupt(exc: BaseException) -> bool:
    names = {c.__name__ for c in type(exc).__mro__}
    return (
        not isinstance(exc, Exception)
        or isinstance(exc, (KeyboardInterrupt, GeneratorExit))
        or "CancelledError" in names
    )


@HYPOTHESIS
@given(exc=hostile_exceptions())
def test_classify_never_raises(exc: BaseException) -> None:
    failure = pr.classify(exc)

    assert isinstance(failure, pr.Failure)
    assert failure.kind in ("transient", "permanent")
    assert failure.retryable is (failure.kind == "transient")
    assert isinstance(failure.code, str)
    assert failure.code
    if not isinstance(exc, pr.ReliabilityError):
        assert failure.code in CATALOG
    assert failure.retry_after is None or 0.0 <= failure.retry_after <= WEEK
    assert isinstance(failure.reason, str)
    # The catch-all in classify() is a last line of defence; it is not needed.
    assert "classification failed" not in failure.reason
    if _is_interrupt(exc):
        assert failure.retryable is False
    assert pr.is_retryable(exc) is failure.retryable


@HYPOTHESIS
@given(exc=st.one_of(st.none(), hostile_exceptions()))
def test_exit_code_is_zero_or_in_its_family(exc: BaseException | None) -> None:
    code = pr.exit_code_for(exc)

    assert code == 0 or 10 <= code <= 49
    if code == 0:
        assert exc is None or isinstance(exc, SystemExit)
    else:
        assert exc is not None
        transient = pr.classify(exc).kind == "transient"
        assert transient == (20 <= code <= 29)
    if isinstance(exc, pr.ReliabilityError):
        assert exc.exit_code == code


@HYPOTHESIS
@given(data=st.data(), exc=hostile_exceptions())
def test_audit_event_is_json_and_never_leaks_a_secret(
    data: st.DataObject, exc: BaseException
) -> None:
    sentinel = SENTINEL_PREFIX + data.draw(st.uuids()).hex
    kwargs = data.draw(contexts_with_secrets(sentinel))
    own = data.draw(contexts_with_secrets(sentinel))
    if isinstance(exc, pr.ReliabilityError):
        with contextlib.suppress(AttributeError, TypeError):  # hostile subclasses
            object.__setattr__(exc, "context", own)

    record = pr.audit_event(exc, **kwargs)

    text = json.dumps(record, allow_nan=False)
    assert sentinel not in text
    assert json.loads(text)["code"] == pr.classify(exc).code
    assert record["exit_code"] == pr.exit_code_for(exc)


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_audit_event_redacts_every_secret_key_of_our_context(
    data: st.DataObject,
) -> None:
    sentinel = SENTINEL_PREFIX + data.draw(st.uuids()).hex
    exc = pr.CredentialExpiredError(
        "token expired", context=data.draw(contexts_with_secrets(sentinel))
    )
    with pr.trace(api_token=sentinel, run_id="r-1"):
        record = pr.audit_event(exc, **data.draw(contexts_with_secrets(sentinel)))

    text = json.dumps(record, allow_nan=False)
    assert sentinel not in text
    assert record["run_id"] == "r-1"
    assert record["code"] == "CREDENTIAL_EXPIRED"


def test_audit_event_shape() -> None:
    try:
        try:
            raise ConnectionResetError("peer token=abc123 reset")
        except ConnectionResetError as inner:
            raise pr.CircuitOpenError(
                breaker_name="github", retry_after=3.0, context={"tool": "search"}
            ) from inner
    except pr.CircuitOpenError as exc:
        with pr.trace(run_id="r-7") as span:
            record = pr.audit_event(exc, password="hunter2", nested={"Cookie": "c=1"})

    expected = {
        "event": "paios_reliability.error",
        "error_type": "paios_reliability.CircuitOpenError",
        "message": "circuit breaker 'github' is open",
        "code": "CIRCUIT_OPEN",
        "kind": "transient",
        "retryable": True,
        "retry_after": 3.0,
        "exit_code": CATALOG["CIRCUIT_OPEN"].exit_code,
        "recovery": "retry_after",
        "context": {
            "tool": "search",
            "password": "[REDACTED]",
            "nested": {"Cookie": "[REDACTED]"},
        },
        "causes": [
            {
                "error_type": "ConnectionResetError",
                "message": "peer token=[REDACTED] reset",
            }
        ],
        "trace_id": span["trace_id"],
        "span_id": span["span_id"],
        "run_id": "r-7",
    }
    assert expected == {k: record[k] for k in expected}
    assert json.loads(json.dumps(record)) == record


def test_trace_keys_never_replace_the_classification() -> None:
    with pr.trace(code="from-trace", kind="nope"):
        record = pr.audit_event(KeyError("k"))
    assert (record["code"], record["kind"]) == ("PROGRAMMING_ERROR", "permanent")


def test_audit_event_accepts_any_context_key_even_exc() -> None:
    record = pr.audit_event(ValueError("v"), exc="shadow", **{"x-api-key": "k"})
    assert record["context"] == {"exc": "shadow", "x-api-key": "[REDACTED]"}


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("token", True), ("access_token", True), ("refreshToken", True), ("X-API-Key", True),
        ("api_key", True), ("APIKEY", True), ("xapi_key", True), ("Authorization", True),
        ("set-cookie", True), ("db_password", True), ("client_secret", True),
        ("SECRETKEY", True), ("githubToken", True), ("access_tokens", True),
        ("max_tokens", False), ("input_tokens", False), ("tokenizer", False),
        ("name", False), ("keyboard", False), ("status", False),
    ],
)  # fmt: skip
def test_secret_keys(key: str, secret: bool) -> None:
    assert json_safe({key: "v"}) == {key: "[REDACTED]" if secret else "v"}


def test_redact_text_masks_inline_secrets() -> None:
    text = 'token=abc123 Authorization: Bearer eyJhbGciOi password: "p w" ok=1'
    assert "eyJhbGciOi" not in redact_text("Authorization: token eyJhbGciOi")
    assert redact_text("curl -H 'Bearer eyJhbGciOi'") == "curl -H 'Bearer [REDACTED]'"
    assert redact_text(text) == (
        "token=[REDACTED] Authorization: [REDACTED] password: [REDACTED] ok=1"
    )


def test_json_safe_handles_what_json_cannot() -> None:
    class Secretish:
        def get_secret_value(self) -> str:
            return "s3cr3t"

    value = {
        "nan": math.nan,
        "bytes": b"abc",
        "when": dt.datetime(2024, 1, 2, 3, 4, 5),
        "set": {1},
        "secret_obj": Secretish(),
        1: "int key",
        "deep": [[[[[[[[[[["bottom"]]]]]]]]]]],
    }
    out = json_safe(value)
    json.dumps(out, allow_nan=False)
    assert out["nan"] == "nan"
    assert out["bytes"] == "<3 bytes>"
    assert out["when"] == "2024-01-02T03:04:05"
    assert out["secret_obj"] == "[REDACTED]"
    assert out["1"] == "int key"
    assert "<nested too deep>" in json.dumps(out["deep"])


# -- Hypothesis: parse_retry_after --------------------------------------------------


@HYPOTHESIS
@given(value=retry_after_values)
def test_parse_retry_after_never_raises(value: object) -> None:
    result = parse_retry_after(value)
    assert result is None or 0.0 <= result <= WEEK


@HYPOTHESIS
@given(
    value=st.one_of(
        st.decimals(), st.fractions(), st.complex_numbers(), st.tuples(st.integers())
    )
)
def test_parse_retry_after_odd_types(value: object) -> None:
    result = parse_retry_after(value)
    assert result is None or 0.0 <= result <= WEEK


@HYPOTHESIS
@given(
    seconds=st.integers(min_value=0, max_value=10**12),
    form=st.sampled_from(["int", "str", "bytes", "padded"]),
)
def test_parse_retry_after_delay_seconds(seconds: int, form: str) -> None:
    value: object = {
        "int": seconds,
        "str": str(seconds),
        "bytes": str(seconds).encode(),
        "padded": f"  {seconds}\t",
    }[form]
    assert parse_retry_after(value) == min(float(seconds), WEEK)


@HYPOTHESIS
@given(
    when=st.datetimes(min_value=dt.datetime(1970, 1, 1), max_value=dt.datetime(2200, 1, 1), timezones=st.just(dt.timezone.utc)),
    now=st.datetimes(min_value=dt.datetime(1970, 1, 1), max_value=dt.datetime(2200, 1, 1), timezones=st.just(dt.timezone.utc)),
)  # fmt: skip
def test_parse_retry_after_http_dates(when: dt.datetime, now: dt.datetime) -> None:
    header = email.utils.format_datetime(when, usegmt=True)
    expected = min(max(0.0, (when.replace(microsecond=0) - now).total_seconds()), WEEK)
    assert parse_retry_after(header, now=now) == expected
    assert parse_retry_after(header, now=now.replace(tzinfo=None)) == expected


def test_parse_retry_after_rejects_nonsense() -> None:
    for value in [
        "",
        "  ",
        "soon",
        "-5",
        "nan",
        "inf",
        "1e400",
        b"\xff\xfe",
        None,
        True,
        -1,
        math.nan,
        10**400,
    ]:
        assert parse_retry_after(value) is None, value


# -- Hypothesis: status codes and errnos -----------------------------------------------


@HYPOTHESIS
@given(
    status=st.integers(min_value=400, max_value=599), retry_after=st.integers(0, 10**6)
)
def test_any_http_error_status(status: int, retry_after: int) -> None:
    exc = httpx_status(status, {"Retry-After": str(retry_after)})

    failure = pr.classify(exc)

    assert failure.retryable is (status in TRANSIENT_STATUSES)
    assert failure.retryable is not (status in PERMANENT_STATUSES)
    assert failure.code.startswith("HTTP_")
    assert failure.retry_after == min(float(retry_after), WEEK)
    duck = pr.classify(StatusError(status))
    assert (duck.kind, duck.code) == (failure.kind, failure.code)


@HYPOTHESIS
@given(status=st.one_of(st.integers(), st.text(max_size=5), st.none(), st.booleans()))
def test_non_error_statuses_are_not_http_failures(status: object) -> None:
    exc = StatusError(0)
    exc.status_code = status  # type: ignore[assignment]
    failure = pr.classify(exc)
    is_error_status = (
        isinstance(status, int)
        and not isinstance(status, bool)
        and 400 <= status <= 599
    )
    assert failure.code.startswith("HTTP_") is is_error_status


ERRNO_TABLE = {
    errno.ETIMEDOUT: "CONNECTION_TIMEOUT", errno.ECONNRESET: "CONNECTION_RESET",
    errno.ECONNREFUSED: "CONNECTION_REFUSED", errno.EPIPE: "BROKEN_PIPE",
    errno.EHOSTUNREACH: "HOST_UNREACHABLE", errno.ENETUNREACH: "NETWORK_UNREACHABLE",
    errno.EAGAIN: "TRY_AGAIN", errno.EBUSY: "RESOURCE_BUSY",
    errno.EACCES: "PERMISSION_DENIED", errno.EPERM: "OPERATION_NOT_PERMITTED",
    errno.ENOENT: "FILE_NOT_FOUND", errno.EISDIR: "IS_A_DIRECTORY", errno.ENOSPC: "DISK_FULL",
}  # fmt: skip
TRANSIENT_ERRNOS = {
    errno.ETIMEDOUT, errno.ECONNRESET, errno.ECONNREFUSED, errno.EPIPE,
    errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EAGAIN, errno.EBUSY,
}  # fmt: skip


@HYPOTHESIS
@given(
    number=st.one_of(st.sampled_from(ERRNOS), st.integers()),
    message=st.text(max_size=20),
)
def test_any_errno(number: int, message: str) -> None:
    failure = pr.classify(OSError(number, message))

    assert failure.code in CATALOG
    if number in ERRNO_TABLE:
        assert failure.code == ERRNO_TABLE[number]
        assert failure.retryable is (number in TRANSIENT_ERRNOS)


# -- issue #14 item 4: the errors agents actually see -----------------------------------
#
# Seen before: Exception("Request failed with status 404"), "ECONNRESET: socket hang
# up" and the SDK's JSON-RPC -32601/-32602 were UNCLASSIFIED (transient) and retried 5
# times. The demand is zero false-positive retries: every permanent-looking error in
# every shape below is asserted not retryable, and retry() calls it exactly once.

PERMANENT_HTTP = (400, 401, 403, 404, 422)
TRANSIENT_HTTP = (429, 500, 502, 503, 504)


def _retried_calls(exc: BaseException) -> int:
    """How many times retry(attempts=5) calls a function that always raises ``exc``."""
    calls = 0

    @pr.retry(attempts=5, deadline=None, wait_initial=0.0)
    def always_fails() -> None:
        nonlocal calls
        calls += 1
        raise exc

    # Testing mode: waits (even a server's Retry-After) are skipped, attempts are not.
    with set_testing(True), pytest.raises(type(exc)) as raised:
        always_fails()
    assert raised.value is exc  # the original, never a wrapper
    return calls


def http_code(status: int) -> str:
    return {
        400: "HTTP_BAD_REQUEST",
        401: "HTTP_UNAUTHORIZED",
        403: "HTTP_FORBIDDEN",
        404: "HTTP_NOT_FOUND",
        422: "HTTP_UNPROCESSABLE",
        429: "HTTP_TOO_MANY_REQUESTS",
        500: "HTTP_INTERNAL_SERVER_ERROR",
        502: "HTTP_BAD_GATEWAY",
        503: "HTTP_SERVICE_UNAVAILABLE",
        504: "HTTP_GATEWAY_TIMEOUT",
    }[status]


ZERO_RETRY_CASES: list[tuple[str, Callable[[], BaseException], str]] = [
    *[
        (f"{shape}-{status}", lambda shape=shape, status=status: sdk_shapes.HTTP_SHAPES[shape](status), http_code(status))
        for shape in sdk_shapes.HTTP_SHAPES
        for status in PERMANENT_HTTP
    ],
    *[
        (f"google-grpc-{name}", lambda name=name: sdk_shapes.google_grpc_only(sdk_shapes.StatusCode[name]), code)
        for name, code in [("INVALID_ARGUMENT", "HTTP_BAD_REQUEST"), ("NOT_FOUND", "HTTP_NOT_FOUND"), ("PERMISSION_DENIED", "HTTP_FORBIDDEN"), ("UNAUTHENTICATED", "HTTP_UNAUTHORIZED"), ("FAILED_PRECONDITION", "HTTP_BAD_REQUEST")]
    ],
    *[
        (f"jsonrpc-{shape}-{code}", lambda shape=shape, code=code: sdk_shapes.JSONRPC_SHAPES[shape](code), name)
        for shape in sdk_shapes.JSONRPC_SHAPES
        for code, name in [(-32700, "JSONRPC_PARSE_ERROR"), (-32600, "JSONRPC_INVALID_REQUEST"), (-32601, "JSONRPC_METHOD_NOT_FOUND"), (-32602, "JSONRPC_INVALID_PARAMS")]
    ],
    ("text-invalid-params", lambda: Exception("Invalid params"), "USAGE_ERROR"),
    ("text-invalid-arguments", lambda: RuntimeError("invalid arguments: 'limit' must be an integer"), "USAGE_ERROR"),
    ("text-invalid-params-mentions-timeout", lambda: Exception("invalid params: timeout must be > 0"), "USAGE_ERROR"),
    ("text-not-found", lambda: Exception("not found"), "NOT_FOUND"),
    ("text-tool-not-found", lambda: RuntimeError("Tool 'serach' not found"), "NOT_FOUND"),
    ("text-does-not-exist", lambda: Exception("collection 'notes' does not exist"), "NOT_FOUND"),
    ("text-method-not-found", lambda: Exception("Method not found"), "JSONRPC_METHOD_NOT_FOUND"),
    ("text-unauthorized", lambda: Exception("Unauthorized"), "CREDENTIAL_ERROR"),
    ("text-invalid-api-key", lambda: Exception("Incorrect API key provided"), "CREDENTIAL_ERROR"),
    ("text-forbidden", lambda: Exception("Forbidden"), "HTTP_FORBIDDEN"),
    ("text-permission-denied", lambda: Exception("permission denied for table notes"), "PERMISSION_DENIED"),
    ("text-bad-request", lambda: Exception("bad request: missing field"), "HTTP_BAD_REQUEST"),
    ("text-expected-200-got-404", lambda: Exception("expected status 200, got status 404"), "HTTP_NOT_FOUND"),
    ("text-requests-str", lambda: Exception("404 Client Error: Not Found for url: https://x.test/a"), "HTTP_NOT_FOUND"),
    ("text-openai-str", lambda: Exception("Error code: 400 - {'error': {'message': 'bad'}}"), "HTTP_BAD_REQUEST"),
    ("mcp-tool-error", lambda: _mcp_tool_error("no such note"), "TOOL_ERROR"),
]  # fmt: skip


def _mcp_tool_error(text: str) -> BaseException:
    from mcp.server.mcpserver.exceptions import ToolError

    return ToolError(text)


@pytest.mark.parametrize(
    ("make", "code"),
    [pytest.param(make, code, id=ident) for ident, make, code in ZERO_RETRY_CASES],
)
def test_issue14_permanent_errors_are_never_retried(
    make: Callable[[], BaseException], code: str
) -> None:
    exc = make()

    failure = pr.classify(exc)

    assert (failure.code, failure.kind, failure.retryable) == (code, "permanent", False)
    assert pr.is_retryable(exc) is False
    assert _retried_calls(exc) == 1


def test_issue14_the_zero_retry_table_covers_every_shape() -> None:
    ids = [ident for ident, _, _ in ZERO_RETRY_CASES]
    assert len(ids) == len(set(ids))
    for shape in sdk_shapes.HTTP_SHAPES:
        for status in PERMANENT_HTTP:
            assert f"{shape}-{status}" in ids
    assert {"google", "openai", "anthropic", "requests", "httpx", "aiohttp"} <= set(
        sdk_shapes.HTTP_SHAPES
    )


@pytest.mark.parametrize(
    "shape", ["openai", "anthropic", "google", "requests", "httpx", "aiohttp", "urllib"]
)
@pytest.mark.parametrize("status", PERMANENT_HTTP + TRANSIENT_HTTP)
def test_issue14_typed_shapes_classify_by_status_not_by_text(
    shape: str, status: int
) -> None:
    exc = sdk_shapes.HTTP_SHAPES[shape](status)

    failure = pr.classify(exc)

    assert failure.code == http_code(status)
    assert failure.reason.startswith("HTTP ")  # the typed rule, not the text fallback
    assert failure.retryable is (status in TRANSIENT_HTTP)
    assert pr.exit_code_for(exc) == CATALOG[failure.code].exit_code


def test_issue14_sdk_shapes_are_what_the_sdks_raise() -> None:
    # The fakes are worth something only if they have the SDKs' names and fields.
    exc = sdk_shapes.openai_status(429)
    assert type(exc).__name__ == "RateLimitError"
    assert [c.__name__ for c in type(exc).__mro__[1:3]] == [
        "APIStatusError",
        "APIError",
    ]
    assert isinstance(exc.response, httpx.Response)  # type: ignore[attr-defined]
    assert exc.status_code == 429  # type: ignore[attr-defined]
    assert exc.code is None  # type: ignore[attr-defined]  # a string field, never an HTTP status
    assert type(sdk_shapes.anthropic_status(529)).__name__ == "OverloadedError"
    google = sdk_shapes.google_error(503)
    assert type(google).__name__ == "ServiceUnavailable"
    assert (google.code, google.grpc_status_code) == (
        503,
        sdk_shapes.StatusCode.UNAVAILABLE,
    )  # type: ignore[attr-defined]
    assert str(google) == "503 the API said no"
    assert isinstance(sdk_shapes.requests_status(404), requests.HTTPError)
    assert isinstance(sdk_shapes.aiohttp_status(404), aiohttp.ClientResponseError)
    assert isinstance(sdk_shapes.urllib_status(404), urllib.error.HTTPError)
    if sdk_shapes.MCPError is not None:  # not beside the lowest versions
        mcp2 = sdk_shapes.mcp2_error(-32601)
        assert (type(mcp2).__module__, mcp2.error.code) == (
            "mcp.shared.exceptions",
            -32601,
        )  # type: ignore[attr-defined]


TRANSIENT_TEXT_CASES = [
    ("ECONNRESET: socket hang up", "CONNECTION_RESET"),
    ("read ECONNRESET", "CONNECTION_RESET"),
    ("socket hang up", "CONNECTION_RESET"),
    ("connect ECONNREFUSED 127.0.0.1:443", "CONNECTION_REFUSED"),
    ("connect ETIMEDOUT 10.0.0.1:443", "CONNECTION_TIMEOUT"),
    ("write EPIPE", "BROKEN_PIPE"),
    ("getaddrinfo ENOTFOUND api.example.test", "DNS_FAILURE"),
    ("Request failed with status 503", "HTTP_SERVICE_UNAVAILABLE"),
    ("HTTP 502", "HTTP_BAD_GATEWAY"),
    ("429 Too Many Requests", "HTTP_TOO_MANY_REQUESTS"),
    ("Error code: 529 - {'type': 'error', 'error': {'type': 'overloaded_error'}}", "HTTP_SERVER_ERROR"),
    ("rate limit exceeded, slow down", "RATE_LIMITED"),
    ("{'type': 'rate_limit_error'}", "RATE_LIMITED"),
    ("Overloaded", "SERVICE_UNAVAILABLE"),
    ("service unavailable", "SERVICE_UNAVAILABLE"),
    ("upstream said: Bad Gateway", "HTTP_BAD_GATEWAY"),
    ("the request timed out", "TIMEOUT"),
    ("MCP error -32603: Internal error", "JSONRPC_INTERNAL_ERROR"),
    ("MCP error -32001: Request timed out", "TIMEOUT"),
    ("Tool 'x' not found after socket hang up", "CONNECTION_RESET"),  # specific beats generic
    ("host not found", "DNS_FAILURE"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "code"), TRANSIENT_TEXT_CASES)
@pytest.mark.parametrize("cls", [Exception, RuntimeError, OSError])
def test_issue14_text_only_errors(text: str, code: str, cls: type[Exception]) -> None:
    exc = cls(text)

    failure = pr.classify(exc)

    assert (failure.code, failure.retryable) == (code, True)
    assert failure.reason.startswith("message says")
    assert text not in failure.reason or len(text) < 20  # only the matched words


@pytest.mark.parametrize("shape", sorted(sdk_shapes.HEADER_SHAPES))
@pytest.mark.parametrize("status", TRANSIENT_HTTP)
@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"Retry-After": "7"}, 7.0),
        ({"retry-after": "120"}, 120.0),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"Retry-After-Ms": "250", "Retry-After": "9"}, 0.25),  # ms is more precise
        ({"retry-after-ms": "soon", "Retry-After": "9"}, 9.0),  # garbage ms ignored
        ({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0),  # a date in the past
    ],
)
def test_issue14_transient_shapes_are_retryable_with_their_retry_after(
    shape: str, status: int, headers: dict[str, str], expected: float | None
) -> None:
    exc = sdk_shapes.HEADER_SHAPES[shape](status, headers)

    failure = pr.classify(exc)

    assert (failure.code, failure.retryable) == (http_code(status), True)
    assert failure.retry_after == expected


@pytest.mark.parametrize("shape", sorted(sdk_shapes.HEADER_SHAPES))
def test_issue14_retry_after_http_date_in_the_future(shape: str) -> None:
    exc = sdk_shapes.HEADER_SHAPES[shape](503, {"Retry-After": http_date(300)})
    retry_after = pr.classify(exc).retry_after
    assert retry_after is not None
    assert 200 <= retry_after <= 300


@pytest.mark.parametrize(
    "shape", ["openai", "anthropic", "httpx", "requests", "aiohttp", "urllib"]
)
@pytest.mark.parametrize(
    ("status", "header", "retryable"),
    [
        (409, "true", True), (400, "True", True), (404, " true ", True),
        (503, "false", False), (429, "FALSE", False), (500, "false", False),
        (503, "maybe", True), (404, "maybe", False),  # not a verdict: the status decides
        (503, "", True),
    ],
)  # fmt: skip
def test_issue14_x_should_retry_overrides_the_status_rule(
    shape: str, status: int, header: str, retryable: bool
) -> None:
    exc = sdk_shapes.HEADER_SHAPES[shape](
        status, {"X-Should-Retry": header, "Retry-After": "3"}
    )

    failure = pr.classify(exc)

    code = {409: "HTTP_CONFLICT"}.get(status) or http_code(status)
    assert (failure.code, failure.retryable, failure.retry_after) == (
        code,
        retryable,
        3.0,
    )
    assert failure.kind == ("transient" if retryable else "permanent")
    assert (20 <= pr.exit_code_for(exc) <= 29) is retryable
    assert _retried_calls(exc) == (1 if not retryable else 5)


def test_issue14_x_should_retry_as_bytes_and_in_a_plain_dict() -> None:
    # An unknown client: a plain dict, any key case, a bytes value.
    assert pr.is_retryable(StatusError(409, {"x-should-retry": b"true"})) is True  # type: ignore[dict-item]
    assert pr.is_retryable(StatusError(503, {"X-SHOULD-RETRY": "false"})) is False
    assert pr.is_retryable(StatusError(503, {"x-Should-Retry": "false"})) is False
    assert pr.is_retryable(StatusError(503, {"x-should-retry": Hostile()})) is True  # type: ignore[dict-item]


@pytest.mark.parametrize(
    ("code", "expected"),
    [(-32603, "JSONRPC_INTERNAL_ERROR"), (-32000, "CONNECTION_CLOSED"), (-32001, "TIMEOUT"),
     (-32050, "JSONRPC_SERVER_ERROR"), (-32099, "JSONRPC_SERVER_ERROR"), (-32768, "JSONRPC_SERVER_ERROR")],
)  # fmt: skip
@pytest.mark.parametrize("shape", sorted(sdk_shapes.JSONRPC_SHAPES))
def test_issue14_transient_jsonrpc_codes(shape: str, code: int, expected: str) -> None:
    exc = sdk_shapes.JSONRPC_SHAPES[shape](code)
    failure = pr.classify(exc)
    assert (failure.code, failure.retryable) == (expected, True)


@pytest.mark.parametrize(
    ("code", "expected"),
    [(-32002, "NOT_FOUND"), (-32020, "MCP_PROTOCOL_MISMATCH"), (-32021, "MCP_PROTOCOL_MISMATCH"),
     (-32022, "MCP_PROTOCOL_MISMATCH"), (-32042, "USER_ACTION_REQUIRED")],
)  # fmt: skip
def test_issue14_mcp_codes_that_need_someone_else_are_permanent(
    code: int, expected: str
) -> None:
    for exc in (sdk_shapes.mcp2_error(code), sdk_shapes.mcp1_error(code)):
        assert (pr.classify(exc).code, pr.is_retryable(exc)) == (expected, False)


def test_issue14_application_codes_only_on_jsonrpc_classes() -> None:
    # Inside the reserved range the number is JSON-RPC's whoever carries it;
    # outside it only a class named like a JSON-RPC error says so.
    class Odd(Exception):
        code = -32601

    class Exit(Exception):
        code = 2

    assert pr.classify(Odd()).code == "JSONRPC_METHOD_NOT_FOUND"
    assert pr.classify(Exit()).code == "UNCLASSIFIED"
    if sdk_shapes.MCPError is not None:  # not beside the lowest versions
        assert pr.classify(sdk_shapes.mcp2_error(42)).code == "JSONRPC_SERVER_ERROR"
    assert pr.classify(sdk_shapes.mcp1_error(-1)).code == "JSONRPC_SERVER_ERROR"
    assert pr.classify(sdk_shapes.JSONRPCError({"code": "x"})).code == "UNCLASSIFIED"


def test_issue14_sdk_transport_errors() -> None:
    for sdk in (sdk_shapes.OPENAI, sdk_shapes.ANTHROPIC):
        assert (
            pr.classify(sdk_shapes.sdk_connection_error(sdk)).code == "CONNECTION_ERROR"
        )
        assert pr.classify(sdk_shapes.sdk_timeout_error(sdk)).code == "TIMEOUT"


def test_issue14_typed_rules_beat_the_text() -> None:
    assert pr.classify(ValueError("status 503")).code == "PROGRAMMING_ERROR"
    assert (
        pr.classify(OSError(errno.ECONNREFUSED, "not found")).code
        == "CONNECTION_REFUSED"
    )
    assert pr.classify(sdk_shapes.httpx_status(404)).code == "HTTP_NOT_FOUND"
    reset = Exception("ECONNRESET")
    reset.status_code = 400  # type: ignore[attr-defined]
    assert pr.classify(reset).code == "HTTP_BAD_REQUEST"
    assert pr.classify(pr.TransientError("not found")).code == "TRANSIENT"


def test_issue14_user_patterns_win_over_every_builtin() -> None:
    text = "ECONNRESET: socket hang up (status 404)"
    assert pr.classify(Exception(text)).code == "HTTP_NOT_FOUND"
    with CATALOG.register(
        "VENDOR_HICCUP",
        message=r"(?i)\bsocket hang up\b",
        kind="transient",
        summary="The vendor drops connections under load.",
    ):
        assert pr.classify(Exception(text)).code == "VENDOR_HICCUP"
        # A message rule beats typed rules too (documented): type= narrows it.
        assert pr.classify(ConnectionResetError(text)).code == "VENDOR_HICCUP"
    with CATALOG.register(
        "VENDOR_HICCUP_2",
        type=RuntimeError,
        message="hang up",
        kind="transient",
        summary="s",
    ):
        assert pr.classify(RuntimeError(text)).code == "VENDOR_HICCUP_2"
        assert pr.classify(Exception(text)).code == "HTTP_NOT_FOUND"
    assert pr.classify(Exception(text)).code == "HTTP_NOT_FOUND"


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("422 Unprocessable Entity", "HTTP_UNPROCESSABLE"),
        ("422 Unprocessable Content", "HTTP_UNPROCESSABLE"),
        ("413 Request Entity Too Large", "HTTP_CLIENT_ERROR"),
        ("413 Content Too Large", "HTTP_CLIENT_ERROR"),
        ("416 Requested Range Not Satisfiable", "HTTP_CLIENT_ERROR"),
        ("upstream: 502 bad gateway", "HTTP_BAD_GATEWAY"),
        ("HTTP/1.1 404 Not Found", "HTTP_NOT_FOUND"),
    ],
)
def test_issue14_reason_phrases_old_and_new(text: str, code: str) -> None:
    # Python 3.13 knows only RFC 9110's phrases; servers still send the old ones.
    assert pr.classify(RuntimeError(text)).code == code


def test_issue14_a_text_that_matches_nothing_stays_unclassified() -> None:
    for text in [
        "boom",
        "",
        "backend returned status 200",
        "the notes are unfounded",
        "timeouts=3 configured",
    ]:
        assert pr.classify(RuntimeError(text)).code == "UNCLASSIFIED", text


def test_issue14_text_matching_is_bounded() -> None:
    exc = RuntimeError("x" * 1_000_000 + " socket hang up")
    assert (
        pr.classify(exc).code == "UNCLASSIFIED"
    )  # only the first 2000 characters count
    assert (
        pr.classify(RuntimeError("socket hang up " + "x" * 1_000_000)).code
        == "CONNECTION_RESET"
    )


@HYPOTHESIS
@given(
    millis=st.one_of(
        retry_after_values,
        st.floats(min_value=0, max_value=1e15).map(repr),
        st.integers(min_value=0, max_value=10**12),
    ),
    verdict=st.one_of(
        st.none(), st.text(max_size=8), st.sampled_from(["true", "FALSE", b"true"])
    ),
    status=st.sampled_from([400, 404, 409, 429, 500, 503]),
)
def test_issue14_any_retry_after_ms_and_x_should_retry(
    millis: object, verdict: object, status: int
) -> None:
    headers = {"retry-after-ms": millis, "x-should-retry": verdict}
    failure = pr.classify(StatusError(status, headers))  # type: ignore[arg-type]

    assert failure.retry_after is None or 0.0 <= failure.retry_after <= WEEK
    number = None
    with contextlib.suppress(Exception):
        if isinstance(millis, (int, str)) and not isinstance(millis, bool):
            number = float(millis)
    if number is not None and math.isfinite(number) and number >= 0:
        assert failure.retry_after == min(number / 1000.0, WEEK)
    if isinstance(verdict, bytes):
        verdict = verdict.decode()
    if isinstance(verdict, str) and verdict.strip().lower() in ("true", "false"):
        assert failure.retryable is (verdict.strip().lower() == "true")
    else:
        assert failure.retryable is (status in TRANSIENT_STATUSES)


_NEUTRAL = st.text(alphabet=" .,;:!?()[]{}'\"\n\t-/", max_size=12)
_TEXT_EXAMPLES = [
    ("ECONNRESET", "CONNECTION_RESET"), ("econnrefused", "CONNECTION_REFUSED"),
    ("ETIMEDOUT", "CONNECTION_TIMEOUT"), ("EPIPE", "BROKEN_PIPE"),
    ("Socket Hang Up", "CONNECTION_RESET"), ("status 404", "HTTP_NOT_FOUND"),
    ("status code: 422", "HTTP_UNPROCESSABLE"), ("429 Too Many Requests", "HTTP_TOO_MANY_REQUESTS"),
    ("RATE LIMIT", "RATE_LIMITED"), ("overloaded", "SERVICE_UNAVAILABLE"),
    ("Service Unavailable", "SERVICE_UNAVAILABLE"), ("invalid params", "USAGE_ERROR"),
    ("not found", "NOT_FOUND"), ("MCP error -32601", "JSONRPC_METHOD_NOT_FOUND"),
    ("code: -32602", "JSONRPC_INVALID_PARAMS"),
]  # fmt: skip


@HYPOTHESIS
@given(
    text=st.text(max_size=300), cls=st.sampled_from([Exception, RuntimeError, OSError])
)
def test_issue14_any_text_classifies_without_error(
    text: str, cls: type[Exception]
) -> None:
    failure = pr.classify(cls(text))
    assert failure.code in CATALOG
    assert failure.retryable is (failure.kind == "transient")
    if len(text) > 60:  # the reason quotes at most the few words a pattern matched
        assert text not in failure.reason


@HYPOTHESIS
@given(
    before=_NEUTRAL,
    after=_NEUTRAL,
    example=st.sampled_from(_TEXT_EXAMPLES),
)
def test_issue14_a_pattern_is_found_wherever_it_stands(
    before: str, after: str, example: tuple[str, str]
) -> None:
    text, code = example
    assert pr.classify(Exception(f"{before} {text} {after}")).code == code


@HYPOTHESIS
@given(example=st.sampled_from(_TEXT_EXAMPLES), around=_NEUTRAL)
def test_issue14_a_user_pattern_always_wins(
    example: tuple[str, str], around: str
) -> None:
    text, code = example
    exc = Exception(f"{around}{text}{around}")
    with CATALOG.register(
        "USER_TEXT", message=re.escape(text), kind="permanent", summary="user"
    ):
        assert pr.classify(exc).code == "USER_TEXT"
    assert pr.classify(exc).code == code


@pytest.mark.parametrize(
    "make",
    [
        lambda: Exception("Request failed with status 404"),
        lambda: Exception("ECONNRESET: socket hang up"),
        lambda: sdk_shapes.MCPError(-32601, "Method not found"),
        lambda: sdk_shapes.MCPError(-32602, "Invalid params"),
    ],
    ids=["status-404-text", "econnreset-text", "mcp-32601", "mcp-32602"],
)
def test_issue14_the_errors_seen_in_the_issue(
    make: Callable[[], BaseException],
) -> None:
    # Each of these was UNCLASSIFIED (transient) and retried 5 times.
    exc = make()
    expected = {
        "Request failed with status 404": ("HTTP_NOT_FOUND", 1),
        "ECONNRESET: socket hang up": ("CONNECTION_RESET", 5),
        "Method not found": ("JSONRPC_METHOD_NOT_FOUND", 1),
        "Invalid params": ("JSONRPC_INVALID_PARAMS", 1),
    }[exc.error.message if type(exc).__name__ == "MCPError" else str(exc)]  # type: ignore[attr-defined]
    assert (pr.classify(exc).code, _retried_calls(exc)) == expected
