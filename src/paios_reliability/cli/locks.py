"""``paios-reliability locks list|release``: see and (forcibly) free leases."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from ._common import add_command, add_group

__all__ = ["register"]

_EPILOG = """\
The state store is --store (a SQLite file or redis://host/db#prefix), or the
only state store of reliability.toml.

`release` frees a lease whoever holds it: the holder keeps running and may
still believe it holds the lock, so only use it for a holder you know is
dead. It needs --force, prints the holder and fencing token it freed, and
emits lock.force_released. The token counter is kept: the next holder gets
a larger token, so a stale holder's writes are still fenced off.

exit codes: 0 done, 1 nothing released (no live lock under KEY), 10 bad usage.
"""


def _store_url(args: argparse.Namespace) -> str:
    from .._core.exceptions import ConfigError
    from .._observe.status_sources import load_status_sources

    if args.store:
        return str(load_status_sources(state_stores=[args.store]).state_stores[0])
    stores = load_status_sources(args.config).state_stores
    if len(stores) != 1:
        raise ConfigError(
            f"give --store: reliability.toml names {len(stores)} state stores",
            code="USAGE_ERROR",
        )
    return stores[0]


def _iso(ns: int) -> str | None:
    from .._observe.status_text import _iso as iso

    return iso(ns / 1e9)


def _cmd_list(args: argparse.Namespace) -> int:
    from .._observe.status import _state_rows

    now = time.time_ns()
    rows = []
    for key, value in sorted(_state_rows(_store_url(args), ("lock",))):
        if not isinstance(value, dict) or value.get("h") is None or value["x"] <= now:
            continue  # free (only the token counter is kept)
        rows.append(
            {
                "key": key.partition(":")[2],
                "owner": value.get("o"),
                "holder": value.get("h"),
                "token": value.get("t"),
                "expires": _iso(int(value["x"])),
                "remaining_seconds": round((value["x"] - now) / 1e9, 3),
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print("no locks held")
    else:
        for r in rows:
            print(
                f"{r['key']}  held by {r['owner']}  token {r['token']}  "
                f"expires {r['expires']} (in {r['remaining_seconds']:.1f}s)"
            )
    return 0


def _open_store(url: str) -> Any:
    if url.startswith(("redis://", "rediss://", "unix://")):
        from .._stores._redis import RedisStore

        address, _, prefix = url.partition("#")
        return RedisStore(address, prefix=prefix or "paios")
    from .._stores._sqlite import SQLiteStore

    return SQLiteStore(url)


def _cmd_release(args: argparse.Namespace) -> int:
    from .._core.events import emit
    from .._core.exceptions import ConfigError

    if not args.force:
        raise ConfigError(
            "releasing another process's lock needs --force (its holder may "
            "still be running; see --help)",
            code="USAGE_ERROR",
        )
    url = _store_url(args)
    store = _open_store(url)
    now = time.time_ns()

    def step(data: Any) -> tuple[Any, Any]:
        if not isinstance(data, dict) or data.get("h") is None or data["x"] <= now:
            return data, None
        freed = (data.get("h"), data.get("o"), data.get("t"), data["x"])
        return {"t": data.get("t", 0)}, freed

    try:
        freed = store.update(f"lock:{args.key}", step, ttl=86_400.0)
    finally:
        close = getattr(store, "close", None)
        if close is not None:
            close()
    if freed is None:
        print(f"{args.key}: not held (nothing released)")
        return 1
    holder, owner, token, expires = freed
    emit(
        "lock",
        "force_released",
        level="warning",
        subject=args.key,
        holder=holder,
        owner=owner,
        fencing_token=token,
    )
    print(
        f"{args.key}: released; was held by {owner} (holder {holder}), "
        f"token {token}, would have expired {_iso(int(expires))}"
    )
    return 0


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add the ``locks`` command group."""
    locks_sub = add_group(
        sub, "locks", help="list held locks, or force-release one", epilog=_EPILOG
    )
    for name, handler, text in (
        ("list", _cmd_list, "every live lease: key, owner, token, expiry"),
        ("release", _cmd_release, "free a lease whoever holds it (needs --force)"),
    ):
        cmd = add_command(locks_sub, name, help=text, epilog=_EPILOG, handler=handler)
        if name == "release":
            cmd.add_argument("key", help="the lock key")
            cmd.add_argument(
                "--force", action="store_true", help="yes, free it (see below)"
            )
        else:
            cmd.add_argument("--json", action="store_true", help="print JSON")
        cmd.add_argument("--store", metavar="PATH|URL", help="the state store")
        cmd.add_argument("--config", metavar="PATH")
