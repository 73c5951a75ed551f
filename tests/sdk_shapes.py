"""Exceptions shaped like those of the SDKs agents call, for the classify() tables.

The OpenAI, Anthropic and Google SDKs are not dependencies, so their
exceptions are small classes of the same name, module and attributes (the
ones ``classify`` could read), copied from the SDKs' own exception modules:

- ``openai`` / ``anthropic``: ``APIStatusError(message, *, response, body)``
  with ``.status_code``, ``.response`` (an ``httpx.Response``: real here) and
  ``.request_id``; a string (or ``None``) ``.code``; subclasses per status.
- ``google.api_core.exceptions``: ``GoogleAPICallError`` with class attributes
  ``code`` (an HTTP status or ``None``) and ``grpc_status_code`` (a
  ``grpc.StatusCode``), and a ``response`` property.
- ``mcp`` 1.x: ``McpError(error: ErrorData)`` with ``.error.code``.

httpx, requests, aiohttp, urllib and ``mcp`` 2.x are installed for the tests,
so their exceptions are the real ones, built the way those libraries build
them.
"""

from __future__ import annotations

import enum
import urllib.error
from collections.abc import Callable, Mapping
from email.message import Message
from typing import Any

import aiohttp
import httpx
import multidict
import requests
import requests.structures
import yarl

try:  # not installable beside the lowest dependency versions (tests_lowest)
    from mcp.shared.exceptions import MCPError
except ImportError:
    MCPError = None

Headers = Mapping[str, str]

# -- openai / anthropic -------------------------------------------------------------

_REASONS = {
    400: "BadRequestError", 401: "AuthenticationError", 403: "PermissionDeniedError",
    404: "NotFoundError", 409: "ConflictError", 413: "RequestTooLargeError",
    422: "UnprocessableEntityError", 429: "RateLimitError", 503: "ServiceUnavailableError",
    529: "OverloadedError",
}  # fmt: skip


def _sdk_classes(module: str) -> tuple[type[Exception], ...]:
    class APIError(Exception):
        def __init__(
            self, message: str, request: httpx.Request, *, body: object | None
        ) -> None:
            super().__init__(message)
            self.request = request
            self.message = message
            self.body = body
            self.code: str | None = None  # e.g. "rate_limit_exceeded": a string
            self.param: str | None = None
            self.type: str | None = None

    class APIStatusError(APIError):
        def __init__(
            self, message: str, *, response: httpx.Response, body: object | None
        ) -> None:
            super().__init__(message, response.request, body=body)
            self.response = response
            self.status_code = response.status_code
            self.request_id = response.headers.get("request-id")

    class APIConnectionError(APIError):
        def __init__(
            self, *, message: str = "Connection error.", request: httpx.Request
        ) -> None:
            super().__init__(message, request, body=None)

    class APITimeoutError(APIConnectionError):
        def __init__(self, request: httpx.Request) -> None:
            super().__init__(message="Request timed out.", request=request)

    classes: tuple[type[Exception], ...] = (
        APIError,
        APIStatusError,
        APIConnectionError,
        APITimeoutError,
    )
    for cls in classes:
        cls.__module__ = module
    return classes


OPENAI = _sdk_classes("openai._exceptions")
ANTHROPIC = _sdk_classes("anthropic._exceptions")
_STATUS_SUBCLASSES: dict[tuple[str, int], type[Exception]] = {}


def _status_class(base: type[Exception], status: int) -> type[Exception]:
    name = _REASONS.get(
        status, "InternalServerError" if status >= 500 else "APIStatusError"
    )
    key = (base.__module__, status)
    if key not in _STATUS_SUBCLASSES:
        cls = type(name, (base,), {"__module__": base.__module__})
        _STATUS_SUBCLASSES[key] = cls
    return _STATUS_SUBCLASSES[key]


def _httpx_response(status: int, headers: Headers | None) -> httpx.Response:
    request = httpx.Request("POST", "https://api.example.test/v1/messages")
    return httpx.Response(status, headers=headers, request=request)


