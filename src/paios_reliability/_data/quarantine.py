"""Move 0-byte placeholder databases aside (``db check --fix``).

A 0-byte file where a database should be is what ``sqlite3.connect`` leaves
behind when it is pointed at a wrong path, or what a crash between create
and first write leaves: SQLite would silently treat it as a new, empty
database, so the next start "works" with no data. Moving it aside makes the
next open fail loudly or recreate it on purpose.

Never deletes anything and never touches a file with content: the move is
a hard link into the quarantine folder, a check that the linked inode is
still the 0-byte one, and only then the removal of the old name. A writer
that races the move writes into the same inode, so no byte is lost.
"""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass

from .._core.events import emit

__all__ = ["QuarantineResult", "quarantine_placeholder"]

QUARANTINE_DIR = ".paios-quarantine"


@dataclass(frozen=True, slots=True)
class QuarantineResult:
    """What :func:`quarantine_placeholder` did with one path.

    Attributes:
        path: The path looked at.
        action: ``moved`` | ``kept`` (not a placeholder) | ``missing``.
        detail: Why, in words.
        moved_to: Where it went, when moved.
    """

    path: str
    action: str
    detail: str
    moved_to: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return {
            "path": self.path,
            "action": self.action,
            "detail": self.detail,
            "moved_to": self.moved_to,
        }

    def to_text(self) -> str:
        where = f" -> {self.moved_to}" if self.moved_to else ""
        return f"{self.path}: {self.action}{where} ({self.detail})"


def quarantine_placeholder(
    path: str | os.PathLike[str], *, quarantine: str | os.PathLike[str] | None = None
) -> QuarantineResult:
    """Move ``path`` into a quarantine folder if it is a 0-byte regular file.

    Args:
        path: A database path.
        quarantine: The folder (created, mode 0700); default
            ``.paios-quarantine`` next to the file. The moved file is named
            ``<name>.<UTC time>.<n>`` and never replaces another.

    Returns:
        The result: ``moved`` with the new path, or ``kept``/``missing``
        with the reason (a file with content, a symlink, a directory...).

    Raises:
        OSError: The quarantine folder cannot be created or linked into
            (e.g. another file system); the file is then left in place.
    """
    name = os.fspath(path)
    try:
        st = os.lstat(name)
    except FileNotFoundError:
        return QuarantineResult(name, "missing", "no such file")
    if not stat.S_ISREG(st.st_mode):
        return QuarantineResult(name, "kept", "not a regular file")
    if st.st_size != 0:
        return QuarantineResult(name, "kept", f"has content ({st.st_size} bytes)")
    folder = os.fspath(
        quarantine
        if quarantine is not None
        else os.path.join(os.path.dirname(os.path.abspath(name)), QUARANTINE_DIR)
    )
    os.makedirs(folder, mode=0o700, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    base = os.path.basename(name)
    n = 0
    while True:
        target = os.path.join(folder, f"{base}.{stamp}.{n}")
        try:
            os.link(name, target)  # never replaces: fails if target exists
            break
        except FileExistsError:
            n += 1
    linked = os.lstat(target)
    if linked.st_ino != st.st_ino or linked.st_size != 0:
        # Written or replaced since we looked: leave the original alone and
        # drop only our extra link to it.
        os.unlink(target)
        return QuarantineResult(name, "kept", "changed while being moved")
    os.unlink(name)
    emit(
        "database",
        "quarantined",
        level="warning",
        subject=name,
        moved_to=target,
        reason="0-byte placeholder",
    )
    return QuarantineResult(name, "moved", "0-byte placeholder", target)
