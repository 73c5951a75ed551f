"""The tables :func:`~paios_reliability.classify` reads: errno, OSError and HTTP codes,
exception names, JSON-RPC and MCP codes, and the message patterns of errors
that are only text.

Data, not logic: a new signal is usually one row here. The rules that use
them are in :mod:`.taxonomy`.
"""

from __future__ import annotations

import errno as _errno
from collections.abc import Mapping
from dataclasses import dataclass

__all__: list[str] = []


# -- classification ------------------------------------------------------------

_ERRNO_CODES: dict[int, str] = {
    code_num: name
    for name, code_num in (
        ("CONNECTION_TIMEOUT", getattr(_errno, "ETIMEDOUT", -1)),
        ("CONNECTION_RESET", getattr(_errno, "ECONNRESET", -1)),
        ("CONNECTION_REFUSED", getattr(_errno, "ECONNREFUSED", -1)),
        ("CONNECTION_ABORTED", getattr(_errno, "ECONNABORTED", -1)),
        ("BROKEN_PIPE", getattr(_errno, "EPIPE", -1)),
        ("HOST_UNREACHABLE", getattr(_errno, "EHOSTUNREACH", -1)),
        ("HOST_UNREACHABLE", getattr(_errno, "EHOSTDOWN", -1)),
        ("NETWORK_UNREACHABLE", getattr(_errno, "ENETUNREACH", -1)),
        ("NETWORK_UNREACHABLE", getattr(_errno, "ENETDOWN", -1)),
        ("CONNECTION_RESET", getattr(_errno, "ENETRESET", -1)),
        ("TRY_AGAIN", getattr(_errno, "EAGAIN", -1)),
        ("TRY_AGAIN", getattr(_errno, "EWOULDBLOCK", -1)),
        ("RESOURCE_BUSY", getattr(_errno, "EBUSY", -1)),
        ("INTERRUPTED_SYSCALL", getattr(_errno, "EINTR", -1)),
        ("TOO_MANY_OPEN_FILES", getattr(_errno, "EMFILE", -1)),
        ("TOO_MANY_OPEN_FILES", getattr(_errno, "ENFILE", -1)),
        ("PERMISSION_DENIED", getattr(_errno, "EACCES", -1)),
        ("OPERATION_NOT_PERMITTED", getattr(_errno, "EPERM", -1)),
        ("FILE_NOT_FOUND", getattr(_errno, "ENOENT", -1)),
        ("IS_A_DIRECTORY", getattr(_errno, "EISDIR", -1)),
        ("NOT_A_DIRECTORY", getattr(_errno, "ENOTDIR", -1)),
        ("FILE_EXISTS", getattr(_errno, "EEXIST", -1)),
        ("DISK_FULL", getattr(_errno, "ENOSPC", -1)),
        ("DISK_FULL", getattr(_errno, "EDQUOT", -1)),
        ("READ_ONLY_FILESYSTEM", getattr(_errno, "EROFS", -1)),
        ("OUT_OF_MEMORY", getattr(_errno, "ENOMEM", -1)),
    )
    if code_num != -1
}

# OSError subclasses raised without an errno (e.g. ``raise ConnectionResetError``).
_OSERROR_TYPES: tuple[tuple[type[OSError], str], ...] = (
    (ConnectionResetError, "CONNECTION_RESET"),
    (ConnectionRefusedError, "CONNECTION_REFUSED"),
    (ConnectionAbortedError, "CONNECTION_ABORTED"),
    (BrokenPipeError, "BROKEN_PIPE"),
    (ConnectionError, "CONNECTION_ERROR"),
    (TimeoutError, "TIMEOUT"),
    (BlockingIOError, "TRY_AGAIN"),
    (InterruptedError, "INTERRUPTED_SYSCALL"),
    (FileNotFoundError, "FILE_NOT_FOUND"),
    (FileExistsError, "FILE_EXISTS"),
    (IsADirectoryError, "IS_A_DIRECTORY"),
    (NotADirectoryError, "NOT_A_DIRECTORY"),
    (PermissionError, "PERMISSION_DENIED"),
)

_HTTP_CODES: Mapping[int, str] = {
    400: "HTTP_BAD_REQUEST",
    401: "HTTP_UNAUTHORIZED",
    403: "HTTP_FORBIDDEN",
    404: "HTTP_NOT_FOUND",
    405: "HTTP_METHOD_NOT_ALLOWED",
    408: "HTTP_REQUEST_TIMEOUT",
    409: "HTTP_CONFLICT",
    410: "HTTP_GONE",
    422: "HTTP_UNPROCESSABLE",
    425: "HTTP_TOO_EARLY",
    429: "HTTP_TOO_MANY_REQUESTS",
    500: "HTTP_INTERNAL_SERVER_ERROR",
    501: "HTTP_NOT_IMPLEMENTED",
    502: "HTTP_BAD_GATEWAY",
    503: "HTTP_SERVICE_UNAVAILABLE",
    504: "HTTP_GATEWAY_TIMEOUT",
    505: "HTTP_NOT_IMPLEMENTED",
}

