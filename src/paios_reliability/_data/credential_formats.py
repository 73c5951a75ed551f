"""Credential file layouts: this library's own and an agent gateway's auth-profiles.json.

Each layout maps a whole file to named :class:`Credential` objects and back,
keeping every field it does not know.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Mapping
from typing import Any, Protocol

from pydantic import (
    ValidationError,
)

from .._core.exceptions import (
    ConfigError,
)
from .config_format import validation_errors
from .credential_model import _UTC, Credential

__all__ = ["AuthProfilesFormat", "CredentialFormat", "PaiosFormat"]

_FORMAT_VERSION = 1


# -- the file format ---------------------------------------------------------------


def _decode(raw: bytes) -> tuple[Any, list[tuple[str, str]]]:
    try:
        return json.loads(raw.decode("utf-8")), []
    except UnicodeDecodeError:
        return None, [("<file>", "not UTF-8 text")]
    except json.JSONDecodeError as exc:
        return None, [
            ("<file>", f"invalid JSON at line {exc.lineno} column {exc.colno}")
        ]
    except (ValueError, RecursionError):
        return None, [("<file>", "invalid JSON")]


def _validated_profile(
    name: str, value: Any, errors: list[tuple[str, str]]
) -> Credential | None:
    try:
        return Credential.model_validate(value)
    except ValidationError as exc:
        errors.extend(
            (f"profiles.{name}.{where}", msg) for where, msg in validation_errors(exc)
        )
    except (RecursionError, ValueError, TypeError):
        errors.append((f"profiles.{name}", "invalid profile"))
    return None


class CredentialFormat(Protocol):
    """How a store file's JSON document maps to named :class:`Credential` s.

    ``parse`` reads a decoded document (appending ``(field, message)`` pairs
    that never quote a value to ``errors``); ``render`` builds the document
    to write from the profiles and the document read last (``None`` for a
    new file), keeping whatever in it the format does not own.
    """

    name: str

    def parse(
        self, doc: Any, errors: list[tuple[str, str]]
    ) -> dict[str, Credential]: ...

    def render(self, profiles: Mapping[str, Credential], previous: Any) -> Any: ...


class PaiosFormat:
    """This library's layout: ``{"version": 1, "profiles": {name: {...}}}``."""

    name = "paios"

    def parse(self, doc: Any, errors: list[tuple[str, str]]) -> dict[str, Credential]:
        profiles: dict[str, Credential] = {}
        if not isinstance(doc, dict):
            errors.append(("<root>", "must be an object"))
        elif doc.get("version") != _FORMAT_VERSION:
            errors.append(("version", f"must be {_FORMAT_VERSION}"))
        elif not isinstance(doc.get("profiles"), dict):
            errors.append(("profiles", "must be an object of named profiles"))
        else:
            for name, value in doc["profiles"].items():
                cred = _validated_profile(name, value, errors)
                if cred is not None:
                    profiles[name] = cred
        return profiles

    def render(self, profiles: Mapping[str, Credential], previous: Any) -> Any:
        return {
            "version": _FORMAT_VERSION,
            "profiles": {name: profiles[name]._to_file() for name in sorted(profiles)},
        }


