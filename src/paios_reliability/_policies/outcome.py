"""``Outcome``: what one call through a ``resilient`` stack came to, as data.

``f.outcome(...)`` runs the stack and returns an :class:`Outcome` instead of
raising, for callers that report rather than propagate (an MCP tool result,
a batch summary, an agent's step log). The per-call facts it needs (how many
attempts the stack's retry layer made) travel in a context variable, tagged
with the stack they belong to, so a nested ``resilient`` call inside the
operation never writes into the outer call's record.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from .._core.taxonomy import Failure

__all__ = ["CallRecord", "Outcome", "current", "record_for"]

T_co = TypeVar("T_co", covariant=True)


class CallRecord:
    """Per-call facts filled in by the layers of one stack (never shared)."""

    __slots__ = ("attempts", "stack", "stale_error")

    def __init__(self, stack: object) -> None:
        self.stack = stack
        self.attempts = 1
        # The failure a stale value was served for (resilient(stale_if_error=)).
        self.stale_error: Exception | None = None


current: contextvars.ContextVar[CallRecord | None] = contextvars.ContextVar(
    "paios_reliability_call_record", default=None
)


def record_for(stack: object) -> CallRecord | None:
    """The record of the running ``outcome()`` call of ``stack``, if any."""
    if stack is None:
        return None
    record = current.get()
    return record if record is not None and record.stack is stack else None


@dataclass(frozen=True, slots=True)
class Outcome(Generic[T_co]):
    """The result of one call through a ``resilient`` stack, failure included.

    Attributes:
        ok: The operation succeeded (a fallback value is *not* success).
        value: Its result; the fallback value when ``fallback_used``; else
            ``None``.
        failure: How the final error was classified (:func:`classify`), or
            ``None`` when ``ok``.
        attempts: Attempts made by the stack's retry layer (1 without one).
        elapsed: Seconds the call took, waits included (the clock of
            :func:`get_clock`).
        fallback_used: The stack's ``fallback`` produced ``value``.
        trace_id: The trace the call ran in (its events carry the same id).
        error: The final exception itself (not part of :meth:`to_dict`, not
            compared).
        stale: ``value`` is an earlier result served because the stack
            failed (``resilient(stale_if_error=...)``); ``ok`` is false.
    """

    ok: bool
    value: T_co | None
    failure: Failure | None
    attempts: int
    elapsed: float
    fallback_used: bool
    trace_id: str | None
    error: BaseException | None = field(default=None, compare=False, repr=False)
    stale: bool = False

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe view: the value through ``json_safe``, secrets redacted.

        The error appears as its type name and redacted message.
        """
        from .._core.redaction import json_safe, redact_text

        failure = self.failure
        out: dict[str, Any] = {
            "ok": self.ok,
            "value": json_safe(self.value),
            "failure": None
            if failure is None
            else {
                "kind": failure.kind,
                "code": failure.code,
                "retryable": failure.retryable,
                "retry_after": failure.retry_after,
                "reason": redact_text(failure.reason),
            },
            "attempts": self.attempts,
            "elapsed": round(self.elapsed, 6),
            "fallback_used": self.fallback_used,
            "stale": self.stale,
            "trace_id": self.trace_id,
        }
        error = self.error
        if error is not None:
            out["error_type"] = type(error).__qualname__
            try:
                text = str(error)
            except Exception:  # noqa: BLE001 - a broken __str__ must not break a report
                text = "<unprintable>"
            out["error"] = redact_text(text)[:500]
        return out
