"""What :meth:`ConfigFile.save` did: :class:`SaveResult` and its lazy diff."""

from __future__ import annotations

import os

from .._core.typing_lite import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["SaveResult"]

_MAX_DIFF_LINES = 2000


class SaveResult:
    """What :meth:`ConfigFile.save` did (or, for a dry run, would do).

    Attributes:
        changed: Whether the file content differs (differed) from the value.
        backup: The backup made of the replaced version, if any.
        diff: Unified diff from the old to the new content ("" if unchanged).
            Computed on first access, so a save of a large file does not pay
            for a diff nobody reads.
        dry_run: True if nothing was written on purpose.
    """

    __slots__ = ("_backup", "_diff", "_source", "changed", "dry_run")

    def __init__(
        self,
        changed: bool,
        backup: str | os.PathLike[str] | None,
        diff: str | None = None,
        dry_run: bool = False,
        *,
        source: tuple[str, bytes | None, bytes] | None = None,
    ) -> None:
        self.changed = changed
        self._backup = backup
        self.dry_run = dry_run
        self._diff = diff
        self._source = source

    @property
    def backup(self) -> Path | None:
        if self._backup is None:
            return None
        from pathlib import Path  # not at import: a hook never reads it

        return Path(self._backup)

    @property
    def diff(self) -> str:
        if self._diff is None:
            self._diff = "" if self._source is None else _unified_diff(*self._source)
            self._source = None
        return self._diff

    def __repr__(self) -> str:
        return (
            f"SaveResult(changed={self.changed!r}, backup={self.backup!r}, "
            f"dry_run={self.dry_run!r})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SaveResult):
            return NotImplemented
        return (self.changed, self.backup, self.diff, self.dry_run) == (
            other.changed,
            other.backup,
            other.diff,
            other.dry_run,
        )

    __hash__ = None  # type: ignore[assignment]


def _unified_diff(path: str, old: bytes | None, new: bytes) -> str:
    old_text = "" if old is None else old.decode("utf-8", "replace")
    import difflib  # 10 ms at import; only a diff someone reads needs it

    lines = difflib.unified_diff(
        old_text.splitlines(keepends=True),
        new.decode("utf-8", "replace").splitlines(keepends=True),
        fromfile=f"{path} (current)" if old is not None else "/dev/null",
        tofile=f"{path} (new)",
    )
    out = []
    for i, line in enumerate(lines):
        if i >= _MAX_DIFF_LINES:
            out.append("... (diff truncated)\n")
            break
        out.append(line if line.endswith("\n") else line + "\n")
    return "".join(out)
