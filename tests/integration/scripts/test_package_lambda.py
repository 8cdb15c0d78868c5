"""``scripts.package_lambda.find_python``: which interpreter builds the package, or what to install.

The lookup order is docs/deployment.md's ("The control plane with Chalice"): the variable
``SIPLINE_LAMBDA_PYTHON`` (which must be the version asked for), ``python3.X`` on ``PATH`` (a
pyenv shim of an inactive version exits 127 and is skipped), then pyenv's newest
``$PYENV_ROOT/versions/3.X.*``. Each case runs against a scratch ``PATH`` and ``PYENV_ROOT``
holding only what it needs: the machine's real Python 3.12 (pyenv's) linked in, or a shim that
fails like pyenv's.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from scripts.package_lambda import PackageError, find_python, package

REAL_312 = find_python("3.12")  # the machine's (docs: pyenv's 3.12 on this project's machines)
SHIM = "#!/bin/sh\necho 'pyenv: python3.12: command not found' >&2\nexit 127\n"


def _version(interpreter: str) -> str:
    done = subprocess.run(
        [interpreter, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout.strip()


@pytest.fixture
def bare(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No ``SIPLINE_LAMBDA_PYTHON``, an empty ``PATH`` folder and an empty pyenv root."""
    (tmp_path / "bin").mkdir()
    (tmp_path / "pyenv" / "versions").mkdir(parents=True)
    monkeypatch.delenv("SIPLINE_LAMBDA_PYTHON", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "pyenv"))
    return tmp_path


def _pyenv_version(root: Path, release: str) -> Path:
    binary = root / "pyenv" / "versions" / release / "bin" / "python3.12"
    binary.parent.mkdir(parents=True)
    binary.symlink_to(REAL_312)
    return binary


def test_the_real_interpreter_found_here_is_a_python_312() -> None:
    assert _version(REAL_312) == "3.12"


def test_with_none_anywhere_the_error_names_what_to_install(bare: Path) -> None:
    with pytest.raises(PackageError) as raised:
        find_python("3.12")

    message = str(raised.value)
    assert "no Python 3.12 found" in message
    assert "pyenv install 3.12" in message and "SIPLINE_LAMBDA_PYTHON" in message


def test_the_variable_wins_and_must_be_the_version_asked_for(
    bare: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _pyenv_version(bare, "3.12.9")
    monkeypatch.setenv("SIPLINE_LAMBDA_PYTHON", REAL_312)
    assert find_python("3.12") == REAL_312

    monkeypatch.setenv("SIPLINE_LAMBDA_PYTHON", str(bare / "bin" / "no-such-python"))
    with pytest.raises(PackageError, match="not a working Python, not Python 3.12"):
        find_python("3.12")


def test_a_failing_shim_on_path_is_skipped_for_pyenvs_newest_release(bare: Path) -> None:
    shim = bare / "bin" / "python3.12"
    shim.write_text(SHIM)
    shim.chmod(0o755)
    _pyenv_version(bare, "3.12.2")
    newest = _pyenv_version(bare, "3.12.10")  # 10 > 2: compared as numbers, not as text

    assert find_python("3.12") == str(newest)


def test_python312_on_path_is_taken(bare: Path) -> None:
    (bare / "bin" / "python3.12").symlink_to(REAL_312)

    found = find_python("3.12")

    assert found == str(bare / "bin" / "python3.12") and _version(found) == "3.12"


def test_package_stops_before_writing_anything_without_the_interpreter(bare: Path) -> None:
    out = bare / "out"
    out.mkdir()
    (out / "kept").write_text("an earlier package")

    with pytest.raises(PackageError, match="no Python 3.12 found"):
        package(out, python="3.12")

    assert (out / "kept").read_text() == "an earlier package"
    assert os.listdir(out) == ["kept"]
