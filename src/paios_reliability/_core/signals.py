"""What a foreign exception carries, read without trusting it.

HTTP status, headers and plain attributes of exceptions raised by other
libraries (httpx, requests, urllib, aiohttp, the OpenAI, Anthropic and Google
SDKs), duck-typed so none of them is imported, and never raising: a property
that raises or a ``__str__`` that fails reads as "nothing there".
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping

from .typing_lite import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any


def _safe_attr(obj: object, name: str) -> Any:
    try:
        return getattr(obj, name, None)
    except Exception:  # noqa: BLE001 - a raising property must not break classify
        return None


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # noqa: BLE001
        return f"<unprintable {type(exc).__name__}>"


def _status_value(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
        return value
    return None


# google.api_core.exceptions carry an HTTP ``code`` and a gRPC status; this is
# the library's own gRPC -> HTTP table, so both spellings classify alike.
_GRPC_HTTP: Mapping[str, int] = {
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
    "UNAUTHENTICATED": 401,
}
_GRPC_NUMBERS: Mapping[int, str] = {
    1: "CANCELLED", 2: "UNKNOWN", 3: "INVALID_ARGUMENT", 4: "DEADLINE_EXCEEDED",
    5: "NOT_FOUND", 6: "ALREADY_EXISTS", 7: "PERMISSION_DENIED",
    8: "RESOURCE_EXHAUSTED", 9: "FAILED_PRECONDITION", 10: "ABORTED",
    11: "OUT_OF_RANGE", 12: "UNIMPLEMENTED", 13: "INTERNAL", 14: "UNAVAILABLE",
    15: "DATA_LOSS", 16: "UNAUTHENTICATED",
}  # fmt: skip


def _grpc_status(value: Any) -> int | None:
    """The HTTP status of a gRPC status: a ``grpc.StatusCode``, its name or number."""
    if value is None:
        return None
    name = value if isinstance(value, str) else _safe_attr(value, "name")
    if not isinstance(name, str):
        # grpc.StatusCode.NOT_FOUND.value == (5, "not found")
        number = _safe_attr(value, "value")
        if isinstance(number, tuple) and number:
            number = number[0]
        elif number is None:
            number = value
        if isinstance(number, int) and not isinstance(number, bool):
            name = _GRPC_NUMBERS.get(number)
    return _GRPC_HTTP.get(name.upper()) if isinstance(name, str) else None


def http_status(exc: BaseException) -> int | None:
    """The HTTP status an exception carries, duck-typed across client libraries.

    Looks at ``response.status_code`` / ``response.status`` (httpx, requests,
    the OpenAI and Anthropic SDKs), ``status_code`` / ``status`` (aiohttp,
    the SDKs), urllib's ``code`` next to its headers, and Google API errors'
    ``code`` or ``grpc_status_code`` (mapped as ``google.api_core`` does).
    """
    response = _safe_attr(exc, "response")
    if response is not None:
        status = _status_value(_safe_attr(response, "status_code")) or _status_value(
            _safe_attr(response, "status")
        )
        if status is not None:
            return status
    status = _status_value(_safe_attr(exc, "status_code")) or _status_value(
        _safe_attr(exc, "status")
    )
    if status is not None:
        return status
    # urllib.error.HTTPError: ``.code`` plus headers; guard so unrelated ``.code``
    # attributes (ours are strings, SystemExit's may be ints) never match.
    if _safe_attr(exc, "headers") is not None or _safe_attr(exc, "hdrs") is not None:
        return _status_value(_safe_attr(exc, "code"))
    # google.api_core.exceptions.GoogleAPICallError: ``code`` is an HTTP status
    # (or None) and ``grpc_status_code`` a grpc.StatusCode; both are class
    # attributes there, so their presence is the guard.
    if _has_attr(exc, "grpc_status_code"):
        return _status_value(_safe_attr(exc, "code")) or _grpc_status(
            _safe_attr(exc, "grpc_status_code")
        )
    return None


def _has_attr(obj: object, name: str) -> bool:
    try:
        return hasattr(obj, name)
    except Exception:  # noqa: BLE001 - hasattr only swallows AttributeError
        return False


def _header(headers: Any, name: str) -> Any:
    """The value of header ``name`` (lower case) in any mapping-like headers.

    httpx, requests and aiohttp headers ignore case; a plain dict does not,
    so the usual spellings are tried, then a bounded case-insensitive scan.
    """
    for key in (name, name.title(), name.upper()):
        try:
            value = headers.get(key)
        except Exception:  # noqa: BLE001 - headers of a stranger may do anything
            return None
        if value is not None:
            return value
    try:
        for key, value in itertools.islice(headers.items(), 200):
            if isinstance(key, str) and key.lower() == name:
                return value
    except Exception:  # noqa: BLE001, S110 - not a mapping after all
        pass
    return None


def _response_headers(exc: BaseException) -> Iterator[Any]:
    """The header collections an exception carries: its response's, then its own."""
    for owner in (_safe_attr(exc, "response"), exc):
        if owner is None:
            continue
        headers = _safe_attr(owner, "headers")
        if headers is None:
            headers = _safe_attr(owner, "hdrs")
        if headers is not None:
            yield headers


# -- the library's own errors ---------------------------------------------------------

# The root of the library's exception tree, registered by _core/exceptions.py
# when it is imported. The tree asks the classifier for its exit codes, so the
# classifier recognises those errors through this registry instead of
# importing the tree (that was an import cycle); an instance of the tree
# cannot exist before its module registered the root.
_OWN_ROOTS: list[type[BaseException]] = []


def trust_own_codes(root: type[BaseException]) -> None:
    """Classify instances of ``root`` by the ``code`` they carry."""
    if root not in _OWN_ROOTS:
        _OWN_ROOTS.append(root)


def carries_own_code(exc: BaseException) -> bool:
    """Whether ``exc`` is one of the library's own errors (it names its code)."""
    return isinstance(exc, tuple(_OWN_ROOTS))