def openai_status(status: int, headers: Headers | None = None) -> BaseException:
    response = _httpx_response(status, headers)
    cls = _status_class(OPENAI[1], status)
    return cls(f"Error code: {status}", response=response, body=None)  # type: ignore[call-arg]


def anthropic_status(status: int, headers: Headers | None = None) -> BaseException:
    response = _httpx_response(status, headers)
    cls = _status_class(ANTHROPIC[1], status)
    return cls(f"Error code: {status}", response=response, body=None)  # type: ignore[call-arg]


def sdk_connection_error(sdk: tuple[type[Exception], ...]) -> BaseException:
    return sdk[2](request=_httpx_response(200, None).request)  # type: ignore[call-arg]


def sdk_timeout_error(sdk: tuple[type[Exception], ...]) -> BaseException:
    return sdk[3](_httpx_response(200, None).request)  # type: ignore[call-arg]


# -- google.api_core ---------------------------------------------------------------


class StatusCode(enum.Enum):
    """The shape of ``grpc.StatusCode``: members whose value is ``(number, text)``."""

    OK = (0, "ok")
    CANCELLED = (1, "cancelled")
    UNKNOWN = (2, "unknown")
    INVALID_ARGUMENT = (3, "invalid argument")
    DEADLINE_EXCEEDED = (4, "deadline exceeded")
    NOT_FOUND = (5, "not found")
    ALREADY_EXISTS = (6, "already exists")
    PERMISSION_DENIED = (7, "permission denied")
    RESOURCE_EXHAUSTED = (8, "resource exhausted")
    FAILED_PRECONDITION = (9, "failed precondition")
    ABORTED = (10, "aborted")
    OUT_OF_RANGE = (11, "out of range")
    UNIMPLEMENTED = (12, "unimplemented")
    INTERNAL = (13, "internal")
    UNAVAILABLE = (14, "unavailable")
    DATA_LOSS = (15, "data loss")
    UNAUTHENTICATED = (16, "unauthenticated")


StatusCode.__module__ = "grpc"


class GoogleAPIError(Exception):
    pass


