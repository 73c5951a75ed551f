"""render_launchd / render_systemd: plistlib round trips, systemd-analyze verify,
and Hypothesis over arguments that must reach the program unchanged."""

from __future__ import annotations

import os
import plistlib
import shlex
import shutil
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paios_reliability import ConfigError, render_launchd, render_systemd
from paios_reliability._ops.service import render_command, verify_systemd

PROGRAM = ["/usr/bin/python3", "-m", "my_agent.server", "--port", "8080"]
# Printable text without control characters (what the renderers accept).
ARG = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=30)


def test_launchd_defaults_restart_on_failure_throttled_with_logs() -> None:
    job = plistlib.loads(render_launchd("com.example.agent", PROGRAM).encode())
    assert job["Label"] == "com.example.agent"
    assert job["ProgramArguments"] == PROGRAM
    assert job["KeepAlive"] == {"SuccessfulExit": False}
    assert job["ThrottleInterval"] == 10
    assert job["ExitTimeOut"] == 30
    assert job["ProcessType"] == "Background"
    assert job["RunAtLoad"] is True
    logs = os.path.expanduser("~/Library/Logs")
    assert job["StandardOutPath"] == f"{logs}/com.example.agent.out.log"
    assert job["StandardErrorPath"] == f"{logs}/com.example.agent.err.log"
    assert "~" not in job["StandardOutPath"]


def test_launchd_options() -> None:
    text = render_launchd(
        "com.example.agent",
        PROGRAM,
        working_directory="/srv/agent",
        environment={"PAIOS_ENV": "prod", "EMPTY": ""},
        stdout_path="/var/log/agent.log",
        restart="always",
        throttle_interval=30,
        user_name="agent",
    )
    job = plistlib.loads(text.encode())
    assert job["KeepAlive"] is True
    assert job["ThrottleInterval"] == 30
    assert job["WorkingDirectory"] == "/srv/agent"
    assert job["EnvironmentVariables"] == {"PAIOS_ENV": "prod", "EMPTY": ""}
    assert job["StandardOutPath"] == "/var/log/agent.log"
    assert job["UserName"] == "agent"
    assert "KeepAlive" not in plistlib.loads(
        render_launchd("a.b", PROGRAM, restart="no").encode()
    )


@settings(max_examples=100, deadline=None)
@given(
    args=st.lists(ARG, max_size=6),
    env=st.dictionaries(
        st.from_regex(r"[A-Z_][A-Z0-9_]{0,10}", fullmatch=True), ARG, max_size=4
    ),
)
def test_launchd_plist_round_trips_any_arguments(
    args: list[str], env: dict[str, str]
) -> None:
    text = render_launchd("com.example.x", ["/bin/prog", *args], environment=env)
    job = plistlib.loads(text.encode())
    assert job["ProgramArguments"] == ["/bin/prog", *args]
    assert job.get("EnvironmentVariables", {}) == env


@pytest.mark.parametrize(
    "kwargs",
    [
        {"label": "bad label!", "program_args": PROGRAM},
        {"label": "a.b", "program_args": []},
        {"label": "a.b", "program_args": "/usr/bin/python3 -m x"},
        {"label": "a.b", "program_args": ["python3", "-m", "x"]},
        {"label": "a.b", "program_args": ["/bin/x", "line\nbreak"]},
        {"label": "a.b", "program_args": PROGRAM, "environment": {"1BAD": "x"}},
        {"label": "a.b", "program_args": PROGRAM, "throttle_interval": 0},
        {"label": "a.b", "program_args": PROGRAM, "restart": "sometimes"},
        {"label": "a.b", "program_args": PROGRAM, "process_type": "Turbo"},
    ],
)
def test_launchd_rejects_bad_input_clearly(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError) as info:
        render_launchd(**kwargs)  # type: ignore[arg-type]
    assert info.value.code == "USAGE_ERROR"


