"""How a failed MCP tool call is told: the agent-facing wording, the error result and the ``mcp.tool_failed`` event."""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mcp.types import CallToolResult

    from .._core.catalog import CatalogEntry
    from .._core.events import Level
    from .._core.taxonomy import Failure


_UNSET: Any = object()
# Rejections: the operation never ran, so there is nothing to debug.
_REJECTED = frozenset({"CIRCUIT_OPEN", "RATE_LIMITED", "BULKHEAD_FULL"})
# What failed, for codes whose catalog summary reads badly to a model.
_WHAT: dict[str, str] = {
    "UNCLASSIFIED": "the tool failed unexpectedly",
    "TRANSIENT": "the tool failed temporarily",
    "PERMANENT": "the tool failed",
    "RELIABILITY_ERROR": "the tool failed",
    "PROGRAMMING_ERROR": "the tool hit a bug",
    "RECURSION_LIMIT": "the tool hit a bug",
    "CIRCUIT_OPEN": "backend unavailable",
    "TIMEOUT": "the tool ran out of time",
    "RATE_LIMITED": "too many calls",
    "BULKHEAD_FULL": "too many calls at once",
    "CANCELLED": "the call was cancelled",
}
# What the agent can do about a permanent failure, by recovery mode.
_DO: dict[str, str] = {
    "fix_input": "fix the arguments before calling again",
    "refresh_credentials": "ask the user to re-authenticate",
    "request_approval": "ask the user to approve or complete the step first",
    "fail_fast": "do not retry the same call",
    "abort": "do not retry",
}
_DO_OPERATOR = "do not retry; the server's operator must fix it"
# fail_fast codes that are really about the arguments the model sent.
_ARGUMENT_CODES = frozenset({"HTTP_BAD_REQUEST", "HTTP_UNPROCESSABLE"})
_NAME_CHARS = re.compile(r"[^A-Za-z0-9 .]+")
_FIRST_CLAUSE = re.compile(r"(?<=[a-z0-9)])[.;](?:\s|$)")


def _is_deliberate(exc: BaseException) -> bool:
    """An SDK error whose meaning the SDK defines: ToolError, ResourceError, MCPError."""
    from .._core.taxonomy import _is_mcp_tool_error

    if _is_mcp_tool_error(exc):
        return True
    return any(
        cls.__name__ in ("MCPError", "McpError")
        and str(cls.__module__).startswith("mcp.")
        for cls in type(exc).__mro__
    )


def _record(
    label: str,
    exc: Exception,
    failure: Failure,
    text: str,
    ref: str | None,
    *,
    deliberate: bool,
) -> None:
    from .._core.catalog import CATALOG
    from .._core.events import emit
    from .._core.taxonomy import audit_event

    entry = CATALOG.get(failure.code)
    level: Level = "warning" if deliberate or failure.code in _REJECTED else "error"
    emit(
        "mcp",
        "tool_failed",
        level=level,
        subject=label,
        exc=exc,
        tool=label,
        code=failure.code,
        kind=failure.kind,
        retryable=failure.retryable,
        retry_after=failure.retry_after,
        recovery=entry.recovery if entry is not None else None,
        deliberate=deliberate,
        ref=ref,
        # What the client read; a deliberate error reaches it in the SDK's words.
        text=None if deliberate else text,
        audit=audit_event(exc, tool=label),
    )


def _error_result(text: str, fallback: Any) -> CallToolResult:
    from mcp.types import CallToolResult

    content: list[dict[str, str]] = [{"type": "text", "text": text}]
    if fallback is not _UNSET and fallback is not None:
        content.append({"type": "text", "text": _as_text(fallback)})
    # Aliases: the same payload validates on every SDK version (isError/is_error).
    return CallToolResult.model_validate({"content": content, "isError": True})


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    import pydantic_core

    try:
        return pydantic_core.to_json(value, fallback=str).decode()
    except Exception:  # noqa: BLE001 - a fallback that cannot be shown is shown by type
        return f"<{type(value).__name__}>"


def _what_failed(
    exc: BaseException, failure: Failure, entry: CatalogEntry | None
) -> str:
    if failure.code == "CIRCUIT_OPEN":
        breaker = getattr(exc, "breaker_name", None)
        if isinstance(breaker, str):
            words = _NAME_CHARS.sub(" ", breaker).strip()
            if words:
                return f"{words[:60]} unavailable"
    if failure.code in _WHAT:
        return _WHAT[failure.code]
    if entry is None:
        return "the tool failed"
    # The first sentence: "A credential has expired; refresh it." -> "a credential
    # has expired". Acronyms keep their case: "HTTP 404: ...", "MCP -32042: ...".
    summary = _FIRST_CLAUSE.split(entry.summary.strip(), maxsplit=1)[0].rstrip(". ")
    first = summary.split(" ", 1)[0]
    if first[:1].isupper() and (len(first) == 1 or first[1:].islower()):
        summary = summary[0].lower() + summary[1:]
    return summary or "the tool failed"


def _what_to_do(failure: Failure, entry: CatalogEntry | None) -> str:
    if failure.retryable:
        if failure.retry_after is not None:
            return f"retry after {_duration(failure.retry_after)}"
        recovery = entry.recovery if entry is not None else "retry"
        if recovery == "reduce_load":
            return "retry later with fewer calls at once"
        if recovery == "wait_for_lock":
            return "retry in a few seconds"
        return "retry later"
    if failure.code in _ARGUMENT_CODES:
        return _DO["fix_input"]
    recovery = entry.recovery if entry is not None else "fail_fast"
    return _DO.get(
        recovery, _DO_OPERATOR if recovery not in _RETRY_MODES else _DO["fail_fast"]
    )


_RETRY_MODES = frozenset({"retry", "retry_after", "wait_for_lock", "reduce_load"})


def _duration(seconds: float) -> str:
    whole = max(1, math.ceil(seconds))
    if whole < 120:
        return f"{whole} s"
    if whole < 2 * 3600:
        return f"{math.ceil(whole / 60)} min"
    return f"{math.ceil(whole / 3600)} h"
