"""A child's process group: signalling it, seeing who is left, reaping what is ours."""

from __future__ import annotations

import contextlib
import os

__all__: list[str] = []


# -- the process group ----------------------------------------------------------------


def _signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to a process group; False when the group is already gone."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - a member changed credentials
        return True
    return True


_PROC = "/proc"


def _read_stat(path: str) -> list[bytes]:
    """The fields of a /proc stat file after the command name.

    A raw descriptor, not a file object: Ctrl-C lands here while a group is
    being ended, and CPython raises it only at a call, so the descriptor is
    already in ``fd`` (and closed by ``finally``) whenever it is raised.
    """
    fd = -1
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        data = os.read(fd, 4096)
    finally:
        if fd >= 0:
            os.close(fd)
    return data.rpartition(b")")[2].split()


def _members(pgid: int) -> list[tuple[int, int, str]] | None:
    """``(pid, ppid, state)`` of every process in group ``pgid``; None without /proc."""
    try:
        # A list, not a scandir iterator: a Ctrl-C arriving between opening
        # an iterator and entering its `with` would leave it unclosed.
        names = os.listdir(_PROC)
    except OSError:  # pragma: no cover - not Linux
        return None
    found = []
    for name in names:
        if not name.isdigit():
            continue
        try:
            fields = _read_stat(f"{_PROC}/{name}/stat")
            if int(fields[2]) == pgid:
                found.append((int(name), int(fields[1]), fields[0].decode()))
        except (OSError, IndexError, ValueError):
            continue  # exited while we looked
    return found


def _group_alive(pgid: int, *, leader_reaped: bool) -> bool:
    """Whether any member of the group still runs; reaps members that are ours.

    Members become our children when their parent dies while we are PID 1 or
    a child subreaper. Their exit statuses are collected here, so none stays
    a zombie of ours. Zombies (of anyone) do not count as running: a group
    whose members have all exited is gone, even before their parents reap them.
    The leader itself is never reaped here (its driver owns its status), only
    after the driver has collected it: ``waitpid(-pgid)`` could otherwise
    steal it.
    """
    if leader_reaped:
        _reap_all(pgid)
    if not _signal_group(pgid, 0):
        return False
    members = _members(pgid)
    if members is None:  # pragma: no cover - without /proc a zombie counts as alive
        return True
    me = os.getpid()
    running = False
    for pid, ppid, state in members:
        if state in ("Z", "X"):
            if ppid == me and pid != pgid:
                _reap_one(pid)
        else:
            running = True
    return running


def _reap_all(pgid: int) -> None:
    while True:
        try:
            pid, _ = os.waitpid(-pgid, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _reap_one(pid: int) -> None:
    # Someone else may have reaped it first.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