class GoogleAPICallError(GoogleAPIError):
    code: int | None = None
    grpc_status_code: StatusCode | None = None

    def __init__(
        self,
        message: str,
        errors: tuple[object, ...] = (),
        details: tuple[object, ...] = (),
        response: object | None = None,
        error_info: object | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self._errors = errors
        self._details = details
        self._response = response
        self._error_info = error_info

    def __str__(self) -> str:
        return f"{self.code} {self.message}"

    @property
    def errors(self) -> list[object]:
        return list(self._errors)

    @property
    def response(self) -> object | None:
        return self._response


_GOOGLE_CLASSES = {
    400: ("InvalidArgument", StatusCode.INVALID_ARGUMENT),
    401: ("Unauthenticated", StatusCode.UNAUTHENTICATED),
    403: ("PermissionDenied", StatusCode.PERMISSION_DENIED),
    404: ("NotFound", StatusCode.NOT_FOUND),
    409: ("Aborted", StatusCode.ABORTED),
    422: ("UnprocessableEntity", None),
    429: ("ResourceExhausted", StatusCode.RESOURCE_EXHAUSTED),
    500: ("InternalServerError", StatusCode.INTERNAL),
    502: ("BadGateway", None),
    503: ("ServiceUnavailable", StatusCode.UNAVAILABLE),
    504: ("DeadlineExceeded", StatusCode.DEADLINE_EXCEEDED),
}
for cls in (GoogleAPIError, GoogleAPICallError):
    cls.__module__ = "google.api_core.exceptions"


def google_error(status: int) -> BaseException:
    """A ``google.api_core.exceptions`` subclass with an HTTP ``code``."""
    name, grpc_status = _GOOGLE_CLASSES[status]
    cls = type(
        name,
        (GoogleAPICallError,),
        {
            "code": status,
            "grpc_status_code": grpc_status,
            "__module__": GoogleAPICallError.__module__,
        },
    )
    return cls("the API said no")


def google_grpc_only(grpc_status: StatusCode) -> BaseException:
    """Built from a gRPC status alone (``code`` is ``None``), as ``from_grpc_status`` may."""
    cls = type(
        "GrpcCallError",
        (GoogleAPICallError,),
        {"grpc_status_code": grpc_status, "__module__": GoogleAPICallError.__module__},
    )
    return cls("rpc failed")


# -- real clients ----------------------------------------------------------------


def httpx_status(status: int, headers: Headers | None = None) -> BaseException:
    response = _httpx_response(status, headers)
    try:
        response.raise_for_status()
    except httpx.HTTPStatusError as exc:
        return exc
    raise AssertionError(f"httpx did not raise for {status}")


def requests_status(status: int, headers: Headers | None = None) -> BaseException:
    response = requests.Response()
    response.status_code = status
    response.headers = requests.structures.CaseInsensitiveDict(headers or {})
    response.url = "https://api.example.test/v1/items"
    response.reason = "Reason"
    try:
        response.raise_for_status()
    except requests.HTTPError as exc:
        return exc
    raise AssertionError(f"requests did not raise for {status}")


def aiohttp_status(status: int, headers: Headers | None = None) -> BaseException:
    url = yarl.URL("https://api.example.test/v1/items")
    info = aiohttp.RequestInfo(
        url, "GET", multidict.CIMultiDictProxy(multidict.CIMultiDict())
    )
    return aiohttp.ClientResponseError(
        info,  # type: ignore[arg-type]
        (),
        status=status,
        message="Reason",
        headers=multidict.CIMultiDict(headers or {}),
    )


def urllib_status(status: int, headers: Headers | None = None) -> BaseException:
    message = Message()
    for key, value in (headers or {}).items():
        message[key] = value
    return urllib.error.HTTPError(
        "https://api.example.test/v1/items", status, "Reason", message, None
    )


# -- mcp and JSON-RPC --------------------------------------------------------------


class ErrorData:
    def __init__(self, code: int, message: str, data: object | None = None) -> None:
        self.code = code
        self.message = message
        self.data = data


class McpError(Exception):
    """mcp 1.x: ``McpError(ErrorData)``, the code only in ``.error.code``."""

    def __init__(self, error: ErrorData) -> None:
        super().__init__(error.message)
        self.error = error


McpError.__module__ = "mcp.shared.exceptions"


class JSONRPCError(Exception):
    """A generic JSON-RPC client's error: the raw ``error`` object as a dict."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error.get("message", ""))
        self.error = error


def mcp2_error(code: int) -> BaseException:
    return MCPError(code, "the peer said no")


def mcp1_error(code: int) -> BaseException:
    return McpError(ErrorData(code, "the peer said no"))


def jsonrpc_dict_error(code: int) -> BaseException:
    return JSONRPCError({"code": code, "message": "the peer said no"})


# HTTP shapes that carry response headers, and those that carry only a status.
HEADER_SHAPES: dict[str, Callable[[int, Headers | None], BaseException]] = {
    "openai": openai_status,
    "anthropic": anthropic_status,
    "httpx": httpx_status,
    "requests": requests_status,
    "aiohttp": aiohttp_status,
    "urllib": urllib_status,
}
HTTP_SHAPES: dict[str, Callable[[int], BaseException]] = {
    **{name: (lambda status, make=make: make(status, None)) for name, make in HEADER_SHAPES.items()},
    "google": google_error,
    "text-status": lambda status: Exception(f"Request failed with status {status}"),
    "text-status-code": lambda status: RuntimeError(f"Request failed with status code {status}"),
    "text-reason": lambda status: Exception(f"{status} {_PHRASES[status]}"),
}  # fmt: skip
JSONRPC_SHAPES: dict[str, Callable[[int], BaseException]] = {
    **({"mcp2": mcp2_error} if MCPError is not None else {}),
    "mcp1": mcp1_error,
    "dict": jsonrpc_dict_error,
    "text": lambda code: Exception(f"MCP error {code}: the peer said no"),
}
_PHRASES = {
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    408: "Request Timeout", 409: "Conflict", 422: "Unprocessable Entity",
    429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Gateway Timeout",
}  # fmt: skip
