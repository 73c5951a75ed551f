"""Typing checks for the adoption API (issue 16): run by mypy --strict only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn

from pydantic import BaseModel
from typing_extensions import assert_type

import paios_reliability as pr


class App(BaseModel):
    name: str


plain = pr.ConfigFile("agent.json")
assert_type(plain, pr.ConfigFile[dict[str, Any]])
assert_type(plain.load(), dict[str, Any])
with plain.edit() as data:
    assert_type(data, dict[str, Any])
pr.ConfigFile("agent.json", default={}, mode=0o600, backups=0)

typed = pr.ConfigFile("app.json", App, mode=0o600)
assert_type(typed, pr.ConfigFile[App])
with typed.edit() as app:
    assert_type(app, App)


async def edit_async() -> None:
    async with typed.aedit() as value:
        assert_type(value, App)


pr.ConfigFile("app.json", App, mode="600")  # type: ignore[call-overload]


@pr.hook(budget=2.0)
def entry(flag: bool) -> None:
    del flag


@pr.hook
def bare() -> int:
    return 1


runner: Callable[[bool], NoReturn] = entry
pr.hook(budget="5")  # type: ignore[call-overload]

store = pr.CredentialStore("auth-profiles.json", format="auth-profiles")
pr.CredentialStore("x.json", format=pr.AuthProfilesFormat())
fmt: pr.CredentialFormat = pr.PaiosFormat()
assert_type(store.get("a").use_count, int)
