"""The backups of a :class:`ConfigFile`: their names, times and private copies."""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import re
import stat

__all__ = ["_BACKUP_NAME", "_backup_time", "_copy_private", "_suffix"]

_BACKUP_NAME = re.compile(r"^(\d{8}T\d{12})Z(?:\.[^/]*)?$")


def _backup_time(stamp: str) -> _dt.datetime:
    """``20240102T030405123456`` -> that UTC datetime.

    By hand: ``strptime`` imports ``_strptime`` and ``locale`` (~10 ms), a
    cost every short-lived hook that saves a config would pay.
    """
    return _dt.datetime(
        int(stamp[0:4]),
        int(stamp[4:6]),
        int(stamp[6:8]),
        int(stamp[9:11]),
        int(stamp[11:13]),
        int(stamp[13:15]),
        int(stamp[15:21]),
        tzinfo=_dt.timezone.utc,
    )


def _suffix(path: str) -> str:
    """The final component's suffix, as :attr:`pathlib.PurePath.suffix` gives it."""
    name = os.path.basename(path.rstrip(os.sep))
    dot = name.rfind(".")
    return name[dot:] if 0 < dot < len(name) - 1 else ""


def _copy_private(source: str, backup: str) -> None:
    """Copy ``source`` to a new ``backup`` that is never more readable than it.

    ``shutil.copy2`` creates the copy with the umask's mode and copies the
    mode afterwards: a 0600 file's backup would be readable in between.
    """
    import shutil

    st = os.stat(source)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    fd = os.open(backup, flags, stat.S_IMODE(st.st_mode) & 0o777)
    try:
        with open(source, "rb") as src, os.fdopen(fd, "wb", closefd=False) as dst:
            shutil.copyfileobj(src, dst)
        if os.name == "posix":
            os.fchmod(fd, stat.S_IMODE(st.st_mode))  # the bits the umask took
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(backup)
        raise
    os.close(fd)
    with contextlib.suppress(OSError):
        os.utime(backup, ns=(st.st_atime_ns, st.st_mtime_ns))
