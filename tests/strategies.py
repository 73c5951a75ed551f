"""Shared Hypothesis strategies: hostile exceptions, secrets, Retry-After values.

The exception strategy builds *real* instances of dynamically created
subclasses of many exception types (builtins, stdlib, HTTP clients, ours), with
random messages and random attributes under the names the classifier looks at
(``status``, ``response``, ``errno``, ``headers``...) -- including properties
that raise and values of the wrong type.
"""

from __future__ import annotations

import asyncio
import builtins
import concurrent.futures
import contextlib
import datetime as dt
import email.utils
import errno
import json
import socket
import sqlite3
import ssl
import subprocess
import urllib.error
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import httpx
import requests
from hypothesis import strategies as st

import paios_reliability as pr

# The SDK cannot be installed beside the lowest dependency versions (the
# tests_lowest session); there the SDK's exceptions are left out.
try:
    from mcp.server.mcpserver.exceptions import ToolError
    from mcp.shared.exceptions import MCPError
except ImportError:
    SDK_EXCEPTIONS: list[type[BaseException]] = []
    SDK_ERROR_OBJECTS: list[st.SearchStrategy[Any]] = []
else:
    SDK_EXCEPTIONS = [MCPError, ToolError]
    SDK_ERROR_OBJECTS = [
        st.builds(MCPError, st.integers(-32800, 100), st.text(max_size=5)).map(
            lambda e: e.error
        )
    ]

# -- exception types -------------------------------------------------------------

_GROUPS = {"BaseExceptionGroup", "ExceptionGroup"}
BUILTIN_EXCEPTIONS: list[type[BaseException]] = sorted(
    (
        value
        for name, value in vars(builtins).items()
        if isinstance(value, type)
        and issubclass(value, BaseException)
        and name not in _GROUPS
    ),
    key=lambda cls: cls.__name__,
)
OUR_EXCEPTIONS: list[type[pr.ReliabilityError]] = [
    getattr(pr, name)
    for name in sorted(pr.__all__)
    if isinstance(getattr(pr, name), type)
    and issubclass(getattr(pr, name), pr.ReliabilityError)
]
LIBRARY_EXCEPTIONS: list[type[BaseException]] = [
    asyncio.CancelledError,
    asyncio.TimeoutError,
    asyncio.InvalidStateError,
    concurrent.futures.CancelledError,
    concurrent.futures.TimeoutError,
    socket.gaierror,
    socket.herror,
    sqlite3.Error,
    sqlite3.OperationalError,
    sqlite3.DatabaseError,
    sqlite3.IntegrityError,
    sqlite3.ProgrammingError,
    json.JSONDecodeError,
    urllib.error.URLError,
    ssl.SSLError,
    subprocess.CalledProcessError,
    subprocess.TimeoutExpired,
    httpx.HTTPError,
    httpx.HTTPStatusError,
    httpx.ConnectError,
    httpx.ReadTimeout,
    httpx.RemoteProtocolError,
    requests.HTTPError,
    requests.ConnectionError,
    requests.Timeout,
    aiohttp.ClientError,
    aiohttp.ClientResponseError,
    aiohttp.ServerDisconnectedError,
    *SDK_EXCEPTIONS,
]
EXCEPTION_TYPES: list[type[BaseException]] = [
    *BUILTIN_EXCEPTIONS,
    *OUR_EXCEPTIONS,
    *LIBRARY_EXCEPTIONS,
]

INTERRUPTS: tuple[type[BaseException], ...] = (
    KeyboardInterrupt,
    SystemExit,
    GeneratorExit,
    asyncio.CancelledError,
    concurrent.futures.CancelledError,
)

# Attribute names the classifier (or a careless one) might read.
ATTRIBUTE_NAMES = (
    "status",
    "status_code",
    "response",
    "code",
    "errno",
    "headers",
    "hdrs",
    "reason",
    "retry_after",
    "retryable",
    "context",
    "sqlite_errorname",
    "strerror",
    "request",
    "error",
    "grpc_status_code",
)

HTTP_STATUSES = (200, 301, 400, 401, 403, 404, 405, 408, 409, 410, 418, 422, 425)
HTTP_STATUSES += (429, 451, 499, 500, 501, 502, 503, 504, 505, 599, 600, 99)
ERRNOS = tuple(sorted(errno.errorcode))


class Hostile:
    """A value that fails at everything: str, repr, bool, eq, hash, attributes."""

    def __init__(self, error: type[Exception] = RuntimeError) -> None:
        object.__setattr__(self, "_error", error)

    def _fail(self, *_: object, **__: object) -> Any:
        raise object.__getattribute__(self, "_error")("hostile value")

    __str__ = __repr__ = __bool__ = __eq__ = __len__ = __iter__ = _fail
    __int__ = __float__ = __index__ = __lt__ = __gt__ = _fail
    __hash__ = None  # type: ignore[assignment]

    def __getattr__(self, name: str) -> Any:
        raise object.__getattribute__(self, "_error")(f"hostile attribute {name}")


