"""Durable atomic file replacement: the file is always the old or the new content.

The recipe, in this order: create a temp file *exclusively* in the target's own
directory (a rename is only atomic within one file system), write, flush,
``fsync`` the file (its data is on disk *before* the name points at it), give it
the target's permissions, ``os.replace`` it over the target, ``fsync`` the
directory (the rename itself is on disk). Any error removes the temp file and
leaves the target untouched.

An ``fsync`` failure is never retried on the same file: after a failed
``fsync`` Linux may already have dropped the dirty pages and a second
``fsync`` would report success for data that never reached the disk. The temp
file is discarded and the error raised; a retry (by the caller) writes a fresh
temp file.

The temp file is created with its final permission bits (``mode``, else the
target's, else ``0o666`` minus the umask), never looser and later narrowed: a
reader that opens it at any moment needs the same rights as for the target.
Its lock (the "live writer" mark for other writers' stale-temp cleanup) is
held until after ``os.replace``.

Temp files are named ``.<name>.<pid>.<random>.tmp``. A writer killed with
SIGKILL leaves one behind; the next write to the same target removes those
whose process is gone.

:func:`read_regular_file` is the one way this package reads a file that
someone else may have put at a path: it refuses anything but a regular file
(a FIFO would block the reader forever, ``/dev/zero`` never ends) without
blocking, and refuses more than a size limit.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import time

from .._core.events import emit
from .._core.typing_lite import TYPE_CHECKING, overload

if TYPE_CHECKING:
    from contextlib import AbstractContextManager
    from typing import IO, Any, BinaryIO, Literal, TextIO

    from .._core.exc_info import ExcType, ExcValue, Traceback

__all__ = ["atomic_open", "atomic_write"]

_TMP_SUFFIX = ".tmp"
_NAME_KEEP = 120  # bytes of the target name kept in the temp name
_TMP_TAIL = re.compile(r"^(\d+)\.([0-9a-f]{8})\.tmp$")
_POSIX = os.name == "posix"

#: Default cap on the bytes read from a configuration or credential file.
MAX_READ_BYTES = 16 * 1024 * 1024
_READ_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NONBLOCK", 0)  # opening a FIFO must not wait for a writer
    | getattr(os, "O_NOCTTY", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)


def file_kind(mode: int) -> str | None:
    """What a non-regular file is (``"a FIFO (named pipe)"``); None for a regular one."""
    if stat.S_ISREG(mode):
        return None
    for test, kind in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return kind
    return "not a regular file"


class NotARegularFileError(OSError):
    """A path holds a FIFO, socket, device... where a regular file was expected."""


class FileTooLargeError(OSError):
    """A file is larger than the reader's limit."""


def refuse_special_file(name: str, st: os.stat_result) -> None:
    """Raise unless ``st`` (of ``name``) is a regular file.

    Raises:
        IsADirectoryError: A directory.
        NotARegularFileError: A FIFO, socket, device or other special file.
    """
    kind = file_kind(st.st_mode)
    if kind is None:
        return
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, "is a directory", name)
    raise NotARegularFileError(
        errno.EINVAL, f"is {kind}, not a regular file; refusing to read it", name
    )


def _too_large(name: str, size: int | None, limit: int) -> FileTooLargeError:
    what = "more than" if size is None else f"{size} bytes,"
    return FileTooLargeError(
        errno.EFBIG,
        f"is {what} {limit} bytes (the read limit); refusing to read it",
        name,
    )


