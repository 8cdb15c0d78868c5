"""Package the control plane for Lambda (python3.12): Chalice's template, the runtime's wheels, bytecode.

``python -m scripts.package_lambda OUT [--stage dev] [--python 3.12] [--wheelhouse DIR [--fetch]]``
writes ``OUT/sam.json`` (the SAM template) and ``OUT/deployment.zip`` (the code) for the Lambda
runtime ``python<version>`` (3.12 by default; 3.11 still works). The package is built for that
runtime, not for the Python running this script (the venv's 3.11), in four steps:

1. **Wheelhouse** (``--fetch``, online, once): ``pip download`` every wheel ``requirements.txt``
   needs *for the Lambda platform* into ``DIR``: CPython of the runtime's version, manylinux up
   to the runtime's glibc (2.26 for python3.11 on Amazon Linux 2, 2.34 for python3.12+ on Amazon
   Linux 2023; the same table as Chalice's packager), binary wheels only.
2. **Template and app files**: ``chalice package --pkg-format cloudformation`` on a staged copy of
   the project (``app.py``, ``chalicelib/``, ``.chalice/`` without its caches, ``vendor/`` if any)
   whose ``requirements.txt`` is empty. Chalice then writes the template and zips exactly what it
   always zips of an app (``app.py``, ``chalicelib/``, its own runtime ``chalice/app.py`` and
   ``chalice/__init__.py``) and downloads nothing. Chalice picks the runtime from the Python that
   runs it, so the template's ``Runtime`` is then set to the requested one.
3. **Dependencies**: ``pip --python <runtime interpreter> install --target`` with the Lambda
   platform's tags, binary wheels only, ``--no-compile``, and with ``--wheelhouse`` from the
   wheelhouse only (``--no-index``: no network). pip runs *in* the runtime's interpreter, so
   environment markers (``; python_version < "3.12"``) are those of the runtime, not of this
   venv; the wheels' tags decide the platform. The installed tree goes into the zip beside
   Chalice's files (console scripts in ``bin/`` are left out: nothing runs them on Lambda).
4. **Bytecode**: Lambda's ``/var/task`` is read-only, so without ``.pyc`` in the zip every cold
   start compiles every module it imports (``bench/README.md`` measures what that costs). Each
   ``.py`` gets its ``__pycache__/<name>.cpython-3XX.pyc``, compiled by an interpreter of the
   runtime's version (:func:`find_python`), since another version's ``.pyc`` would be ignored.
   They are *unchecked-hash* ``.pyc`` (PEP 552): valid whatever the files' times, which a zip
   round-trip changes, and never checked against the source, which on Lambda cannot change.
   Code objects name ``/var/task/...`` so tracebacks point at real paths.

The same steps serve a CDK stack: :func:`package` and :func:`build_wheelhouse` are plain
functions. docs/deployment.md explains the choices.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TASK_ROOT = "/var/task"
"""Where Lambda unpacks the code (``LAMBDA_TASK_ROOT``)."""

DEFAULT_PYTHON = "3.12"
"""The Lambda runtime sipline deploys to: ``python3.12`` (Amazon Linux 2023)."""

RUNTIME_GLIBC = {"3.11": (2, 26), "3.12": (2, 34), "3.13": (2, 34), "3.14": (2, 34)}
"""The glibc of each Lambda Python runtime's OS: Amazon Linux 2 (3.11), Amazon Linux 2023 (3.12+)."""

ARCHITECTURES = {"x86_64": "x86_64", "arm64": "aarch64"}
"""Lambda's architecture name -> the machine in wheel tags."""

PYTHON_ENV = "SIPLINE_LAMBDA_PYTHON"
"""An interpreter of the runtime's version, if it is neither on PATH nor installed by pyenv."""

ZIP_TIME = (1980, 1, 1, 0, 0, 0)
"""Every entry's time, as Chalice writes them: the zip's bytes depend on its content only."""


class PackageError(Exception):
    """A step failed; the message says which and why."""


def runtime_version() -> str:
    """This interpreter's ``major.minor``."""
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def platforms(python: str, architecture: str = "x86_64") -> list[str]:
    """The wheel platform tags the Lambda runtime ``python`` on ``architecture`` can load."""
    if python not in RUNTIME_GLIBC:
        raise PackageError(f"no Lambda runtime python{python} known")
    major, minor = RUNTIME_GLIBC[python]
    machine = ARCHITECTURES[architecture]
    tags = [f"manylinux_{major}_{m}_{machine}" for m in range(minor, 16, -1)]
    return [*tags, f"manylinux2014_{machine}"]


