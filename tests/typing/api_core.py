"""Type-checked (mypy --strict), never run: the shared core keeps its types.

Decorators keep the wrapped signature (ParamSpec), the taxonomy returns our
frozen types, and wrong calls are caught (each ``# type: ignore[...]`` must be
needed, or warn_unused_ignores fails the check).
"""

from __future__ import annotations

import re
from collections.abc import Coroutine, Iterator, Mapping
from typing import Any, Literal

from typing_extensions import assert_type

import paios_reliability as pr
from paios_reliability.testing import (
    CapturedEvents,
    FakeClock,
    Flaky,
    capture_events,
    flaky,
    set_testing,
)
from paios_reliability.typing import Classifier, Clock, EventHook

# -- trace keeps signatures --------------------------------------------------------------


@pr.trace(tool="search")
def search(query: str, *, limit: int = 10) -> list[str]:
    return [query] * limit


assert_type(search("q"), list[str])
assert_type(search("q", limit=3), list[str])
search(1)  # type: ignore[arg-type]
search("q", limit="3")  # type: ignore[arg-type]
search("q", 3)  # type: ignore[call-arg]
search("q", nope=1)  # type: ignore[call-arg]


@pr.trace()
async def fetch(url: str, retries: int = 3) -> bytes:
    return url.encode() * retries


coroutine = fetch("u")  # the async wrapper still returns a coroutine of bytes
assert_type(coroutine, Coroutine[Any, Any, bytes]).close()


async def uses_fetch() -> None:
    assert_type(await fetch("u", 2), bytes)
    await fetch(b"u")  # type: ignore[arg-type]
    async with pr.trace(run_id="r") as ctx:
        assert_type(ctx, Mapping[str, str])


with pr.trace(trace_id="0af7651916cd43dd8448eb211c80319c", run_id=1) as span:
    assert_type(span, Mapping[str, str])
assert_type(pr.current_trace(), Mapping[str, str])

# -- flaky keeps signatures ---------------------------------------------------------------

injector = flaky(2, ConnectionResetError)
assert_type(injector, Flaky)
flaky(1, ConnectionResetError("same instance"))
flaky(1, lambda n: TimeoutError(f"call {n}"))
flaky("2")  # type: ignore[arg-type]
flaky(1, "boom")  # type: ignore[arg-type]


@injector
def parse(text: str) -> int:
    return len(text)


@flaky(1)
async def aparse(text: str) -> int:
    return len(text)


assert_type(parse("x"), int)
assert_type(injector.calls, int)
assert_type(injector.failures, int)
parse(1)  # type: ignore[arg-type]


async def uses_aparse() -> None:
    assert_type(await aparse("x"), int)
    await aparse(None)  # type: ignore[arg-type]


# -- taxonomy --------------------------------------------------------------------------------

failure = pr.classify(TimeoutError())
assert_type(failure, pr.Failure)
assert_type(failure.kind, Literal["transient", "permanent"])
assert_type(failure.code, str)
assert_type(failure.retryable, bool)
assert_type(failure.retry_after, float | None)
assert_type(failure.reason, str)
pr.classify("not an exception")  # type: ignore[arg-type]
classifier: Classifier = pr.classify
assert_type(pr.is_retryable(KeyboardInterrupt()), bool)
assert_type(pr.exit_code_for(None), int)
assert_type(pr.exit_code_for(SystemExit(2)), int)
assert_type(pr.audit_event(ValueError(), run_id="r", token="t"), dict[str, Any])

entry = pr.CATALOG["DB_LOCKED"]
assert_type(entry, pr.CatalogEntry)
assert_type(entry.exit_code, int)
assert_type(entry.retryable, bool)
assert_type(pr.CATALOG.get("X"), pr.CatalogEntry | None)
assert_type(list(pr.CATALOG), list[pr.CatalogEntry])
assert_type(pr.CATALOG.to_markdown(), str)
restore_rule = pr.CATALOG.register(
    "VENDOR_QUOTA",
    type=(KeyError, ValueError),
    errno=5,
    status=429,
    message=re.compile("quota"),
    predicate=lambda exc: "quota" in str(exc),
    kind="transient",
    exit_code=25,
    recovery="retry_after",
    summary="Vendor quota.",
)
assert_type(restore_rule, pr.Restorer)
pr.CATALOG.register("X", type=int)  # type: ignore[arg-type]
pr.CATALOG.register("X", type=KeyError, kind="sometimes", summary="s")  # type: ignore[arg-type]
pr.CATALOG.register("X", type=KeyError, recovery="pray")  # type: ignore[arg-type]
pr.CATALOG.register("X", predicate=lambda exc: exc.nope)  # type: ignore[attr-defined]

# -- exceptions ----------------------------------------------------------------------------

exc = pr.RateLimitedError("slow", retry_after=1.0, context={"k": 1})
assert_type(exc.retry_after, float | None)
assert_type(exc.context, Mapping[str, object])
assert_type(exc.exit_code, int)
assert_type(exc.retryable, bool)
timeout_exc: TimeoutError = pr.TimeoutExceeded("t", seconds=1.0)
value_exc: ValueError = pr.ConfigError(path="a", errors=[("f", "m")])
limited: pr.RateLimitedError = pr.BulkheadFullError()
assert_type(pr.LockConflictError(key="k").holder, str | None)
assert_type(pr.CircuitOpenError(breaker_name="b").breaker_name, str)
pr.LockConflictError()  # type: ignore[call-arg]
pr.ReliabilityError("x", retryable="yes")  # type: ignore[arg-type]

# -- events, switches, clocks -------------------------------------------------------------


def hook(event: pr.Event) -> None:
    assert_type(event.name, str)
    assert_type(event.fields, Mapping[str, Any])
    assert_type(event.trace, Mapping[str, str])
    assert_type(event.exc, BaseException | None)


typed_hook: EventHook = hook
assert_type(pr.add_event_hook(hook), pr.Restorer)
pr.add_event_hook(lambda: None)  # type: ignore[arg-type]
assert_type(pr.set_log_summary(30.0, max_keys=64), pr.Restorer)
assert_type(pr.set_log_summary(None), pr.Restorer)
pr.set_log_summary("60")  # type: ignore[arg-type]

with capture_events() as events:
    assert_type(events, CapturedEvents)
    assert_type(events.names(), list[str])
    assert_type(events.of("retry.scheduled"), list[pr.Event])
    for event in events:
        assert_type(event, pr.Event)

assert_type(set_testing(), pr.Restorer)
assert_type(set_testing(True, attempts=2), pr.Restorer)
assert_type(pr.set_active(False), pr.Restorer)
with pr.set_active(True) as restorer:
    assert_type(restorer, pr.Restorer)
set_testing(attempts="2")  # type: ignore[arg-type]

clock = FakeClock(start=5.0)
assert_type(clock.monotonic(), float)
assert_type(clock.sleeps, list[float])
assert_type(clock.install(), pr.Restorer)
as_protocol: Clock = clock
clock.advance("1")  # type: ignore[arg-type]

assert_type(pr.configure_logging(json=True, level="INFO"), pr.Restorer)
pr.configure_logging(json="yes")  # type: ignore[arg-type]
pr.configure_logging(True)  # type: ignore[call-arg]


def fixture_style() -> Iterator[FakeClock]:
    with FakeClock().install():
        yield FakeClock()
