"""A newcomer's first hour, checked: README, tutorial, docs layout (issue 20).

Every check reads the pages as a newcomer would and runs the commands they
give, as real subprocesses in an empty directory.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
FENCE = re.compile(r"^```(?P<lang>[a-z]*)[ \t]*\n(?P<body>.*?)^```[ \t]*$", re.M | re.S)


def _fences(text: str, lang: str) -> list[str]:
    return [m.group("body") for m in FENCE.finditer(text) if m.group("lang") == lang]


def _section(text: str, title: str) -> str:
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def test_finding_readme_quick_start_is_two_commands_with_a_venv_first() -> None:
    quick = _section(README.read_text("utf-8"), "Quick start")
    (block,) = _fences(quick, "console")
    first, second = block.strip().splitlines()
    assert first.startswith("python3 -m venv .venv && . .venv/bin/activate && ")
    assert (
        "pip install . && paios-reliability doctor && paios-reliability demo" in first
    )
    assert second == "pip install nox && nox"


def test_finding_readme_says_what_the_full_run_needs_and_how_long() -> None:
    quick = " ".join(_section(README.read_text("utf-8"), "Quick start").split())
    for needed in (
        "PEP 668",
        "redis-server",
        "3.10, 3.11, 3.12 and 3.13",
        "skipped",
        "nox -s fast",
        "git+https://",
    ):
        assert needed in quick, needed
    # How long the full run takes, within the 20 minutes CI allows.
    took = re.search(r"It takes about (\d+) minutes", quick)
    assert took is not None
    assert int(took.group(1)) <= 20


def test_finding_docs_landing_page_does_not_promise_an_index_install() -> None:
    index = (DOCS / "index.md").read_text("utf-8")
    assert "$ pip install paios-reliability\n" not in index
    assert "not published" in index


def test_finding_tutorial_shell_commands_work_as_written(tmp_path: Path) -> None:
    """The tutorial's `--model myapp.settings` pointed at a module never created."""
    page = (DOCS / "tutorial.md").read_text("utf-8")
    script = "\n".join(_fences(page, "python"))
    run = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    commands = [
        line.removeprefix("$ ").strip()
        for block in _fences(page, "console")
        for line in block.splitlines()
        if line.startswith("$ paios-reliability ")
    ]
    assert len(commands) >= 3
    for command in commands:
        words = shlex.split(command)
        result = subprocess.run(
            [sys.executable, "-m", "paios_reliability", *words[1:]],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, (command, result.stdout, result.stderr)
        assert result.stdout.strip(), command


def _toctree_entries(index: str) -> list[tuple[str, str]]:
    entries = []
    for block in re.findall(r"```\{toctree\}\n(.*?)```", index, re.S):
        caption = re.search(r"^:caption: (.*)$", block, re.M)
        assert caption, block
        entries += [
            (caption.group(1), line.strip())
            for line in block.splitlines()
            if line.strip() and not line.startswith(":")
        ]
    return entries


def test_finding_docs_are_grouped_by_what_the_reader_wants() -> None:
    """The docs were one flat alphabetical list of 36 pages."""
    entries = _toctree_entries((DOCS / "index.md").read_text("utf-8"))
    captions = {caption for caption, _ in entries}
    assert "Tutorials" in captions
    assert "Reference" in captions
    assert "Explanation" in captions
    assert any(c.startswith("How-to") for c in captions)
    listed = [page for _, page in entries]
    assert len(listed) == len(set(listed)), "a page is listed twice"
    pages = {
        str(p.relative_to(DOCS).with_suffix(""))
        for p in DOCS.glob("*.md")
        if p.name not in ("index.md", "_libraries.md")
    }
    assert pages <= set(listed) | {"runbooks/index"}, pages - set(listed)
    assert ("Tutorials", "tutorial") in entries
    assert ("Reference", "cli") in entries
    assert ("Reference", "api") in entries


def test_finding_pictures_exist_and_are_svg() -> None:
    """There was no picture anywhere in the docs."""
    found = []
    for page in DOCS.rglob("*.md"):
        for target in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", page.read_text("utf-8")):
            path = (page.parent / target).resolve()
            assert path.is_file(), (page, target)
            if path.suffix == ".png":  # screenshots of the dashboard: raster
                assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
                continue
            root = ET.parse(path).getroot()
            assert root.tag == "{http://www.w3.org/2000/svg}svg", path
            assert root.find("{http://www.w3.org/2000/svg}title") is not None, path
            found.append(path.name)
    assert {"breaker.svg", "retry-timeline.svg", "layers.svg"} <= set(found)


def test_finding_docs_and_examples_import_only_public_names() -> None:
    """Public pages imported private modules 9 times (`_events.emit` among them)."""
    private = re.compile(r"\bpaios_reliability\._|\bfrom \._|\bimport _[a-z]")
    sources = [
        (page, block)
        for page in DOCS.rglob("*.md")
        for block in _fences(page.read_text("utf-8"), "python")
    ]
    sources += [(path, path.read_text("utf-8")) for path in ROOT.glob("examples/*.py")]
    assert len(sources) > 50
    offenders = [str(path) for path, text in sources if private.search(text)]
    assert offenders == []


def test_finding_the_names_the_docs_needed_are_public() -> None:
    import paios_reliability as pr
    import paios_reliability.testing as testing

    for name in ("emit_event", "credential_status", "trace_opentelemetry"):
        assert name in pr.__all__
        assert callable(getattr(pr, name))
    for name in ("get_clock", "is_testing", "testing_attempts"):
        assert name in testing.__all__
    with testing.set_testing(True, attempts=3):
        assert testing.is_testing()
        assert testing.testing_attempts() == 3
    event = pr.emit_event("app", "started", subject="newcomer")
    assert event.name == "paios_reliability.app.started"
