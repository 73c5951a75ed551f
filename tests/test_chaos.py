"""chaos(...), set_chaos and PAIOS_CHAOS (issue 19)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

import paios_reliability as pr
from paios_reliability import chaos, set_chaos
from paios_reliability.testing import FakeClock, capture_events, set_testing


def test_chaos_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="fault_rate"):
        chaos(fault_rate=1.5)
    with pytest.raises(ValueError, match="latency"):
        chaos(latency=-1, latency_rate=0.5)
    with pytest.raises(ValueError, match="needs latency"):
        chaos(latency_rate=0.5)
    with pytest.raises(ValueError, match="low <= high"):
        chaos(latency=(2.0, 1.0), latency_rate=1)
    with pytest.raises(TypeError, match="fault"):
        chaos(fault=42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="bool"):
        set_chaos(1)  # type: ignore[arg-type]


def test_finding_19_chaos_is_inert_unless_switched_on() -> None:
    calls: list[int] = []
    always = chaos(fault_rate=1.0)(lambda: calls.append(1) or "ran")
    with set_chaos(False):
        assert always() == "ran"
    with set_chaos(True), pytest.raises(ConnectionError):
        always()
    assert calls == [1]


def test_finding_19_chaos_injects_at_the_rate_reproducibly() -> None:
    def run() -> list[str]:
        layer = chaos(fault_rate=0.3, seed=42)(lambda: "ok")
        seen = []
        for _ in range(1000):
            try:
                seen.append(layer())
            except ConnectionError:
                seen.append("fault")
        return seen

    with set_chaos(True):
        first, second = run(), run()
    assert first == second
    assert 240 <= first.count("fault") <= 360  # 300 expected; seeded, so exact each run


def test_finding_19_chaos_latency_and_fake_results(fake_clock: FakeClock) -> None:
    layer = chaos(latency=(1.0, 2.0), latency_rate=1.0, result="fake", result_rate=1.0)
    wrapped = layer(lambda: "real")
    with set_chaos(True), capture_events() as events:
        assert wrapped() == "fake"
    assert len(fake_clock.sleeps) == 1
    assert 1.0 <= fake_clock.sleeps[0] <= 2.0
    kinds = [e.fields["kind"] for e in events if e.name.endswith("chaos.injected")]
    assert kinds == ["latency", "result"]


def test_finding_19_fault_is_fresh_each_time() -> None:
    proto = TimeoutError("injected")
    wrapped = chaos(fault_rate=1.0, fault=proto)(lambda: None)
    raised = []
    with set_chaos(True):
        for _ in range(2):
            try:
                wrapped()
            except TimeoutError as exc:
                raised.append(exc)
    assert raised[0] is not raised[1]
    assert raised[0] is not proto
    assert str(raised[0]) == "injected"


def test_finding_19_policies_recover_from_async_chaos() -> None:
    flaky = chaos(fault_rate=0.5, seed=3)

    @pr.resilient(name="agent-step", retry={"attempts": 20})
    @flaky
    async def step() -> str:
        return "done"

    async def main() -> list[str]:
        return [await step() for _ in range(10)]

    with set_chaos(True), set_testing(True):
        assert asyncio.run(main()) == ["done"] * 10


def test_finding_19_paios_chaos_environment_switch() -> None:
    code = (
        "import paios_reliability as pr\n"
        "print(pr.chaos_enabled())\n"
        "f = pr.chaos(fault_rate=1.0)(lambda: 'ok')\n"
        "try:\n    f()\nexcept ConnectionError:\n    print('injected')\n"
    )
    env = {**os.environ, "PAIOS_CHAOS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.stdout.split() == ["True", "injected"]
    env["PAIOS_CHAOS"] = "0"
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.stdout.split() == ["False"]


def test_finding_19_doctor_chaos() -> None:
    from paios_reliability.cli import main

    assert main(["doctor", "--chaos", "--check", "chaos"]) == 0
    assert not pr.chaos_enabled()
