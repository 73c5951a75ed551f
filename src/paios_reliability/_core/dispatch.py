"""Small helpers every sync/async decorator shares.

Nothing here imports asyncio: deciding whether a callable is a coroutine
function goes through :mod:`inspect` only.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar, cast

__all__ = ["callable_name", "is_async_callable", "through_method_descriptors"]

D = TypeVar("D", bound=Callable[..., Any])


def is_async_callable(fn: Callable[..., Any]) -> bool:
    """Whether calling ``fn`` returns an awaitable we must await.

    True for coroutine functions, ``functools.partial`` of them, bound methods
    and objects whose ``__call__`` is a coroutine function.
    """
    while isinstance(fn, functools.partial):
        fn = fn.func
    if inspect.iscoroutinefunction(fn):
        return True
    if inspect.isfunction(fn) or inspect.ismethod(fn) or isinstance(fn, type):
        return False
    # An instance whose class defines ``async def __call__``.
    call = getattr(type(fn), "__call__", None)  # noqa: B004 - the class's, not callable()
    return inspect.iscoroutinefunction(call)


def callable_name(fn: Callable[..., Any]) -> str:
    """A readable dotted name for events and messages: ``module.Qual.name``."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    qualname = getattr(fn, "__qualname__", None) or getattr(
        type(fn), "__qualname__", repr(fn)
    )
    module = getattr(fn, "__module__", None)
    return f"{module}.{qualname}" if module and module != "builtins" else str(qualname)


def through_method_descriptors(decorate: D) -> D:
    """Let a decorator sit above ``@classmethod`` and ``@staticmethod``.

    Such an object is not a plain function (a classmethod is not even
    callable), so wrapping it would break the method. The decorator is applied
    to the function inside and the result wrapped in the same descriptor again:
    ``@retry() @classmethod def f(cls)`` behaves like
    ``@classmethod @retry() def f(cls)``. Costs one ``isinstance`` per
    decoration, nothing per call.
    """

    @functools.wraps(decorate)
    def apply(*args: Any) -> Any:
        fn = args[-1]
        if isinstance(fn, (classmethod, staticmethod)):
            return type(fn)(decorate(*args[:-1], fn.__func__))
        return decorate(*args)

    return cast(D, apply)
