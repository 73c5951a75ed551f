"""Every decorator works on methods, classmethods and staticmethods, sync and async.

A decorator written above ``@classmethod`` / ``@staticmethod`` receives the
descriptor, not a function; it must still give a working method whose calls
go through the policy (a retry here: the first call fails, the second wins).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

import pytest

import paios_reliability as pr
from paios_reliability.mcp import resilient_tool


def _decorators() -> dict[str, Callable[[], Callable[[Any], Any]]]:
    """Fresh decorators; each one retries a transient failure or lets it pass."""
    return {
        "retry": lambda: pr.retry(attempts=3),
        "resilient": lambda: pr.resilient(name="m", retry={"attempts": 3}),
        "timeout": lambda: pr.timeout(5.0),
        "error_boundary": lambda: pr.error_boundary(name="m"),
        "trace": pr.trace,
        "breaker": lambda: pr.CircuitBreaker("m"),
        "limiter": lambda: pr.RateLimiter("m", rate=1000, per=1.0),
        "bulkhead": lambda: pr.Bulkhead("m", max_concurrent=2),
        "idempotent": lambda: pr.idempotent(pr.MemoryStore(), key="k"),
        "resilient_tool": lambda: resilient_tool(retry={"attempts": 3}),
    }


RETRIES = {"retry", "resilient", "resilient_tool"}


def _build(name: str, kind: str, is_async: bool) -> tuple[type, list[int]]:
    decorate = _decorators()[name]()
    calls: list[int] = []

    def body(n: int) -> int:
        calls.append(n)
        if name in RETRIES and len(calls) == 1:
            raise ConnectionResetError("first call fails")
        return n * 2

    if is_async:

        async def method(self: object, n: int) -> int:
            await asyncio.sleep(0)
            return body(n)

        async def cmethod(cls: type, n: int) -> int:
            await asyncio.sleep(0)
            return body(n)

        async def smethod(n: int) -> int:
            await asyncio.sleep(0)
            return body(n)

    else:

        def method(self: object, n: int) -> int:
            return body(n)

        def cmethod(cls: type, n: int) -> int:
            return body(n)

        def smethod(n: int) -> int:
            return body(n)

    if kind == "method":
        attr: Any = decorate(method)
    elif kind == "classmethod":
        attr = decorate(classmethod(cmethod))
    else:
        attr = decorate(staticmethod(smethod))
    return type("Holder", (), {"f": attr}), calls


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("kind", ["method", "classmethod", "staticmethod"])
@pytest.mark.parametrize("name", sorted(_decorators()))
async def test_decorator_above_a_method_descriptor_keeps_a_working_method(
    name: str, kind: str, is_async: bool
) -> None:
    holder, calls = _build(name, kind, is_async)
    targets = [holder().f] if kind == "method" else [holder.f, holder().f]
    for target in targets:
        assert inspect.iscoroutinefunction(target) is is_async
        result = target(21)
        if is_async:
            result = await result
        if name == "resilient_tool" and not isinstance(result, int):
            pytest.fail(f"tool failed: {result!r}")
        assert result == 42
    # A retrying decorator really ran the policy: the first call failed once.
    expected = len(targets) + (1 if name in RETRIES else 0)
    if name == "idempotent":
        expected = 1  # one key: the second call answers from the record
    assert len(calls) == expected


def test_the_descriptor_kind_is_kept() -> None:
    class Holder:
        @pr.retry(attempts=2)
        @classmethod
        def make(cls) -> str:
            return cls.__name__

        @pr.retry(attempts=2)
        @staticmethod
        def add(a: int, b: int) -> int:
            return a + b

    assert isinstance(Holder.__dict__["make"], classmethod)
    assert isinstance(Holder.__dict__["add"], staticmethod)
    assert Holder.make() == "Holder"
    assert Holder().add(1, 2) == 3
