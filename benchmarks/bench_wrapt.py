"""Should our decorators be built on wrapt? The measurements behind the answer.

1. Import cost: `python -X importtime -c "import wrapt"` in fresh interpreters
   (median cumulative µs), beside `import paios_reliability`.
2. Per-call overhead of a pass-through decorator made with `wrapt.decorator`
   versus `functools.wraps`, on a function, a method, a classmethod and a
   staticmethod, sync and async (ns per call above the undecorated call).
3. Introspection: does `inspect.signature`, `inspect.iscoroutinefunction` and
   the mcp SDK's tool schema derivation see through each kind of wrapper?
4. Our own decorators (retry, timeout, CircuitBreaker, resilient,
   error_boundary) on methods, classmethods and staticmethods, with the
   decorator below and above `@classmethod` / `@staticmethod`: what works,
   what breaks.

Run: `python benchmarks/bench_wrapt.py` (needs wrapt; mcp is optional).
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import inspect
import statistics
import subprocess
import sys
import timeit
from collections.abc import Callable
from typing import Any

RUNS = 15
CALLS = 200_000
ASYNC_CALLS = 100_000


# -- 1. import cost ----------------------------------------------------------------


def cumulative_us(module: str) -> int:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        check=True,
    )
    for line in proc.stderr.splitlines():
        parts = [p.strip() for p in line.removeprefix("import time:").split("|")]
        if len(parts) == 3 and parts[2] == module:
            return int(parts[1])
    raise RuntimeError(f"no importtime line for {module}")


def import_cost() -> None:
    print(f"== 1. import cost (median of {RUNS} fresh interpreters)")
    for module in ("wrapt", "paios_reliability", "functools", "inspect"):
        if importlib.util.find_spec(module) is None:
            print(f"{module:<20} not installed")
            continue
        us = statistics.median(cumulative_us(module) for _ in range(RUNS))
        print(f"{module:<20}{us:>8.0f} µs")
    print()


# -- the two ways to write a pass-through decorator ----------------------------------


def functools_deco(fn: Callable[..., Any]) -> Any:
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            return await fn(*args, **kwargs)

        return async_wrapper

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    return wrapper


def make_wrapt_deco() -> Callable[[Any], Any]:
    import wrapt

    @wrapt.decorator
    def sync_deco(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        return wrapped(*args, **kwargs)

    @wrapt.decorator
    async def async_deco(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        return await wrapped(*args, **kwargs)

    def deco(fn: Any) -> Any:
        target = getattr(fn, "__func__", fn)
        return (async_deco if inspect.iscoroutinefunction(target) else sync_deco)(fn)

    return deco


# -- 2. per-call overhead ------------------------------------------------------------


SHAPES = (
    "function",
    "method",
    "classmethod (deco below)",
    "classmethod (deco above)",
    "staticmethod (deco below)",
    "staticmethod (deco above)",
)


def build(shape: str, deco: Callable[[Any], Any] | None, is_async: bool) -> Any:
    """The callable of ``shape`` decorated with ``deco`` (None: undecorated)."""
    d = deco or (lambda f: f)
    if is_async:

        async def body(*args: Any) -> int:
            return len(args)
    else:

        def body(*args: Any) -> int:
            return len(args)

    if shape == "function":
        return d(body)
    if shape == "method":
        cls = type("C", (), {"m": d(body)})
        return cls().m
    kind = classmethod if shape.startswith("classmethod") else staticmethod
    member = kind(d(body)) if "below" in shape else d(kind(body))
    cls = type("C", (), {"m": member})
    return cls().m


def per_call_ns(fn: Callable[[], Any], is_async: bool) -> float:
    if not is_async:
        return min(timeit.repeat(fn, number=CALLS, repeat=5)) / CALLS * 1e9

    async def loop() -> None:
        for _ in range(ASYNC_CALLS):
            await fn()

    best = float("inf")
    for _ in range(5):
        start = timeit.default_timer()
        asyncio.run(loop())
        best = min(best, timeit.default_timer() - start)
    return best / ASYNC_CALLS * 1e9


def result_of(fn: Callable[[], Any], is_async: bool) -> object:
    return asyncio.run(fn()) if is_async else fn()


def overhead(wrapt_deco: Callable[[Any], Any]) -> None:
    print("== 2. per-call overhead above the bare call (ns, best of 5)")
    print("   ('wrong args': the body got other arguments than undecorated)")
    print(f"{'shape':<28}{'mode':<7}{'bare':>8}{'functools':>11}{'wrapt':>9}")
    for is_async in (False, True):
        for shape in SHAPES:
            plain = build(shape, None, is_async)
            bare = per_call_ns(plain, is_async)
            row = []
            for deco in (functools_deco, wrapt_deco):
                try:
                    fn = build(shape, deco, is_async)
                    if result_of(fn, is_async) != result_of(plain, is_async):
                        row.append("wrong args")
                        continue
                    row.append(f"{per_call_ns(fn, is_async) - bare:>+9.0f}")
                except Exception as exc:
                    row.append(f"  {type(exc).__name__}")
            mode = "async" if is_async else "sync"
            print(f"{shape:<28}{mode:<7}{bare:>8.0f}{row[0]:>11}{row[1]:>9}")
    print()


# -- 3. introspection ----------------------------------------------------------------


def tool_schema(fn: Callable[..., Any]) -> object:
    try:
        from mcp.server.mcpserver.tools.base import Tool
    except ImportError:
        return "mcp not installed"
    tool = Tool.from_function(fn, name="search")
    return (tool.parameters, tool.output_schema, tool.description)


def introspection(wrapt_deco: Callable[[Any], Any]) -> None:
    print("== 3. what introspection sees through the wrapper (True: same as bare)")

    def search(query: str, limit: int = 10) -> list[str]:
        """Search the notes."""
        return [query] * limit

    async def asearch(query: str, limit: int = 10) -> list[str]:
        """Search the notes."""
        return [query] * limit

    print(
        f"{'wrapper':<12}{'mode':<7}{'signature':>10}{'coroutine fn':>14}{'mcp schema':>12}"
    )
    for label, deco in (("functools", functools_deco), ("wrapt", wrapt_deco)):
        for bare in (search, asearch):
            wrapped = deco(bare)
            mode = "async" if bare is asearch else "sync"
            same_sig = inspect.signature(wrapped) == inspect.signature(bare)
            coro = inspect.iscoroutinefunction(wrapped) == inspect.iscoroutinefunction(
                bare
            )
            schema = tool_schema(wrapped) == tool_schema(bare)
            print(f"{label:<12}{mode:<7}{same_sig!s:>10}{coro!s:>14}{schema!s:>12}")
    print()


# -- 4. our decorators on methods ------------------------------------------------------


def our_decorators() -> None:
    import paios_reliability as pr
    from paios_reliability.testing import set_testing

    print("== 4. our decorators on methods (call through the instance and the class)")

    def factories() -> dict[str, Callable[[], Callable[[Any], Any]]]:
        n = iter(range(10_000))
        return {
            "retry": lambda: pr.retry(attempts=2, deadline=5.0),
            "timeout": lambda: pr.timeout(5.0),
            "CircuitBreaker": lambda: pr.CircuitBreaker(f"bench-{next(n)}"),
            "resilient": lambda: pr.resilient(name=f"bench-{next(n)}", timeout=5.0),
            "error_boundary": lambda: pr.error_boundary(fallback="fallback"),
        }

    def attempt(shape: str, deco: Callable[[Any], Any], is_async: bool) -> str:
        if is_async:

            async def body(*args: Any) -> object:
                return args
        else:

            def body(*args: Any) -> object:
                return args

        try:
            if shape == "method":
                cls = type("C", (), {"m": deco(body)})
            else:
                kind = classmethod if shape.startswith("classmethod") else staticmethod
                member = kind(deco(body)) if "below" in shape else deco(kind(body))
                cls = type("C", (), {"m": member})
        except Exception as exc:
            return f"decorating: {type(exc).__name__}"
        obj = cls()
        expected = {
            "method": (obj,),
            "classmethod (deco below)": (cls,),
            "classmethod (deco above)": (cls,),
            "staticmethod (deco below)": (),
            "staticmethod (deco above)": (),
        }[shape]
        results = []
        targets = [obj.m] if shape == "method" else [obj.m, cls.m]
        for target in targets:
            try:
                if is_async and not inspect.iscoroutinefunction(target):
                    # The sync wrapper returns the coroutine unawaited: the
                    # policy never sees the awaited call's failure.
                    verdict = "not a coroutine function (policy bypassed)"
                    got = asyncio.run(target())
                    if got != expected:
                        verdict += f", wrong args {got!r}"[:40]
                    return verdict
                got = asyncio.run(target()) if is_async else target()
            except Exception as exc:
                return f"call: {type(exc).__name__}: {str(exc)[:60]}"
            results.append(got)
        if any(r != expected for r in results):
            return f"wrong result {results!r}"[:70]
        return "ok"

    shapes = [s for s in SHAPES if s != "function"]
    for is_async in (False, True):
        print(f"-- {'async' if is_async else 'sync'}")
        for name, make in factories().items():
            for shape in shapes:
                with set_testing(True):
                    verdict = attempt(shape, make(), is_async)
                print(f"{name:<16}{shape:<28}{verdict}")
    print()


def main() -> None:
    import logging

    logging.disable(logging.CRITICAL)  # error_boundary logs every caught error
    print(f"python {sys.version.split()[0]}")
    import wrapt

    print(f"wrapt {wrapt.__version__}\n")
    import_cost()
    wrapt_deco = make_wrapt_deco()
    introspection(wrapt_deco)
    our_decorators()
    overhead(wrapt_deco)


if __name__ == "__main__":
    main()
