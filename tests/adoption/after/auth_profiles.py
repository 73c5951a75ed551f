"""Call a provider with a key from the gateway's ``auth-profiles.json``.

The file looks like ``{"version": 1, "profiles": {"anthropic:default":
{"type": "api_key", "provider": "anthropic", "key": "sk-..."}}, "usageStats":
{"anthropic:default": {"count": 12}}}``. Each call takes the profile's key and
counts the use in ``usageStats``::

    python auth_profiles.py auth-profiles.json anthropic:default 5
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import paios_reliability as pr

log = logging.getLogger("auth_profiles")


def use_profile(path: Path, name: str) -> str:
    store = pr.CredentialStore(path)
    profile = store.get(name)
    log.info("using profile %s: %s", name, profile)
    store.record_usage(name)
    return profile.token.get_secret_value()


def call_provider(key: str) -> bool:
    """Stand-in for the provider request that the key authenticates."""
    return key.startswith("sk-")


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    path, name = Path(sys.argv[1]), sys.argv[2]
    calls = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    ok = sum(call_provider(use_profile(path, name)) for _ in range(calls))
    print(json.dumps({"profile": name, "calls": calls, "ok": ok}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
