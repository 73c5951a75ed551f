"""A per-user registry of running stdio MCP servers, and the sweep that ends orphans.

Every server started by :func:`~paios_reliability.mcp.run_stdio` writes one
small JSON file (``<pid>.json``) into ``<runtime dir>/mcp/`` and removes it
when it stops. The runtime directory is ``$PAIOS_RELIABILITY_RUNTIME_DIR``,
else ``$XDG_RUNTIME_DIR/paios-reliability``, else
``<tmp>/paios-reliability-<uid>``; it is created with mode 0700 and refused
if another user owns it. An entry holds the server's pid, its process start
time (so a recycled pid is never taken for the server), the client's pid and
the server's name; never its command line, which may hold secrets.

:func:`sweep` lists the registered servers whose client is gone and, with
``kill=True``, ends them (SIGTERM, then SIGKILL after a grace period). Only a
process that registered, and still has the start time it registered with, is
ever signalled.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = [
    "ServerEntry",
    "ServerRegistration",
    "register_server",
    "runtime_dir",
    "sweep",
]

ServerState = Literal["running", "orphaned", "gone"]

# A variable, not a platform check, so the type checker keeps both paths.
_PROC = sys.platform.startswith("linux")


def runtime_dir() -> Path:
    """The per-user runtime directory, created (mode 0700) if missing.

    Raises:
        ConfigError: ``PATH_NOT_OWNED`` if the directory exists but belongs to
            another user or is not a directory.
    """
    from .._core.exceptions import ConfigError

    explicit = os.environ.get("PAIOS_RELIABILITY_RUNTIME_DIR")
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if explicit:
        path = Path(explicit)
    elif xdg:
        path = Path(xdg) / "paios-reliability"
    else:
        uid = os.getuid() if hasattr(os, "getuid") else 0
        path = Path(tempfile.gettempdir()) / f"paios-reliability-{uid}"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.lstat()
    import stat

    if not stat.S_ISDIR(info.st_mode) or (
        hasattr(os, "getuid") and info.st_uid != os.getuid()
    ):
        raise ConfigError(
            f"runtime directory {path} is not a directory owned by this user; "
            "set PAIOS_RELIABILITY_RUNTIME_DIR to a private directory",
            code="CONFIG_INVALID",
            context={"path": str(path)},
        )
    return path


def _servers_dir() -> Path:
    path = runtime_dir() / "mcp"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


@dataclass(frozen=True, slots=True)
class ServerEntry:
    """One registered server as :func:`sweep` found it.

    Attributes:
        pid: The server's pid.
        client_pid: The pid of the client that started it.
        name: The server's name.
        registered_at: When it registered, seconds since the epoch.
        state: ``running`` (its client is alive and still its parent),
            ``orphaned`` (alive, client gone) or ``gone`` (the process no
            longer exists; its stale entry is removed).
        ended: Whether this sweep ended it.
    """

    pid: int
    client_pid: int
    name: str
    registered_at: float
    state: ServerState
    ended: bool = False


class ServerRegistration:
    """This process's entry in the registry; :meth:`close` removes it."""

    __slots__ = ("path",)

    def __init__(self, path: Path) -> None:
        self.path = path

    def close(self) -> None:
        """Remove the entry (idempotent)."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def register_server(name: str) -> ServerRegistration:
    """Record this process as a running server of the current user.

    Args:
        name: The server's name, shown by ``paios-reliability mcp sweep``.

    Returns:
        The registration; close it when the server stops.
    """
    pid = os.getpid()
    entry = {
        "pid": pid,
        "client_pid": os.getppid(),
        "start": _start_token(pid),
        "name": name[:200],
        "registered_at": time.time(),
    }
    directory = _servers_dir()
    path = directory / f"{pid}.json"
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{pid}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(entry, out)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return ServerRegistration(path)


def sweep(*, kill: bool = False, grace: float = 3.0) -> list[ServerEntry]:
    """Find registered servers whose client is gone; end them with ``kill=True``.

    Entries of processes that no longer exist (or whose pid now belongs to
    another process) are removed. An orphan gets SIGTERM, then SIGKILL if it
    is still the same process after ``grace`` seconds. Unreadable entries are
    removed and nothing is signalled for them. Emits ``mcp.orphan_found`` per
    orphan and ``mcp.orphan_ended`` per ended server.

    Args:
        kill: End the orphans (default: only list them).
        grace: Seconds between SIGTERM and SIGKILL.

    Returns:
        Every registered server, oldest registration first.
    """
    from .._core.events import emit

    found: list[ServerEntry] = []
    for path in sorted(_servers_dir().glob("*.json")):
        data = _read(path)
        if data is None:
            with contextlib.suppress(OSError):
                path.unlink()
            continue
        pid, client, token, name, when = data
        alive = token is not None and _start_token(pid) == token
        if not alive:
            with contextlib.suppress(OSError):
                path.unlink()
            state: ServerState = "gone"
        elif _parent_of(pid) == client and _start_token(client) is not None:
            state = "running"
        else:
            state = "orphaned"
        ended = False
        if state == "orphaned" and token is not None:
            emit("mcp", "orphan_found", level="warning", subject=name, pid=pid)
            if kill:
                ended = _end(pid, token, grace)
                if ended:
                    with contextlib.suppress(OSError):
                        path.unlink()
                    emit(
                        "mcp",
                        "orphan_ended",
                        level="warning",
                        subject=name,
                        pid=pid,
                    )
        found.append(ServerEntry(pid, client, name, when, state, ended))
    found.sort(key=lambda e: e.registered_at)
    return found


def _read(path: Path) -> tuple[int, int, str | None, str, float] | None:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(raw, dict):
        return None
    pid, client, start = raw.get("pid"), raw.get("client_pid"), raw.get("start")
    name, when = raw.get("name"), raw.get("registered_at")
    if (
        not isinstance(pid, int)
        or isinstance(pid, bool)
        or pid <= 1
        or path.stem != str(pid)
        or not isinstance(client, int)
        or not isinstance(start, (str, type(None)))
        or not isinstance(name, str)
        or not isinstance(when, (int, float))
    ):
        return None
    return pid, client, start, name, float(when)


def _end(pid: int, token: str, grace: float) -> bool:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if _start_token(pid) != token:
            return True
        time.sleep(0.05)
    if _start_token(pid) == token:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for _ in range(100):
        if _start_token(pid) != token:
            return True
        time.sleep(0.02)
    return False


def _proc_stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses.
    return raw[raw.rfind(")") + 2 :].split()


def _start_token(pid: int) -> str | None:
    """An id of the process ``pid`` that changes when the pid is reused; None if gone."""
    if pid <= 0:
        return None
    if _PROC:
        fields = _proc_stat(pid)
        # A zombie has exited: its work is done and it cannot be signalled away.
        if fields is None or fields[0] == "Z":
            return None
        return fields[19]
    return _ps(pid, "lstart=")


def _parent_of(pid: int) -> int | None:
    if _PROC:
        fields = _proc_stat(pid)
        return int(fields[1]) if fields is not None else None
    out = _ps(pid, "ppid=")
    return int(out) if out is not None and out.isdigit() else None


def _ps(pid: int, column: str) -> str | None:
    try:
        out = subprocess.run(  # noqa: S603 - fixed argv, a number as argument
            # ps is on PATH on every POSIX system this path runs on (not Linux).
            ["ps", "-o", column, "-p", str(pid)],  # noqa: S607
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    text = out.stdout.strip()
    return text or None
