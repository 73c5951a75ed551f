"""pytest plugin (entry point ``pytest11``): fixtures for users' test suites.

- ``fake_clock``: a :class:`~paios_reliability.testing.FakeClock` installed as
  the default clock for the test.
- ``reliability_events``: the events emitted during the test.

Every test also gets global switches (``set_active``, ``set_testing``), the
default clock and catalog rules restored afterwards, and a fresh log-storm
summary (a failure logged by an earlier test is logged in full again), so one
test's settings never leak into the next.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ._core import (
    clock as _clock,
)
from ._core import (
    event_log as _event_log,
)
from ._core import (
    settings as _config,
)
from ._core import (
    taxonomy as _taxonomy,
)
from .testing import CapturedEvents, FakeClock, capture_events


@pytest.fixture(autouse=True)
def _paios_reliability_isolation() -> Iterator[None]:
    switches = _config.snapshot()
    restore_clock = _clock.set_clock(_clock.get_clock())
    rules = _taxonomy.CATALOG.snapshot()
    summary = _event_log.isolate_log_summary()
    try:
        yield
    finally:
        summary()
        rules()
        restore_clock()
        switches()


@pytest.fixture
def fake_clock() -> Iterator[FakeClock]:
    """A FakeClock installed as the default clock for this test."""
    clock = FakeClock()
    with clock.install():
        yield clock


@pytest.fixture
def reliability_events() -> Iterator[CapturedEvents]:
    """Every event paios_reliability emits during this test."""
    with capture_events() as events:
        yield events
