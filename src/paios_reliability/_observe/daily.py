"""The daily report: the last 24 hours as Markdown and as one HTML page.

Built from the same sources as ``status`` (``reliability.toml``), read-only:
alerts by level, errors by code, breaker openings, the slowest operations,
missed heartbeats (unclean exits and processes gone without one),
credentials expiring and leak warnings, with an hourly chart of errors.
The HTML page is self-contained (inline CSS and SVG, no script, no external
resource), so it can be mailed or archived as one file.
"""

from __future__ import annotations

import datetime as _dt
import html
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .status import SystemStatus
    from .status_sources import StatusSources

__all__ = ["DailyReport", "build_daily_report"]

_DURATION = (
    "COALESCE(json_extract(metadata, '$.duration'), "
    "json_extract(metadata, '$.elapsed'), json_extract(metadata, '$.seconds'))"
)
_QUERIES = {
    "alerts": (
        "SELECT level, count(*), max(json_extract(metadata, '$.title')) FROM events "
        "WHERE category = 'alert' AND ts >= ? GROUP BY level ORDER BY count(*) DESC"
    ),
    "breakers": (
        "SELECT json_extract(metadata, '$.subject') AS name, count(*), max(ts) "
        "FROM events WHERE category = 'circuit_breaker' AND action = 'opened' "
        "AND ts >= ? GROUP BY name ORDER BY count(*) DESC LIMIT 50"
    ),
    "slowest": (
        f"SELECT category || '.' || action, {_DURATION} AS d, ts, service "  # noqa: S608 - constant SQL
        "FROM events WHERE ts >= ? AND d IS NOT NULL ORDER BY d DESC LIMIT 10"
    ),
    "hourly": (
        "SELECT CAST((ts - ?) / 3600 AS INTEGER) AS h, count(*) FROM events "
        "WHERE ts >= ? AND level IN ('error', 'critical') GROUP BY h"
    ),
    "leaks": (
        "SELECT json_extract(metadata, '$.subject') AS m, service, count(*), "
        "max(json_extract(metadata, '$.slope_mb_per_hour')) FROM events "
        "WHERE category = 'leak_monitor' AND action = 'leak_detected' AND ts >= ? "
        "GROUP BY m, service"
    ),
}


@dataclass(frozen=True, slots=True)
class DailyReport:
    """The report's numbers, and its two renderings.

    Attributes:
        start, end: The period (epoch seconds).
        status: The :class:`SystemStatus` at ``end`` (errors by code,
            crashes, credentials, processes come from it).
        alerts: ``(level, count, last title)`` rows.
        breaker_openings: ``(breaker, openings, last)`` rows.
        slowest: ``(operation, seconds, when, service)`` rows.
        hourly_errors: 24 counts, oldest hour first.
        leak_warnings: ``(monitor, service, warnings, worst MB/h)`` rows.
    """

    start: float
    end: float
    status: SystemStatus
    alerts: tuple[tuple[Any, ...], ...]
    breaker_openings: tuple[tuple[Any, ...], ...]
    slowest: tuple[tuple[Any, ...], ...]
    hourly_errors: tuple[int, ...]
    leak_warnings: tuple[tuple[Any, ...], ...]

    def _sections(self) -> list[tuple[str, list[str], list[list[str]]]]:
        from .status_text import _iso

        s = self.status
        missed = [
            [str(c["time"]), str(c["service"]), f"{c['kind']}: {c['reason'] or '-'}"]
            for c in s.crashes
        ] + [
            [
                str(p["started"]),
                str(p["service"]),
                f"pid {p['pid']} gone, no exit recorded",
            ]
            for p in s.processes
            if p["alive"] is False
        ]
        expiring = [
            [str(c["path"]), str(a["name"]), str(a["state"]), str(a["expires_at"])]
            for c in s.credentials
            for a in c["attention"]
        ]
        return [
            ("Alerts by level", ["level", "count", "last title"],
             [[str(x) for x in row] for row in self.alerts]),
            ("Errors by code", ["code", "count", "last", "service"],
             [[e.code, str(e.count), str(_iso(e.last)), e.service or "-"] for e in s.errors]),
            ("Breaker openings", ["breaker", "openings", "last"],
             [[str(n), str(c), str(_iso(t))] for n, c, t in self.breaker_openings]),
            ("Slowest operations", ["operation", "seconds", "when", "service"],
             [[str(o), f"{d:.3f}", str(_iso(t)), str(sv or "-")] for o, d, t, sv in self.slowest]),
            ("Heartbeats missed", ["when", "service", "what"], missed),
            ("Credentials expiring", ["store", "profile", "state", "expires"], expiring),
            ("Leak warnings", ["monitor", "service", "warnings", "worst MB/h"],
             [[str(m), str(sv or "-"), str(c), str(w)] for m, sv, c, w in self.leak_warnings]),
        ]  # fmt: skip

    def _title(self) -> str:
        from .status_text import _iso

        return f"Daily reliability report, {_iso(self.start)} to {_iso(self.end)}"

    def to_markdown(self) -> str:
        """GitHub-flavoured Markdown: a heading, the verdict, one table per section."""
        out = [
            f"# {self._title()}",
            "",
            f"**Status: {self.status.status.upper()}**",
            "",
        ]
        out.extend(f"- {r}" for r in self.status.reasons)
        if self.status.reasons:
            out.append("")
        out += [
            "## Errors per hour",
            "",
            "`" + _spark(self.hourly_errors) + f"` (max {max(self.hourly_errors)})",
            "",
        ]
        for title, header, rows in self._sections():
            out += [f"## {title}", ""]
            if not rows:
                out += ["none", ""]
                continue
            out.append("| " + " | ".join(header) + " |")
            out.append("|" + "---|" * len(header))
            out.extend(
                "| " + " | ".join(c.replace("|", "\\|") for c in row) + " |"
                for row in rows
            )
            out.append("")
        return "\n".join(out)

    def to_html(self) -> str:
        """One self-contained page: inline CSS and SVG, every value escaped."""
        e = html.escape
        parts = [
            "<!doctype html><html lang=en><head><meta charset=utf-8>",
            f"<title>{e(self._title())}</title><style>",
            "body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#1f2328}"
            "table{border-collapse:collapse;margin:.5em 0 1.5em}"
            "td,th{border:1px solid #d0d7de;padding:.25em .6em;text-align:left}"
            ".ok{color:#1a7f37}.degraded{color:#9a6700}.failing{color:#cf222e}",
            "</style></head><body>",
            f"<h1>{e(self._title())}</h1>",
            f'<p class="{e(self.status.status)}"><b>Status: '
            f"{e(self.status.status.upper())}</b></p>",
        ]
        if self.status.reasons:
            parts.append(
                "<ul>"
                + "".join(f"<li>{e(r)}</li>" for r in self.status.reasons)
                + "</ul>"
            )
        parts += ["<h2>Errors per hour</h2>", _svg_bars(self.hourly_errors)]
        for title, header, rows in self._sections():
            parts.append(f"<h2>{e(title)}</h2>")
            if not rows:
                parts.append("<p>none</p>")
                continue
            parts.append(
                "<table><tr>"
                + "".join(f"<th>{e(h)}</th>" for h in header)
                + "</tr>"
                + "".join(
                    "<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>"
                    for row in rows
                )
                + "</table>"
            )
        parts.append("</body></html>")
        return "\n".join(parts)


