"""``chalice package`` works from a clean clone, offline, and ships what the Lambda needs.

The repository's files (tracked and new, nothing ignored: no ``.chalice/deployments`` cache, no
venv) are copied to a scratch folder. A wheelhouse for the Lambda platform is built from the
package registry (``scripts/package_lambda.py``'s step 1, the only step that is online); then
``python -m scripts.package_lambda`` runs in a network namespace with no interface
(``unshare -n``, so a fetch fails at once), which proves packaging needs nothing but the
wheelhouse. The artifact is then read as AWS would read it:

- the SAM template parses; its role's policy is ``.chalice/policy.json`` verbatim, whose only
  ``*`` resources are those docs/deployment.md argues (``sqs:ListQueues`` has no resource type;
  the KMS key is named by its alias in a condition);
- the zip holds google-re2's extension for CPython 3.11 on x86_64 from a wheel whose manylinux tag
  needs no newer glibc than the python3.11 runtime's (Amazon Linux 2: glibc 2.26), and it imports;
- every module of the app has an unchecked-hash ``.pyc`` (PEP 552), and importing the app from the
  unpacked zip uses them: every source file of the app is made to raise if it were ever compiled.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = "python3.11"
"""The runtime Chalice picks from the Python that runs it (this venv's)."""
LAMBDA_GLIBC = (2, 26)
"""Amazon Linux 2, the OS of the python3.11 Lambda runtime (AWS Lambda runtimes table)."""
STEP_TIMEOUT_S = 240


def _run(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        command,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=STEP_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, f"{command} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean copy of the repository packaged offline; returns the output folder."""
    scratch = tmp_path_factory.mktemp("chalice-package")
    clone = scratch / "clone"
    listed = _run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], ROOT)
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file() and not source.is_symlink():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, clone / name)
    assert not (clone / ".chalice" / "deployments").exists()
    wheelhouse = scratch / "wheelhouse"
    fetch = "from scripts.package_lambda import build_wheelhouse as b; import sys; b(sys.argv[1])"
    _run([sys.executable, "-c", fetch, str(wheelhouse)], clone)
    out = scratch / "out"
    env = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1"}
    command = ["unshare", "-n", sys.executable, "-m", "scripts.package_lambda", str(out)]
    _run([*command, "--wheelhouse", str(wheelhouse)], clone, env)
    return out


def _template(artifact: Path) -> dict[str, Any]:
    template: dict[str, Any] = json.loads((artifact / "sam.json").read_text())
    return template


def test_the_template_parses_and_every_function_runs_the_lambda_python(artifact: Path) -> None:
    resources = _template(artifact)["Resources"]
    functions = {
        name: r["Properties"]
        for name, r in resources.items()
        if r["Type"] == "AWS::Serverless::Function"
    }
    assert {"APIHandler", "ReapCalls"} <= set(functions)
    assert {p["Runtime"] for p in functions.values()} == {RUNTIME}
    assert {p["CodeUri"] for p in functions.values()} == {"./deployment.zip"}


def test_each_role_has_the_explicit_policy_and_no_unargued_wildcard(artifact: Path) -> None:
    resources = _template(artifact)["Resources"]
    roles = {n: r for n, r in resources.items() if r["Type"] == "AWS::IAM::Role"}
    used = {
        r["Properties"]["Role"]["Fn::GetAtt"][0]
        for r in resources.values()
        if r["Type"] == "AWS::Serverless::Function"
    }
    assert used == set(roles) and len(roles) == 2  # with a policy file, one role per function
    expected = json.loads((ROOT / ".chalice" / "policy.json").read_text())
    documents = [p["PolicyDocument"] for r in roles.values() for p in r["Properties"]["Policies"]]
    assert documents == [expected, expected]
    for statement in documents[0]["Statement"]:
        actions = (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
        resources = statement["Resource"]
        resources = resources if isinstance(resources, list) else [resources]
        assert statement["Effect"] == "Allow"
        assert not any("*" in action for action in actions), statement
        if resources == ["*"]:
            assert actions == ["sqs:ListQueues"], statement  # the action has no resource type
        elif actions[0].startswith("kms:"):
            assert resources == ["arn:aws:kms:*:*:key/*"]
            condition = statement["Condition"]
            assert condition["ForAnyValue:StringEquals"] == {"kms:ResourceAliases": "alias/sipline"}
            assert condition["StringEquals"] == {"kms:EncryptionContext:purpose": "sipline-secret"}
        else:  # named by the deployment's names: table, queues, secrets, log groups
            for resource in resources:
                assert re.search(r":(table/|log-group:/aws/lambda/|secret:)?sipline", resource), (
                    resource
                )


def test_the_zip_holds_re2_built_for_the_lambda_platform_and_it_imports(
    artifact: Path, tmp_path: Path
) -> None:
    with zipfile.ZipFile(artifact / "deployment.zip") as package:
        names = set(package.namelist())
        assert "_re2.cpython-311-x86_64-linux-gnu.so" in names
        wheel = [n for n in names if re.fullmatch(r"google_re2-[^/]+\.dist-info/WHEEL", n)]
        assert len(wheel) == 1
        tags = re.findall(r"^Tag: (\S+)$", package.read(wheel[0]).decode(), re.MULTILINE)
        package.extractall(tmp_path, members=[n for n in names if "re2" in n])
    linux = [t.split("-")[2] for t in tags if "linux" in t]
    assert linux and all(t.startswith("cp311-cp311-") for t in tags)
    legacy = {
        "manylinux2014_x86_64": "manylinux_2_17_x86_64",
        "manylinux1_x86_64": "manylinux_2_5_x86_64",
    }
    required = []
    for platform in linux:
        found = re.fullmatch(r"manylinux_(\d+)_(\d+)_x86_64", legacy.get(platform, platform))
        assert found, platform
        required.append((int(found[1]), int(found[2])))
    assert min(required) <= LAMBDA_GLIBC, tags
    probe = "import re2; assert re2.compile(r'(\\d+)-(\\d+)').fullmatch('12-34').group(2) == '34'"
    _run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, '.'); {probe}"], tmp_path)


def test_every_app_module_has_unchecked_hash_bytecode_that_the_import_uses(
    artifact: Path, tmp_path: Path
) -> None:
    with zipfile.ZipFile(artifact / "deployment.zip") as package:
        package.extractall(tmp_path)
    app_sources = [tmp_path / "app.py", *sorted((tmp_path / "chalicelib").rglob("*.py"))]
    assert len(app_sources) > 20
    for source in app_sources:
        pyc = source.parent / "__pycache__" / f"{source.stem}.cpython-311.pyc"
        header = pyc.read_bytes()[:16]
        flags = int.from_bytes(header[4:8], "little")
        assert flags == 0b01, f"{pyc}: flags {flags} (PEP 552: 1 = hash-based, not checked)"
        # Were this source ever compiled at import, the import would fail.
        source.write_text(source.read_text() + "\nraise ImportError('compiled from source')\n")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(tmp_path),
        "PYTHONDONTWRITEBYTECODE": "1",  # /var/task is read-only
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "1",
    }
    check = (
        "import app, chalicelib.routing, sys;"
        f"assert app.__file__ == {str(tmp_path / 'app.py')!r}, app.__file__;"
        "import pkgutil, importlib, chalicelib;"
        "[importlib.import_module(m.name)"
        " for m in pkgutil.walk_packages(chalicelib.__path__, 'chalicelib.')];"
        "print('ok')"
    )
    assert _run([sys.executable, "-c", check], tmp_path, env).strip() == "ok"
