"""Type-checked (mypy --strict), never run: call policies keep exact signatures."""

from __future__ import annotations

import subprocess
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from typing_extensions import assert_type

import paios_reliability as pr

P = ParamSpec("P")
T = TypeVar("T")


# -- retry --------------------------------------------------------------------------


@pr.retry(attempts=3, deadline=10.0, seed=1)
def fetch(url: str, *, timeout: float = 5.0) -> bytes:
    return url.encode()


assert_type(fetch("https://example.org"), bytes)
assert_type(fetch("https://example.org", timeout=1.0), bytes)
fetch(3)  # type: ignore[arg-type]
fetch("x", timeout="slow")  # type: ignore[arg-type]


@pr.retry(on=(ConnectionError, TimeoutError), jitter="equal")
async def afetch(url: str, retries_seen: int = 0) -> dict[str, int]:
    return {url: retries_seen}


# The async wrappers are typed as the same coroutine-returning callables.
afetch_ref: Callable[[str, int], Coroutine[Any, Any, dict[str, int]]] = afetch


@pr.retry(on=lambda exc: isinstance(exc, OSError))
def predicate_based() -> None:
    return None


pr.retry(jitter="sometimes")  # type: ignore[arg-type]
pr.retry(attempts="5")  # type: ignore[arg-type]


class Repo:
    @pr.retry()
    def get(self, key: str) -> int:
        return len(key)

    @pr.retry()
    async def aget(self, key: str) -> int:
        return len(key)


assert_type(Repo().get("k"), int)
Repo().get(1)  # type: ignore[arg-type]


def use_retry_context() -> int:
    total = 0
    for attempt in pr.retry_context(attempts=3, name="block"):
        with attempt:
            assert_type(attempt.num, int)
            total += attempt.num
    return total


async def use_async_retry_context() -> None:
    async for attempt in pr.retry_context(deadline=5.0):
        with attempt:
            assert_type(attempt.num, int)


# -- timeout / deadline / remaining -----------------------------------------------------


@pr.timeout(2.0)
def slow(n: int) -> list[int]:
    return list(range(n))


@pr.timeout(2.0)
async def aslow(n: int) -> list[int]:
    return list(range(n))


assert_type(slow(3), list[int])
slow("3")  # type: ignore[arg-type]
assert_type(pr.remaining(), float | None)
with pr.deadline(1.0) as block:
    assert_type(block, pr.deadline)
    assert_type(block.remaining(), float | None)
    assert_type(block.expired, bool)


async def use_async_deadline() -> None:
    async with pr.deadline(0.5):
        assert_type(pr.remaining(), float | None)


pr.deadline("1")  # type: ignore[arg-type]


# -- error_boundary -------------------------------------------------------------------


@pr.error_boundary(fallback="unavailable", name="tool.summary")
def summary(text: str) -> str:
    return text[:10]


@pr.error_boundary(fallback=lambda exc: 0)
async def acount(items: list[str]) -> int:
    return len(items)


assert_type(summary("abc"), str)
summary(1)  # type: ignore[arg-type]
with pr.error_boundary(name="cleanup") as boundary:
    assert_type(boundary.error, Exception | None)


# -- resilient ---------------------------------------------------------------------


class Gate:
    """A user-written call policy: anything with ``__call__(fn) -> fn`` fits."""

    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]:
        return fn


@pr.resilient(
    name="weather", timeout=5.0, retry={"attempts": 3}, breaker=Gate(), fallback=None
)
async def weather(city: str, days: int = 3) -> list[str]:
    """Forecast."""
    return [city] * days


@pr.resilient(name="convert", retry=True, limiter=Gate(), bulkhead=Gate())
def convert(amount: float, currency: str = "EUR") -> float:
    return amount


assert_type(convert(1.5), float)
convert("x")  # type: ignore[arg-type]

# .policy and .outcome: typed, the signature kept for outcome() too.
assert_type(convert.policy.worst_case_seconds, float)
assert_type(convert.policy.describe(), str)
assert_type(convert.policy.deadline, float | None)
assert_type(convert.outcome(1.5), pr.Outcome[float])
assert_type(convert.outcome(1.5).value, float | None)
assert_type(convert.outcome(1.5).ok, bool)
assert_type(convert.outcome(1.5).failure, pr.Failure | None)
assert_type(convert.outcome(1.5).to_dict(), dict[str, Any])
convert.outcome("x")  # type: ignore[arg-type]
convert.policy.worst_case_seconds = 1.0  # type: ignore[misc]
weather_ref: Callable[[str, int], Coroutine[Any, Any, list[str]]] = weather


@pr.resilient(name="budgeted", timeout=1.0, deadline=3.0, retry_timeouts=0)
def budgeted(n: int) -> list[int]:
    return [n]


