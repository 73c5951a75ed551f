"""Where ``paios-reliability status`` looks: ``reliability.toml`` and what it names."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from .._core.exceptions import ConfigError

if TYPE_CHECKING:
    pass

__all__ = ["CONFIG_NAME", "StatusSources", "load_status_sources"]

CONFIG_NAME = "reliability.toml"
_DEFAULT_WINDOW = 86400.0


# -- sources ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StatusSources:
    """Where :func:`collect_status` looks.

    Attributes:
        event_stores: :class:`~paios_reliability.EventStore` database files.
        state_stores: State stores: a SQLite file path (or ``sqlite:PATH``),
            or a Redis URL (``redis://host:port/db``; add ``#prefix`` when the
            :class:`~paios_reliability.RedisStore` uses another prefix than
            ``paios``).
        health: A :class:`~paios_reliability.HealthRegistry` as
            ``module:attr`` (or a function returning one), or ``None``.
        credentials: :class:`~paios_reliability.CredentialStore` files.
        window: Seconds of history for errors, crashes and leak warnings.
        capacity: Bulkhead name to its ``max_concurrent`` (the store keeps
            only the leases, not the limit).
        config_path: The TOML file these came from, if any.
    """

    event_stores: tuple[str, ...] = ()
    state_stores: tuple[str, ...] = ()
    health: str | None = None
    credentials: tuple[str, ...] = ()
    window: float = _DEFAULT_WINDOW
    capacity: Mapping[str, int] = field(default_factory=dict)
    config_path: str | None = None


def _find_config(cwd: str, environ: Mapping[str, str]) -> str | None:
    candidates = [os.path.join(cwd, CONFIG_NAME)]
    home = environ.get("PAIOS_HOME")
    if home:
        candidates.append(os.path.join(home, CONFIG_NAME))
    for candidate in candidates:
        if os.path.isfile(candidate):
            return candidate
    return None


def _read_toml(path: str) -> dict[str, Any]:
    try:
        import tomllib  # type: ignore[import-not-found,unused-ignore]
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        try:
            import tomli as tomllib  # type: ignore[import-not-found,no-redef,unused-ignore]
        except ModuleNotFoundError:
            raise ConfigError(
                f"{path}: reading TOML needs Python 3.11+ (or the tomli package)",
                code="CONFIG_INVALID",
            ) from None
    try:
        with open(path, "rb") as f:
            data: dict[str, Any] = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot read: {exc.strerror or exc}", code="CONFIG_INVALID"
        ) from exc
    except ValueError as exc:  # tomllib.TOMLDecodeError
        raise ConfigError(
            f"{path}: not valid TOML: {exc}", code="CONFIG_INVALID"
        ) from exc
    return data


def _strings(path: str, key: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(
            f"{path}: [status] {key} must be a list of non-empty strings, "
            f"got {value!r}",
            code="CONFIG_INVALID",
        )
    return tuple(value)


def _resolve(base: str, entry: str) -> str:
    if "://" in entry:
        return entry
    if entry.startswith("sqlite:"):
        entry = entry[len("sqlite:") :]
    entry = os.path.expanduser(entry)
    return entry if os.path.isabs(entry) else os.path.join(base, entry)


def _parse_config(path: str) -> StatusSources:
    from .time_args import parse_duration

    data = _read_toml(path)
    section = data.get("status", {})
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: [status] must be a table", code="CONFIG_INVALID")
    known = {
        "event_stores",
        "state_stores",
        "health",
        "credentials",
        "window",
        "capacity",
    }
    unknown = sorted(set(section) - known)
    if unknown:
        raise ConfigError(
            f"{path}: unknown key(s) in [status]: {', '.join(unknown)} "
            f"(known: {', '.join(sorted(known))})",
            code="CONFIG_INVALID",
        )
    base = os.path.dirname(os.path.abspath(path))
    health = section.get("health")
    if health is not None and (not isinstance(health, str) or ":" not in health):
        raise ConfigError(
            f"{path}: [status] health must be 'module:attr', got {health!r}",
            code="CONFIG_INVALID",
        )
    window = _DEFAULT_WINDOW
    if "window" in section:
        raw = section["window"]
        try:
            window = (
                parse_duration(raw)
                if isinstance(raw, str)
                else float(raw)
                if isinstance(raw, (int, float)) and not isinstance(raw, bool)
                else -1.0
            )
        except ConfigError as exc:
            raise ConfigError(
                f"{path}: [status] window: {exc}", code="CONFIG_INVALID"
            ) from exc
        if not window > 0:
            raise ConfigError(
                f"{path}: [status] window must be a duration like '24h' or "
                f"seconds > 0, got {raw!r}",
                code="CONFIG_INVALID",
            )
    capacity = section.get("capacity", {})
    if not isinstance(capacity, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0
        for v in capacity.values()
    ):
        raise ConfigError(
            f"{path}: [status.capacity] maps bulkhead names to integers > 0, "
            f"got {capacity!r}",
            code="CONFIG_INVALID",
        )
    return StatusSources(
        event_stores=tuple(
            _resolve(base, e)
            for e in _strings(path, "event_stores", section.get("event_stores", []))
        ),
        state_stores=tuple(
            _resolve(base, e)
            for e in _strings(path, "state_stores", section.get("state_stores", []))
        ),
        health=health,
        credentials=tuple(
            _resolve(base, e)
            for e in _strings(path, "credentials", section.get("credentials", []))
        ),
        window=window,
        capacity=dict(capacity),
        config_path=path,
    )


def load_status_sources(
    config: str | os.PathLike[str] | None = None,
    *,
    cwd: str | None = None,
    environ: Mapping[str, str] | None = None,
    event_stores: Sequence[str] = (),
    state_stores: Sequence[str] = (),
    health: str | None = None,
    credentials: Sequence[str] = (),
) -> StatusSources:
    """The sources of a status run: the TOML file, then the flags over it.

    The file is ``config`` when given, else ``reliability.toml`` in ``cwd``,
    else in ``$PAIOS_HOME``; no file at all is fine (flags only). Relative
    paths in the file are relative to the file. A non-empty flag list
    replaces the file's list of the same kind (flags override).

    Raises:
        ConfigError: ``CONFIG_INVALID`` naming the file and key for a file
            that cannot be read, is not TOML, or has a key of the wrong type
            or an unknown key; ``USAGE_ERROR`` for a ``config`` that does not
            exist.
    """
    environ = os.environ if environ is None else environ
    cwd = os.getcwd() if cwd is None else cwd
    if config is not None:
        given = os.fspath(config)
        if not os.path.isfile(given):
            raise ConfigError(f"config file {given} does not exist", code="USAGE_ERROR")
        path: str | None = given
    else:
        path = _find_config(cwd, environ)
    sources = _parse_config(path) if path else StatusSources()
    here = os.path.abspath(cwd)
    return replace(
        sources,
        event_stores=tuple(_resolve(here, e) for e in event_stores)
        or sources.event_stores,
        state_stores=tuple(_resolve(here, e) for e in state_stores)
        or sources.state_stores,
        health=health or sources.health,
        credentials=tuple(_resolve(here, e) for e in credentials)
        or sources.credentials,
    )
