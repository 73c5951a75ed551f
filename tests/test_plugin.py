"""The pytest plugin (entry point ``pytest11``) as a user's test suite sees it."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

USER_TESTS = """
import asyncio

import pytest

import paios_reliability as pr


def test_fake_clock_is_installed(fake_clock):
    from paios_reliability._core.clock import get_clock

    assert get_clock() is fake_clock
    fake_clock.sleep(30)
    fake_clock.advance(5)
    assert fake_clock.monotonic() == 35
    assert fake_clock.sleeps == [30]


def test_fake_clock_async(fake_clock):
    asyncio.run(fake_clock.asleep(60))
    assert fake_clock.monotonic() == 60


def test_events_are_captured(reliability_events):
    from paios_reliability._core.events import emit

    emit("retry", "scheduled", attempt=1)
    assert reliability_events.names() == ["paios_reliability.retry.scheduled"]


def test_events_start_empty_in_each_test(reliability_events):
    assert list(reliability_events) == []


def test_1_changes_global_state():
    from paios_reliability._core.clock import set_clock
    from paios_reliability.testing import FakeClock, set_testing

    pr.set_active(False)  # never restored by the test itself
    set_testing(True, attempts=2)
    set_clock(FakeClock(start=99.0))
    pr.CATALOG.register("LEAKED", type=KeyError, kind="transient", summary="leak")
    assert pr.is_active() is False


def test_2_sees_the_defaults_again():
    from paios_reliability._core import settings as _config
    from paios_reliability._core.clock import SYSTEM_CLOCK, get_clock

    assert pr.is_active() is True
    assert _config.is_testing() is False
    assert _config.testing_attempts() is None
    assert get_clock() is SYSTEM_CLOCK
    assert "LEAKED" not in pr.CATALOG
    assert pr.classify(KeyError("k")).code == "PROGRAMMING_ERROR"


def test_the_plugin_came_from_the_entry_point(request):
    plugin = request.config.pluginmanager.get_plugin("paios_reliability")
    assert plugin is not None
    assert plugin.__name__ == "paios_reliability._pytest_plugin"
"""


def test_fixtures_and_isolation_in_a_fresh_pytest(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=USER_TESTS)

    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-p", "no:randomly", timeout=120
    )

    result.assert_outcomes(passed=7)


def test_isolation_is_per_test_not_per_session(pytester: pytest.Pytester) -> None:
    # A leaky test between two checks: the reset happens after every test.
    pytester.makepyfile(
        test_order="""
import paios_reliability as pr

def test_a_check():
    assert pr.is_active() is True

def test_b_leak():
    pr.set_active(False)

def test_c_check():
    assert pr.is_active() is True
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=120)
    result.assert_outcomes(passed=3)


def test_without_the_plugin_the_fixtures_do_not_exist(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_bare="""
def test_needs_clock(fake_clock):
    pass
"""
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-p", "no:paios_reliability", timeout=120
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'fake_clock' not found*"])
