"""A credential store that many processes share without losing a write.

One JSON file of named profiles, mode 0600. Every change is a locked
read-merge-write (so another process's concurrent change survives), written
atomically. Usage timestamps are throttled: ``record_usage`` writes at most
once per ``usage_interval`` per process; the rest is merged in memory with
``max(last_used)`` and flushed by ``flush()``, ``close()`` and at interpreter
exit. Secrets are pydantic ``SecretStr``: they never appear in ``repr``, logs,
events or exception messages; neither do ``metadata`` values under
secret-looking keys (``client_secret``, ``api_key``...).

:meth:`CredentialStore.update` is the read-modify-write of one profile under
the store's inter-process lock: the way to change a credential that another
process may rotate meanwhile.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as _dt
import errno
import json
import os
import stat
import threading
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal, TypeVar

from .._core.clock import get_clock
from .._core.events import emit
from .._core.exceptions import (
    ConfigError,
    CredentialError,
    CredentialExpiredError,
    CredentialIOError,
    CredentialMissingError,
)
from .atomic import (
    MAX_READ_BYTES,
    _resolve,
    atomic_write,
    describe_os_error,
    os_error_code,
    read_regular_file,
    refuse_special_file,
)
from .credential_formats import _FORMATS, CredentialFormat, _parse, _render
from .credential_keyring import _KeyringSecrets
from .credential_model import _UTC, Credential, _iso, _later, _now, _revalidated
from .file_lock import file_lock

__all__ = ["CredentialStore"]


_FILE_MODE = 0o600
Refresher = Callable[["Credential"], "Credential"]
R = TypeVar("R", bound=Callable[["Credential"], "Credential"])
Updater = Callable[["Credential | None"], "Credential | None"]


# -- flushing at exit ------------------------------------------------------------

_open_stores: weakref.WeakSet[CredentialStore] = weakref.WeakSet()


def _flush_all_at_exit() -> None:
    for store in list(_open_stores):
        with contextlib.suppress(Exception):
            store.flush()


atexit.register(_flush_all_at_exit)


def _emit_stored(action: str, name: str, cred: Credential, **fields: Any) -> None:
    """The debug event of a profile ``name`` now stored as ``cred``."""
    emit(
        "credentials",
        action,
        level="debug",
        subject=name,
        provider=cred.provider,
        expires_at=_iso(cred.expires_at),
        **fields,
    )


class CredentialStore:
    """Named credentials in one JSON file shared by many processes.

    Args:
        path: The store file. Created (mode 0600) only with ``create=True``;
            otherwise a missing or invalid file fails fast here.
        usage_interval: Seconds between usage-only writes of this process.
        expiry_warning: How long before ``expires_at`` a profile counts as
            expiring (``expiring()``, warning events).
        create: Create an empty store if the file does not exist.
        lock_timeout: Seconds to wait for the inter-process lock (inside a
            ``@hook``, at most what is left of its budget).
        max_bytes: The largest store file read (default 16 MiB).
        secrets: ``"file"`` keeps tokens in the JSON file (mode 0600);
            ``"keyring"`` keeps them in the operating system's keychain
            through ``keyring`` (extra ``keyring``) and the file holds only
            references ``keyring:<service>:<path>#<profile>/<field>``. A store
            that still has plain tokens is moved into the keychain at its
            next write. The keychain is written before the file, so the file
            never refers to a secret that is not there.
        keyring_service: The keychain service name the secrets are kept under.
        format: The file's layout: ``"auto"`` (the default: an
            ``auth-profiles.json`` as agent gateways write it is recognised
            by its ``usageStats`` or typed profiles, anything else and a new
            file are this library's own), ``"paios"``, ``"auth-profiles"``
            (:class:`AuthProfilesFormat`), or any :class:`CredentialFormat`.
            Fields and keys a format does not own are written back as read.

    Raises:
        ConfigError: ``CONFIG_MISSING`` / ``CONFIG_INVALID`` for a missing or
            invalid store file (the message never contains a secret).
        CredentialError: The file cannot be used: a FIFO, socket, device or
            directory at the path, larger than ``max_bytes``, or an
            operating-system error (code from the errno:
            ``PERMISSION_DENIED``, ``DISK_FULL``...). Raised the same way by
            every method that reads or writes; the file is then unchanged.

    Thread- and process-safe. A store whose file permissions are looser than
    0600 is corrected, with a ``credentials.permissions_fixed`` warning event.
    Every write creates the new file 0600 from its first byte.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        usage_interval: float = 300.0,
        expiry_warning: _dt.timedelta = _dt.timedelta(days=7),
        create: bool = False,
        lock_timeout: float = 30.0,
        max_bytes: int = MAX_READ_BYTES,
        secrets: Literal["file", "keyring"] = "file",
        keyring_service: str = "paios-reliability",
        format: str | CredentialFormat = "auto",
    ) -> None:
        if secrets not in ("file", "keyring"):
            raise ValueError(f"secrets must be 'file' or 'keyring', got {secrets!r}")
        self._keyring: _KeyringSecrets | None = None
        if secrets == "keyring":
            self._keyring = _KeyringSecrets(keyring_service, Path(path))
        if isinstance(format, str):
            if format != "auto" and format not in _FORMATS:
                raise ValueError(
                    f"format must be 'auto', {', '.join(map(repr, _FORMATS))} or "
                    f"a CredentialFormat, got {format!r}"
                )
            self._format: CredentialFormat | None = _FORMATS.get(format)
        else:
            self._format = format
        self._doc: Any = None
        if usage_interval < 0:
            raise ValueError(f"usage_interval must be >= 0, got {usage_interval!r}")
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, got {max_bytes!r}")
        self.path = Path(path)
        self.usage_interval = float(usage_interval)
        self.expiry_warning = expiry_warning
        self.lock_timeout = lock_timeout
        self.max_bytes = max_bytes
        self._lock = threading.RLock()
        self._cache_key: tuple[int, int, int] | None = None
        self._cache: dict[str, Credential] = {}
        self._pending: dict[str, _dt.datetime] = {}
        self._pending_counts: dict[str, int] = {}
        self._last_usage_write: float | None = None
        self._refreshers: dict[str, Refresher] = {}
        self._warned: set[tuple[str, _dt.datetime | None]] = set()
        self._closed = False
        if create:
            try:
                if not self.path.exists():  # a dangling symlink gets its target
                    with file_lock(self.path, timeout=lock_timeout):
                        if not self.path.exists():
                            atomic_write(
                                self.path,
                                _render({}, self._format),
                                mode=_FILE_MODE,
                            )
                            emit(
                                "credentials",
                                "created",
                                level="debug",
                                subject=str(self.path),
                            )
            except OSError as exc:
                raise self._os_error("create", exc) from exc
        self._profiles()
        _open_stores.add(self)

    def __repr__(self) -> str:
        return f"CredentialStore({str(self.path)!r})"

    def __enter__(self) -> CredentialStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _os_error(self, doing: str, exc: OSError) -> CredentialError:
        """A :class:`CredentialIOError` for an operating-system failure on the file."""
        name = str(self.path)
        cause = describe_os_error(exc, self.path)
        fallback = "CREDENTIAL_ERROR" if doing == "read" else "OS_ERROR"
        return CredentialIOError(
            f"cannot {doing} credential store {name}: {cause}",
            code=os_error_code(exc) or fallback,
            context={
                "path": name,
                "errno": errno.errorcode.get(exc.errno or 0),
                "cause": cause,
            },
            cause=exc,
            path=name,
        )

    def _missing(self, name: str) -> CredentialMissingError:
        """The error for a profile ``name`` that the store does not hold."""
        return CredentialMissingError(
            f"no credential named {name!r} in {self.path}",
            context={"name": name, "path": str(self.path)},
        )

    # -- reading -------------------------------------------------------------

    def _profiles(self, *, fresh: bool = False) -> dict[str, Credential]:
        """The current profiles, re-read only when the file changed.

        ``fresh`` always re-reads: under the write lock a stat-based cache is
        not enough (a recycled inode with the same size inside one coarse
        mtime tick would look unchanged).
        """
        name = str(self.path)
        try:
            st = os.stat(self.path)
            refuse_special_file(name, st)  # before anything touches it
        except FileNotFoundError:
            raise ConfigError(
                f"credential store {name} does not exist (pass create=True to make one)",
                path=name,
                errors=[("<file>", "does not exist")],
                code="CONFIG_MISSING",
            ) from None
        except OSError as exc:
            raise self._os_error("read", exc) from exc
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        with self._lock:
            if key == self._cache_key and not fresh:
                return self._cache
            self._fix_permissions(st)
            try:
                raw = read_regular_file(self.path, max_bytes=self.max_bytes)
            except OSError as exc:
                raise self._os_error("read", exc) from exc
            profiles, doc, fmt = _parse(raw, name, self._format)
            self._format = fmt  # "auto" settles on the first file read
            if self._keyring is not None:
                profiles = self._keyring.resolve(profiles)
            self._cache_key, self._cache, self._doc = key, profiles, doc
            return profiles

    def _fix_permissions(self, st: os.stat_result) -> None:
        if os.name != "posix" or not stat.S_IMODE(st.st_mode) & 0o077:
            return
        target = _resolve(self.path)
        with contextlib.suppress(OSError):
            os.chmod(target, _FILE_MODE)
            emit(
                "credentials",
                "permissions_fixed",
                level="warning",
                subject=str(self.path),
                was=oct(stat.S_IMODE(st.st_mode)),
                now=oct(_FILE_MODE),
            )

    def names(self) -> list[str]:
        """Profile names, sorted."""
        return sorted(self._profiles())

    def get(self, name: str, *, allow_expired: bool = False) -> Credential:
        """The credential stored as ``name`` (with pending usage merged in).

        Raises:
            CredentialMissingError: No profile of that name.
            CredentialExpiredError: It has expired (unless ``allow_expired``).
        """
        profiles = self._profiles()
        cred = profiles.get(name)
        if cred is None:
            raise self._missing(name)
        with self._lock:
            pending = self._pending.get(name)
        if pending is not None and (cred.last_used is None or pending > cred.last_used):
            cred = cred.model_copy(update={"last_used": pending})
        now = _now()
        if cred.expired(now) and not allow_expired:
            raise CredentialExpiredError(
                f"credential {name!r} ({cred.provider}) expired at {_iso(cred.expires_at)}",
                context={"name": name, "provider": cred.provider},
            )
        self._warn_if_expiring(name, cred, now)
        return cred

    def _warn_if_expiring(self, name: str, cred: Credential, now: _dt.datetime) -> bool:
        if cred.expires_at is None or cred.expires_at > now + self.expiry_warning:
            return False
        key = (name, cred.expires_at)
        with self._lock:
            if key in self._warned:
                return True
            self._warned.add(key)
        emit(
            "credentials",
            "expiring",
            level="warning",
            subject=name,
            provider=cred.provider,
            expires_at=_iso(cred.expires_at),
            expired=cred.expired(now),
        )
        return True

    def expiring(
        self, within: _dt.timedelta | None = None
    ) -> list[tuple[str, Credential]]:
        """Profiles that expire within ``within`` (default ``expiry_warning``).

        Already expired profiles are included. Sorted by expiry, soonest
        first. Emits one ``credentials.expiring`` warning per profile and
        expiry date (per store object).
        """
        window = self.expiry_warning if within is None else within
        now = _now()
        due = [
            (name, cred)
            for name, cred in self._profiles().items()
            if cred.expires_at is not None and cred.expires_at <= now + window
        ]
        due.sort(key=lambda item: (item[1].expires_at, item[0]))
        for name, cred in due:
            self._warn_if_expiring(name, cred, now)
        return due

    # -- writing -------------------------------------------------------------

    def _write(self, profiles: dict[str, Credential], reason: str) -> None:
        """Write ``profiles``; the caller holds the file lock."""
        on_disk = profiles
        if self._keyring is not None:
            on_disk = self._keyring.store(profiles)
        fmt = self._format or _FORMATS["paios"]
        doc = fmt.render(on_disk, self._doc)
        data = (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
        try:
            atomic_write(self.path, data, mode=_FILE_MODE)
            st = os.stat(self.path)
        except OSError as exc:
            raise self._os_error("write", exc) from exc
        with self._lock:
            previous = self._cache
            self._cache_key = (st.st_ino, st.st_size, st.st_mtime_ns)
            self._cache = profiles
            self._doc = doc
        if self._keyring is not None:
            # After the file: a crash in between leaves an unused secret in
            # the keychain, never a reference to a missing one.
            self._keyring.forget(set(previous) - set(profiles))
        emit(
            "credentials",
            "written",
            level="debug",
            subject=str(self.path),
            reason=reason,
        )

    @contextlib.contextmanager
    def _locked(self, path: Path | None = None) -> Iterator[None]:
        """Hold the inter-process lock of ``path`` (default: the store's)."""
        with contextlib.ExitStack() as stack:
            try:
                stack.enter_context(
                    file_lock(path or self.path, timeout=self.lock_timeout)
                )
            except OSError as exc:
                raise self._os_error("write", exc) from exc
            yield

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[dict[str, Credential]]:
        with self._locked():
            yield dict(self._profiles(fresh=True))

    def _merged_usage(
        self, name: str, new: Credential, old: Credential | None
    ) -> tuple[Credential, int]:
        """``new`` with ``last_used`` and ``use_count`` never behind the stored ones."""
        with self._lock:
            pending = self._pending.get(name)
            uses = self._pending_counts.get(name, 0)
        last = _later(new.last_used, pending)
        count = new.use_count
        if old is not None:
            last = _later(last, old.last_used)
            count = max(count, old.use_count)
        count += uses  # pending uses go out with this write
        if last != new.last_used or count != new.use_count:
            new = new.model_copy(update={"last_used": last, "use_count": count})
        return new, uses

    def _usage_written(self, name: str, cred: Credential, uses: int = 0) -> None:
        """Forget pending usage of ``name`` that ``cred``, now on disk, covers."""
        with self._lock:
            left = self._pending_counts.get(name, 0) - uses
            if left > 0:
                self._pending_counts[name] = left
            else:
                self._pending_counts.pop(name, None)
            pending = self._pending.get(name)
            written = cred.last_used
            if pending is not None and written is not None and pending <= written:
                del self._pending[name]

    def set(self, name: str, credential: Credential) -> None:
        """Store ``credential`` as ``name``, durably, before returning.

        A locked read-merge-write: profiles other processes changed meanwhile
        are kept, and ``last_used`` never goes backwards. The profile itself
        is replaced: ``set()`` of a credential read earlier with ``get()``
        reverts a change another process made in between (a rotated refresh
        token is lost). To change a stored credential, use :meth:`update`.

        Raises:
            ConfigError: ``VALIDATION_ERROR`` if ``credential`` is invalid
                (fields named, values never shown); nothing is written.
            CredentialError: The file cannot be read or written.
            LockConflictError: The lock stayed busy for ``lock_timeout``.
        """
        if not isinstance(credential, Credential):
            raise TypeError(
                f"set() needs a Credential, got {type(credential).__name__}"
            )
        credential = _revalidated(credential, name)
        with self._transaction() as profiles:
            credential, uses = self._merged_usage(name, credential, profiles.get(name))
            profiles[name] = credential
            self._write(profiles, "set")
            self._usage_written(name, credential, uses)
        _emit_stored("set", name, credential)

    def update(self, name: str, fn: Updater) -> Credential | None:
        """Change one profile with ``fn`` under the store's inter-process lock.

        ``fn`` gets the credential stored as ``name`` right now (``None`` if
        there is none; expired ones too, with this process's pending usage
        merged in) and returns the credential to store. No other write of
        the store, from any thread or process, runs in between, so nothing
        another process just stored (a rotated refresh token) is reverted::

            store.update("github", lambda cred: cred.model_copy(
                update={"metadata": {**cred.metadata, "team": "infra"}}))

        ``fn`` returning ``None`` writes nothing (it does not delete: a
        function that forgets to ``return`` must not destroy a secret; use
        :meth:`delete`). A result equal to the stored credential writes
        nothing either. ``fn`` runs with the lock held: keep it quick (no
        network calls; for OAuth refreshes use :meth:`refresher`) and do not
        write to the store from inside it.

        Returns:
            The credential now stored as ``name`` (``None`` if there is none).

        Raises:
            Exception: Whatever ``fn`` raises, unchanged; nothing is written.
            TypeError: ``fn`` returned something else than a
                :class:`Credential` or ``None``; nothing is written.
            ConfigError: ``VALIDATION_ERROR`` if the result is invalid;
                nothing is written.
            CredentialError: The file cannot be read or written (unchanged).
            LockConflictError: The lock stayed busy for ``lock_timeout``.
        """
        with self._transaction() as profiles:
            old = profiles.get(name)
            current = old
            with self._lock:
                pending = self._pending.get(name)
            if current is not None and pending is not None:
                last = _later(current.last_used, pending)
                if last != current.last_used:
                    current = current.model_copy(update={"last_used": last})
            new = fn(current)
            if new is None:
                return old
            if not isinstance(new, Credential):
                raise TypeError(
                    f"update() needs fn to return a Credential or None, "
                    f"got {type(new).__name__}"
                )
            new = _revalidated(new, name)
            new, uses = self._merged_usage(name, new, old)
            if old is not None and new._to_file() == old._to_file():
                self._usage_written(name, old)
                return old
            profiles[name] = new
            self._write(profiles, "update")
            self._usage_written(name, new, uses)
        _emit_stored("updated", name, new, created=old is None)
        return new

    def delete(self, name: str) -> bool:
        """Remove a profile; returns whether it existed."""
        with self._transaction() as profiles:
            if profiles.pop(name, None) is None:
                return False
            with self._lock:
                self._pending.pop(name, None)
            self._write(profiles, "delete")
        emit("credentials", "deleted", level="debug", subject=name)
        return True

    def record_usage(self, name: str, when: _dt.datetime | None = None) -> None:
        """Note that ``name`` was just used; written at most once per interval.

        The first use writes at once; later uses within ``usage_interval``
        seconds of this process's last usage write stay in memory and go out
        with the next write (or ``flush()``/``close()``/interpreter exit).

        Raises:
            CredentialMissingError: No profile of that name.
        """
        if name not in self._profiles():
            raise self._missing(name)
        clock = get_clock()
        stamp = when or _now()
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=_UTC)
        with self._lock:
            current = self._pending.get(name)
            if current is None or stamp > current:
                self._pending[name] = stamp
            self._pending_counts[name] = self._pending_counts.get(name, 0) + 1
            last = self._last_usage_write
            due = last is None or clock.monotonic() - last >= self.usage_interval
        if due:
            self.flush()

    def flush(self) -> bool:
        """Write pending usage now; returns whether anything was written."""
        with self._lock:
            if not self._pending and not self._pending_counts:
                return False
            pending, self._pending = self._pending, {}
            counts, self._pending_counts = self._pending_counts, {}
            self._last_usage_write = get_clock().monotonic()
        try:
            with self._transaction() as profiles:
                changed = False
                for name in pending.keys() | counts.keys():
                    cred = profiles.get(name)
                    if cred is None:
                        continue  # deleted by someone meanwhile
                    update: dict[str, Any] = {}
                    stamp = pending.get(name)
                    if stamp is not None and (
                        cred.last_used is None or stamp > cred.last_used
                    ):
                        update["last_used"] = stamp
                    if counts.get(name):
                        # Added to what is on disk under the lock: every
                        # process's uses count, none overwrites another's.
                        update["use_count"] = cred.use_count + counts[name]
                    if update:
                        profiles[name] = cred.model_copy(update=update)
                        changed = True
                if changed:
                    self._write(profiles, "usage")
        except BaseException:
            with self._lock:  # keep it for the next attempt
                for name, stamp in pending.items():
                    self._pending[name] = (
                        _later(self._pending.get(name), stamp) or stamp
                    )
                for name, n in counts.items():
                    self._pending_counts[name] = self._pending_counts.get(name, 0) + n
            raise
        return changed

    def close(self) -> None:
        """Flush pending usage. The store stays readable."""
        self.flush()
        _open_stores.discard(self)

    # -- refreshing ------------------------------------------------------------

    def refresher(self, provider: str) -> Callable[[R], R]:
        """Register the OAuth refresh function of ``provider`` (a decorator).

        The function takes the current :class:`Credential` and returns the
        new one (new token, usually a new refresh token and ``expires_at``).
        """

        def register(fn: R) -> R:
            self._refreshers[provider] = fn
            return fn

        return register

    def refresh_due(
        self, *, leeway: _dt.timedelta = _dt.timedelta(minutes=5)
    ) -> list[str]:
        """Refresh every profile with a refresher that expires within ``leeway``.

        Single-flight across processes: each refresh holds a refresh lock,
        re-reads the store and skips a profile another process has already
        refreshed, so a rotating refresh token is never used twice.

        Returns:
            Names refreshed by this call.

        Raises:
            CredentialError: If any refresher failed (after trying all of
                them); the first failure is the cause.
        """
        refreshed: list[str] = []
        failures: list[tuple[str, BaseException]] = []
        candidates = [
            name
            for name, cred in self._profiles().items()
            if cred.provider in self._refreshers and self._due(cred, leeway)
        ]
        for name in sorted(candidates):
            try:
                if self._refresh_one(name, leeway):
                    refreshed.append(name)
            except Exception as exc:  # noqa: BLE001 - reported after trying the rest
                failures.append((name, exc))
                emit(
                    "credentials",
                    "refresh_failed",
                    level="error",
                    subject=name,
                    error_type=type(exc).__name__,
                )
        if failures:
            names = ", ".join(n for n, _ in failures)
            raise CredentialError(
                f"refreshing {len(failures)} credential(s) failed: {names}",
                context={"failed": [n for n, _ in failures], "refreshed": refreshed},
            ) from failures[0][1]
        return refreshed

    @staticmethod
    def _due(cred: Credential, leeway: _dt.timedelta) -> bool:
        return cred.expires_at is not None and cred.expires_at <= _now() + leeway

    def _refresh_one(self, name: str, leeway: _dt.timedelta) -> bool:
        refresh_lock = self.path.with_name(self.path.name + ".refresh")
        with self._locked(refresh_lock):
            # Re-read: another process may have refreshed it while we waited.
            cred = self._profiles(fresh=True).get(name)
            if cred is None or not self._due(cred, leeway):
                emit("credentials", "refresh_skipped", level="debug", subject=name)
                return False
            fn = self._refreshers.get(cred.provider)
            if fn is None:  # pragma: no cover - checked by the caller
                return False
            new = fn(cred)
            if not isinstance(new, Credential):
                raise TypeError(
                    f"the refresher of {cred.provider!r} returned "
                    f"{type(new).__name__}, not a Credential"
                )
            new = _revalidated(new, name)
            with self._transaction() as profiles:
                old = profiles.get(name)
                last = _later(new.last_used, None if old is None else old.last_used)
                profiles[name] = new.model_copy(update={"last_used": last})
                self._write(profiles, "refresh")
        _emit_stored("refreshed", name, new)
        return True