def _from_ms(value: Any) -> _dt.datetime | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return _dt.datetime.fromtimestamp(value / 1000, _UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _to_ms(value: _dt.datetime | None) -> int | None:
    return None if value is None else round(value.timestamp() * 1000)


_SECRET_FIELDS = ("key", "token", "access")
_OWNED_FIELDS = frozenset({"provider", "key", "token", "access", "refresh", "expires"})


class AuthProfilesFormat:
    """The ``auth-profiles.json`` layout agent gateways write.

    ``{"version": 1, "profiles": {"anthropic:default": {"type": "api_key",
    "provider": "anthropic", "key": "sk-..."}, "github:work": {"type":
    "oauth", "provider": "github", "access": "...", "refresh": "...",
    "expires": <epoch ms>}}, "usageStats": {name: {"count": 12, "lastUsed":
    <epoch ms>}}}``

    The secret is ``key``, ``token`` or ``access`` (whichever the profile
    has) and becomes ``Credential.token``; ``refresh`` and ``expires``
    become ``refresh_token`` and ``expires_at``; ``usageStats`` gives
    ``use_count`` and ``last_used``. Every other field of a profile
    (``type``, ``email``...) is in ``metadata`` and written back as it was;
    every other top-level key and usage field is kept.
    """

    name = "auth-profiles"

    def parse(self, doc: Any, errors: list[tuple[str, str]]) -> dict[str, Credential]:
        profiles: dict[str, Credential] = {}
        if not isinstance(doc, dict):
            errors.append(("<root>", "must be an object"))
            return profiles
        raw_profiles = doc.get("profiles", {})
        stats = doc.get("usageStats", {})
        if not isinstance(raw_profiles, dict):
            errors.append(("profiles", "must be an object of named profiles"))
            return profiles
        if not isinstance(stats, dict):
            stats = {}
        for name, entry in raw_profiles.items():
            if not isinstance(entry, dict):
                errors.append((f"profiles.{name}", "must be an object"))
                continue
            secret = next(
                (entry[f] for f in _SECRET_FIELDS if isinstance(entry.get(f), str)),
                None,
            )
            if secret is None:
                errors.append(
                    (f"profiles.{name}", "has no key, token or access string")
                )
                continue
            found = stats.get(name)
            usage: dict[str, Any] = found if isinstance(found, dict) else {}
            count = usage.get("count", 0)
            value = {
                "provider": entry.get("provider", name.partition(":")[0]),
                "token": secret,
                "refresh_token": entry.get("refresh"),
                "expires_at": _from_ms(entry.get("expires")),
                "last_used": _from_ms(usage.get("lastUsed")),
                "use_count": count if isinstance(count, int) and count >= 0 else 0,
                "metadata": {k: v for k, v in entry.items() if k not in _OWNED_FIELDS},
            }
            cred = _validated_profile(name, value, errors)
            if cred is not None:
                profiles[name] = cred
        return profiles

    def render(self, profiles: Mapping[str, Credential], previous: Any) -> Any:
        doc: dict[str, Any] = dict(previous) if isinstance(previous, dict) else {}
        doc.setdefault("version", _FORMAT_VERSION)
        found = doc.get("profiles")
        old_entries: dict[str, Any] = found if isinstance(found, dict) else {}
        old_stats = doc.get("usageStats")
        stats: dict[str, Any] = dict(old_stats) if isinstance(old_stats, dict) else {}
        entries: dict[str, Any] = {}
        for name, cred in profiles.items():
            was = old_entries.get(name)
            old: dict[str, Any] = was if isinstance(was, dict) else {}
            entry: dict[str, Any] = {}
            # Known fields in their old places and order, new ones after.
            for key in old:
                if key not in _OWNED_FIELDS and key in cred.metadata:
                    entry[key] = cred.metadata[key]
                elif key in _OWNED_FIELDS:
                    entry[key] = None  # placeholder, set below
            for key, value in cred.metadata.items():
                entry.setdefault(key, value)
            entry.setdefault("type", "oauth" if cred.refresh_token else "api_key")
            entry["provider"] = cred.provider
            secret_field = next((f for f in _SECRET_FIELDS if f in old), None) or (
                "access" if entry.get("type") == "oauth" else "key"
            )
            entry[secret_field] = cred.token.get_secret_value()
            if cred.refresh_token is not None:
                entry["refresh"] = cred.refresh_token.get_secret_value()
            if cred.expires_at is not None:
                entry["expires"] = _to_ms(cred.expires_at)
            entries[name] = {k: v for k, v in entry.items() if v is not None}
            if cred.use_count or cred.last_used is not None or name in stats:
                was_used = stats.get(name)
                # A malformed entry (not an object) is replaced, as load ignored it.
                usage = dict(was_used) if isinstance(was_used, dict) else {}
                usage["count"] = cred.use_count
                if cred.last_used is not None:
                    usage["lastUsed"] = _to_ms(cred.last_used)
                stats[name] = usage
        doc["profiles"] = entries
        stats = {name: value for name, value in stats.items() if name in profiles}
        if stats or "usageStats" in doc:
            doc["usageStats"] = stats
        return doc


_FORMATS: dict[str, CredentialFormat] = {
    "paios": PaiosFormat(),
    "auth-profiles": AuthProfilesFormat(),
}


def _detect(doc: Any) -> CredentialFormat:
    """The format of a decoded document (``auto``): auth-profiles by its marks."""
    if isinstance(doc, dict):
        if "usageStats" in doc:
            return _FORMATS["auth-profiles"]
        profiles = doc.get("profiles")
        if isinstance(profiles, dict) and any(
            isinstance(p, dict) and "token" not in p and "type" in p
            for p in profiles.values()
        ):
            return _FORMATS["auth-profiles"]
    return _FORMATS["paios"]


def _parse(
    raw: bytes, path: str, fmt: CredentialFormat | None = None
) -> tuple[dict[str, Credential], Any, CredentialFormat]:
    """Parse a store file; any problem is a ConfigError that carries no secret.

    The error is raised *outside* the ``except`` blocks, so it has no
    ``__context__`` either: pydantic and JSON errors may quote input values.
    """
    doc, errors = _decode(raw)
    chosen = fmt or _detect(doc)
    profiles: dict[str, Credential] = {}
    if not errors:
        profiles = chosen.parse(doc, errors)
    if errors:
        raise ConfigError(
            f"invalid credential store {path}: "
            + "; ".join(f"{f}: {m}" for f, m in errors[:10]),
            path=path,
            errors=errors,
        )
    return profiles, doc, chosen


def _render(
    profiles: Mapping[str, Credential],
    fmt: CredentialFormat | None = None,
    previous: Any = None,
) -> bytes:
    doc = (fmt or _FORMATS["paios"]).render(profiles, previous)
    return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