pr.resilient(name="x", deadline="3")  # type: ignore[arg-type]


class Tools:
    """resilient on methods: bound like functions, return types kept."""

    @pr.resilient(name="tools.count", retry=True)
    def count(self, items: list[str]) -> int:
        return len(items)

    @pr.resilient(name="tools.acount", timeout=1.0)
    async def acount(self, items: list[str]) -> int:
        return len(items)


assert_type(Tools().count(["a"]), int)
assert_type(Tools.count.policy.worst_case_seconds, float)
assert_type(Tools.count.outcome(Tools(), ["a"]), pr.Outcome[int])


async def use_async_method() -> None:
    assert_type(await Tools().acount(["a"]), int)
    assert_type(await Tools.acount.outcome(Tools(), ["a"]), pr.Outcome[int])


pr.resilient(name="x", retry_timeouts=1.5)  # type: ignore[arg-type]


@pr.retry(on_result=lambda r: r is None, raise_on_result=True, retry_after_max=5.0)
def poll() -> str | None:
    return None


assert_type(poll(), str | None)
pr.retry(raise_on_result="yes")  # type: ignore[arg-type]
policy: pr.CallPolicy = Gate()
pr.resilient(name="x", breaker=42)  # type: ignore[arg-type]
breaker_policy: pr.CallPolicy = pr.CircuitBreaker("dep")
limiter_policy: pr.CallPolicy = pr.RateLimiter("dep", rate=1, per=1.0)
retry_policy: pr.CallPolicy = pr.retry()


# -- run_process ----------------------------------------------------------------------


flag: bool = bool(len(__name__) % 2)
result = pr.run_process(["git", "status"], input=b"", timeout=5.0, check=False)
assert_type(result, pr.ProcessResult[bytes])
assert_type(result.returncode, int)
assert_type(result.stdout, bytes)
assert_type(result.duration, float)
completed: subprocess.CompletedProcess[bytes] = result  # a drop-in for subprocess.run
assert_type(
    pr.run_process(["ls"], capture_output=True, text=True), pr.ProcessResult[str]
)
assert_type(pr.run_process(["ls"], encoding="utf-8").stdout, str)
assert_type(
    pr.run_process("ls", stdout=subprocess.PIPE, stderr=subprocess.STDOUT),
    pr.ProcessResult[bytes],
)
assert_type(
    pr.run_process([Path("/bin/ls"), b"-l"], kill_group_on_exit=False),
    pr.ProcessResult[bytes],
)
assert_type(pr.run_process(["ls"], text=flag), pr.ProcessResult[Any])
arun_ref: Callable[..., Awaitable[pr.ProcessResult[Any]]] = pr.arun_process
pr.run_process(["git", "status"], timeout="5")  # type: ignore[call-overload]
pr.run_process(["ls"], shell=True)  # type: ignore[call-overload]


async def use_arun() -> None:
    done = await pr.arun_process(["ls"], cwd="/")
    assert_type(done, pr.ProcessResult[bytes])
    text = await pr.arun_process(["ls"], capture_output=True, text=True)
    assert_type(text.stdout, str)
    assert_type(await pr.arun_process(["ls"], encoding="utf-8"), pr.ProcessResult[str])
    assert_type(await pr.arun_process(["ls"], text=flag), pr.ProcessResult[Any])
    await pr.arun_process(["ls"], shell=True)  # type: ignore[call-overload]


try:
    pr.run_process(["false"], check=True)
except pr.ProcessError as failed:
    assert_type(failed.returncode, int)
    plain_failure: subprocess.CalledProcessError = failed
except pr.ProcessTimeoutError as timed_out:
    assert_type(timed_out.killed, bool)
    assert_type(timed_out.timeout, float)
    plain_timeout: subprocess.TimeoutExpired = timed_out
    builtin_timeout: TimeoutError = timed_out


async def use_async_wrappers() -> None:
    assert_type(await afetch("u"), dict[str, int])
    await afetch(1)  # type: ignore[arg-type]
    assert_type(await Repo().aget("k"), int)
    assert_type(await aslow(3), list[int])
    await aslow("3")  # type: ignore[arg-type]
    assert_type(await acount(["a"]), int)
    assert_type(await weather("Oslo"), list[str])
    await weather(1)  # type: ignore[arg-type]
    assert_type(await weather.outcome("Oslo"), pr.Outcome[list[str]])
    assert_type(weather.policy.worst_case_seconds, float)
    await weather.outcome(1)  # type: ignore[arg-type]
    try:
        await afetch("u")
    except pr.RetryExhaustedError as exhausted:
        assert_type(exhausted.attempts, int)
    except pr.UnsupportedEventLoopError as unsupported:
        assert_type(unsupported.library, str)
