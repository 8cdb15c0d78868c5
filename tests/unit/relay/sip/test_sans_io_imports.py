"""The SIP and media cores are sans-I/O: no module under them imports I/O, clocks or chance.

The sans-I/O rule: time and randomness are arguments, sockets live in ``relay/transport``.
This walks the AST (so imports inside functions and ``TYPE_CHECKING`` blocks count too).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[4]
CORE_PACKAGES = ("relay/sip", "relay/media")
FORBIDDEN = frozenset(
    {"asyncio", "socket", "ssl", "time", "random", "secrets", "boto3", "websockets"}
)
# The asyncio adapter of the media core (sockets, loop timer) is relay/transport/rtp_session.py.
EXEMPT: frozenset[str] = frozenset()


def _core_modules() -> list[Path]:
    return sorted(
        path
        for package in CORE_PACKAGES
        if (ROOT / package).is_dir()
        for path in (ROOT / package).rglob("*.py")
        if path.relative_to(ROOT).as_posix() not in EXEMPT
    )


def _imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_the_sip_core_has_modules_to_check() -> None:
    assert any(path.name == "parser.py" for path in _core_modules())


@pytest.mark.parametrize("path", _core_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_core_module_imports_nothing_that_does_io_or_reads_clocks(path: Path) -> None:
    assert _imported_roots(path) & FORBIDDEN == set()


def test_the_check_catches_a_forbidden_import(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text("def f():\n    import asyncio.events\n    from time import monotonic\n")
    assert _imported_roots(module) & FORBIDDEN == {"asyncio", "time"}
