"""Small helpers every sync/async decorator shares.

Nothing here imports asyncio, nor :mod:`inspect` for a plain function:
with what inspect pulls in (ast, dis, tokenize) that is ~7 ms of start-up
that a short-lived hook would pay for one bit of a code object.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from types import FunctionType, MethodType

from .typing_lite import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from typing import Any, TypeVar

    D = TypeVar("D", bound=Callable[..., Any])

__all__ = [
    "callable_name",
    "is_async_callable",
    "is_coroutine_function",
    "through_method_descriptors",
]

_CO_COROUTINE = 0x80  # inspect.CO_COROUTINE, a flag of the code object


def is_coroutine_function(fn: object) -> bool:
    """:func:`inspect.iscoroutinefunction`, without importing :mod:`inspect`.

    For a plain function, a bound method or a ``functools.partial`` of one,
    the answer is a flag of its code object. Anything else (and any function
    once :mod:`inspect` is loaded: only then can a function carry
    ``inspect.markcoroutinefunction``'s mark) is left to inspect itself.
    """
    if "inspect" not in sys.modules:
        target = fn
        while isinstance(target, (MethodType, functools.partial)):
            target = target.__func__ if isinstance(target, MethodType) else target.func
        if isinstance(target, FunctionType):
            return bool(target.__code__.co_flags & _CO_COROUTINE)
    import inspect

    return bool(inspect.iscoroutinefunction(fn))


def is_async_callable(fn: Callable[..., Any]) -> bool:
    """Whether calling ``fn`` returns an awaitable we must await.

    True for coroutine functions, ``functools.partial`` of them, bound methods
    and objects whose ``__call__`` is a coroutine function.
    """
    while isinstance(fn, functools.partial):
        fn = fn.func
    if is_coroutine_function(fn):
        return True
    if isinstance(fn, (FunctionType, MethodType, type)):
        return False
    # An instance whose class defines ``async def __call__``.
    call = getattr(type(fn), "__call__", None)  # noqa: B004 - the class's, not callable()
    return is_coroutine_function(call)


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

    return cast("D", apply)
