"""The guided demo (``paios-reliability demo``), run in fast mode."""

from __future__ import annotations

import io
import subprocess
import sys

from paios_reliability._core import settings as _config
from paios_reliability._core.clock import SYSTEM_CLOCK, get_clock
from paios_reliability.cli.demo import SECTIONS, run_demo

_SCRIPT = (
    "import sys\n"
    "from paios_reliability.cli.demo import run_demo\n"
    "sys.exit(run_demo(sys.stdout, fast=True))\n"
)


def _check_transcript(text: str) -> None:
    for number, title in enumerate(SECTIONS, start=1):
        assert f"[{number}/{len(SECTIONS)}] {title}" in text
    assert "FAIL" not in text
    assert "demo finished: every step behaved as shown." in text
    assert "opened -> half_opened -> closed" in text
    assert "1000 uses recorded -> 1 file write(s)" in text
    # The wait for the reset timeout shows progress dots.
    assert "waiting for the reset timeout (2 s) ....." in text
    # Colourless and plain: ASCII only, no escape sequences.
    assert text.isascii()
    assert "\x1b" not in text
    assert "demo-secret-token" not in text


def test_run_demo_in_process() -> None:
    out = io.StringIO()
    assert run_demo(out, fast=True) == 0
    _check_transcript(out.getvalue())
    # Fast mode restored the process-wide settings it changed.
    assert get_clock() is SYSTEM_CLOCK
    assert not _config.is_testing()


def test_run_demo_as_a_program() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    _check_transcript(done.stdout)
    # The staged failures are not logged over the transcript, nor their
    # suppressed counts after it (at exit).
    assert done.stderr == ""


def test_a_step_that_misbehaves_is_reported() -> None:
    from paios_reliability.cli.demo import _Demo

    out = io.StringIO()
    demo = _Demo(out, None)
    demo.expect(True, "held")
    demo.expect(False, "breaker is open")
    assert demo.failures == ["breaker is open"]
    assert out.getvalue().splitlines() == [
        "    ok    held",
        "    FAIL  breaker is open",
    ]
