"""Service units: run a daemon under launchd (macOS) or systemd (Linux) properly.

Both renderers produce the same policy, learned the hard way:

- restart on failure only (``KeepAlive`` → ``SuccessfulExit=false`` /
  ``Restart=on-failure``): a clean exit means "stop", a crash means "restart";
- at most one restart every 10 s (``ThrottleInterval`` / ``RestartSec``), so a
  crash loop does not burn a core;
- 30 s between SIGTERM and SIGKILL (``ExitTimeOut`` / ``TimeoutStopSec``), so
  the crash handler's SIGTERM path can flush stores and run ``atexit``;
- ``ProcessType=Background`` on macOS (the scheduler may throttle it, which is
  right for an agent daemon) and log files that survive the process.

The output is validated before it is returned: the plist is parsed back with
:mod:`plistlib` and must equal what was meant; a systemd unit is checked with
``systemd-analyze verify`` by :func:`verify_systemd` where that tool exists.
"""

from __future__ import annotations

import math
import os
import plistlib
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from .._core.exceptions import ConfigError

__all__ = [
    "render_command",
    "render_launchd",
    "render_systemd",
    "verify_systemd",
]

Restart = Literal["on-failure", "always", "no"]
_RESTARTS = ("on-failure", "always", "no")
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SYSTEMD_NAME = re.compile(r"^[A-Za-z0-9:_.\\-]+(@[A-Za-z0-9:_.\\-]*)?$")


def _is_str(value: object) -> bool:
    return isinstance(value, str)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _usage(message: str) -> ConfigError:
    return ConfigError(message, code="USAGE_ERROR")


