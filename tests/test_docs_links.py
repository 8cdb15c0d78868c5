"""Every relative link in the README and docs/ leads somewhere: the file exists, and an anchor names
one of its headings (GitHub's slugs: lower case, punctuation dropped, spaces to hyphens). Every
source path a page names exists, and every shell block a reader pastes at least parses."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")
FENCE = re.compile(r"^\s*(```|~~~)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"`|\*\*|\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", heading)
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def prose(page: Path) -> list[str]:
    """The page's lines outside fenced code blocks."""
    lines, fenced = [], False
    for line in page.read_text().splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def anchors(page: Path) -> set[str]:
    found: set[str] = set()
    for line in prose(page):
        match = HEADING.match(line)
        if match:
            base = slug(match.group(1))
            name, n = base, 1
            while name in found:
                name, n = f"{base}-{n}", n + 1
            found.add(name)
    return found


def test_the_slug_rule_matches_githubs_on_known_headings() -> None:
    assert slug("`POST /webhooks/sip/heartbeat`") == "post-webhookssipheartbeat"
    assert slug("Registrations: `/api/sip/registrations`") == "registrations-apisipregistrations"
    assert slug("Calls no relay will end") == "calls-no-relay-will-end"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_names_an_existing_page_and_heading(page: Path) -> None:
    broken = []
    for line in prose(page):
        for target in LINK.findall(line):
            if re.match(r"[a-z]+:", target):
                continue  # http(s):, mailto: and the like
            path, _, anchor = target.partition("#")
            destination = (page.parent / path).resolve() if path else page
            if not destination.exists():
                broken.append(f"{target}: no such file")
            elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
                broken.append(f"{target}: no such heading")
    assert not broken, broken


CODE_PATH = re.compile(r"`((?:relay|chalicelib|tests|bench|scripts|infra)/[\w./-]*\w)`")
NOT_BUILT_YET: set[str] = set()  # paths the docs name before the code exists (none now)


@pytest.mark.parametrize(
    "page",
    [*PAGES, *sorted((ROOT / "bench").glob("*.md")), *sorted((ROOT / "tests").rglob("*.md"))],
    ids=lambda p: p.relative_to(ROOT).as_posix(),
)
def test_every_source_path_a_page_names_exists(page: Path) -> None:
    """A `relay/...`, `chalicelib/...`, `tests/...` path in backticks names a file or folder that
    is there: a module that moved leaves no page pointing at its old place."""
    missing = [
        path
        for line in prose(page)
        for path in CODE_PATH.findall(line)
        if "*" not in path and path not in NOT_BUILT_YET and not (ROOT / path).exists()
    ]
    assert not missing, missing


SHELL_BLOCK = re.compile(r"^( *)```(?:bash|sh)\n(.*?)^ *```", re.S | re.M)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_shell_block_parses(page: Path) -> None:
    """A ```bash block is meant to be pasted into a shell (docs/deploy.md is a page of them): bash
    itself must be able to parse it (`bash -n`, nothing is run). A placeholder such as `<callId>`,
    which bash reads as a redirection, is written as a variable instead."""
    broken = []
    for indent, block in SHELL_BLOCK.findall(page.read_text()):
        text = "\n".join(line.removeprefix(indent) for line in block.splitlines())
        result = subprocess.run(
            ["bash", "-n"], input=text, capture_output=True, text=True, timeout=10, check=False
        )
        if result.returncode != 0:
            broken.append(f"{text.splitlines()[0]!r}...: {result.stderr.strip()}")
    assert not broken, broken
