"""The Lambda package builds from a clean clone, offline, for python3.12, and serves there.

The repository's files (tracked and new, nothing ignored: no ``.chalice/deployments`` cache, no
venv) are copied to a scratch folder. A wheelhouse for the Lambda platform is built from the
package registry (``scripts/package_lambda.py``'s step 1, the only step that is online); then
``python -m scripts.package_lambda`` runs in a network namespace with no interface
(``unshare -n``, so a fetch fails at once), which proves packaging needs nothing but the
wheelhouse. The artifact is then read as AWS would read it:

- the SAM template parses and every function runs ``python3.12``; its role's policy is
  ``.chalice/policy.json`` verbatim, whose only ``*`` resources are those docs/deployment.md
  argues (``sqs:ListQueues`` has no resource type; the KMS key is named by its alias);
- the zip holds google-re2's extension for CPython 3.12 on x86_64 from a wheel whose manylinux tag
  needs no newer glibc than the python3.12 runtime's (Amazon Linux 2023: glibc 2.34), and it
  imports under a Python 3.12 interpreter;
- every module of the app has an unchecked-hash ``.pyc`` (PEP 552) whose magic number is the one
  the Python 3.12 interpreter reports (``importlib.util.MAGIC_NUMBER``, read by running it), and
  importing the app from the unpacked zip uses them: every source file of the app is made to
  raise if it were ever compiled;
- the app unpacked from the zip, run by Python 3.12 with the runtime's boto3 after it on the path
  (``scripts/lambda_task.py``), answers API Gateway proxy events through ``app.app`` against
  moto in server mode on 127.0.0.1: it creates an agent, routes ``sales`` to it, and accepts a
  signed INVITE (pydantic-core, RE2, jsonschema and the store all exercised under 3.12).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import zipfile
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from chalicelib.api_keys import entry
from chalicelib.crypto import generate_fernet_key
from chalicelib.store.schema import create_table
from scripts.lambda_task import environment, runtime_dir, unpack, zip_python
from scripts.package_lambda import find_python
from tests.support.lambda_package import run as _run

ROOT = Path(__file__).resolve().parents[2]
PYTHON = "3.12"
RUNTIME = "python3.12"
"""The Lambda runtime the package is for (the contract's, docs/deployment.md)."""
LAMBDA_GLIBC = (2, 34)
"""Amazon Linux 2023, the OS of the python3.12 Lambda runtime (AWS Lambda runtimes table)."""




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


@pytest.fixture(scope="module")
def python312() -> str:
    """A Python 3.12 interpreter (``SIPLINE_LAMBDA_PYTHON``, PATH or pyenv; see docs)."""
    interpreter = find_python(PYTHON)
    assert _run([interpreter, "-c", "import sys; print(sys.version_info[:2])"], ROOT).strip() == (
        "(3, 12)"
    )
    return interpreter


@pytest.fixture(scope="module")
def runtime(python312: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the Lambda runtime adds after ``/var/task`` (boto3...), compiled by Python 3.12."""
    return runtime_dir(tmp_path_factory.mktemp("runtime"), python312)


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
    artifact: Path, tmp_path: Path, python312: str
) -> None:
    with zipfile.ZipFile(artifact / "deployment.zip") as package:
        names = set(package.namelist())
        assert "_re2.cpython-312-x86_64-linux-gnu.so" in names
        wheel = [n for n in names if re.fullmatch(r"google_re2-[^/]+\.dist-info/WHEEL", n)]
        assert len(wheel) == 1
        tags = re.findall(r"^Tag: (\S+)$", package.read(wheel[0]).decode(), re.MULTILINE)
        package.extractall(tmp_path, members=[n for n in names if "re2" in n])
    linux = [t.split("-")[2] for t in tags if "linux" in t]
    assert linux and all(t.startswith("cp312-cp312-") for t in tags)
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
    _run([python312, "-I", "-c", f"import sys; sys.path.insert(0, '.'); {probe}"], tmp_path)


def test_every_app_module_has_python312_unchecked_hash_bytecode_that_the_import_uses(
    artifact: Path, tmp_path: Path, python312: str, runtime: Path
) -> None:
    magic = _run([python312, "-c", "import importlib.util as u; print(u.MAGIC_NUMBER.hex())"], ROOT)
    assert zip_python(artifact / "deployment.zip") == PYTHON  # what the benchmark picks it by
    unpack(artifact / "deployment.zip", tmp_path)
    app_sources = [tmp_path / "app.py", *sorted((tmp_path / "chalicelib").rglob("*.py"))]
    assert len(app_sources) > 20
    for source in app_sources:
        pyc = source.parent / "__pycache__" / f"{source.stem}.cpython-312.pyc"
        header = pyc.read_bytes()[:16]
        assert header[:4].hex() == magic.strip(), f"{pyc}: not Python 3.12's bytecode"
        flags = int.from_bytes(header[4:8], "little")
        assert flags == 0b01, f"{pyc}: flags {flags} (PEP 552: 1 = hash-based, not checked)"
        # Were this source ever compiled at import, the import would fail.
        source.write_text(source.read_text() + "\nraise ImportError('compiled from source')\n")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        **environment(tmp_path, runtime),  # /var/task first, read-only
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
    assert _run([python312, "-c", check], tmp_path, env).strip() == "ok"


# The Lambda side: stdlib and the package only. argv: the request file, then the result file.
SERVE = r"""
import json, sys, time, types
import app
from chalicelib.signing import sign

given = json.loads(open(sys.argv[1]).read())
context = types.SimpleNamespace(
    function_name="sipline-test", function_version="$LATEST", memory_limit_in_mb=512,
    invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:sipline-test",
    aws_request_id="test", get_remaining_time_in_millis=lambda: 15000,
)

def call(method, path, text, headers):
    headers = {"content-type": "application/json", "host": "api.example.test", **headers}
    event = {
        "resource": path, "path": path, "httpMethod": method, "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None, "multiValueQueryStringParameters": None,
        "pathParameters": None, "stageVariables": None,
        "requestContext": {
            "resourcePath": path, "httpMethod": method, "path": "/api" + path, "stage": "api",
            "requestId": "request-" + path, "identity": {"sourceIp": "198.51.100.7"},
        },
        "body": text, "isBase64Encoded": False,
    }
    response = app.app(event, context)
    return [response["statusCode"], json.loads(response["body"])]

key = {"x-api-key": given["apiKey"]}
results = {"python": list(sys.version_info[:2])}
results["agent"] = call("POST", "/api/agents", json.dumps(given["agent"]), key)
routes = {
    "allowedCidrRanges": ["203.0.113.0/24"],
    "allowedAgents": [{"agentId": results["agent"][1]["agentId"], "toUserPattern": "^sales$"}],
}
results["sip"] = call("PATCH", "/api/sip", json.dumps(routes), key)
invite = json.dumps(given["invite"])
signed = sign(given["secret"], int(time.time()), invite.encode(), method="POST",
              path="/webhooks/sip/invite")
results["invite"] = call("POST", "/webhooks/sip/invite", invite, signed)
open(sys.argv[2], "w").write(json.dumps(results))
"""

AGENT = {
    "name": "sales",
    "callTemplate": {
        "systemPrompt": "You are the sales agent. The customer is {{customer_name}}.",
        "contextSchema": {
            "type": "object",
            "properties": {"customer_name": {"type": "string"}, "sipline": {"type": "object"}},
            "additionalProperties": False,
        },
        "mediaEndpoint": {"url": "ws://127.0.0.1:9/agent"},
    },
}
INVITE = {  # docs/webhooks.md, "INVITE"
    "sourceIp": "203.0.113.10",
    "sourcePort": 5060,
    "transport": "udp",
    "requestUri": "sip:sales@sip.localhost",
    "fromUri": "sip:+15551234567@carrier.example",
    "fromDisplayName": "Alice Caller",
    "fromTag": "9fxced76sl",
    "toUri": "sip:sales@sip.localhost",
    "sipCallId": "3848276298220188511@carrier.example",
    "headers": [
        ["Via", "SIP/2.0/UDP 203.0.113.10;branch=z9hG4bK74bf9"],
        ["X-Customer-Name", "Alice"],
    ],
    "offeredCodecs": ["PCMU/8000", "PCMA/8000", "telephone-event/8000"],
}


def test_the_unpacked_zip_serves_api_calls_and_an_invite_under_python312(
    artifact: Path, tmp_path: Path, python312: str, runtime: Path
) -> None:
    task = unpack(artifact / "deployment.zip", tmp_path / "task")
    api_key, secret = "sk_" + "k7Qx2mVb9LpZ4tRw8NcY3hJd6FsA1eGu", "whsec_package_test"
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        aws = {
            "AWS_ENDPOINT_URL": f"http://{host}:{port}",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        client = {
            "endpoint_url": aws["AWS_ENDPOINT_URL"],
            "region_name": "us-east-1",
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
        }
        create_table(boto3.client("dynamodb", **client), "sipline-package-test")
        queue = boto3.client("sqs", **client).create_queue(QueueName="sipline-commands")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            **aws,
            **environment(task, runtime),
            "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
            "SIPLINE_TABLE": "sipline-package-test",
            "SIPLINE_COMMAND_QUEUE_URL": queue["QueueUrl"],
            "SIPLINE_WEBHOOK_SECRET": secret,
            "SIPLINE_PASSWORD_KEY": generate_fernet_key(),
            "SIPLINE_API_KEYS": entry("test", "default", api_key),
            "SIPLINE_ALLOWED_PRIVATE_TARGETS": "127.0.0.0/8",  # the agent's media endpoint
            "POWERTOOLS_TRACE_DISABLED": "1",
        }
        request, result = tmp_path / "request.json", tmp_path / "result.json"
        given = {"apiKey": api_key, "secret": secret, "agent": AGENT, "invite": INVITE}
        request.write_text(json.dumps(given))
        _run([python312, "-c", SERVE, str(request), str(result)], task, env)
    finally:
        server.stop()
    results = json.loads(result.read_text())
    assert results["python"] == [3, 12]
    status, agent = results["agent"]
    assert status == 201 and agent["name"] == "sales", results["agent"]
    assert results["sip"][0] == 200, results["sip"]
    status, decision = results["invite"]
    assert status == 200 and decision["action"] == "accept", results["invite"]
    assert decision["agentId"] == agent["agentId"]
    assert decision["systemPrompt"] == "You are the sales agent. The customer is Alice."