def test_systemd_defaults() -> None:
    unit = render_systemd("My agent", PROGRAM)
    lines = unit.splitlines()
    for expected in (
        "[Unit]",
        "Description=My agent",
        "[Service]",
        "ExecStart=/usr/bin/python3 -m my_agent.server --port 8080",
        "Restart=on-failure",
        "RestartSec=10",
        "TimeoutStopSec=30",
        "KillSignal=SIGTERM",
        "[Install]",
        "WantedBy=default.target",
    ):
        assert expected in lines


def test_systemd_options_and_escaping() -> None:
    unit = render_systemd(
        "100% agent",
        ["/opt/my agent/bin/run", "--name", 'say "hi"', "$HOME", "a\\b", ""],
        working_directory="/srv/agent",
        environment={"GREETING": 'hello "world" 50%'},
        stdout_path="/var/log/agent.log",
        stderr_path="/var/log/agent.err",
        user="agent",
        restart="always",
    )
    lines = unit.splitlines()
    assert "Description=100%% agent" in lines
    assert (
        'ExecStart="/opt/my agent/bin/run" --name "say \\"hi\\"" $$HOME "a\\\\b" ""'
        in lines
    )
    assert 'Environment="GREETING=hello \\"world\\" 50%%"' in lines
    assert "StandardOutput=append:/var/log/agent.log" in lines
    assert "StandardError=append:/var/log/agent.err" in lines
    assert "User=agent" in lines
    assert "Restart=always" in lines


def _systemd_unquote(line: str) -> list[str]:
    """Read an ExecStart= value back as systemd does for the quoting we emit."""
    return [
        word.replace("%%", "%").replace("$$", "$")
        for word in shlex.split(line, posix=True)
    ]


@settings(max_examples=200, deadline=None)
@given(args=st.lists(ARG, max_size=6))
def test_systemd_exec_start_round_trips_any_arguments(args: list[str]) -> None:
    unit = render_systemd("x", ["/bin/prog", *args])
    [line] = [ln for ln in unit.splitlines() if ln.startswith("ExecStart=")]
    assert _systemd_unquote(line[len("ExecStart=") :]) == ["/bin/prog", *args]


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="no systemd-analyze"
)
def test_systemd_analyze_verifies_the_rendered_unit() -> None:
    unit = render_systemd(
        "Agent 100%",
        [sys.executable, "-c", 'print("a b")', "$x", "%h"],
        environment={"A": "b c"},
        stdout_path="/tmp/agent.log",
    )
    assert verify_systemd(unit) == []
    broken = unit.replace("Restart=on-failure", "Restart=whenever")
    problems = verify_systemd(broken)
    assert problems
    assert any("restart" in p.lower() for p in problems)


def test_systemd_rejects_bad_input() -> None:
    with pytest.raises(ConfigError):
        render_systemd("x", ["relative/prog"])
    with pytest.raises(ConfigError):
        render_systemd("multi\nline", PROGRAM)
    with pytest.raises(ConfigError):
        render_systemd("x", PROGRAM, stdout_path="/var/log/with space.log")
    with pytest.raises(ConfigError):
        render_systemd("x", PROGRAM, wanted_by="bad target!")
    with pytest.raises(ConfigError):
        render_systemd("x", PROGRAM, restart_sec=-1)


def test_render_command_for_the_cli() -> None:
    text, status = render_command(
        "launchd", PROGRAM, label="com.example.agent", environment=["A=1", "B=x=y"]
    )
    assert status == 0
    assert plistlib.loads(text.encode())["EnvironmentVariables"] == {
        "A": "1",
        "B": "x=y",
    }
    text, status = render_command("systemd", PROGRAM, label="agent", user="svc")
    assert status == 0
    assert "Description=agent" in text
    assert "User=svc" in text
    with pytest.raises(ConfigError):
        render_command("upstart", PROGRAM, label="x")
    with pytest.raises(ConfigError):
        render_command("systemd", PROGRAM, label="x", environment=["NOEQUALS"])
    with pytest.raises(ConfigError):
        render_command("systemd", PROGRAM, label="x", restart="maybe")
