"""Configuration files with backups, rollback and locked updates.

A :class:`ConfigFile` holds a plain JSON object, or a file validated by a
pydantic model (pydantic is imported only then). Loading fails fast with
a :class:`ConfigError` that lists *every* bad field; saving validates first,
writes nothing when the content would not change, keeps the replaced version
as a timestamped backup (a hard link: free), writes atomically and reads the
result back. :meth:`ConfigFile.update` is a read-modify-write under an
inter-process lock held on a sidecar lock file, so concurrent updaters in
several processes never lose each other's changes.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from types import GenericAlias

from .._core.clock import get_clock
from .._core.events import emit
from .._core.exceptions import ConfigError, ConfigIOError
from .._core.typing_lite import TYPE_CHECKING, overload
from .atomic import (
    MAX_READ_BYTES,
    _resolve,
    atomic_write,
    describe_os_error,
    os_error_code,
    read_regular_file,
)
from .config_backups import _BACKUP_NAME, _backup_time, _copy_private, _suffix
from .config_format import (
    _dump_json,
    _is_part_of,
    _json_copy,
    _JsonText,
    _keep_undeclared,
    _no_duplicates,
    _NotJson,
    _reject_constant,
    _TomlData,
    validation_errors,
)
from .config_result import SaveResult
from .file_lock import file_lock

if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any, Generic, TypeVar

    # The config's value type: a pydantic model, or dict[str, Any] without one.
    M = TypeVar("M")

    class _Generic(Generic[M]):
        pass

else:

    class _Generic:
        """``ConfigFile[Model]`` at run time, as ``list[int]``, without typing."""

        __slots__ = ()
        __class_getitem__ = classmethod(GenericAlias)

    M = None  # the base's parameter matters to type checkers only

__all__ = ["ConfigFile", "SaveResult"]


class ConfigFile(_Generic[M]):
    """A configuration file: a plain JSON object, or validated by a pydantic model.

    Args:
        path: The file (``.json``; ``.toml`` is read-only and needs Python
            3.11+). A symlink is followed for writes and kept.
        model: The pydantic model class, or ``None`` (the default) for a
            plain JSON object: every key is kept, values are checked to be
            JSON (string keys, finite numbers) and pydantic is never
            imported. With a model, strict or passthrough comes from its
            config: ``extra="forbid"`` rejects unknown keys, ``extra="allow"``
            keeps them on the model, and with the default ``extra="ignore"``
            the model does not see them but they stay in the file: a save
            writes back every key the model does not declare.
        mode: Permission bits of the file, set on every write (``0o600``
            for secrets; the temp file has them from its creation).
            Default: those of the file being replaced, or ``0o666`` minus the
            umask for a new file. Backups keep the file's mode.
        backups: How many replaced versions to keep (0: none).
        default: Returned by :meth:`load` when the file does not exist
            (``{}`` is the usual one without a model); without it a missing
            file is a :class:`ConfigError`.
        lock_timeout: Seconds :meth:`update`, :meth:`edit` and :meth:`save`
            wait for the inter-process lock. Inside a :func:`hook` the wait
            is also capped by the hook's remaining budget.
        indent: JSON indentation of saved files.
        max_bytes: The largest file :meth:`load` reads (default 16 MiB);
            a larger one is a :class:`ConfigError`, never a memory blow-up.

    Thread- and process-safe: writes hold the lock on ``.<name>.lock`` beside
    the file (never deleted). On Windows the same sidecar is locked with
    ``msvcrt.locking``; a file another process holds open cannot be
    replaced there, and the save fails with a ``PERMISSION_DENIED``
    :class:`ConfigError` instead.

    Only a regular file (after following symlinks) is read: a FIFO, socket
    or device at the path is refused at once, without blocking. Every
    operating-system failure (a read-only directory, a missing parent, a
    full disk, a backups path that is not a directory) is a
    :class:`ConfigError` naming the path and the cause, with the errno's
    catalog code (``PERMISSION_DENIED``, ``DISK_FULL``...); the file is then
    unchanged.
    """

    @overload
    def __init__(
        self: ConfigFile[dict[str, Any]],
        path: str | os.PathLike[str],
        model: None = None,
        *,
        mode: int | None = None,
        backups: int = 10,
        default: Mapping[str, Any] | None = None,
        lock_timeout: float = 30.0,
        indent: int | None = 2,
        max_bytes: int = MAX_READ_BYTES,
    ) -> None: ...

    @overload
    def __init__(
        self,
        path: str | os.PathLike[str],
        model: type[M],
        *,
        mode: int | None = None,
        backups: int = 10,
        default: M | None = None,
        lock_timeout: float = 30.0,
        indent: int | None = 2,
        max_bytes: int = MAX_READ_BYTES,
    ) -> None: ...

    def __init__(
        self,
        path: str | os.PathLike[str],
        model: type[Any] | None = None,
        *,
        mode: int | None = None,
        backups: int = 10,
        default: Any = None,
        lock_timeout: float = 30.0,
        indent: int | None = 2,
        max_bytes: int = MAX_READ_BYTES,
    ) -> None:
        if backups < 0:
            raise ValueError(f"backups must be an int >= 0, got {backups!r}")
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, got {max_bytes!r}")
        if mode is not None and not 0 <= mode <= 0o7777:
            raise ValueError(f"mode must be permission bits like 0o600, got {mode!r}")
        if model is not None and not isinstance(model, type):
            raise TypeError(
                f"model must be a pydantic model class or None, got {model!r}"
            )
        file = os.fspath(path)
        if not isinstance(file, str):
            raise TypeError(f"path must be a str or os.PathLike[str], got {path!r}")
        self._file = file
        self.model = model
        self.mode = mode
        self.max_backups = backups
        self._default = default
        self.lock_timeout = lock_timeout
        self.indent = indent
        self.max_bytes = max_bytes
        self._toml = _suffix(file).lower() == ".toml"
        self._thread_lock = threading.RLock()

    def __repr__(self) -> str:
        kind = "dict" if self.model is None else self.model.__name__
        return f"ConfigFile({self._file!r}, {kind})"

    @property
    def path(self) -> Path:
        """The file, as given."""
        from pathlib import Path  # not at import: a hook never needs it

        return Path(self._file)

    @property
    def backup_dir(self) -> Path:
        """Where backups go: ``<name>.backups/`` beside the (real) file."""
        from pathlib import Path

        return Path(self._backup_dir())

    def _backup_dir(self) -> str:
        return _resolve(self._file) + ".backups"

    # -- reading -------------------------------------------------------------------

    def _error(
        self,
        errors: Sequence[tuple[str, str]],
        *,
        code: str | None = None,
        message: str = "",
    ) -> ConfigError:
        return ConfigError(message, path=self._file, errors=errors, code=code)

    def _parse(self, raw: bytes | str) -> Any:
        try:
            text = raw.decode("utf-8-sig") if isinstance(raw, bytes) else raw
        except UnicodeDecodeError as exc:
            raise self._error(
                [("<file>", f"not UTF-8 text: {exc.reason} at byte {exc.start}")]
            ) from exc
        if self._toml:
            try:
                import tomllib  # type: ignore[import-not-found,unused-ignore]
            except ModuleNotFoundError as exc:  # pragma: no cover - Python 3.10
                raise self._error(
                    [("<file>", "reading TOML needs Python 3.11+ (tomllib)")]
                ) from exc
            try:
                return _TomlData(tomllib.loads(text))
            except Exception as exc:
                raise self._error([("<file>", f"invalid TOML: {exc}")]) from exc
        try:
            # Duplicate keys and NaN are refused here, where pydantic's JSON
            # parser would let them through; a model validates the text.
            parsed = json.loads(
                text,
                parse_constant=_reject_constant,
                object_pairs_hook=_no_duplicates,
            )
        except json.JSONDecodeError as exc:
            raise self._error(
                [
                    (
                        "<file>",
                        f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}",
                    )
                ]
            ) from exc
        except (ValueError, RecursionError) as exc:
            raise self._error([("<file>", f"invalid JSON: {exc}")]) from exc
        return _JsonText(text) if self.model is not None else parsed

    def validate(self, data: object) -> M:
        """Validate ``data`` without touching the disk.

        Args:
            data: A mapping, a model instance (re-validated), or the raw text
                or bytes of a file.

        Returns:
            A new value: the model instance, or without a model a deep copy
            of the JSON object (tuples become lists).

        Raises:
            ConfigError: Listing every bad field with its path and message
                (without a model: the first value JSON cannot hold, or a
                top level that is not an object).
        """
        if isinstance(data, (bytes, bytearray, str)):
            data = self._parse(bytes(data) if isinstance(data, bytearray) else data)
        if self.model is None:
            plain: Any = self._validate_plain(data)
            return plain  # type: ignore[no-any-return]
        from pydantic import ValidationError

        if isinstance(data, _TomlData):
            data = data.value
        try:
            if isinstance(data, self.model):
                # Re-validated: an instance may have been built with
                # model_copy()/construct() or mutated, skipping validation.
                # Through JSON, as load() will see it.
                data = _JsonText(data.model_dump_json(by_alias=True, warnings=False))
            if isinstance(data, _JsonText):
                # JSON mode, so strict models accept what JSON can express
                # (datetimes, UUIDs and enums as strings).
                return self.model.model_validate_json(data.text)  # type: ignore[no-any-return]
            return self.model.model_validate(data)  # type: ignore[no-any-return]
        except ValidationError as exc:
            raise self._error(validation_errors(exc)) from exc
        except RecursionError as exc:
            raise self._error([("<root>", "nested too deeply")]) from exc
        except Exception as exc:
            # A validator that raised something pydantic does not wrap is
            # still a bad configuration for the caller, never a crash.
            raise self._error(
                [("<root>", f"validation failed: {type(exc).__name__}: {exc}")]
            ) from exc

    def _validate_plain(self, data: object) -> dict[str, Any]:
        if isinstance(data, _TomlData):
            # TOML's dates and times are not JSON; read-only, so kept as parsed.
            return data.value
        if not isinstance(data, Mapping):
            raise self._error(
                [("<root>", f"must be a JSON object, got {type(data).__name__}")]
            )
        try:
            return _json_copy(data, "")  # type: ignore[no-any-return]
        except _NotJson as exc:
            raise self._error([(exc.where or "<root>", exc.why)]) from None
        except RecursionError:
            raise self._error([("<root>", "nested too deeply")]) from None

    def _io_error(self, doing: str, exc: OSError) -> ConfigError:
        """A :class:`ConfigIOError` for an operating-system failure, naming the cause."""
        cause = describe_os_error(exc, self._file)
        fallback = "CONFIG_INVALID" if doing == "read" else "OS_ERROR"
        return ConfigIOError(
            f"cannot {doing} configuration file {self._file}: {cause}",
            path=self._file,
            errors=[("<file>", f"cannot {doing}: {cause}")],
            code=os_error_code(exc) or fallback,
            cause=exc,
        )

    def _read_bytes(self) -> bytes | None:
        try:
            return read_regular_file(self._file, max_bytes=self.max_bytes)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._io_error("read", exc) from exc

    def load(self) -> M:
        """Read, parse and validate the file.

        Returns:
            The validated value (a new one on every call), or the
            ``default`` for a missing file, when one was given.

        Raises:
            ConfigError: ``CONFIG_MISSING`` if the file does not exist (and no
                default); ``CONFIG_INVALID`` listing every bad field.
        """
        raw = self._read_bytes()
        if raw is None:
            return self._missing()
        return self.validate(raw)

    def _missing(self) -> M:
        if self._default is None:
            raise self._error(
                [("<file>", "does not exist")],
                code="CONFIG_MISSING",
                message=f"configuration file {self._file} does not exist",
            )
        return self.validate(self._default)

    # -- writing -------------------------------------------------------------------

    def render(self, value: M | Mapping[str, Any]) -> bytes:
        """The canonical bytes for ``value`` (validated), before kept keys.

        :meth:`save` writes these, plus, with a model that ignores extras,
        the keys of the current file the model does not declare.
        """
        if self._toml:
            raise self._error(
                [("<file>", "TOML files are read-only here; save as .json")],
                code="CONFIG_INVALID",
            )
        checked: Any = self.validate(value)
        if self.model is None:
            return _dump_json(checked, self.indent)
        try:
            # pydantic's serializer (Rust) is ~10x faster than json.dumps with
            # indent (pure Python); the output is deterministic for a value.
            text: str = checked.model_dump_json(indent=self.indent, by_alias=True)
        except Exception as exc:
            raise self._error(
                [("<root>", f"cannot be written as JSON: {type(exc).__name__}: {exc}")]
            ) from exc
        return text.encode("utf-8") + b"\n"

    def _render_keeping(
        self, value: M | Mapping[str, Any], current: bytes | None
    ) -> bytes:
        new = self.render(value)
        if self.model is None or current is None:
            return new
        return _keep_undeclared(self.model, new, current, self.indent)

    def save(
        self, value: M | Mapping[str, Any], *, dry_run: bool = False
    ) -> SaveResult:
        """Validate ``value`` and write it, unless the file already holds it.

        The replaced version is kept as a backup (rotated, at most
        ``backups``), the new content is written atomically and durably, then
        read back and validated; if that fails the previous version is put
        back and :class:`ConfigError` raised.

        Args:
            value: The config's value (a model instance, or a dict without
                a model) or a mapping to validate.
            dry_run: Only compute what would change; write nothing.

        Returns:
            A :class:`SaveResult`; ``changed=False`` means nothing was written.

        Raises:
            ConfigError: If ``value`` is invalid (nothing is written).
            LockConflictError: If the lock stayed busy for ``lock_timeout``.
        """
        if dry_run:
            current = self._read_bytes()
            new = self._render_keeping(value, current)
            if current == new:
                return SaveResult(changed=False, backup=None, diff="", dry_run=True)
            return SaveResult(
                changed=True,
                backup=None,
                dry_run=True,
                source=(self._file, current, new),
            )
        self.render(value)  # invalid: fail before waiting for the lock
        with self._locked():
            new = self._render_keeping(value, self._read_bytes())
            return self._write_locked(new, action="saved")

    def update(self, fn: Callable[[M], M | None]) -> SaveResult:
        """Read-modify-write under the inter-process lock.

        ``fn`` gets the current value (or the default, for a missing file)
        and either changes it in place and returns ``None``, or returns a new
        value of the config's own type (the model class; without a model a
        ``dict`` that is not a part of the value it got). No other
        :meth:`update`, :meth:`edit`, :meth:`save` or :meth:`rollback` in
        any process runs in between, so no update is lost.

        Raises:
            TypeError: If ``fn`` returned anything else (say the sub-dict of
                ``data.setdefault("servers", {})``); nothing is written.
            ConfigError: If the current file or the result is invalid (nothing
                is written).
            LockConflictError: If the lock stayed busy for ``lock_timeout``.
        """
        with self._locked():
            current = self._load_for_edit()
            result = fn(current)
            if result is not None:
                self._check_result(result, current, fn)
            return self._commit(current if result is None else result)

    @contextlib.contextmanager
    def edit(self) -> Iterator[M]:
        """The locked read-modify-write as a block: ``with cfg.edit() as data:``.

        Yields the current value (or the default, for a missing file) to be
        changed in place. On a normal exit the value is validated and saved
        if it changed; on an exception nothing is written and the exception
        propagates. The inter-process lock is held for the whole block, so
        keep it short.

        Raises:
            ConfigError: If the current file or the edited value is invalid
                (nothing is written).
            LockConflictError: If the lock stayed busy for ``lock_timeout``.
        """
        with self._locked():
            data = self._load_for_edit()
            yield data
            self._commit(data)

    @contextlib.asynccontextmanager
    async def aedit(self) -> AsyncIterator[M]:
        """:meth:`edit` for asyncio: ``async with cfg.aedit() as data:``.

        The lock wait, the read and the write run in worker threads; the
        event loop never blocks. Cancelled while waiting for the lock, the
        lock is let go as soon as it is had and nothing is written.
        """
        import asyncio

        from .held_lock import _held_in_thread  # asyncio callers only

        async with _held_in_thread(self._locked):
            data = await asyncio.to_thread(self._load_for_edit)
            yield data
            await asyncio.to_thread(self._commit, data)

    def _load_for_edit(self) -> M:
        raw = self._read_bytes()
        return self._missing() if raw is None else self.validate(raw)

    def _check_result(self, result: object, current: object, fn: object) -> None:
        expected: type[Any] = dict if self.model is None else self.model
        name = getattr(fn, "__qualname__", repr(fn))
        if not isinstance(result, expected):
            raise TypeError(
                f"the update function {name} returned a {type(result).__name__}; "
                f"it must return None (after changing the value in place) or a "
                f"{expected.__name__}. Nothing was written to {self._file}"
            )
        if (
            self.model is None
            and result is not current
            and _is_part_of(result, current)
        ):
            raise TypeError(
                f"the update function {name} returned a part of the config (as "
                "setdefault() or get() do), not the whole of it; return None "
                f"after changing it in place. Nothing was written to {self._file}"
            )

    def _commit(self, value: M) -> SaveResult:
        new = self._render_keeping(value, self._read_bytes())
        return self._write_locked(new, action="updated")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._thread_lock, contextlib.ExitStack() as stack:
            try:
                stack.enter_context(file_lock(self._file, timeout=self.lock_timeout))
            except OSError as exc:
                raise self._io_error("lock", exc) from exc
            yield

    def _write_locked(self, new: bytes, *, action: str, **fields: Any) -> SaveResult:
        current = self._read_bytes()
        if current == new:
            return SaveResult(changed=False, backup=None, diff="")
        backup: str | None = None
        try:
            backup = self._make_backup() if current is not None else None
            atomic_write(self._file, new, mode=self.mode)
        except BaseException as exc:
            if backup is not None:
                # The version it kept is still the current one: no history.
                with contextlib.suppress(OSError):
                    os.unlink(backup)
            if isinstance(exc, OSError):
                raise self._io_error("write", exc) from exc
            raise
        self._rotate_backups()
        written = self._read_bytes()
        try:
            if written != new:
                raise self._error(
                    [("<file>", "read back different bytes than were written")]
                )
            self.validate(written)
        except ConfigError:
            try:
                if current is not None:
                    atomic_write(self._file, current)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(self._file)
            except OSError as exc:
                raise self._io_error("restore", exc) from exc
            emit("config_file", "restored", level="error", subject=self._file)
            raise
        emit(
            "config_file",
            action,
            # Routine writes are DEBUG: a host logging INFO hears nothing.
            level="warning" if action == "rolled_back" else "debug",
            subject=self._file,
            backup=backup,
            size=len(new),
            **fields,
        )
        return SaveResult(
            changed=True, backup=backup, source=(self._file, current, new)
        )

    # -- backups -------------------------------------------------------------------

    def backups(self) -> list[Path]:
        """Backups of earlier versions, newest first."""
        from pathlib import Path

        return [Path(backup) for backup in self._backup_files()]

    def _backup_files(self) -> list[str]:
        """Paths of the backups, newest first."""
        directory = self._backup_dir()
        try:
            names = [n for n in os.listdir(directory) if _BACKUP_NAME.match(n)]
        except (FileNotFoundError, NotADirectoryError):
            return []
        return [os.path.join(directory, n) for n in sorted(names, reverse=True)]

    def _make_backup(self) -> str | None:
        if self.max_backups == 0:
            return None
        directory = self._backup_dir()
        with contextlib.suppress(FileExistsError):  # not a directory: said below
            os.mkdir(directory, 0o700)
        if not os.path.isdir(directory):
            raise self._error(
                [("<backups>", f"{directory} exists and is not a directory")],
                code="NOT_A_DIRECTORY",
                message=(
                    f"cannot back up configuration file {self._file}: the backup "
                    f"directory {directory} exists and is not a directory"
                ),
            )
        now = _dt.datetime.fromtimestamp(get_clock().time(), _dt.timezone.utc)
        existing = self._backup_files()
        if existing:
            match = _BACKUP_NAME.match(os.path.basename(existing[0]))
            assert match is not None
            last = _backup_time(match.group(1))
            # Names sort in save order even if the clock stands still or steps back.
            now = max(now, last + _dt.timedelta(microseconds=1))
        stamp = now.strftime("%Y%m%dT%H%M%S%f") + "Z"
        backup = os.path.join(directory, stamp + _suffix(self._file))
        source = _resolve(self._file)
        try:
            # The data file is about to be *replaced* (new inode), so the old
            # inode lives on unchanged under this second name: a free backup.
            os.link(source, backup)
        except OSError:
            _copy_private(source, backup)
        if self.mode is not None and os.name == "posix":
            # A linked backup shares the inode about to be replaced; the
            # history of a 0600 file is never more readable than it.
            os.chmod(backup, self.mode)
        return backup

    def _rotate_backups(self) -> None:
        for old in self._backup_files()[self.max_backups :]:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(old)

    def rollback(self, steps: int = 1) -> SaveResult:
        """Restore the ``steps``-th newest valid backup.

        Backups that fail validation, equal the current content or repeat a
        newer backup's content are skipped: each step is a distinct earlier
        version. The rollback is itself a save: the content it replaces
        becomes the newest backup, so nothing is ever lost and a rollback can
        be undone with another ``rollback()``.

        Raises:
            ConfigError: ``CONFIG_MISSING`` if there is no such valid backup.
        """
        if steps < 1:
            raise ValueError(f"rollback steps must be >= 1, got {steps!r}")
        with self._locked():
            current = self._read_bytes()
            found = 0
            seen = {current}
            for backup in self._backup_files():
                try:
                    raw = read_regular_file(backup, max_bytes=self.max_bytes)
                    self.validate(raw)
                except (OSError, ConfigError):
                    continue
                if raw in seen:
                    continue  # one step per distinct earlier version
                seen.add(raw)
                found += 1
                if found == steps:
                    return self._write_locked(
                        raw, action="rolled_back", restored=backup
                    )
        raise self._error(
            [("<backups>", f"no valid backup {steps} step(s) back")],
            code="CONFIG_MISSING",
            message=f"cannot roll back {self._file}: only {found} valid backup(s)",
        )
