"""StallWatchdog, HangWatchdog, sd_notify and render_systemd(watchdog_sec=).

Real loops blocked by real blocking calls, real threads, and a real AF_UNIX
datagram socket standing in for systemd's notify socket.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import paios_reliability as pr
from paios_reliability._core.event import Event
from paios_reliability._ops.watchdogs import _Silence

# A wait that only bounds a hang; the events themselves release the tests.
BOUND = 30.0


@pytest.fixture
def events() -> Iterator[list[Event]]:
    seen: list[Event] = []
    restore = pr.add_event_hook(seen.append)
    yield seen
    restore()


def _named(events: list[Event], suffix: str) -> list[Event]:
    return [e for e in events if e.name == f"paios_reliability.watchdog.{suffix}"]


def _blocking_handler(release: threading.Event) -> None:
    # Blocks the loop until the watchdog has reported the stall.
    assert release.wait(BOUND)
    time.sleep(0.1)


def test_stall_watchdog_reports_one_stall_with_the_blocking_function(
    events: list[Event],
) -> None:
    release = threading.Event()

    def on_event(event: Event) -> None:
        if event.name == "paios_reliability.watchdog.stall":
            release.set()

    restore = pr.add_event_hook(on_event)

    async def main() -> int:
        async with pr.StallWatchdog(0.2, name="main-loop") as wd:
            await asyncio.sleep(0.05)
            _blocking_handler(release)
            await asyncio.sleep(0.3)  # turns again: the stall ends
            return wd.stalls

    try:
        assert asyncio.run(main()) == 1
    finally:
        restore()
    [stall] = _named(events, "stall")
    assert stall.subject == "main-loop"
    assert stall.level == "warning"
    assert any("_blocking_handler" in line for line in stall.fields["stack"])
    assert stall.fields["silent_for"] >= 0.2
    [ended] = _named(events, "stall_ended")
    assert ended.fields["seconds"] >= 0.2
    assert pr.get_metrics().get("paios_reliability_watchdog_stall_seconds") is not None


def test_stall_watchdog_is_quiet_while_the_loop_turns(events: list[Event]) -> None:
    async def main() -> None:
        async with pr.StallWatchdog(0.5):
            for _ in range(20):
                await asyncio.sleep(0.02)

    asyncio.run(main())
    assert _named(events, "stall") == []


def _stuck_worker(wd: pr.HangWatchdog, release: threading.Event) -> None:
    wd.beat()
    assert release.wait(BOUND)
    wd.beat()


def test_hang_watchdog_reports_a_worker_that_stopped_beating(
    events: list[Event],
) -> None:
    reported, ended = threading.Event(), threading.Event()

    def on_event(event: Event) -> None:
        if event.name == "paios_reliability.watchdog.hang":
            reported.set()
        if event.name == "paios_reliability.watchdog.hang_ended":
            ended.set()

    restore = pr.add_event_hook(on_event)
    try:
        with pr.HangWatchdog(0.2, name="ingest") as wd:
            worker = threading.Thread(target=_stuck_worker, args=(wd, reported))
            worker.start()
            worker.join(BOUND)
            assert ended.wait(BOUND)
            assert wd.hangs == 1
    finally:
        restore()
    [hang] = _named(events, "hang")
    assert hang.subject == "ingest"
    assert any("_stuck_worker" in line for line in hang.fields["stack"])
    assert len(_named(events, "hang_ended")) == 1


@given(
    st.lists(
        st.tuples(st.floats(0, 5), st.booleans()),
        max_size=60,
    )
)
def test_silence_reports_each_silence_once_then_its_end(
    steps: list[tuple[float, bool]],
) -> None:
    machine = _Silence(1.0)
    now = last = 0.0
    changes: list[str] = []
    for advance, alive in steps:
        now += advance
        if alive:
            last = now
        change = machine.observe(now, last)
        if change == "ended":
            assert machine.end(last) >= 0
        if change is not None:
            changes.append(change)
    # began and ended alternate, starting with began
    assert changes[::2] == ["began"] * len(changes[::2])
    assert changes[1::2] == ["ended"] * len(changes[1::2])


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), True, "1"])
def test_watchdogs_reject_bad_thresholds(bad: object) -> None:
    with pytest.raises(ValueError, match="threshold"):
        pr.StallWatchdog(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout"):
        pr.HangWatchdog(bad)  # type: ignore[arg-type]


# -- sd_notify against a real datagram socket -----------------------------------------


@pytest.fixture
def notify_socket(monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    # AF_UNIX paths are limited to ~104 bytes: a short directory, not tmp_path.
    directory = tempfile.mkdtemp(prefix="sdn")
    path = os.path.join(directory, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    try:
        yield sock
    finally:
        sock.close()
        os.unlink(path)
        os.rmdir(directory)


def _received(sock: socket.socket) -> list[str]:
    out: list[str] = []
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except BlockingIOError:
            return out


def test_sd_notify_sends_states_over_the_notify_socket(
    notify_socket: socket.socket,
) -> None:
    assert pr.sd_notify(ready=True, status="serving 3 tools")
    assert pr.sd_notify(watchdog=True)
    assert pr.sd_notify(stopping=True)
    assert _received(notify_socket) == [
        "STATUS=serving 3 tools\nREADY=1",
        "WATCHDOG=1",
        "STOPPING=1",
    ]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="abstract sockets")
def test_sd_notify_reaches_an_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"paios-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(BOUND)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert pr.sd_notify(ready=True)
        assert sock.recv(100) == b"READY=1"


def test_sd_notify_outside_systemd_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert pr.sd_notify(ready=True) is False


def test_sd_notify_to_a_missing_socket_reports_and_returns_false(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, events: list[Event]
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nothing"))
    assert pr.sd_notify(ready=True) is False
    assert [e.name for e in events] == ["paios_reliability.systemd.notify_failed"]


@pytest.mark.parametrize("status", ["two\nlines", "nul\0", "x" * 1025])
def test_sd_notify_rejects_status_that_breaks_the_protocol(status: str) -> None:
    with pytest.raises(ValueError, match="status"):
        pr.sd_notify(status=status)


def test_stall_watchdog_pings_systemd_only_while_the_loop_turns(
    notify_socket: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "100000")  # ping every 50 ms
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    during_block: list[str] = []

    def blocked() -> None:
        _received(notify_socket)  # whatever the live loop sent so far
        time.sleep(0.6)  # many ping periods, with the loop stuck here
        during_block.extend(_received(notify_socket))

    async def main() -> None:
        async with pr.StallWatchdog(5.0):
            await asyncio.sleep(0.3)
            assert "WATCHDOG=1" in _received(notify_socket)
            blocked()

    asyncio.run(main())
    assert during_block == []


def test_render_systemd_watchdog_sec() -> None:
    unit = pr.render_systemd("svc", ["/usr/bin/true"], watchdog_sec=30)
    assert "WatchdogSec=30\n" in unit
    assert "NotifyAccess=main\n" in unit
    assert "WatchdogSec=1\n" in pr.render_systemd(
        "svc", ["/usr/bin/true"], watchdog_sec=0.2
    )
    assert "WatchdogSec" not in pr.render_systemd("svc", ["/usr/bin/true"])
    with pytest.raises(pr.ConfigError, match="watchdog_sec"):
        pr.render_systemd("svc", ["/usr/bin/true"], watchdog_sec=0)