# Transport errors of HTTP clients, recognised by class name anywhere in the MRO
# (httpx, requests, urllib3, aiohttp) so none of them is imported.
_TIMEOUT_NAMES = frozenset(
    {
        "TimeoutException", "ConnectTimeout", "ReadTimeout", "WriteTimeout",
        "PoolTimeout", "Timeout", "ServerTimeoutError", "ConnectionTimeoutError",
        "SocketTimeoutError", "TimeoutError", "APITimeoutError",
    }
)  # fmt: skip
_CONNECTION_NAMES = frozenset(
    {
        "ConnectError", "ReadError", "WriteError", "NetworkError", "RemoteProtocolError",
        "ConnectionError", "ClientConnectionError", "ClientConnectorError",
        "ServerDisconnectedError", "ClientOSError", "ProtocolError",
        "IncompleteRead", "ChunkedEncodingError", "ClientPayloadError",
        "APIConnectionError",
    }
)  # fmt: skip
_TLS_NAMES = frozenset(
    {
        "SSLError",
        "SSLCertVerificationError",
        "ClientSSLError",
        "ClientConnectorCertificateError",
    }
)
_PROGRAMMING_ERRORS: tuple[type[BaseException], ...] = (
    TypeError,
    ValueError,
    KeyError,
    AttributeError,
    IndexError,
    AssertionError,
    NotImplementedError,
    ZeroDivisionError,
    NameError,
    StopIteration,
    StopAsyncIteration,
)
_MAX_RETRY_AFTER = 7 * 24 * 3600.0


# -- JSON-RPC and MCP errors ------------------------------------------------------

_JSONRPC_CODES: Mapping[int, str] = {
    -32700: "JSONRPC_PARSE_ERROR",
    -32600: "JSONRPC_INVALID_REQUEST",
    -32601: "JSONRPC_METHOD_NOT_FOUND",
    -32602: "JSONRPC_INVALID_PARAMS",
    -32603: "JSONRPC_INTERNAL_ERROR",
    # MCP's allocations in the server-error band -32000..-32099:
    -32000: "CONNECTION_CLOSED",  # SDK: the connection closed before an answer
    -32001: "TIMEOUT",  # SDK: the request timed out
    -32002: "NOT_FOUND",  # resource not found (retired; older servers send it)
    -32020: "MCP_PROTOCOL_MISMATCH",  # headers do not match the body
    -32021: "MCP_PROTOCOL_MISMATCH",  # a required client capability is missing
    -32022: "MCP_PROTOCOL_MISMATCH",  # unsupported protocol version
    -32042: "USER_ACTION_REQUIRED",  # URL elicitation required
}
# -32768..-32000 is reserved by JSON-RPC itself: an integer there names a
# JSON-RPC error whatever class carries it.
_JSONRPC_RESERVED = range(-32768, -31999)
_JSONRPC_NAMES = frozenset(
    {"McpError", "MCPError", "JSONRPCError", "JsonRpcError", "JSONRPCException"}
)


# -- errors that are only text -----------------------------------------------------

_STATUS_WORDS = (
    r"(?:https?(?:\s+error)?|status(?:\s+code)?|status_code|error\s+code"
    r"|response\s+code)"
)


@dataclass(frozen=True, slots=True)
class _TextRule:
    """One built-in message pattern; ``code`` empty means the number decides."""

    shows: str
    code: str
    pattern: str