def _text(what: str, value: object, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise _usage(f"{what} must be a string, got {value!r}")
    if not value and not allow_empty:
        raise _usage(f"{what} must not be empty")
    if _CONTROL.search(value):
        raise _usage(f"{what} must not contain control characters: {value!r}")
    return value


def _program(program_args: Sequence[str]) -> list[str]:
    if isinstance(program_args, str) or not program_args:
        raise _usage(
            "program_args must be a non-empty list of strings, e.g. "
            "['/usr/bin/python3', '-m', 'my_server']"
        )
    args = [
        _text(f"program_args[{i}]", a, allow_empty=i > 0)
        for i, a in enumerate(program_args)
    ]
    if not os.path.isabs(args[0]):
        raise _usage(
            f"program_args[0] must be an absolute path (service managers do not "
            f"search PATH reliably), got {args[0]!r}"
        )
    return args


def _env(environment: Mapping[str, str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in (environment or {}).items():
        if not _is_str(key) or not _ENV_KEY.match(key):
            raise _usage(f"environment variable name {key!r} is invalid")
        out[key] = _text(f"environment[{key}]", value, allow_empty=True)
    return out


def _abs_path(what: str, value: str | os.PathLike[str]) -> str:
    return os.path.abspath(os.path.expanduser(_text(what, os.fspath(value))))


def _positive(what: str, value: float) -> float:
    if not (_is_number(value) and 0 < value < 86400 * 7):
        raise _usage(f"{what} must be a positive number of seconds, got {value!r}")
    return value


def _check_restart(restart: str) -> str:
    if restart not in _RESTARTS:
        raise _usage(f"restart must be one of {list(_RESTARTS)}, got {restart!r}")
    return restart


# -- launchd ---------------------------------------------------------------------


def launchd_dict(
    label: str,
    program_args: Sequence[str],
    *,
    working_directory: str | os.PathLike[str] | None = None,
    environment: Mapping[str, str] | None = None,
    stdout_path: str | os.PathLike[str] | None = None,
    stderr_path: str | os.PathLike[str] | None = None,
    restart: Restart = "on-failure",
    throttle_interval: int = 10,
    exit_timeout: int = 30,
    run_at_load: bool = True,
    process_type: Literal["Background", "Standard", "Adaptive", "Interactive"]
    | str = "Background",
    user_name: str | None = None,
) -> dict[str, Any]:
    """The launchd job as a dict (what :func:`render_launchd` serialises)."""
    if not _is_str(label) or not _LABEL.match(label):
        raise _usage(
            f"launchd label {label!r} is invalid: use reverse DNS, e.g. com.example.agent"
        )
    args = _program(program_args)
    _check_restart(restart)
    if process_type not in ("Background", "Standard", "Adaptive", "Interactive"):
        raise _usage(f"process_type {process_type!r} is not a launchd ProcessType")
    logs = os.path.expanduser("~/Library/Logs")
    job: dict[str, Any] = {
        "Label": label,
        "ProgramArguments": args,
        "RunAtLoad": bool(run_at_load),
    }
    if restart == "on-failure":
        job["KeepAlive"] = {"SuccessfulExit": False}
    elif restart == "always":
        job["KeepAlive"] = True
    job["ThrottleInterval"] = int(_positive("throttle_interval", throttle_interval))
    job["ExitTimeOut"] = int(_positive("exit_timeout", exit_timeout))
    job["ProcessType"] = process_type
    if working_directory is not None:
        job["WorkingDirectory"] = _abs_path("working_directory", working_directory)
    env = _env(environment)
    if env:
        job["EnvironmentVariables"] = env
    job["StandardOutPath"] = (
        _abs_path("stdout_path", stdout_path)
        if stdout_path is not None
        else os.path.join(logs, f"{label}.out.log")
    )
    job["StandardErrorPath"] = (
        _abs_path("stderr_path", stderr_path)
        if stderr_path is not None
        else os.path.join(logs, f"{label}.err.log")
    )
    if user_name is not None:
        job["UserName"] = _text("user_name", user_name)
    return job


def render_launchd(
    label: str,
    program_args: Sequence[str],
    *,
    working_directory: str | os.PathLike[str] | None = None,
    environment: Mapping[str, str] | None = None,
    stdout_path: str | os.PathLike[str] | None = None,
    stderr_path: str | os.PathLike[str] | None = None,
    restart: Restart = "on-failure",
    throttle_interval: int = 10,
    exit_timeout: int = 30,
    run_at_load: bool = True,
    process_type: Literal["Background", "Standard", "Adaptive", "Interactive"]
    | str = "Background",
    user_name: str | None = None,
) -> str:
    """A launchd property list (``~/Library/LaunchAgents/<label>.plist``).

    Args:
        label: The job label, reverse DNS (``com.example.agent``).
        program_args: Absolute program path, then its arguments (no shell).
        working_directory: ``WorkingDirectory``.
        environment: ``EnvironmentVariables``.
        stdout_path: ``StandardOutPath`` (default
            ``~/Library/Logs/<label>.out.log``, expanded: launchd does not
            expand ``~``).
        stderr_path: ``StandardErrorPath`` (default ``...<label>.err.log``).
        restart: ``on-failure`` → ``KeepAlive = {SuccessfulExit: false}``;
            ``always`` → ``KeepAlive = true``; ``no`` → no ``KeepAlive``.
        throttle_interval: ``ThrottleInterval``: seconds between restarts.
        exit_timeout: ``ExitTimeOut``: seconds from SIGTERM to SIGKILL.
        run_at_load: ``RunAtLoad``.
        process_type: ``ProcessType`` (``Background`` by default).
        user_name: ``UserName`` (system daemons only).

    Returns:
        The XML plist text, verified by parsing it back.

    Raises:
        ConfigError: ``USAGE_ERROR`` for an invalid label, a relative program
            path, control characters, bad numbers.
    """
    job = launchd_dict(
        label,
        program_args,
        working_directory=working_directory,
        environment=environment,
        stdout_path=stdout_path,
        stderr_path=stderr_path,
        restart=restart,
        throttle_interval=throttle_interval,
        exit_timeout=exit_timeout,
        run_at_load=run_at_load,
        process_type=process_type,
        user_name=user_name,
    )
    data = plistlib.dumps(job, fmt=plistlib.FMT_XML, sort_keys=False)
    if (
        plistlib.loads(data) != job
    ):  # pragma: no cover - plistlib is exact for these types
        raise _usage(f"launchd plist for {label!r} does not survive a round trip")
    return data.decode("utf-8")


# -- systemd ---------------------------------------------------------------------

_NEEDS_QUOTES = re.compile(r"[\s\"'\\;]")


def _systemd_escape_specifiers(value: str) -> str:
    return value.replace("%", "%%")


def quote_exec_arg(arg: str) -> str:
    """Quote one ``ExecStart=`` argument so systemd reads back exactly ``arg``.

    ``%`` becomes ``%%`` (specifiers) and ``$`` becomes ``$$`` (variable
    expansion); arguments with spaces, quotes, backslashes or ``;`` (or empty
    ones) are double-quoted with ``\\`` and ``"`` escaped.
    """
    value = _systemd_escape_specifiers(arg).replace("$", "$$")
    if value and not _NEEDS_QUOTES.search(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _quote_assignment(value: str) -> str:
    """Quote a whole ``KEY=value`` assignment for ``Environment=``."""
    value = _systemd_escape_specifiers(value)
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _log_target(what: str, path: str | os.PathLike[str]) -> str:
    resolved = _abs_path(what, path)
    if re.search(r"\s", resolved):
        raise _usage(f"{what} must not contain whitespace for systemd: {resolved!r}")
    return "append:" + _systemd_escape_specifiers(resolved)


def render_systemd(
    description: str,
    program_args: Sequence[str],
    *,
    working_directory: str | os.PathLike[str] | None = None,
    environment: Mapping[str, str] | None = None,
    stdout_path: str | os.PathLike[str] | None = None,
    stderr_path: str | os.PathLike[str] | None = None,
    restart: Restart = "on-failure",
    restart_sec: int = 10,
    timeout_stop_sec: int = 30,
    user: str | None = None,
    group: str | None = None,
    after: Sequence[str] = ("network-online.target",),
    wanted_by: str = "default.target",
    start_limit_burst: int = 5,
    start_limit_interval_sec: int = 300,
    watchdog_sec: int | None = None,
) -> str:
    """A systemd service unit (``<name>.service``).

    Args:
        description: ``Description=``.
        program_args: Absolute program path, then its arguments (no shell);
            each is quoted so systemd passes it through unchanged.
        working_directory: ``WorkingDirectory=``.
        environment: One ``Environment=`` line per variable.
        stdout_path: ``StandardOutput=append:<path>`` (default: the journal).
        stderr_path: ``StandardError=append:<path>`` (default: the journal).
        restart: ``Restart=`` (``on-failure`` by default).
        restart_sec: ``RestartSec=``: seconds before a restart.
        timeout_stop_sec: ``TimeoutStopSec=``: seconds from SIGTERM to SIGKILL.
        user: ``User=`` (system units).
        group: ``Group=``.
        after: Units to order after (``After=`` and ``Wants=``).
        wanted_by: ``WantedBy=`` (``default.target`` for user units,
            ``multi-user.target`` for system units).
        start_limit_burst: ``StartLimitBurst=``: restarts allowed within...
        start_limit_interval_sec: ``StartLimitIntervalSec=``; a service that
            crashes more often than that stays down (and is visibly failed).
        watchdog_sec: ``WatchdogSec=`` (with ``NotifyAccess=main``): systemd
            restarts the service when no ``WATCHDOG=1`` arrives for that
            long. Pair it with :class:`~paios_reliability.StallWatchdog` or
            :class:`~paios_reliability.HangWatchdog`, which ping only while
            the service's loop is live.

    Returns:
        The unit file text.

    Raises:
        ConfigError: ``USAGE_ERROR`` for a relative program path, control
            characters, bad unit names or numbers.
    """
    desc = _systemd_escape_specifiers(_text("description", description))
    args = _program(program_args)
    _check_restart(restart)
    for unit in (*after, wanted_by):
        if not _is_str(unit) or not _SYSTEMD_NAME.match(unit):
            raise _usage(f"systemd unit name {unit!r} is invalid")
    lines = ["[Unit]", f"Description={desc}"]
    if after:
        lines.append("After=" + " ".join(after))
        lines.append("Wants=" + " ".join(after))
    lines.append(
        f"StartLimitIntervalSec={int(_positive('start_limit_interval_sec', start_limit_interval_sec))}"
    )
    lines.append(
        f"StartLimitBurst={int(_positive('start_limit_burst', start_limit_burst))}"
    )
    lines += [
        "",
        "[Service]",
        "Type=simple",
        "ExecStart=" + " ".join(quote_exec_arg(a) for a in args),
        f"Restart={restart}",
        f"RestartSec={int(_positive('restart_sec', restart_sec))}",
        f"TimeoutStopSec={int(_positive('timeout_stop_sec', timeout_stop_sec))}",
        # SIGTERM to the main process first (the crash handler records it and
        # exits cleanly), then SIGKILL to whatever is left of the group.
        "KillMode=mixed",
        "KillSignal=SIGTERM",
    ]
    if watchdog_sec is not None:
        # Rounded up: WatchdogSec=0 would switch the watchdog off.
        lines.append(
            f"WatchdogSec={math.ceil(_positive('watchdog_sec', watchdog_sec))}"
        )
        lines.append("NotifyAccess=main")
    if working_directory is not None:
        lines.append(
            "WorkingDirectory="
            + _systemd_escape_specifiers(
                _abs_path("working_directory", working_directory)
            )
        )
    for key, value in _env(environment).items():
        lines.append("Environment=" + _quote_assignment(f"{key}={value}"))
    if stdout_path is not None:
        lines.append("StandardOutput=" + _log_target("stdout_path", stdout_path))
    if stderr_path is not None:
        lines.append("StandardError=" + _log_target("stderr_path", stderr_path))
    if user is not None:
        lines.append("User=" + _systemd_escape_specifiers(_text("user", user)))
    if group is not None:
        lines.append("Group=" + _systemd_escape_specifiers(_text("group", group)))
    lines += ["", "[Install]", f"WantedBy={wanted_by}", ""]
    return "\n".join(lines)


def verify_systemd(unit_text: str, *, name: str = "paios-unit") -> list[str] | None:
    """Check a unit with ``systemd-analyze verify``.

    Returns:
        ``None`` when ``systemd-analyze`` is not installed; otherwise the
        problems it reported about this unit (empty when it is valid).
    """
    tool = shutil.which("systemd-analyze")
    if tool is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, f"{name}.service")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(unit_text)
        result = subprocess.run(  # noqa: S603 - fixed tool, our own temp file
            [tool, "verify", path],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    output = (result.stderr + result.stdout).splitlines()
    problems = [line for line in output if f"{name}.service" in line]
    if result.returncode != 0 and not problems:
        problems = output or [f"systemd-analyze exited {result.returncode}"]
    return problems


# -- CLI -------------------------------------------------------------------------


def render_command(
    kind: str,
    program_args: Sequence[str],
    *,
    label: str,
    description: str | None = None,
    working_directory: str | None = None,
    environment: Sequence[str] = (),
    stdout_path: str | None = None,
    stderr_path: str | None = None,
    restart: str = "on-failure",
    user: str | None = None,
) -> tuple[str, int]:
    """What ``paios-reliability service render launchd|systemd ...`` does.

    Args:
        kind: ``launchd`` or ``systemd``.
        program_args: The command to run (absolute program path first).
        label: launchd ``Label``; for systemd, the default description.
        description: systemd ``Description`` (default: ``label``).
        working_directory: Working directory.
        environment: ``KEY=VALUE`` strings.
        stdout_path: Log file for stdout.
        stderr_path: Log file for stderr.
        restart: ``on-failure`` | ``always`` | ``no``.
        user: ``UserName`` / ``User``.

    Returns:
        ``(unit text, 0)``.

    Raises:
        ConfigError: ``USAGE_ERROR`` for any invalid argument (the CLI prints
            one line and exits with its code).
    """
    env: dict[str, str] = {}
    for item in environment:
        key, sep, value = item.partition("=")
        if not sep:
            raise _usage(f"--env needs KEY=VALUE, got {item!r}")
        env[key] = value
    restart_value = _check_restart(restart)
    if kind == "launchd":
        text = render_launchd(
            label,
            program_args,
            working_directory=working_directory,
            environment=env,
            stdout_path=stdout_path,
            stderr_path=stderr_path,
            restart=restart_value,  # type: ignore[arg-type]
            user_name=user,
        )
    elif kind == "systemd":
        text = render_systemd(
            description or label,
            program_args,
            working_directory=working_directory,
            environment=env,
            stdout_path=stdout_path,
            stderr_path=stderr_path,
            restart=restart_value,  # type: ignore[arg-type]
            user=user,
        )
    else:
        raise _usage(f"service kind must be 'launchd' or 'systemd', got {kind!r}")
    return text, 0
