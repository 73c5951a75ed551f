"""A credential store that many processes share without losing a write.

One JSON file of named profiles, mode 0600. Every change is a locked
read-merge-write (so another process's concurrent change survives), written
atomically. Usage timestamps are throttled: ``record_usage`` writes at most
once per ``usage_interval`` per process; the rest is merged in memory with
``max(last_used)`` and flushed by ``flush()``, ``close()`` and at interpreter
exit. Secrets are pydantic ``SecretStr``: they never appear in ``repr``, logs,
events or exception messages.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as _dt
import json
import os
import stat
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError, field_validator

from ._atomic import _resolve, atomic_write, file_lock
from ._clock import get_clock
from ._config_file import validation_errors
from ._events import emit
from ._exceptions import (
    ConfigError,
    CredentialError,
    CredentialExpiredError,
    CredentialMissingError,
)

__all__ = [
    "Credential",
    "CredentialReport",
    "CredentialStore",
    "credential_status",
]

_FORMAT_VERSION = 1
_FILE_MODE = 0o600
Refresher = Callable[["Credential"], "Credential"]
R = TypeVar("R", bound=Callable[["Credential"], "Credential"])
_UTC = _dt.timezone.utc


class Credential(BaseModel):
    """One stored credential (an auth profile).

    ``token`` and ``refresh_token`` are :class:`pydantic.SecretStr`: their
    ``repr``/``str`` is ``'**********'``; read them with
    ``.get_secret_value()``. Naive datetimes are taken as UTC.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: str
    token: SecretStr
    refresh_token: SecretStr | None = None
    expires_at: _dt.datetime | None = None
    last_used: _dt.datetime | None = None
    metadata: dict[str, Any] = {}

    @field_validator("expires_at", "last_used")
    @classmethod
    def _aware(cls, value: _dt.datetime | None) -> _dt.datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=_UTC)
        return value

    def expired(self, now: _dt.datetime | None = None) -> bool:
        """Whether ``expires_at`` has passed (never, without one)."""
        if self.expires_at is None:
            return False
        return self.expires_at <= (now or _now())

    def _to_file(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "token": self.token.get_secret_value(),
            "refresh_token": None
            if self.refresh_token is None
            else self.refresh_token.get_secret_value(),
            "expires_at": _iso(self.expires_at),
            "last_used": _iso(self.last_used),
            "metadata": self.metadata,
        }


def _revalidated(cred: Credential) -> Credential:
    """``cred`` checked again: ``model_copy(update=...)`` skips validation.

    So a refresher returning ``cred.model_copy(update={"token": "new"})``
    (a plain ``str``, not a ``SecretStr``) still stores a proper credential.
    """
    data = {name: getattr(cred, name) for name in Credential.model_fields}
    return Credential.model_validate(data)


def _iso(value: _dt.datetime | None) -> str | None:
    return None if value is None else value.astimezone(_UTC).isoformat()


def _now() -> _dt.datetime:
    return _dt.datetime.fromtimestamp(get_clock().time(), _UTC)


def _later(a: _dt.datetime | None, b: _dt.datetime | None) -> _dt.datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


# -- the file format ---------------------------------------------------------------


def _parse(raw: bytes, path: str) -> dict[str, Credential]:
    """Parse a store file; any problem is a ConfigError that carries no secret.

    The error is raised *outside* the ``except`` blocks, so it has no
    ``__context__`` either: pydantic and JSON errors may quote input values.
    """
    errors: list[tuple[str, str]] = []
    data: Any = None
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        errors.append(("<file>", "not UTF-8 text"))
    except json.JSONDecodeError as exc:
        errors.append(
            ("<file>", f"invalid JSON at line {exc.lineno} column {exc.colno}")
        )
    except (ValueError, RecursionError):
        errors.append(("<file>", "invalid JSON"))
    profiles: dict[str, Credential] = {}
    if not errors:
        if not isinstance(data, dict):
            errors.append(("<root>", "must be an object"))
        elif data.get("version") != _FORMAT_VERSION:
            errors.append(("version", f"must be {_FORMAT_VERSION}"))
        elif not isinstance(data.get("profiles"), dict):
            errors.append(("profiles", "must be an object of named profiles"))
        else:
            for name, value in data["profiles"].items():
                try:
                    profiles[name] = Credential.model_validate(value)
                except ValidationError as exc:
                    errors.extend(
                        (f"profiles.{name}.{where}", msg)
                        for where, msg in validation_errors(exc)
                    )
                except (RecursionError, ValueError, TypeError):
                    errors.append((f"profiles.{name}", "invalid profile"))
    if errors:
        raise ConfigError(
            f"invalid credential store {path}: "
            + "; ".join(f"{f}: {m}" for f, m in errors[:10]),
            path=path,
            errors=errors,
        )
    return profiles


def _render(profiles: dict[str, Credential]) -> bytes:
    doc = {
        "version": _FORMAT_VERSION,
        "profiles": {name: profiles[name]._to_file() for name in sorted(profiles)},
    }
    return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


