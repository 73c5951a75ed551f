"""The one-screen text of a :class:`SystemStatus`: plain, or coloured by rich.

The plain text is the contract (tests, pipes, logs); colour is a layer on
top, used only when the ``status`` extra (rich) is installed and the output
is a terminal.
"""

from __future__ import annotations

import datetime as _dt
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .status import SystemStatus

__all__ = ["render"]

_STYLE = {
    "ok": "bold green",
    "closed": "green",
    "degraded": "bold yellow",
    "half_open": "yellow",
    "failing": "bold red",
    "open": "bold red",
}


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        "  "
        + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return (
        _dt.datetime.fromtimestamp(ts, _dt.timezone.utc)
        .isoformat(timespec="seconds")
        .replace("+00:00", "Z")
    )


def _lines(s: SystemStatus) -> list[tuple[str, str | None]]:
    """(line, key) pairs; ``key`` is the word to colour, if any."""
    hours = s.window / 3600
    out: list[tuple[str, str | None]] = []
    out.append((f"status: {s.status.upper()}", s.status))
    out.extend((f"  {r}", None) for r in s.reasons)

    def section(title: str, rows: list[list[str]], empty: str) -> None:
        out.append(("", None))
        out.append((title, None))
        if not rows:
            out.append((f"  {empty}", None))
            return
        for line, row in zip(_table(rows), rows, strict=True):
            out.append((line, row[1] if row[1] in _STYLE else None))

    if s.health is not None:
        section(
            "health checks",
            [
                [str(c["name"]), str(c["status"]), str(c.get("detail") or "")]
                for c in s.health.get("checks", [])
            ],
            "no checks registered",
        )
    section(
        "circuit breakers",
        [
            [
                b.name,
                b.state,
                f"since {_iso(b.since)}" if b.since else "",
                f"failures {b.failures}",
                f"retry in {b.retry_after:.1f}s" if b.retry_after is not None else "",
            ]
            for b in s.breakers
        ],
        "none in the configured state stores",
    )
    section(
        "bulkheads and rate limiters",
        [
            [
                u.name,
                u.kind,
                (
                    f"{int(u.in_use)}/{u.capacity if u.capacity is not None else '?'} in use"
                    if u.kind == "bulkhead"
                    else f"{u.in_use:.1f}s reserved ahead"
                ),
                f"{u.waiting} waiting" if u.waiting else "",
            ]
            for u in s.usage
        ],
        "none active",
    )
    section(
        "processes (run markers)",
        [
            [
                str(p["service"]),
                "alive" if p["alive"] else "GONE" if p["alive"] is False else "remote",
                f"pid {p['pid']} on {p['host']}",
                f"since {p['started']}",
            ]
            for p in s.processes
        ],
        "none marked running",
    )
    section(
        "credentials",
        [
            [
                str(c["path"]),
                "ok" if c["ok"] else "failing",
                f"{c['profiles']} profile(s)",
                "; ".join(
                    [
                        f"{a['name']} {a['state']} ({a['expires_at']})"
                        for a in c["attention"]
                    ]
                    + list(c["problems"])
                ),
            ]
            for c in s.credentials
        ],
        "none configured",
    )
    section(
        f"errors, last {hours:g} h (by code)",
        [
            [e.code, str(e.count), f"last {_iso(e.last)}", e.service or ""]
            for e in s.errors
        ],
        "none",
    )
    section(
        f"crashes, last {hours:g} h",
        [
            [str(c["time"]), str(c["service"]), str(c["kind"]), str(c["reason"] or "")]
            for c in s.crashes
        ],
        "none",
    )
    section(
        "leak monitors",
        [
            [
                str(x["monitor"]),
                "open" if x["leaking"] else "ok",
                f"{x['slope_mb_per_hour']} MB/h"
                if x["slope_mb_per_hour"] is not None
                else "",
                f"last {x['last']}",
            ]
            for x in s.leaks
        ],
        "no warnings in the window",
    )
    section(
        "event stores",
        [
            [
                str(st["path"]),
                f"{st['events']} events",
                f"{st['bytes'] / 1e6:.1f} MB",
                f"newest {st['newest']}",
            ]
            for st in s.event_stores
        ],
        "none configured",
    )
    return out


def render(status: SystemStatus, *, color: bool = False) -> str:
    """The status screen as text; ANSI-coloured when ``color`` and rich is there."""
    lines = _lines(status)
    if color:
        try:
            from rich.console import Console
            from rich.text import Text
        except ImportError:
            color = False
    if not color:
        return "\n".join(line for line, _ in lines)
    import io

    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=200, highlight=False)
    for line, key in lines:
        text = Text(line)
        if key is not None:
            word = key.upper() if line.startswith("status:") else key
            start = line.find(word)
            if start >= 0:
                text.stylize(_STYLE[key], start, start + len(word))
        console.print(text)
    return buffer.getvalue().rstrip("\n")
