"""Type-checked (mypy --strict), never run: the public surface's types hold."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from typing_extensions import assert_type

import paios_reliability as pr
from paios_reliability.typing import Clock

failure = pr.classify(ConnectionResetError())
assert_type(failure, pr.Failure)
assert_type(failure.retryable, bool)
assert_type(failure.retry_after, float | None)
assert_type(pr.is_retryable(KeyError()), bool)
assert_type(pr.exit_code_for(None), int)
assert_type(pr.audit_event(ValueError("x"), run_id="r1"), dict[str, Any])

restore = pr.set_active(False)
assert_type(restore, pr.Restorer)
with pr.set_active(True):
    pass

exc = pr.CircuitOpenError(breaker_name="github", retry_after=3.0)
assert_type(exc.retry_after, float | None)
assert_type(exc.code, str)
assert_type(
    pr.ConfigError(path="x.json", errors=[("a", "b")]).errors,
    tuple[tuple[str, str], ...],
)
pr.CircuitOpenError()  # type: ignore[call-arg]


@pr.trace(run_id="r1")
def handler(query: str, limit: int = 10) -> list[str]:
    return [query] * limit


assert_type(handler("q", limit=2), list[str])
handler(3)  # type: ignore[arg-type]


@pr.trace()
async def ahandler(query: str) -> int:
    return len(query)


async def use_async() -> None:
    assert_type(await ahandler("q"), int)


with pr.trace(run_id="r") as context:
    assert_type(context, Mapping[str, str])


def takes_clock(clock: Clock) -> float:
    return clock.monotonic()


from paios_reliability.testing import FakeClock  # noqa: E402

takes_clock(FakeClock())
