"""Secrets kept in the system keyring instead of the credentials file."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import (
    SecretStr,
)

from .._core.exceptions import (
    CredentialError,
    CredentialMissingError,
)
from .credential_model import Credential

__all__ = []

_KEYRING_PREFIX = "keyring:"
_KEYRING_FIELDS = ("token", "refresh_token")


def _secrets(cred: Credential) -> Iterator[tuple[str, SecretStr]]:
    """``(field name, secret)`` for each keychain-kept field ``cred`` has set."""
    for field_name in _KEYRING_FIELDS:
        secret = getattr(cred, field_name)
        if secret is not None:
            yield field_name, secret


class _KeyringSecrets:
    """Tokens in the OS keychain; the store file keeps references to them."""

    def __init__(self, service: str, path: Path) -> None:
        try:
            import keyring
        except ImportError as exc:
            from .._core.imports import missing_extra

            raise missing_extra("keyring", "keyring") from exc
        if not service or ":" in service:
            raise ValueError(
                f"keyring_service must be non-empty without ':', got {service!r}"
            )
        self._keyring: Any = keyring
        self.service = service
        self._prefix = f"{os.path.abspath(path)}#"

    def _username(self, name: str, field_name: str) -> str:
        return f"{self._prefix}{name}/{field_name}"

    def _reference(self, name: str, field_name: str) -> str:
        return f"{_KEYRING_PREFIX}{self.service}:{self._username(name, field_name)}"

    def _failed(self, doing: str, name: str, exc: Exception) -> CredentialError:
        # The backend's own message may quote what it was given: not kept.
        return CredentialError(
            f"keyring could not {doing} the secrets of profile {name!r} "
            f"({type(exc).__name__})",
            code="CREDENTIAL_ERROR",
            context={"name": name, "service": self.service},
        )

    def store(self, profiles: dict[str, Credential]) -> dict[str, Credential]:
        """Put every secret into the keychain; the profiles with references."""
        out: dict[str, Credential] = {}
        for name, cred in profiles.items():
            update: dict[str, Any] = {}
            for field_name, secret in _secrets(cred):
                try:
                    self._keyring.set_password(
                        self.service,
                        self._username(name, field_name),
                        secret.get_secret_value(),
                    )
                except Exception as exc:  # noqa: BLE001 - any backend failure
                    raise self._failed("store", name, exc) from None
                update[field_name] = SecretStr(self._reference(name, field_name))
            out[name] = cred.model_copy(update=update)
        return out

    def resolve(self, profiles: dict[str, Credential]) -> dict[str, Credential]:
        """The profiles with their references replaced by the secrets.

        Raises:
            CredentialMissingError: A reference whose secret is not in the
                keychain (deleted by hand, another machine's store).
        """
        out: dict[str, Credential] = {}
        for name, cred in profiles.items():
            update: dict[str, Any] = {}
            for field_name, secret in _secrets(cred):
                value = secret.get_secret_value()
                if not value.startswith(_KEYRING_PREFIX):
                    continue  # a plain token: moved at the next write
                _, service, username = value.split(":", 2)
                try:
                    found = self._keyring.get_password(service, username)
                except Exception as exc:  # noqa: BLE001 - any backend failure
                    raise self._failed("read", name, exc) from None
                if found is None:
                    raise CredentialMissingError(
                        f"the {field_name} of profile {name!r} is not in the keyring "
                        f"(service {service!r})",
                        context={"name": name, "service": service},
                    )
                update[field_name] = SecretStr(found)
            out[name] = cred.model_copy(update=update) if update else cred
        return out

    def forget(self, names: set[str]) -> None:
        """Delete the secrets of profiles that are gone (best effort)."""
        for name in names:
            for field_name in _KEYRING_FIELDS:
                with contextlib.suppress(Exception):
                    self._keyring.delete_password(
                        self.service, self._username(name, field_name)
                    )
