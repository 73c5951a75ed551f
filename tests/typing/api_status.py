"""Type-checked (not run): the public status API keeps its types."""

from __future__ import annotations

from typing import Any

from typing_extensions import assert_type

import paios_reliability as pr

sources = pr.load_status_sources(event_stores=["obs.sqlite"], health="m:r")
assert_type(sources, pr.StatusSources)
status = pr.collect_status(sources, now=1.0)
assert_type(status, pr.SystemStatus)
assert_type(status.exit_code, int)
assert_type(status.to_dict(), dict[str, Any])
assert_type(status.to_text(color=True), str)
assert_type(status.breakers[0].state, str)
assert_type(status.errors[0].count, int)

daily = pr.build_daily_report(sources, now=1.0, hours=24)
assert_type(daily, pr.DailyReport)
assert_type(daily.to_html(), str)
assert_type(daily.hourly_errors, tuple[int, ...])