def read_regular_file(path: str | os.PathLike[str], *, max_bytes: int) -> bytes:
    """The bytes of the regular file at ``path`` (symlinks followed), bounded.

    Never blocks on what is at the path: the file is checked with ``stat``
    first and opened with ``O_NONBLOCK``, and the opened file is checked
    again (it may have been swapped in between). Thread-safe; reads only.

    Args:
        path: The file.
        max_bytes: Most bytes read; a larger file is refused, also one that
            grows past the limit while it is read.

    Raises:
        FileNotFoundError: Nothing at ``path``.
        IsADirectoryError: ``path`` is a directory.
        NotARegularFileError: A FIFO, socket, device or other special file.
        FileTooLargeError: More than ``max_bytes``.
        OSError: Any other failure to stat, open or read (``EACCES``...).
    """
    name = os.fspath(path)
    refuse_special_file(name, os.stat(name))
    fd = os.open(name, _READ_FLAGS)
    try:
        st = os.fstat(fd)
        refuse_special_file(name, st)
        if st.st_size > max_bytes:
            raise _too_large(name, st.st_size, max_bytes)
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = os.read(fd, min(max_bytes + 1 - total, 1 << 20) or 1)
            if not chunk:
                break
            total += len(chunk)
            if total > max_bytes:
                raise _too_large(name, None, max_bytes)
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def describe_os_error(exc: OSError, path: str | os.PathLike[str] | None = None) -> str:
    """``"Permission denied (EACCES): /etc/x.lock"``: the cause, for an error message.

    With ``path`` (the file being written), a missing parent directory is
    named as such rather than as the missing temp or lock file.
    """
    if isinstance(exc, (NotARegularFileError, FileTooLargeError)):
        return str(exc.strerror)
    if isinstance(exc, FileNotFoundError) and path is not None:
        parent = os.path.dirname(_resolve(path))
        if not os.path.isdir(parent):
            return f"directory {parent} does not exist"
    text = exc.strerror or str(exc) or type(exc).__name__
    if exc.errno is not None and exc.errno in errno.errorcode:
        text += f" ({errno.errorcode[exc.errno]})"
    if exc.filename is not None:
        text += f": {os.fsdecode(exc.filename)}"
    return text


def os_error_code(exc: OSError) -> str | None:
    """A permanent catalog code for ``exc`` (``PERMISSION_DENIED``...), if one fits.

    For a typed error wrapping ``exc``: a transient errno's code (``EIO``:
    ``OS_ERROR``) would contradict a permanent error class, so it gives None.
    """
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1), errno.EFBIG) and (
        not isinstance(exc, FileTooLargeError)
    ):
        return "DISK_FULL"
    if isinstance(exc, (NotARegularFileError, FileTooLargeError)):
        return None
    from .._core.taxonomy import classify

    failure = classify(exc)
    return failure.code if failure.kind == "permanent" else None


def _resolve(path: str | os.PathLike[str]) -> str:
    """The file to replace: a symlink's final target, so the link survives."""
    name = os.fspath(path)
    if os.path.islink(name):
        return os.path.realpath(name)
    return os.path.abspath(name)