class FakeResponse:
    """A response-like object with whatever status and headers it is given."""

    def __init__(self, status_code: object, status: object, headers: object) -> None:
        self.status_code = status_code
        self.status = status
        self.headers = headers

    def __bool__(self) -> bool:  # requests.Response is falsy for 4xx/5xx
        return False


class RaisingHeaders(Mapping[str, str]):
    def __getitem__(self, key: str) -> str:
        raise RuntimeError("headers exploded")

    def __iter__(self) -> Any:
        raise RuntimeError("headers exploded")

    def __len__(self) -> int:
        raise RuntimeError("headers exploded")


retry_after_values = st.one_of(
    st.none(),
    st.integers(),
    st.floats(),
    st.text(max_size=40),
    st.binary(max_size=40),
    st.builds(
        lambda d: email.utils.format_datetime(d, usegmt=True),
        st.datetimes(
            min_value=dt.datetime(1900, 1, 1),
            max_value=dt.datetime(9999, 12, 31),
            timezones=st.just(dt.timezone.utc),
        ),
    ),
    st.builds(Hostile),
)

headers_values = st.one_of(
    st.none(),
    st.dictionaries(
        st.sampled_from(
            [
                "Retry-After",
                "retry-after",
                "retry-after-ms",
                "x-should-retry",
                "X-Other",
            ]
        ),
        retry_after_values,
        max_size=2,
    ),
    st.builds(RaisingHeaders),
    st.text(max_size=10),
    st.builds(Hostile),
)

scalar_values = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from(HTTP_STATUSES),
    st.sampled_from(ERRNOS),
    st.integers(),
    st.floats(),
    st.text(max_size=20),
    st.binary(max_size=10),
    st.builds(Hostile),
    st.builds(Hostile, st.just(AttributeError)),
)

attribute_values = st.one_of(
    scalar_values,
    st.builds(FakeResponse, scalar_values, scalar_values, headers_values),
    headers_values,
    st.lists(scalar_values, max_size=3),
    st.dictionaries(st.text(max_size=5), scalar_values, max_size=3),
    st.builds(ConnectionRefusedError, st.just(errno.ECONNREFUSED), st.just("x")),
    # JSON-RPC error objects (``.error``) and codes, gRPC statuses by name
    *SDK_ERROR_OBJECTS,
    st.dictionaries(st.sampled_from(["code", "message"]), scalar_values, max_size=2),
    st.sampled_from(
        [-32700, -32601, -32603, -32000, -32042, "UNAVAILABLE", "NOT_FOUND"]
    ),
)


def _raising_property(error: type[Exception]) -> property:
    def getter(self: object) -> Any:
        raise error("property exploded")

    return property(getter)


raising_properties = st.builds(
    _raising_property,
    st.sampled_from([RuntimeError, ValueError, AttributeError, KeyError, TypeError]),
)

messages = st.one_of(
    st.text(max_size=60),
    st.sampled_from(
        [
            "database is locked",
            "file is not a database",
            "UNIQUE constraint failed: t.locked",
            "token=abc123 password: hunter2",
            "Authorization: Bearer abcdefgh",
        ]
    ),
    st.integers(),
    st.none(),
    st.binary(max_size=10),
)


def _construct(
    cls: type[BaseException], base: type[BaseException], message: object, number: int
) -> BaseException | None:
    """Instantiate ``cls`` the way its base expects, or bare as a last resort."""
    attempts: list[Callable[[], BaseException]] = []
    if issubclass(base, pr.CircuitOpenError):
        attempts.append(lambda: cls(str(message), breaker_name="b"))  # type: ignore[call-arg]
    if issubclass(base, pr.LockConflictError):
        attempts.append(lambda: cls(str(message), key="k"))  # type: ignore[call-arg]
    if issubclass(base, OSError):
        attempts.append(lambda: cls(number, str(message)))
    attempts += [lambda: cls(message), cls]

    def bare() -> BaseException:
        # An OSError mixed with ValueError (ConfigIOError) is only safe to
        # create through OSError's constructor.
        make = OSError.__new__ if issubclass(cls, OSError) else cls.__new__
        inst = make(cls)
        BaseException.__init__(inst, message)
        return inst

    attempts.append(bare)
    for attempt in attempts:
        try:
            return attempt()
        except Exception:
            continue
    return None


