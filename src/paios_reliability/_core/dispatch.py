"""Small helpers every sync/async decorator shares.

Nothing here imports asyncio: deciding whether a callable is a coroutine
function goes through :mod:`inspect` only.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

__all__ = ["callable_name", "is_async_callable"]


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
