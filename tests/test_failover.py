"""failover([...]) and FailoverExhaustedError (issue 19)."""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import Callable

import pytest

import paios_reliability as pr
from paios_reliability import FailoverExhaustedError, failover
from paios_reliability.testing import FakeClock, capture_events
from paios_reliability.typing import StateStore


class Provider:
    """A stand-in provider that fails with a given error until told otherwise."""

    def __init__(self, name: str, error: Exception | None = None) -> None:
        self.name = name
        self.error = error
        self.calls = 0

    def __call__(self, prompt: str) -> str:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return f"{self.name}:{prompt}"

    async def acall(self, prompt: str) -> str:
        await asyncio.sleep(0)
        return self(prompt)


def test_failover_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="non-empty list"):
        failover([])
    with pytest.raises(TypeError, match="entry 1"):
        failover([print, 3])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="distinct names"):
        failover([("a", print), ("a", repr)])
    with pytest.raises(TypeError, match="all sync or all async"):
        failover([("s", Provider("s")), ("a", Provider("a").acall)])
    with pytest.raises(TypeError, match="breaker"):
        failover([print], breaker=3)  # type: ignore[arg-type]


def test_finding_19_failover_answers_from_the_first_healthy_entry() -> None:
    a = Provider("a", ConnectionError("a is down"))
    b = Provider("b")
    chain = failover([("a", a), ("b", b)], name="llm")
    with capture_events() as events:
        assert chain("hi") == "b:hi"
    answered = [e for e in events if e.name.endswith("failover.answered")]
    assert answered[0].fields["entry"] == "b"
    assert answered[0].fields["failed"] == ["a"]
    assert (a.calls, b.calls) == (1, 1)


def test_finding_19_first_entry_answering_costs_no_events() -> None:
    chain = failover([("a", Provider("a")), ("b", Provider("b"))])
    with capture_events() as events:
        assert chain("x") == "a:x"
    assert not [e for e in events if "failover" in e.name]


def test_finding_19_errors_on_rejects_do_not_fail_over() -> None:
    bad_request = ValueError("prompt is invalid")
    a = Provider("a", bad_request)
    b = Provider("b")
    chain = failover([("a", a), ("b", b)])
    with pytest.raises(ValueError, match="prompt is invalid") as raised:
        chain("x")
    assert raised.value is bad_request
    assert b.calls == 0


def test_finding_19_open_entry_is_skipped_without_a_call() -> None:
    clock = FakeClock()
    a = Provider("a", ConnectionError("down"))
    b = Provider("b")
    chain = failover(
        [("a", a), ("b", b)],
        breaker={"failure_threshold": 2, "reset_timeout": 30, "clock": clock},
    )
    for _ in range(5):
        assert chain("x") == "b:x"
    assert a.calls == 2  # then its breaker opened: skipped at no cost
    a.error = None
    clock.advance(30)
    assert chain("x") == "a:x"  # the probe closes it again
    assert chain.breakers[0] is not None
    assert chain.breakers[0].name == "failover:failover:a"


def test_finding_19_exhausted_chain_carries_every_failure() -> None:
    first, second = ConnectionError("a down"), TimeoutError("b slow")
    chain = failover([("a", Provider("a", first)), ("b", Provider("b", second))])
    with capture_events() as events, pytest.raises(FailoverExhaustedError) as raised:
        chain("x")
    error = raised.value
    assert error.failures == (("a", first), ("b", second))
    assert error.__cause__ is second
    assert error.code == "FAILOVER_EXHAUSTED"
    assert error.retryable
    assert "a: ConnectionError: a down" in str(error)
    assert pr.classify(error).code == "FAILOVER_EXHAUSTED"
    assert any(e.name.endswith("failover.exhausted") for e in events)
    copy = pickle.loads(pickle.dumps(error))
    assert [label for label, _ in copy.failures] == ["a", "b"]


def test_finding_19_failover_error_text_is_redacted() -> None:
    leak = ConnectionError("failed with api_key=sk-abcdefghijklmnopqrstuvwx")
    chain = failover([("a", Provider("a", leak))], breaker=False)
    with pytest.raises(FailoverExhaustedError) as raised:
        chain("x")
    assert "sk-abcdefghijklmnopqrstuvwx" not in str(raised.value)


def test_finding_19_async_failover() -> None:
    a, b = Provider("a", ConnectionError("down")), Provider("b")
    chain = failover([("a", a.acall), ("b", b.acall)])

    async def main() -> str:
        return str(await chain("x"))

    assert asyncio.run(main()) == "b:x"


def test_finding_19_resilient_fallback_fails_over_with_the_call_arguments() -> None:
    backup = Provider("backup")

    @pr.resilient(name="primary", fallback=failover([("backup", backup)]))
    def primary(prompt: str) -> str:
        raise TimeoutError("primary is slow")

    assert primary("q") == "backup:q"
    outcome = primary.outcome("r")  # type: ignore[attr-defined]
    assert outcome.value == "backup:r"
    assert outcome.fallback_used


def test_finding_19_resilient_failover_exhausted_and_rejected() -> None:
    dead = Provider("dead", ConnectionError("down"))

    @pr.resilient(name="primary", fallback=failover([("dead", dead)], breaker=False))
    def primary(prompt: str) -> str:
        if prompt == "bad":
            raise ValueError("bad request")
        raise TimeoutError("slow")

    with pytest.raises(FailoverExhaustedError) as raised:
        primary("q")
    assert [label for label, _ in raised.value.failures] == ["primary", "dead"]
    with pytest.raises(ValueError, match="bad request"):
        primary("bad")
    assert dead.calls == 1
    outcome = primary.outcome("q")  # type: ignore[attr-defined]
    assert not outcome.ok
    assert outcome.failure.code == "FAILOVER_EXHAUSTED"
    assert not outcome.fallback_used


def test_finding_19_async_resilient_failover() -> None:
    backup = Provider("backup")

    @pr.resilient(name="primary", fallback=failover([("backup", backup.acall)]))
    async def primary(prompt: str) -> str:
        raise ConnectionError("down")

    async def main() -> tuple[str, object]:
        value = await primary("q")
        outcome = await primary.outcome("r")  # type: ignore[attr-defined]
        return value, outcome.value

    assert asyncio.run(main()) == ("backup:q", "backup:r")


def test_finding_19_failover_breakers_share_a_store(
    make_store: Callable[[], StateStore],
) -> None:
    store = make_store()
    a = Provider("a", ConnectionError("down"))
    one = failover(
        [("a", a), ("b", Provider("b"))],
        name="s",
        store=store,
        breaker={"failure_threshold": 1},
    )
    two = failover(
        [("a", a), ("b", Provider("b"))],
        name="s",
        store=store,
        breaker={"failure_threshold": 1},
    )
    assert one("x") == "b:x"
    assert two("x") == "b:x"  # the breaker the other chain opened skips "a"
    assert a.calls == 1


def test_an_entry_error_on_rejects_reaches_the_caller_unchanged() -> None:
    # Even a StopIteration: the chain is a generator, and must not turn it
    # into "RuntimeError: generator raised StopIteration".
    error = StopIteration("from the entry")

    def entry(prompt: str) -> str:
        raise error

    chain = failover(
        [entry, Provider("b")], on=lambda exc: not isinstance(exc, StopIteration)
    )
    with pytest.raises(StopIteration) as raised:
        chain("hi")
    assert raised.value is error