# -- flushing at exit ------------------------------------------------------------

_open_stores: weakref.WeakSet[CredentialStore] = weakref.WeakSet()


def _flush_all_at_exit() -> None:
    for store in list(_open_stores):
        with contextlib.suppress(Exception):
            store.flush()


atexit.register(_flush_all_at_exit)


class CredentialStore:
    """Named credentials in one JSON file shared by many processes.

    Args:
        path: The store file. Created (mode 0600) only with ``create=True``;
            otherwise a missing or invalid file fails fast here.
        usage_interval: Seconds between usage-only writes of this process.
        expiry_warning: How long before ``expires_at`` a profile counts as
            expiring (``expiring()``, warning events).
        create: Create an empty store if the file does not exist.
        lock_timeout: Seconds to wait for the inter-process lock.

    Raises:
        ConfigError: ``CONFIG_MISSING`` / ``CONFIG_INVALID`` for a missing or
            invalid store file (the message never contains a secret).

    Thread- and process-safe. A store whose file permissions are looser than
    0600 is corrected, with a ``credentials.permissions_fixed`` warning event.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        usage_interval: float = 300.0,
        expiry_warning: _dt.timedelta = _dt.timedelta(days=7),
        create: bool = False,
        lock_timeout: float = 30.0,
    ) -> None:
        if usage_interval < 0:
            raise ValueError(f"usage_interval must be >= 0, got {usage_interval!r}")
        self.path = Path(path)
        self.usage_interval = float(usage_interval)
        self.expiry_warning = expiry_warning
        self.lock_timeout = lock_timeout
        self._lock = threading.RLock()
        self._cache_key: tuple[int, int, int] | None = None
        self._cache: dict[str, Credential] = {}
        self._pending: dict[str, _dt.datetime] = {}
        self._last_usage_write: float | None = None
        self._refreshers: dict[str, Refresher] = {}
        self._warned: set[tuple[str, _dt.datetime | None]] = set()
        self._closed = False
        if create and not self.path.exists():
            with file_lock(self.path, timeout=lock_timeout):
                if not self.path.exists():
                    atomic_write(self.path, _render({}), mode=_FILE_MODE)
                    emit("credentials", "created", subject=str(self.path))
        self._profiles()
        _open_stores.add(self)

    def __repr__(self) -> str:
        return f"CredentialStore({str(self.path)!r})"

    def __enter__(self) -> CredentialStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

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
        except FileNotFoundError:
            raise ConfigError(
                f"credential store {name} does not exist (pass create=True to make one)",
                path=name,
                errors=[("<file>", "does not exist")],
                code="CONFIG_MISSING",
            ) from None
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        with self._lock:
            if key == self._cache_key and not fresh:
                return self._cache
            self._fix_permissions(st)
            try:
                raw = self.path.read_bytes()
            except OSError as exc:
                raise ConfigError(
                    f"cannot read credential store {name}: {exc.strerror}",
                    path=name,
                    errors=[("<file>", str(exc.strerror))],
                ) from None
            profiles = _parse(raw, name)
            self._cache_key, self._cache = key, profiles
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
            raise CredentialMissingError(
                f"no credential named {name!r} in {self.path}",
                context={"name": name, "path": str(self.path)},
            )
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
        atomic_write(self.path, _render(profiles), mode=_FILE_MODE)
        st = os.stat(self.path)
        with self._lock:
            self._cache_key = (st.st_ino, st.st_size, st.st_mtime_ns)
            self._cache = profiles
        emit(
            "credentials",
            "written",
            level="debug",
            subject=str(self.path),
            reason=reason,
        )

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[dict[str, Credential]]:
        with file_lock(self.path, timeout=self.lock_timeout):
            yield dict(self._profiles(fresh=True))

    def set(self, name: str, credential: Credential) -> None:
        """Store ``credential`` as ``name``, durably, before returning.

        A locked read-merge-write: profiles other processes changed meanwhile
        are kept, and ``last_used`` never goes backwards.
        """
        if not isinstance(credential, Credential):
            raise TypeError(
                f"set() needs a Credential, got {type(credential).__name__}"
            )
        credential = _revalidated(credential)
        with self._transaction() as profiles:
            old = profiles.get(name)
            with self._lock:
                pending = self._pending.pop(name, None)
            last = _later(credential.last_used, pending)
            if old is not None:
                last = _later(last, old.last_used)
            if last != credential.last_used:
                credential = credential.model_copy(update={"last_used": last})
            profiles[name] = credential
            self._write(profiles, "set")
        emit(
            "credentials",
            "set",
            subject=name,
            provider=credential.provider,
            expires_at=_iso(credential.expires_at),
        )

    def delete(self, name: str) -> bool:
        """Remove a profile; returns whether it existed."""
        with self._transaction() as profiles:
            if profiles.pop(name, None) is None:
                return False
            with self._lock:
                self._pending.pop(name, None)
            self._write(profiles, "delete")
        emit("credentials", "deleted", subject=name)
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
            raise CredentialMissingError(
                f"no credential named {name!r} in {self.path}",
                context={"name": name, "path": str(self.path)},
            )
        clock = get_clock()
        stamp = when or _now()
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=_UTC)
        with self._lock:
            current = self._pending.get(name)
            if current is None or stamp > current:
                self._pending[name] = stamp
            last = self._last_usage_write
            due = last is None or clock.monotonic() - last >= self.usage_interval
        if due:
            self.flush()

    def flush(self) -> bool:
        """Write pending usage now; returns whether anything was written."""
        with self._lock:
            if not self._pending:
                return False
            pending, self._pending = self._pending, {}
            self._last_usage_write = get_clock().monotonic()
        try:
            with self._transaction() as profiles:
                changed = False
                for name, stamp in pending.items():
                    cred = profiles.get(name)
                    if cred is None:
                        continue  # deleted by someone meanwhile
                    if cred.last_used is None or stamp > cred.last_used:
                        profiles[name] = cred.model_copy(update={"last_used": stamp})
                        changed = True
                if changed:
                    self._write(profiles, "usage")
        except BaseException:
            with self._lock:  # keep it for the next attempt
                for name, stamp in pending.items():
                    self._pending[name] = (
                        _later(self._pending.get(name), stamp) or stamp
                    )
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
        with file_lock(refresh_lock, timeout=self.lock_timeout):
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
            new = _revalidated(new)
            with self._transaction() as profiles:
                old = profiles.get(name)
                last = _later(new.last_used, None if old is None else old.last_used)
                profiles[name] = new.model_copy(update={"last_used": last})
                self._write(profiles, "refresh")
        emit(
            "credentials",
            "refreshed",
            subject=name,
            provider=new.provider,
            expires_at=_iso(new.expires_at),
        )
        return True


# -- status (the CLI's `credentials status`) ------------------------------------


@dataclass(frozen=True, slots=True)
class CredentialReport:
    """What :func:`credential_status` found. Never contains a secret.

    Attributes:
        path: The store file.
        profiles: One dict per profile: name, provider, expires_at,
            last_used, state (``ok`` | ``expiring`` | ``expired``).
        problems: Reasons the store is unusable or needs action now.
        warnings: Things to act on soon (expiring profiles, loose mode).
    """

    path: str
    profiles: tuple[dict[str, Any], ...] = ()
    problems: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        """No problems (warnings allowed)."""
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "ok": self.ok,
            "profiles": [dict(p) for p in self.profiles],
            "problems": list(self.problems),
            "warnings": list(self.warnings),
        }

    def to_text(self) -> str:
        lines = [f"{self.path}: {'ok' if self.ok else 'PROBLEMS'}"]
        lines.extend(
            f"  {p['name']}: {p['provider']}, {p['state']}, "
            f"expires {p['expires_at'] or 'never'}, last used {p['last_used'] or 'never'}"
            for p in self.profiles
        )
        lines.extend(f"  problem: {m}" for m in self.problems)
        lines.extend(f"  warning: {m}" for m in self.warnings)
        return "\n".join(lines)


def credential_status(
    path: str | os.PathLike[str],
    *,
    expiry_warning: _dt.timedelta = _dt.timedelta(days=7),
) -> CredentialReport:
    """Summarise a store without changing it (the ``credentials status`` CLI).

    Never raises for a bad store; never includes a token.
    """
    name = os.fspath(path)
    try:
        st = os.stat(name)
        raw = Path(name).read_bytes()
    except OSError as exc:
        return CredentialReport(name, problems=(f"cannot read: {exc.strerror}",))
    try:
        profiles = _parse(raw, name)
    except ConfigError as exc:
        return CredentialReport(
            name, problems=tuple(f"{f}: {m}" for f, m in exc.errors)
        )
    warnings: list[str] = []
    problems: list[str] = []
    if os.name == "posix" and stat.S_IMODE(st.st_mode) & 0o077:
        warnings.append(
            f"file mode {oct(stat.S_IMODE(st.st_mode))} is looser than 0o600"
        )
    now = _now()
    rows = []
    for pname in sorted(profiles):
        cred = profiles[pname]
        if cred.expired(now):
            state = "expired"
            problems.append(f"{pname} expired at {_iso(cred.expires_at)}")
        elif cred.expires_at is not None and cred.expires_at <= now + expiry_warning:
            state = "expiring"
            warnings.append(f"{pname} expires at {_iso(cred.expires_at)}")
        else:
            state = "ok"
        rows.append(
            {
                "name": pname,
                "provider": cred.provider,
                "expires_at": _iso(cred.expires_at),
                "last_used": _iso(cred.last_used),
                "has_refresh_token": cred.refresh_token is not None,
                "state": state,
            }
        )
    return CredentialReport(
        name, profiles=tuple(rows), problems=tuple(problems), warnings=tuple(warnings)
    )
