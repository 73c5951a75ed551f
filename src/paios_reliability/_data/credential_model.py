"""The :class:`Credential` model: one named secret, never shown in a repr, log or error."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    SecretStr,
    ValidationError,
    field_serializer,
    field_validator,
)

from .._core.clock import get_clock
from .._core.exceptions import (
    ConfigError,
)
from .._core.redaction import is_secret_key, redact_text
from .config_format import validation_errors

__all__ = ["Credential"]

_UTC = _dt.timezone.utc
_MASK = "**********"  # what pydantic shows for a SecretStr
_MAX_DEPTH = 32


def _redacted(value: Any, depth: int = 0) -> Any:
    """``value`` with every value under a secret-looking key masked, at any depth.

    Text is also scrubbed of ``token=...``-style secrets. For display only:
    the stored metadata keeps its values.
    """
    if depth > _MAX_DEPTH:
        return "<nested too deep>"
    if isinstance(value, Mapping):
        return {
            k: _MASK if is_secret_key(k) else _redacted(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [_redacted(v, depth + 1) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


class Credential(BaseModel):
    """One stored credential (an auth profile).

    ``token`` and ``refresh_token`` are :class:`pydantic.SecretStr`: their
    ``repr``/``str`` is ``'**********'``; read them with
    ``.get_secret_value()``. ``metadata`` values under secret-looking keys
    (``client_secret``, ``apiKey``, ``password``... at any depth) show as
    ``'**********'`` in ``repr``/``str`` and in ``model_dump_json()``, like
    the tokens; ``cred.metadata`` and ``model_dump()`` keep the real values.
    Naive datetimes are taken as UTC.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: str
    token: SecretStr
    refresh_token: SecretStr | None = None
    expires_at: _dt.datetime | None = None
    last_used: _dt.datetime | None = None
    use_count: int = 0
    metadata: dict[str, Any] = {}

    @field_validator("expires_at", "last_used")
    @classmethod
    def _aware(cls, value: _dt.datetime | None) -> _dt.datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=_UTC)
        return value

    @field_serializer("metadata", when_used="json")
    def _metadata_for_json(self, value: dict[str, Any]) -> Any:
        return _redacted(value)

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            yield name, (_redacted(value) if name == "metadata" else value)

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
            # Only when counted: stores written before the counter stay
            # byte-identical until a use is recorded.
            **({"use_count": self.use_count} if self.use_count else {}),
            "metadata": self.metadata,
        }


def _revalidated(cred: Credential, name: str) -> Credential:
    """``cred`` checked again: ``model_copy(update=...)`` skips validation.

    So a refresher returning ``cred.model_copy(update={"token": "new"})``
    (a plain ``str``, not a ``SecretStr``) still stores a proper credential.

    Raises:
        ConfigError: ``VALIDATION_ERROR`` naming the bad fields, never their
            values (pydantic's own message quotes the input) and with no
            chained cause.
    """
    data = {field: getattr(cred, field) for field in Credential.model_fields}
    errors: list[tuple[str, str]] = []
    try:
        return Credential.model_validate(data)
    except ValidationError as exc:
        errors = validation_errors(exc)
    raise ConfigError(
        f"invalid credential for profile {name!r}: "
        + "; ".join(f"{f}: {m}" for f, m in errors[:10]),
        errors=errors,
        code="VALIDATION_ERROR",
    )


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