@st.composite
def hostile_exceptions(draw: st.DrawFn) -> BaseException:
    """Any exception: a fresh subclass of a random type with random attributes."""
    base = draw(st.sampled_from(EXCEPTION_TYPES))
    namespace: dict[str, Any] = {}
    names = draw(st.lists(st.sampled_from(ATTRIBUTE_NAMES), unique=True, max_size=5))
    as_property = draw(
        st.lists(st.booleans(), min_size=len(names), max_size=len(names))
    )
    for name, prop in zip(names, as_property, strict=True):
        if prop:
            namespace[name] = draw(raising_properties)
    if draw(st.booleans()):
        namespace["__str__"] = _raising_property(RuntimeError).fget
    if draw(st.booleans()):
        namespace["__repr__"] = _raising_property(RuntimeError).fget
    cls = type(f"Dyn{base.__name__}", (base,), namespace)
    message = draw(messages)
    number = draw(st.one_of(st.sampled_from(ERRNOS), st.integers(-5, 200)))
    exc = _construct(cls, base, message, number)
    if exc is None:  # pragma: no cover - every listed type builds one way or another
        raise AssertionError(f"could not build {base!r}")
    for name, prop in zip(names, as_property, strict=True):
        if not prop:
            value = draw(attribute_values)
            # read-only on some types; aiohttp warns when `.code` is set
            with contextlib.suppress(AttributeError, TypeError, DeprecationWarning):
                setattr(exc, name, value)
    if draw(st.booleans()):
        exc.__cause__ = draw(
            st.sampled_from(
                [ValueError("cause token=abc"), OSError(errno.EPIPE, "pipe")]
            )
        )
    return exc


# -- status codes and errnos -------------------------------------------------------


class StatusError(Exception):
    """An HTTP client error of an unknown library: only ``.status_code``."""

    def __init__(
        self, status_code: int, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(f"HTTP {status_code}")
        self.status_code = status_code
        self.headers = headers or {}


# 501 and 505 say "this server will never do that": permanent.
TRANSIENT_STATUSES = frozenset({408, 425, 429, *range(500, 600)}) - {501, 505}
PERMANENT_STATUSES = frozenset(range(400, 600)) - TRANSIENT_STATUSES

# -- secrets ------------------------------------------------------------------------

SENTINEL_PREFIX = "SENTINEL-"
SECRET_WORDS = ("token", "secret", "password", "authorization", "api_key", "cookie")


def _variants(word: str) -> list[str]:
    parts = word.split("_")
    camel = parts[0] + "".join(p.title() for p in parts[1:])
    return sorted(
        {
            word,
            word.upper(),
            word.title(),
            camel,
            camel[0].upper() + camel[1:],
            "-".join(parts),
            "-".join(p.title() for p in parts),
        }
    )


@st.composite
def secret_keys(draw: st.DrawFn) -> str:
    """A mapping key that obviously holds a secret: ``x-api-key``, ``dbPassword``..."""
    word = draw(
        st.sampled_from(SECRET_WORDS).flatmap(lambda w: st.sampled_from(_variants(w)))
    )
    affix = st.sampled_from(
        ["", "access", "refresh", "db", "client", "x", "github", "user"]
    )
    prefix, suffix = (
        draw(affix),
        draw(st.sampled_from(["", "value", "hash", "header", "2"])),
    )
    sep = draw(st.sampled_from(["_", "-", ".", " "]))
    key = word
    if prefix:  # "dbpassword", "xApiKey", "access_token"
        key = prefix + draw(st.sampled_from([sep, ""])) + key
    if suffix:
        key = key + sep + suffix
    return key


plain_keys = st.text(alphabet="abcdefghijklmnopqrsuvwxyz_", min_size=1, max_size=8)

plain_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(alphabet="abcdefghij =:", max_size=12),
    st.binary(max_size=8),
    st.datetimes(),
    st.builds(Hostile),
)


@st.composite
def contexts_with_secrets(draw: st.DrawFn, sentinel: str) -> dict[str, Any]:
    """Nested mappings where ``sentinel`` appears only under secret-looking keys."""
    leaves = st.one_of(plain_values, st.just(sentinel))

    def mapping(children: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
        return st.dictionaries(
            st.one_of(plain_keys, secret_keys()),
            children,
            max_size=4,
        )

    tree = st.recursive(
        plain_values,
        lambda children: st.one_of(
            mapping(children), st.lists(children, max_size=3), st.dictionaries(
                secret_keys(), st.one_of(leaves, children), min_size=1, max_size=2
            )
        ),
        max_leaves=12,
    )  # fmt: skip
    out = draw(mapping(tree))
    # Always at least one secret, at the top or nested.
    out[draw(secret_keys())] = sentinel
    if draw(st.booleans()):
        out[draw(plain_keys)] = {draw(secret_keys()): sentinel}
    return out