def _tmp_prefix(target: str) -> str:
    # Truncated by *bytes*, so the temp name stays under the 255-byte limit
    # even for a maximal target name in a multi-byte script; a character cut
    # in half is dropped (some file systems require valid UTF-8 names).
    raw = os.fsencode(os.path.basename(target))[:_NAME_KEEP]
    return f".{raw.decode('utf-8', 'ignore')}."


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists (someone else's), or we cannot tell: keep the file
    return True


def _try_lock(fd: int) -> bool:
    """Whether nobody holds ``fd``'s file lock (POSIX); elsewhere always true."""
    if not _POSIX:
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


_STALE_GRACE = 2.0  # seconds; far longer than create-then-lock takes


def _older_than_grace(entry: os.DirEntry[str]) -> bool:
    try:
        return time.time() - entry.stat().st_mtime > _STALE_GRACE
    except OSError:
        return False


def _clean_stale(target: str) -> int:
    """Remove temp files of ``target`` left by writers that died; count them.

    A temp file is stale when (POSIX) no one holds its lock and either the
    process named in it is gone or the file is older than a short grace
    period: a live writer holds the lock from the moment after it creates the
    file, and the grace also catches a dead writer whose PID was reused by
    another process. Live writers of any process keep their files.
    """
    directory = os.path.dirname(target)
    prefix = _tmp_prefix(target)
    removed = 0
    try:
        with os.scandir(directory) as scan:
            entries = list(scan)
    except OSError:
        return 0
    for entry in entries:
        name = entry.name
        if not (name.startswith(prefix) and name.endswith(_TMP_SUFFIX)):
            continue
        match = _TMP_TAIL.match(name[len(prefix) :])
        if match is None:
            continue
        if _pid_alive(int(match.group(1))) and not (
            _POSIX and _older_than_grace(entry)
        ):
            continue
        try:
            # O_NONBLOCK: a FIFO planted under a temp file's name must not
            # block the writer; only regular files are ours to remove.
            fd = os.open(entry.path, _READ_FLAGS)
        except OSError:
            continue
        try:
            if stat.S_ISREG(os.fstat(fd).st_mode) and _try_lock(fd):
                os.unlink(entry.path)
                removed += 1
        except OSError:
            pass
        finally:
            os.close(fd)
    if removed:
        emit("atomic_write", "stale_temp_removed", subject=target, count=removed)
    return removed


def _fsync_directory(directory: str) -> None:
    if not _POSIX:
        return  # Windows cannot open a directory for fsync; NTFS journals renames
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as exc:
        # Some file systems cannot fsync a directory at all; that is not a
        # failure of this write.
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


class _AtomicFile:
    """One replacement in progress: the temp file and how to finish it."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        binary: bool,
        mode: int | None,
        encoding: str,
        newline: str | None,
    ) -> None:
        self.path = os.fspath(path)
        self.target = _resolve(path)
        self.binary = binary
        self.mode = mode
        self.encoding = encoding
        self.newline = newline
        self.tmp: str | None = None
        self.file: IO[Any] | None = None

    def open(self) -> IO[Any]:
        directory = os.path.dirname(self.target)
        _clean_stale(self.target)
        try:
            existing: os.stat_result | None = os.stat(self.target)
        except FileNotFoundError:
            existing = None
        if existing is not None and stat.S_ISDIR(existing.st_mode):
            raise IsADirectoryError(
                errno.EISDIR, "cannot atomically replace a directory", self.path
            )
        if existing is not None and not stat.S_ISREG(existing.st_mode):
            # Replacing /dev/null or a FIFO a service reads from with a
            # regular file would break whoever uses it.
            raise FileExistsError(
                errno.EEXIST,
                f"{file_kind(existing.st_mode)} is at this path; refusing to "
                "replace it with a regular file",
                self.path,
            )
        perms, owner = self._permissions(existing)
        # Created with no more rights than it ends with (the umask may take
        # some away; fchmod gives them back). When the owner changes, the
        # group/other bits would apply to the wrong group until fchown, so the
        # file starts owner-only.
        start = 0o666 if perms is None else perms & 0o700 if owner else perms
        create_mode = start & 0o777
        prefix = os.path.join(directory, _tmp_prefix(self.target))
        flags = (
            os.O_WRONLY
            | os.O_CREAT
            | os.O_EXCL
            | getattr(os, "O_BINARY", 0)
            | getattr(os, "O_CLOEXEC", 0)
        )
        fd = -1
        for _ in range(100):
            candidate = f"{prefix}{os.getpid()}.{os.urandom(4).hex()}{_TMP_SUFFIX}"
            try:
                fd = os.open(candidate, flags, create_mode)
            except FileExistsError:
                continue
            self.tmp = candidate
            break
        else:  # pragma: no cover - 100 collisions of 32 random bits
            raise FileExistsError(
                errno.EEXIST, "no free temp file name", prefix + "*.tmp"
            )
        try:
            _try_lock(fd)  # marks it live for other processes' stale cleanup
            self._set_permissions(fd, perms, owner)
            if self.binary:
                self.file = os.fdopen(fd, "wb")
            else:
                self.file = os.fdopen(
                    fd, "w", encoding=self.encoding, newline=self.newline
                )
        except BaseException:
            if self.file is None:
                os.close(fd)
            self.discard()
            raise
        return self.file

    def _permissions(
        self, existing: os.stat_result | None
    ) -> tuple[int | None, tuple[int, int] | None]:
        """The exact final mode (None: the umask's), and the owner to keep."""
        owner = None
        if existing is not None and _POSIX:
            ids = (existing.st_uid, existing.st_gid)
            if ids != (os.getuid(), os.getgid()):
                owner = ids
        if self.mode is not None:
            return self.mode, owner
        if existing is not None:
            return stat.S_IMODE(existing.st_mode), owner
        return None, None

    def _set_permissions(
        self, fd: int, perms: int | None, owner: tuple[int, int] | None
    ) -> None:
        if perms is None:
            return  # a new file: 0o666 minus the umask, as open() makes it
        if not _POSIX:  # pragma: no cover - Windows
            os.chmod(self.tmp or "", perms)
            return
        if owner is not None:
            # Keep the owner where we may (running as root); else the file
            # becomes ours, as any rewrite would make it.
            with contextlib.suppress(OSError):
                os.fchown(fd, *owner)
        # After fchown (which may clear set-id bits); also gives back the
        # bits the umask took at creation.
        os.fchmod(fd, perms)

    def commit(self) -> None:
        file = self.file
        tmp = self.tmp
        assert file is not None
        assert tmp is not None
        try:
            file.flush()
            # Never retried: see the module docstring.
            os.fsync(file.fileno())
            if _POSIX:
                # Replaced while the temp file is still open and locked: a
                # concurrent writer's stale-temp cleanup sees a live writer
                # until the name is gone, however long the fsync took.
                os.replace(tmp, self.target)
                self.tmp = None
                file.close()
            else:  # pragma: no cover - Windows cannot rename an open file
                file.close()
                os.replace(tmp, self.target)
                self.tmp = None
            _fsync_directory(os.path.dirname(self.target))
        except BaseException as exc:
            self.discard()
            emit("atomic_write", "failed", level="error", subject=self.path, exc=exc)
            raise
        emit("atomic_write", "replaced", level="debug", subject=self.path)

    def discard(self) -> None:
        if self.file is not None:
            with contextlib.suppress(OSError):
                self.file.close()
        if self.tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.tmp)
            self.tmp = None

    def __enter__(self) -> IO[Any]:
        return self.open()

    def __exit__(self, exc_type: ExcType, exc: ExcValue, tb: Traceback) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()


def atomic_write(
    path: str | os.PathLike[str],
    data: str | bytes | bytearray | memoryview,
    *,
    mode: int | None = None,
    encoding: str = "utf-8",
) -> None:
    """Replace the file at ``path`` with ``data``, atomically and durably.

    At every instant ``path`` holds either the complete old content or the
    complete new content, even if the process is killed or the machine loses
    power mid-write. When it returns, the new content is on disk.

    Args:
        path: The file to write. A symlink is followed: its target is
            replaced and the link is kept.
        data: Text (encoded with ``encoding``) or bytes.
        mode: Permission bits for the file. Default: those of the file being
            replaced, or ``0o666`` minus the umask for a new file. The temp
            file has them from its creation: a ``0o600`` secret is never
            readable by anyone else, not even for a moment.
        encoding: Encoding for text ``data``.

    Raises:
        OSError: Unchanged from the failing call (``ENOSPC``, ``EIO`` from
            ``fsync``...); the temp file is removed and the target untouched.
        IsADirectoryError: ``path`` is a directory.
        FileExistsError: A FIFO, socket or device is at ``path``; it is never
            replaced by a regular file.
        TypeError: If ``data`` is neither text nor bytes.
    """
    if isinstance(data, str):
        payload = data.encode(encoding)
    elif isinstance(data, (bytes, bytearray, memoryview)):
        payload = bytes(data)
    else:
        raise TypeError(
            f"atomic_write() needs str or bytes data, got {type(data).__name__}"
        )
    writer = _AtomicFile(path, True, mode, encoding, None)
    file = writer.open()
    try:
        file.write(payload)
    except BaseException:
        writer.discard()
        raise
    writer.commit()


@overload
def atomic_open(
    path: str | os.PathLike[str],
    mode: Literal["w"] = "w",
    *,
    perms: int | None = None,
    encoding: str = "utf-8",
    newline: str | None = None,
) -> AbstractContextManager[TextIO]: ...


@overload
def atomic_open(
    path: str | os.PathLike[str],
    mode: Literal["wb"],
    *,
    perms: int | None = None,
    encoding: str = "utf-8",
    newline: str | None = None,
) -> AbstractContextManager[BinaryIO]: ...


def atomic_open(
    path: str | os.PathLike[str],
    mode: Literal["w", "wb"] = "w",
    *,
    perms: int | None = None,
    encoding: str = "utf-8",
    newline: str | None = None,
) -> AbstractContextManager[IO[Any]]:
    """Write a file through a context manager; it appears atomically at the end.

    ``with atomic_open(path, "w") as f: f.write(...)`` writes a temp file;
    when the block ends normally it is flushed, fsynced and renamed over
    ``path`` (see :func:`atomic_write`). If the block raises, the temp file is
    removed and ``path`` is untouched.

    Args:
        path: The file to write (a symlink is followed and kept).
        mode: ``"w"`` (text) or ``"wb"`` (bytes).
        perms: Permission bits; default: kept from the existing file (the
            temp file has them from its creation).
        encoding: Text encoding for ``"w"``.
        newline: Newline translation for ``"w"``, as for :func:`open`.

    Raises:
        ValueError: For any other ``mode`` (appending cannot be atomic).
        OSError: On entering the block, as for :func:`atomic_write`.
    """
    if mode not in ("w", "wb"):
        raise ValueError(
            f"atomic_open() mode must be 'w' or 'wb', got {mode!r}"
            " (append or update modes cannot be atomic)"
        )
    return _AtomicFile(path, mode == "wb", perms, encoding, newline)
