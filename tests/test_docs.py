"""Every ```python block in docs/ runs, so no example can rot.

Blocks of one page run in order in one namespace, in a fresh subprocess whose
working directory is a temporary directory.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

DOCS = Path(__file__).parent.parent / "docs"
README = Path(__file__).parent.parent / "README.md"
FENCE = re.compile(
    r"^(?P<fence>```+|~~~+)python[ \t]*\n(?P<body>.*?)^(?P=fence)[ \t]*$", re.M | re.S
)

RUNNER = textwrap.dedent(
    """
    import sys
    blocks = {blocks!r}
    namespace = {{"__name__": "__docs__"}}
    for line, source in blocks:
        try:
            exec(compile(source, f"{path}:{{line}}", "exec"), namespace)
        except BaseException as exc:
            print(f"block at {path}:{{line}} failed: {{type(exc).__name__}}: {{exc}}", file=sys.stderr)
            raise
    """
)


def _pages() -> list[Path]:
    return sorted([*DOCS.rglob("*.md"), README])


def _blocks(page: Path) -> list[tuple[int, str]]:
    text = page.read_text()
    return [
        (text.count("\n", 0, m.start()) + 2, m.group("body"))
        for m in FENCE.finditer(text)
    ]


def test_docs_have_examples() -> None:
    assert sum(len(_blocks(p)) for p in _pages()) >= 3


@pytest.mark.parametrize(
    "page",
    [p for p in _pages() if _blocks(p)],
    ids=lambda p: str(p.relative_to(DOCS.parent)),
)
def test_page_examples_run(page: Path, tmp_path: Path) -> None:
    script = RUNNER.format(blocks=_blocks(page), path=page.name)
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
