"""The test folders keep their promises (tests/README.md).

- ``tests/unit`` is pure code: no AWS (moto, boto3), no sockets or servers, no subprocesses, no
  sleeping. A file there that needs any of them belongs in ``tests/integration``.
- ``tests/unit`` and ``tests/integration`` mirror the source: every folder in them names a folder
  of the repository (``tests/unit/relay/sip`` tests ``relay/sip``).

The imports and calls are read from each file's syntax tree, so a comment or a string naming a
module does not count, and ``import socket as s`` does.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "tests" / "unit"
INTEGRATION = ROOT / "tests" / "integration"

FORBIDDEN_MODULES = (
    "moto",
    "boto3",
    "botocore",
    "socket",
    "socketserver",
    "subprocess",
    "multiprocessing",
    "aiohttp",
    "http.server",
    "http.client",
    "urllib.request",
    "requests",
    "httpx",
    "websockets.asyncio",
    "websockets.server",
    "websockets.client",
    "websockets.sync",
    "websockets.legacy",
    "tests.integration",
    "tests.security",
    "tests.e2e",
    "tests.interop",
)
"""A module or any module under it. ``websockets`` itself is refused too (it re-exports its
servers and clients); its pure parts (``websockets.frames``, ``websockets.exceptions``) are not.
The other test folders' helpers are refused because they bring what is refused here (the fake
control plane of ``tests/integration/relay/control`` listens on 127.0.0.1)."""

FORBIDDEN_CALLS = {
    "sleep": "waits on the wall clock (a unit test moves a simulated clock)",
    "start_server": "listens on a socket",
    "start_unix_server": "listens on a socket",
    "open_connection": "connects a socket",
    "open_unix_connection": "connects a socket",
    "create_server": "listens on a socket",
    "create_connection": "connects a socket",
    "create_datagram_endpoint": "binds a socket",
    "create_subprocess_exec": "starts a process",
    "create_subprocess_shell": "starts a process",
    "subprocess_exec": "starts a process",
    "subprocess_shell": "starts a process",
}
"""Called as a function or a method, whatever it is called on (``time.sleep``, ``loop.create_server``)."""

ALLOWED: dict[str, str] = {}
"""``path relative to tests/unit`` -> why it may break the rule. Keep it short, with a reason each."""


def _forbidden_module(name: str) -> bool:
    return name == "websockets" or any(
        name == module or name.startswith(module + ".") for module in FORBIDDEN_MODULES
    )


def _yields_without_waiting(call: ast.Call) -> bool:
    """``asyncio.sleep(0)``: hands the loop a turn and waits for no time, so it is allowed."""
    return (
        len(call.args) == 1
        and isinstance(call.args[0], ast.Constant)
        and call.args[0].value == 0
        and not call.keywords
    )


def violations(source: str) -> list[str]:
    """Return what in ``source`` breaks the unit-test rule, one line each (``line: what``)."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _forbidden_module(alias.name):
                    found.append(f"{node.lineno}: imports {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if _forbidden_module(node.module):
                found.append(f"{node.lineno}: imports {node.module}")
                continue
            for alias in node.names:
                if _forbidden_module(f"{node.module}.{alias.name}"):
                    found.append(f"{node.lineno}: imports {node.module}.{alias.name}")
                elif alias.name in FORBIDDEN_CALLS:
                    found.append(f"{node.lineno}: imports {alias.name} from {node.module}")
        elif isinstance(node, ast.Call):
            function = node.func
            name = function.attr if isinstance(function, ast.Attribute) else None
            if name in FORBIDDEN_CALLS and not (name == "sleep" and _yields_without_waiting(node)):
                found.append(f"{node.lineno}: calls {name} ({FORBIDDEN_CALLS[name]})")
    return found


def unit_files() -> list[Path]:
    return sorted(UNIT.rglob("*.py"))


def test_unit_tests_use_no_aws_no_sockets_no_subprocesses_and_never_sleep() -> None:
    broken = {
        str(path.relative_to(UNIT)): found
        for path in unit_files()
        if str(path.relative_to(UNIT)) not in ALLOWED
        and (found := violations(path.read_text(encoding="utf-8")))
    }
    assert not broken, (
        "these belong in tests/integration (tests/README.md says what each folder may use):\n"
        + "\n".join(f"tests/unit/{path}: {'; '.join(lines)}" for path, lines in broken.items())
    )


def test_every_allowed_exception_still_exists_and_still_needs_to_be_one() -> None:
    for relative in ALLOWED:
        path = UNIT / relative
        assert path.is_file(), f"ALLOWED names {relative}, which is gone"
        assert violations(path.read_text(encoding="utf-8")), f"{relative} needs no exception"


@pytest.mark.parametrize(
    "source",
    [
        "import moto",
        "from moto import mock_aws",
        "import boto3",
        "from botocore.exceptions import ClientError",
        "import socket as s",
        "from socket import socket",
        "import subprocess",
        "from aiohttp import web",
        "from http.server import ThreadingHTTPServer",
        "from http import server",
        "import websockets",
        "from websockets.asyncio.server import serve",
        "from websockets import serve",
        "from websockets.sync.client import connect",
        "from tests.integration.relay.control.fake_control_plane import FakeControlPlane",
        "from tests.integration import harness",
        "import time\ntime.sleep(0.1)",
        "from time import sleep",
        "import asyncio\nasync def f():\n    await asyncio.sleep(0.01)",
        "import asyncio\nasync def f(delay):\n    await asyncio.sleep(delay)",
        "import asyncio\nasync def f():\n    await asyncio.start_server(None, '127.0.0.1', 0)",
        "async def f(loop):\n    await loop.create_datagram_endpoint(None)",
        "import asyncio\nasync def f():\n    await asyncio.create_subprocess_exec('true')",
    ],
)
def test_the_rule_sees_each_thing_a_unit_test_may_not_use(source: str) -> None:
    assert violations(source)


@pytest.mark.parametrize(
    "source",
    [
        "import asyncio\nasync def f():\n    await asyncio.sleep(0)",
        "from websockets.frames import Close",
        "from websockets.exceptions import ConnectionClosed",
        "import ssl",
        "import time\nnow = time.monotonic()",
        "# import socket\nTEXT = 'import moto'",
        "FORBIDDEN = {'asyncio', 'socket', 'boto3'}",
        "from tests.support.fakes import FixedClock",
        "from tests.unit.relay.harness import UacUasPair",
    ],
)
def test_the_rule_lets_pure_code_through(source: str) -> None:
    assert violations(source) == []


def test_test_folders_mirror_the_source() -> None:
    strays = [
        str(folder.relative_to(ROOT))
        for tree in (UNIT, INTEGRATION)
        for folder in sorted(tree.rglob("*"))
        if folder.is_dir()
        and folder.name != "__pycache__"
        and not (ROOT / folder.relative_to(tree)).is_dir()
    ]
    assert not strays, f"test folders that name no source folder: {strays}"
