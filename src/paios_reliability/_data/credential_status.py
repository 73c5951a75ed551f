"""The CLI's ``credentials status``: what a credentials file holds, without a secret."""

from __future__ import annotations

import datetime as _dt
import os
import stat
from dataclasses import dataclass, field
from typing import Any

from .._core.exceptions import (
    ConfigError,
)
from .atomic import (
    MAX_READ_BYTES,
    describe_os_error,
    read_regular_file,
)
from .credential_formats import _parse
from .credential_model import _iso, _now

__all__ = ["CredentialReport", "credential_status"]

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

    Never raises for a bad store (a FIFO or device at the path, a file over
    16 MiB, an unreadable one: each is a problem in the report, found
    without blocking); never includes a token.
    """
    name = os.fspath(path)
    try:
        st = os.stat(name)
        raw = read_regular_file(name, max_bytes=MAX_READ_BYTES)
    except OSError as exc:
        return CredentialReport(
            name, problems=(f"cannot read: {describe_os_error(exc)}",)
        )
    try:
        profiles, _doc, _fmt = _parse(raw, name)
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
