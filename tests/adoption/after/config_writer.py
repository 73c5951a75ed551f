"""Register an MCP server in an agent's JSON config file.

The server goes under ``mcpServers``; every other key in the file is kept::

    python config_writer.py ~/.agent/config.json notes uvx notes-mcp
"""

from __future__ import annotations

import sys
from pathlib import Path

import paios_reliability as pr


def register_server(config: Path, name: str, command: list[str]) -> None:
    entry = {"command": command[0], "args": command[1:]}
    with pr.ConfigFile(config).edit() as data:
        data.setdefault("mcpServers", {})[name] = entry


def main() -> int:
    config, name, *command = sys.argv[1:]
    try:
        register_server(Path(config), name, command)
    except (OSError, ValueError) as exc:
        print(f"config_writer: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"registered {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