# Tried in order, first match wins: numbers (HTTP status, JSON-RPC code), then
# errno names, then specific phrases (permanent before transient, so an
# "invalid params: timeout must be > 0" is never retried), then generic words.
_TEXT_RULES: tuple[_TextRule, ...] = (
    _TextRule("`status 404`, `HTTP 503`, `status code: 429`, `error code: 500`", "",
              rf"\b{_STATUS_WORDS}\s*[:=]?\s*(?P<status>[1-5]\d\d)\b"),
    _TextRule("`404 Not Found`, `429 Too Many Requests`, `503 Server Error`", "", ""),
    _TextRule("`MCP error -32601`, `code: -32602` (JSON-RPC codes, table above)", "",
              r"\b(?:error|code)\b\W{0,3}(?P<jsonrpc>-32\d{3})(?!\d)"),
    _TextRule("`ECONNRESET`", "CONNECTION_RESET", r"\bECONNRESET\b"),
    _TextRule("`ECONNREFUSED`", "CONNECTION_REFUSED", r"\bECONNREFUSED\b"),
    _TextRule("`ETIMEDOUT`, `ESOCKETTIMEDOUT`", "CONNECTION_TIMEOUT", r"\bE(?:SOCKET)?TIMEDOUT\b"),
    _TextRule("`EPIPE`", "BROKEN_PIPE", r"\bEPIPE\b"),
    _TextRule("`ECONNABORTED`", "CONNECTION_ABORTED", r"\bECONNABORTED\b"),
    _TextRule("`EHOSTUNREACH`, `EHOSTDOWN`", "HOST_UNREACHABLE", r"\bEHOST(?:UNREACH|DOWN)\b"),
    _TextRule("`ENETUNREACH`, `ENETDOWN`", "NETWORK_UNREACHABLE", r"\bENET(?:UNREACH|DOWN)\b"),
    _TextRule("`ENOTFOUND`, `EAI_AGAIN`, `EAI_NONAME`", "DNS_FAILURE", r"\b(?:ENOTFOUND|EAI_AGAIN|EAI_NONAME)\b"),
    _TextRule("`method not found`", "JSONRPC_METHOD_NOT_FOUND", r"\bmethod not found\b"),
    _TextRule("`invalid params`, `invalid parameter(s)`, `invalid argument(s)`, `missing required parameter`",
              "USAGE_ERROR",
              r"\binvalid (?:params?|parameters?|arguments?)\b"
              r"|\bmissing required (?:params?|parameters?|arguments?)\b"),
    _TextRule("`unauthorized`, `unauthenticated`, `invalid api key`, `authentication failed`",
              "CREDENTIAL_ERROR",
              r"\bunauthori[sz]ed\b|\bunauthenticated\b|\b(?:invalid|incorrect) api[ _-]?key\b"
              r"|\bauthentication (?:failed|required|error)\b"),
    _TextRule("`forbidden`", "HTTP_FORBIDDEN", r"\bforbidden\b"),
    _TextRule("`permission denied`, `access denied`", "PERMISSION_DENIED",
              r"\b(?:permission|access) denied\b"),
    _TextRule("`bad request`", "HTTP_BAD_REQUEST", r"\bbad request\b"),
    _TextRule("`unprocessable entity`", "HTTP_UNPROCESSABLE", r"\bunprocessable (?:entity|content)\b"),
    _TextRule("`no such file or directory`", "FILE_NOT_FOUND", r"\bno such file or directory\b"),
    _TextRule("`socket hang up`, `connection reset`", "CONNECTION_RESET",
              r"\bsocket hang up\b|\bconnection reset\b"),
    _TextRule("`connection refused`", "CONNECTION_REFUSED", r"\bconnection refused\b"),
    _TextRule("`broken pipe`", "BROKEN_PIPE", r"\bbroken pipe\b"),
    _TextRule("`name or service not known`, `could not resolve host`, `host not found`, "
              "`temporary failure in name resolution`", "DNS_FAILURE",
              r"\bname or service not known\b|\bcould not resolve host\b|\bhost not found\b"
              r"|\btemporary failure in name resolution\b|\bgetaddrinfo failed\b"
              r"|\bnodename nor servname\b"),
    _TextRule("`no route to host`", "HOST_UNREACHABLE", r"\bno route to host\b"),
    _TextRule("`network is unreachable`", "NETWORK_UNREACHABLE", r"\bnetwork is unreachable\b"),
    _TextRule("`too many requests`, `rate limit`, `rate_limit_error`, `throttled`", "RATE_LIMITED",
              r"\btoo many requests\b|\brate[ _-]?limit|\bthrottl(?:ed|ing)\b"),
    _TextRule("`overloaded`, `overloaded_error`", "SERVICE_UNAVAILABLE", r"\boverloaded"),
    _TextRule("`service unavailable`, `temporarily unavailable`, `server is busy`, `try again later`",
              "SERVICE_UNAVAILABLE",
              r"\bservice unavailable\b|\btemporarily unavailable\b|\bserver is busy\b"
              r"|\btry again later\b"),
    _TextRule("`bad gateway`", "HTTP_BAD_GATEWAY", r"\bbad gateway\b"),
    _TextRule("`gateway timeout`", "HTTP_GATEWAY_TIMEOUT", r"\bgateway time-?out\b"),
    _TextRule("`internal server error`", "HTTP_INTERNAL_SERVER_ERROR", r"\binternal server error\b"),
    _TextRule("`server disconnected`, `connection closed`, `unexpected EOF`", "CONNECTION_CLOSED",
              r"\bserver disconnected\b|\bconnection (?:was )?closed\b|\bremote end closed\b"
              r"|\bunexpected eof\b"),
    _TextRule("`not found`, `does not exist`, `no such`", "NOT_FOUND",
              r"\bnot found\b|\bdoes(?: not|n't) exist\b|\bno such\b"),
    _TextRule("`timeout`, `timed out`", "TIMEOUT", r"\btime(?:d)?[ -]?out\b"),
)  # fmt: skip
_TEXT_LIMIT = 2000
# Reason phrases renamed by RFC 9110 (Python 3.13 has only the new ones);
# servers and SDKs still send the old.
_OLD_PHRASES = frozenset(
    {
        "Request Entity Too Large",
        "Payload Too Large",
        "Requested Range Not Satisfiable",
        "Unprocessable Entity",
        "Content Too Large",
        "Unprocessable Content",
        "Range Not Satisfiable",
    }
)


_SQLITE_LOCKED_PHRASES = (
    "database is locked",
    "database table is locked",
    "database schema is locked",
    "database is busy",
)
