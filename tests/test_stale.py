"""resilient(stale_if_error=seconds) (issue 19)."""

from __future__ import annotations

import asyncio

import pytest

import paios_reliability as pr
from paios_reliability.testing import FakeClock, capture_events


class Backend:
    def __init__(self) -> None:
        self.error: Exception | None = None
        self.calls = 0

    def __call__(self, city: str) -> str:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return f"sunny in {city} #{self.calls}"


def test_stale_if_error_must_be_positive() -> None:
    with pytest.raises(ValueError, match="stale_if_error"):
        pr.resilient(name="s", stale_if_error=0)
    with pytest.raises(TypeError, match="stale_if_error"):
        pr.resilient(name="s", stale_if_error="1m")  # type: ignore[arg-type]


def test_finding_19_stale_result_served_while_young(fake_clock: FakeClock) -> None:
    backend = Backend()
    weather = pr.resilient(name="weather", stale_if_error=60)(backend)
    assert weather("oslo") == "sunny in oslo #1"
    backend.error = ConnectionError("backend down")
    fake_clock.advance(30)
    with capture_events() as events:
        assert weather("oslo") == "sunny in oslo #1"
    served = [e for e in events if e.name.endswith("resilient.stale_served")]
    assert served[0].fields["age"] == pytest.approx(30)
    with pytest.raises(ConnectionError):
        weather("bergen")  # never answered: nothing to serve
    fake_clock.advance(31)
    with pytest.raises(ConnectionError):
        weather("oslo")  # too old now


def test_finding_19_stale_never_hides_a_permanent_error() -> None:
    backend = Backend()
    lookup = pr.resilient(name="lookup", stale_if_error=60)(backend)
    lookup("x")
    backend.error = ValueError("bad request")
    with pytest.raises(ValueError, match="bad request"):
        lookup("x")


def test_finding_19_outcome_marks_the_value_stale() -> None:
    backend = Backend()
    weather = pr.resilient(name="weather", stale_if_error=60)(backend)
    fresh = weather.outcome("oslo")  # type: ignore[attr-defined]
    assert fresh.ok
    assert not fresh.stale
    backend.error = TimeoutError("slow")
    stale = weather.outcome("oslo")  # type: ignore[attr-defined]
    assert stale.value == "sunny in oslo #1"
    assert stale.stale
    assert not stale.ok
    assert stale.failure.code == "TIMEOUT"
    assert stale.to_dict()["stale"] is True


def test_finding_19_unhashable_arguments_are_never_cached() -> None:
    calls: list[object] = []

    @pr.resilient(name="u", stale_if_error=60)
    def use(items: list[int]) -> int:
        calls.append(items)
        if len(calls) > 1:
            raise ConnectionError("down")
        return sum(items)

    assert use([1, 2]) == 3
    with pytest.raises(ConnectionError):
        use([1, 2])


def test_finding_19_stale_cache_is_bounded() -> None:
    from paios_reliability._policies.stale import StaleCache

    cache = StaleCache(60, "b", object(), max_entries=3)
    for i in range(10):
        cache.remember((i,), i)
    assert len(cache) == 3


def test_finding_19_async_stale_if_error_and_fallback_after_it() -> None:
    state = {"down": False}

    @pr.resilient(name="a", stale_if_error=60, fallback="fallback")
    async def get(city: str) -> str:
        if state["down"]:
            raise ConnectionError("down")
        return f"ok {city}"

    async def main() -> list[str]:
        first = await get("oslo")
        state["down"] = True
        return [first, await get("oslo"), await get("rome")]

    assert asyncio.run(main()) == ["ok oslo", "ok oslo", "fallback"]
