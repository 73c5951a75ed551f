"""``resilient``: the whole call-policy stack in one decorator, in the right order.

From the outside in::

    error boundary -> retry -> circuit breaker -> rate limit -> bulkhead -> timeout -> operation

Why this order: the boundary sees only the final outcome; retry wraps
everything that can fail transiently, so a breaker rejection or a rate-limit
rejection is retried after its ``retry_after`` (within the retry deadline);
the breaker counts each attempt; the limiter and bulkhead admit each attempt;
the timeout bounds each attempt (``retry``'s deadline bounds all of them
together, and every attempt sees it through :func:`remaining`).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any, ParamSpec, TypeVar

from .typing import CallPolicy

__all__ = ["CallPolicy", "resilient"]

P = ParamSpec("P")
T = TypeVar("T")
_P = ParamSpec("_P")
_T = TypeVar("_T")


class _Unset:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<unset>"


UNSET: Any = _Unset()


def _retry_layer(
    retry: bool | Mapping[str, Any] | CallPolicy | None, name: str
) -> CallPolicy | None:
    if retry is None or retry is False:
        return None
    from ._retry import retry as make_retry

    if retry is True:
        return make_retry(name=name)
    if isinstance(retry, Mapping):
        options = dict(retry)
        options.setdefault("name", name)
        return make_retry(**options)
    if callable(retry):
        return retry
    raise TypeError(
        "resilient(retry=...) takes True, a dict of retry() options, a "
        f"retry(...) decorator or None, got {retry!r}"
    )


def _check_policy(value: object, what: str) -> None:
    if value is not None and not callable(value):
        raise TypeError(
            f"resilient({what}=...) must be a decorator object (policy(fn) -> fn), "
            f"got {value!r}"
        )


def resilient(
    *,
    name: str,
    timeout: float | None = None,
    retry: bool | Mapping[str, Any] | CallPolicy | None = None,
    breaker: CallPolicy | None = None,
    limiter: CallPolicy | None = None,
    bulkhead: CallPolicy | None = None,
    fallback: Any = UNSET,
) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Put the standard policy stack around a sync or async function.

    The layers, outermost first: :func:`error_boundary` (only when
    ``fallback`` is given) → :func:`retry` → ``breaker`` → ``limiter`` →
    ``bulkhead`` → :func:`timeout` (per attempt) → the function. Layers left
    as ``None`` are skipped. The result keeps the function's signature,
    annotations, docstring and sync/async nature, so frameworks that read
    them (the ``mcp`` SDK's ``MCPServer.tool()``, FastAPI, Typer) derive the
    same schema as for the bare function.

    Args:
        name: Name of the operation in events, notes and logs.
        timeout: Seconds per attempt (see :func:`timeout`), or ``None``.
        retry: ``True`` for :func:`retry`'s defaults, a dict of
            :func:`retry` options, a ``retry(...)`` decorator, or ``None``
            for no retries.
        breaker: A :class:`CircuitBreaker` (or any :class:`CallPolicy`).
        limiter: A :class:`RateLimiter` (or any :class:`CallPolicy`).
        bulkhead: A :class:`Bulkhead` (or any :class:`CallPolicy`).
        fallback: If given, an :func:`error_boundary` returns it (or
            ``fallback(exc)`` when callable) instead of raising. Leave it
            unset to let errors propagate.

    Returns:
        A decorator.

    Raises:
        TypeError: If a layer is not a decorator object.
        ValueError: If ``name`` is empty or ``timeout`` is not positive, or
            on invalid retry options.
    """
    given: object = name
    if not isinstance(given, str) or not given:
        raise ValueError(
            f"resilient(name=...) must be a non-empty string, got {name!r}"
        )
    for what, value in (
        ("breaker", breaker),
        ("limiter", limiter),
        ("bulkhead", bulkhead),
    ):
        _check_policy(value, what)
    retry_layer = _retry_layer(retry, name)
    timeout_layer: CallPolicy | None = None
    if timeout is not None:
        from ._timeout import timeout as make_timeout

        timeout_layer = make_timeout(timeout)
    boundary_layer: CallPolicy | None = None
    if fallback is not UNSET:
        from ._boundary import error_boundary

        boundary_layer = error_boundary(fallback=fallback, name=name)
    # Innermost first.
    layers = [
        layer
        for layer in (
            timeout_layer,
            bulkhead,
            limiter,
            breaker,
            retry_layer,
            boundary_layer,
        )
        if layer is not None
    ]

    def decorate(fn: Callable[P, T]) -> Callable[P, T]:
        wrapped = fn
        for layer in layers:
            wrapped = layer(wrapped)
        if wrapped is not fn and inspect.unwrap(wrapped) is not fn:
            # A layer that forgot functools.wraps would hide the signature.
            with contextlib.suppress(AttributeError, TypeError):  # read-only wrapper
                functools.update_wrapper(wrapped, fn)
        return wrapped

    return decorate