def _version_of(interpreter: str) -> str | None:
    """``major.minor`` of the interpreter at ``interpreter``, or None if it does not run."""
    try:
        done = subprocess.run(
            [interpreter, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _pyenv_candidates(python: str) -> list[str]:
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    found = glob.glob(os.path.join(root, "versions", f"{python}.*", "bin", f"python{python}"))

    def release(path: str) -> tuple[int, ...]:
        name = Path(path).parent.parent.name
        return tuple(int(part) for part in re.findall(r"\d+", name))

    return sorted(found, key=release, reverse=True)  # the newest patch release first


def find_python(python: str = DEFAULT_PYTHON) -> str:
    """Return the path of a CPython ``python`` interpreter (``"3.12"``) to build the package with.

    Looks at ``$SIPLINE_LAMBDA_PYTHON`` (which must then be that version), then this interpreter,
    ``python3.12`` on PATH, and pyenv's ``~/.pyenv/versions/3.12.*``. Raises PackageError naming
    what to install when none runs.
    """
    given = os.environ.get(PYTHON_ENV)
    if given:
        version = _version_of(given)
        if version != python:
            raise PackageError(
                f"{PYTHON_ENV}={given} is {'not a working Python' if version is None else version}"
                f", not Python {python}"
            )
        return given
    if runtime_version() == python:
        return sys.executable
    on_path = shutil.which(f"python{python}")
    for candidate in [*([on_path] if on_path else []), *_pyenv_candidates(python)]:
        if _version_of(candidate) == python:  # a pyenv shim of an inactive version fails here
            return candidate
    raise PackageError(
        f"no Python {python} found to build the python{python} Lambda package: install it"
        f" (`pyenv install {python}`, or your distribution's python{python} package) so that"
        f" python{python} is on PATH or under ~/.pyenv/versions, or set {PYTHON_ENV} to it"
    )


def _pip(interpreter: str) -> list[str]:
    """pip (this venv's) running inside ``interpreter``: markers are evaluated there."""
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    return [*command, "--python", interpreter]


def _platform_options(python: str, architecture: str) -> list[str]:
    options = ["--only-binary=:all:", "--implementation", "cp", "--python-version", python]
    for tag in platforms(python, architecture):
        options += ["--platform", tag]
    return options


def build_wheelhouse(
    directory: Path,
    requirements: Path = ROOT / "requirements.txt",
    python: str = DEFAULT_PYTHON,
    architecture: str = "x86_64",
) -> None:
    """``pip download`` the Lambda platform's wheels of ``requirements`` into ``directory``."""
    command = [*_pip(find_python(python)), "download", "--quiet", "-d", str(directory)]
    command += [*_platform_options(python, architecture), "-r", str(requirements)]
    _run(command, os.environ, "pip download (the wheelhouse)")


def install_dependencies(
    target: Path,
    requirements: Path,
    python: str,
    wheelhouse: Path | None = None,
    architecture: str = "x86_64",
) -> None:
    """Install ``requirements`` for the Lambda runtime ``python`` into ``target`` (a site dir)."""
    command = [*_pip(find_python(python)), "install", "--quiet", "--no-compile"]
    command += ["--no-warn-script-location", "--target", str(target)]
    command += _platform_options(python, architecture)
    env = dict(os.environ)
    if wheelhouse is not None:  # in the environment, so that it replaces pip.conf's find-links
        env.update(PIP_NO_INDEX="1", PIP_FIND_LINKS=str(wheelhouse.resolve()))
    _run([*command, "-r", str(requirements)], env, "pip install (the dependencies)")
    shutil.rmtree(target / "bin", ignore_errors=True)


def stage_project(project: Path, staged: Path) -> None:
    """Copy what ``chalice package`` reads of ``project`` to ``staged``, requirements emptied."""
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    staged.mkdir(parents=True)
    shutil.copy2(project / "app.py", staged / "app.py")
    for folder in ("chalicelib", "vendor"):
        if (project / folder).is_dir():
            shutil.copytree(project / folder, staged / folder, ignore=skip)
    caches = shutil.ignore_patterns("deployments", "venv")
    shutil.copytree(project / ".chalice", staged / ".chalice", ignore=caches)
    (staged / "requirements.txt").write_text("")  # step 3 installs them for the runtime


def chalice_package(out: Path, project: Path = ROOT, stage: str = "dev") -> None:
    """Run ``chalice package`` for ``project`` into ``out`` (CloudFormation/SAM format)."""
    env = dict(os.environ)
    env.setdefault("AWS_DEFAULT_REGION", "us-east-1")  # chalice builds boto3 sessions; no call
    chalice = Path(sys.executable).with_name("chalice")
    command = [str(chalice), "--project-dir", str(project), "package"]
    command += ["--pkg-format", "cloudformation", "--stage", stage, str(out.resolve())]
    _run(command, env, "chalice package")


def template_runtime(template: Mapping[str, object]) -> str:
    """The one Python version every function of a SAM template runs (``"3.12"``)."""
    runtimes = {str(f["Properties"]["Runtime"]) for f in _functions(template)}
    if len(runtimes) != 1 or not next(iter(runtimes)).startswith("python"):
        raise PackageError(f"expected one Python runtime in the template, found {runtimes}")
    return next(iter(runtimes)).removeprefix("python")


def set_runtime(template_path: Path, python: str) -> None:
    """Make every function of the SAM template at ``template_path`` run ``python<python>``."""
    template = json.loads(template_path.read_text())
    for function in _functions(template):
        function["Properties"]["Runtime"] = f"python{python}"
    template_path.write_text(json.dumps(template, indent=2) + "\n")


def _functions(template: Mapping[str, object]) -> list[dict[str, dict[str, object]]]:
    resources = template.get("Resources", {})
    assert isinstance(resources, dict)
    return [r for r in resources.values() if r.get("Type") == "AWS::Serverless::Function"]


def add_dependencies(zip_path: Path, site: Path) -> None:
    """Rewrite ``zip_path`` with the tree ``site`` first, then the zip's own entries."""
    rebuilt = zip_path.with_suffix(".tmp")
    with zipfile.ZipFile(zip_path) as source, zipfile.ZipFile(rebuilt, "w") as target:
        own = set(source.namelist())
        for path in sorted(p for p in site.rglob("*") if p.is_file()):
            name = path.relative_to(site).as_posix()
            if name in own:
                raise PackageError(f"{name} is both a dependency's and the app's")
            _write(target, name, path.read_bytes())
        for entry in source.infolist():
            target.writestr(entry, source.read(entry))
    rebuilt.replace(zip_path)


def _write(target: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, ZIP_TIME)
    info.external_attr = 0o644 << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    target.writestr(info, data)


def add_bytecode(zip_path: Path, python: str) -> int:
    """Add an unchecked-hash ``.pyc`` beside every ``.py`` of ``zip_path``; return how many.

    The ``.pyc`` are compiled by a Python ``python`` interpreter (:func:`find_python`). Raises
    PackageError if none is found or if a module does not compile.
    """
    interpreter = find_python(python)
    with tempfile.TemporaryDirectory(prefix="sipline-pyc-") as scratch:
        tree = Path(scratch) / "task"
        with zipfile.ZipFile(zip_path) as source:
            entries = [e for e in source.infolist() if not _is_pyc(e.filename)]
            source.extractall(tree, members=entries)
        command = [interpreter, "-m", "compileall", "-q", "-d", TASK_ROOT]
        command += ["--invalidation-mode", "unchecked-hash", str(tree)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            errors = [line for line in done.stdout.splitlines() if line.startswith("***")]
            raise PackageError(f"{len(errors)} modules do not compile, e.g. {errors[:5]}")
        pycs = sorted(p for p in tree.rglob("*.pyc") if p.parent.name == "__pycache__")
        rebuilt = zip_path.with_suffix(".tmp")
        with zipfile.ZipFile(rebuilt, "w", zipfile.ZIP_DEFLATED) as target:
            for entry in entries:
                target.writestr(entry, (tree / entry.filename).read_bytes())
            for pyc in pycs:
                _write(target, pyc.relative_to(tree).as_posix(), pyc.read_bytes())
        rebuilt.replace(zip_path)
    return len(pycs)


def _is_pyc(name: str) -> bool:
    return name.endswith(".pyc") and "/__pycache__/" in f"/{name}"


def package(
    out: Path,
    project: Path = ROOT,
    stage: str = "dev",
    wheelhouse: Path | None = None,
    python: str = DEFAULT_PYTHON,
) -> int:
    """Steps 2 to 4 into ``out`` for the runtime ``python<python>``; return how many ``.pyc``."""
    find_python(python)  # fail before anything is written when the interpreter is missing
    if out.exists():
        shutil.rmtree(out)
    with tempfile.TemporaryDirectory(prefix="sipline-package-") as scratch:
        staged = Path(scratch) / "project"
        stage_project(project, staged)
        chalice_package(out, staged, stage)
        site = Path(scratch) / "site-packages"
        install_dependencies(site, project / "requirements.txt", python, wheelhouse)
        add_dependencies(out / "deployment.zip", site)
    set_runtime(out / "sam.json", python)
    return add_bytecode(out / "deployment.zip", python)


def _run(command: list[str], env: Mapping[str, str], what: str) -> None:
    done = subprocess.run(command, env=dict(env), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise PackageError(f"{what} failed ({done.returncode}):\n{done.stderr[-4000:]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.package_lambda", description=__doc__)
    parser.add_argument("out", type=Path, help="output directory (replaced)")
    parser.add_argument("--stage", default="dev")
    parser.add_argument(
        "--python", default=DEFAULT_PYTHON, choices=sorted(RUNTIME_GLIBC), help="Lambda runtime"
    )
    parser.add_argument("--wheelhouse", type=Path, help="package from these wheels only (offline)")
    parser.add_argument("--fetch", action="store_true", help="fill the wheelhouse first (online)")
    args = parser.parse_args(argv)
    try:
        if args.fetch:
            if args.wheelhouse is None:
                parser.error("--fetch needs --wheelhouse")
            build_wheelhouse(args.wheelhouse, python=args.python)
        count = package(args.out, stage=args.stage, wheelhouse=args.wheelhouse, python=args.python)
    except PackageError as error:
        print(error, file=sys.stderr)
        return 1
    print(f"{args.out}/sam.json, {args.out}/deployment.zip ({count} .pyc files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