def _spark(values: Sequence[int]) -> str:
    ticks = " ▁▂▃▄▅▆▇█"
    top = max(values) or 1
    return "".join(ticks[round(v / top * (len(ticks) - 1))] for v in values)


def _svg_bars(values: Sequence[int]) -> str:
    top = max(values) or 1
    width, height = 24 * 20, 100
    bars = "".join(
        f'<rect x="{i * 20 + 2}" y="{height - v / top * height:.1f}" width="16" '
        f'height="{v / top * height:.1f}" fill="#cf222e"><title>{v}</title></rect>'
        for i, v in enumerate(values)
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="errors per hour">{bars}</svg>'
    )


def build_daily_report(
    sources: StatusSources, *, now: float | None = None, hours: int = 24
) -> DailyReport:
    """Read the sources once (read-only) and build the report of the period.

    Args:
        sources: As for :func:`collect_status`; its ``window`` is replaced
            by ``hours``.
        now: End of the period (default: now).
        hours: Length of the period.

    Returns:
        The :class:`DailyReport`. An unreadable source is a reason in its
        status, never an exception.
    """
    from dataclasses import replace

    from .status import _read_only, collect_status

    now = time.time() if now is None else now
    start = now - hours * 3600
    status = collect_status(replace(sources, window=hours * 3600.0), now=now)
    alerts: list[tuple[Any, ...]] = []
    breakers: list[tuple[Any, ...]] = []
    slowest: list[tuple[Any, ...]] = []
    leaks: list[tuple[Any, ...]] = []
    hourly = [0] * hours
    for path in sources.event_stores:
        try:
            conn = _read_only(path)
        except Exception:  # noqa: BLE001, S112 - already a reason in the status
            continue
        try:
            alerts += conn.execute(_QUERIES["alerts"], (start,)).fetchall()
            breakers += conn.execute(_QUERIES["breakers"], (start,)).fetchall()
            slowest += conn.execute(_QUERIES["slowest"], (start,)).fetchall()
            leaks += conn.execute(_QUERIES["leaks"], (start,)).fetchall()
            for h, n in conn.execute(_QUERIES["hourly"], (start, start)):
                if 0 <= h < hours:
                    hourly[h] += n
        except sqlite3.Error:
            continue  # unreadable: the status already names it
        finally:
            conn.close()
    slowest.sort(key=lambda r: -float(r[1]))
    return DailyReport(
        start=start,
        end=now,
        status=status,
        alerts=tuple(alerts),
        breaker_openings=tuple(breakers),
        slowest=tuple(slowest[:10]),
        hourly_errors=tuple(hourly),
        leak_warnings=tuple(leaks),
    )


def report_day(ts: float) -> str:
    """``YYYY-MM-DD`` (UTC) of ``ts``: the default file name stem."""
    return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).strftime("%Y-%m-%d")
