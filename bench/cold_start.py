"""Cold start: a fresh Python process imports ``app.py`` and answers its first INVITE decision.

``python -m bench.cold_start`` starts moto in server mode on 127.0.0.1 (in this process), creates
the table and seeds one agent and the SIP configuration that routes ``sales`` to it, through the
``chalicelib`` use cases. Then, ``RUNS`` times, it starts a fresh interpreter (the venv's python,
environment as on Lambda: table name, command queue, webhook secret, Fernet key, API keys, fake
credentials, ``AWS_ENDPOINT_URL`` pointing at moto, ``POWERTOOLS_TRACE_DISABLED=1``) that imports
``app`` and hands ``app.app`` one signed API Gateway proxy event for ``POST /webhooks/sip/invite``,
as the Lambda runtime would, and checks the decision is ``accept``.

Clocks: the parent reads ``time.perf_counter()`` (CLOCK_MONOTONIC, system-wide on Linux) just
before it spawns the child and the child reads it on its first line, so "interpreter start" is
spawn + interpreter + ``site``; the rest is measured inside the child. The child wraps
``boto3.client``, ``chalicelib.runtime._from_environment`` and botocore's ``_make_api_call`` to
time the first client, the services and each DynamoDB round trip; "decision" is what is left of
the request. A separate set of runs with ``-X importtime`` gives which packages the time goes to,
and runs without ``.pyc`` files show what an unzipped Lambda package without bytecode pays.
``--package ZIP`` (repeatable) times deployment packages instead, each run by an interpreter of
the Python version it was built for and laid out as Lambda lays it out (``scripts/lambda_task.py``).

What-if variants run code before and after ``import app`` to show what a change would save
without making it (no X-Ray SDK while tracing is disabled; the garbage collector paused during
the imports, then ``gc.freeze()``). They run round-robin with the baseline, so that a shared
machine's drift hits them alike: compare them within one run. Target: under 400 ms.

Size: over 400 lines because it is its own harness (moto, seeding, child process, -X importtime
parsing, report); splitting would scatter one benchmark over several files.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.machine import banner

ROOT = Path(__file__).resolve().parent.parent
RUNS = 9
IMPORTTIME_RUNS = 3
NO_PYC_RUNS = 3
CHILD_TIMEOUT_S = 60.0
TARGET_MS = 400.0
TABLE = "sipline-bench"
ACCOUNT = "default"
WEBHOOK_SECRET = "whsec_bench"
PASSWORD_KEY = "m2b3oZ0Kp6Zt4q8q2Zx8HFWQx2Zb0wXcZq1jS4yR6uE="
API_KEYS = f"bench:{ACCOUNT}:sha256:{'0' * 64}"  # a hash no key has: no /api route is timed
INVITE_PATH = "/webhooks/sip/invite"

# The child: stdlib only before ``import app``; argv[1] is the event file, argv[2] the result file.
CHILD = r"""
import time
started = time.perf_counter()
import json, sys, types
given = json.loads(open(sys.argv[1]).read())
event, second_event = given["events"]
exec(given["prelude"])
before_app = time.perf_counter()
import app
exec(given["after_import"])
imported = time.perf_counter()
modules_of_app = set(sys.modules)

import boto3, botocore.client
import chalicelib.runtime as runtime
spans = []
def timed(kind, name, call):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return call(*args, **kwargs)
        finally:
            spans.append((kind, name(args), time.perf_counter() - start))
    return wrapper
boto3.client = timed("client", lambda a: a[0], boto3.client)
runtime._from_environment = timed("services", lambda a: "services", runtime._from_environment)
botocore.client.BaseClient._make_api_call = timed(
    "api", lambda a: a[1], botocore.client.BaseClient._make_api_call
)
context = types.SimpleNamespace(
    function_name="sipline-bench", function_version="$LATEST", memory_limit_in_mb=1024,
    invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:sipline-bench",
    aws_request_id="bench", get_remaining_time_in_millis=lambda: 30000,
)
request_start = time.perf_counter()
response = app.app(event, context)
decided = time.perf_counter()
later_modules = sorted(set(sys.modules) - modules_of_app)
first_spans = list(spans)
second = app.app(second_event, context)
second_s = time.perf_counter() - decided
body = json.loads(response["body"])
result = {
    "started": started, "prelude_s": before_app - started, "import_s": imported - before_app,
    "request_s": decided - request_start, "decided": decided, "spans": first_spans,
    "status": response["statusCode"], "action": body.get("action"), "body": body,
    "later_modules": later_modules, "second_s": second_s,
    "second_action": json.loads(second["body"]).get("action"),
}
open(sys.argv[2], "w").write(json.dumps(result))
"""

# What-if preludes: run before ``import app`` to show what a change would save, without making it.

_IMPORTTIME = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)$")


# --- the local stack ---------------------------------------------------------------------------


@contextmanager
def moto_server() -> Iterator[str]:
    """Run moto in server mode on 127.0.0.1 (a free port) for the block; yield its endpoint."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def child_environment(endpoint: str, scratch: Path) -> dict[str, str]:
    """Return the child's whole environment: what the Lambda gets, pointed at moto."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(scratch / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(scratch / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "SIPLINE_TABLE": TABLE,
        "SIPLINE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "SIPLINE_PASSWORD_KEY": PASSWORD_KEY,
        "SIPLINE_API_KEYS": API_KEYS,
        "SIPLINE_ALLOWED_PRIVATE_TARGETS": "127.0.0.0/8",  # the seeded agent is on 127.0.0.1
        "SIPLINE_MAX_CONCURRENT_CALLS": "10000",  # every run adds two calls that never end
        "POWERTOOLS_TRACE_DISABLED": "1",
    }


def seed(env: dict[str, str]) -> str:
    """Create the table, the command queue (its URL goes into ``env``), an agent and the SIP
    config routing ``sales`` to it; return the agent's id."""
    import boto3

    from chalicelib import agents, sip_config
    from chalicelib.clock import utc_now
    from chalicelib.config import load_settings
    from chalicelib.crypto import FernetCipher
    from chalicelib.fallback import HttpFallbackClient
    from chalicelib.ids import id_factory
    from chalicelib.models import AgentFields, SipConfigPatch
    from chalicelib.services import Services
    from chalicelib.store.dynamodb import DynamoTable
    from chalicelib.store.repository import Store
    from chalicelib.store.schema import create_table

    client = boto3.client(
        "dynamodb",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    create_table(client, TABLE)
    sqs = boto3.client(
        "sqs",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    # The Lambda has its command queue (without one the control plane refuses to run).
    env["SIPLINE_COMMAND_QUEUE_URL"] = sqs.create_queue(QueueName=f"{TABLE}-commands")["QueueUrl"]
    settings = load_settings(env)
    services = Services(
        settings=settings,
        store=Store(DynamoTable(client, TABLE)),
        cipher=FernetCipher(PASSWORD_KEY),
        commands=_no_commands(),
        fallback=HttpFallbackClient(settings.fallback_timeout_s, egress=settings.egress),
        new_id=id_factory(utc_now),
    )
    agent = agents.create_agent(services, ACCOUNT, AgentFields.model_validate(AGENT))
    patch = {
        "allowedCidrRanges": ["198.51.100.0/24", "203.0.113.0/24"],
        "allowedAgents": [
            {"agentId": agent.agent_id},
            {"agentId": agent.agent_id, "toUserPattern": "^sales$|^15557654321$"},
        ],
    }
    sip_config.patch_sip_config(services, ACCOUNT, SipConfigPatch.model_validate(patch))
    return agent.agent_id


def _no_commands() -> Any:
    from chalicelib.commands import MemoryCommandSender

    return MemoryCommandSender()


AGENT: dict[str, Any] = {
    "name": "sales",
    "callTemplate": {
        "systemPrompt": "You are the sales agent. The caller is {{sipline.sip.caller_id}}"
        " ({{customer_name}}).",
        "joinTimeout": "30s",
        "maxDuration": "3600s",
        "contextSchema": {
            "type": "object",
            "properties": {"customer_name": {"type": "string"}, "sipline": {"type": "object"}},
            "additionalProperties": False,
        },
        "mediaEndpoint": {"url": "ws://127.0.0.1:9/agent"},
    },
}


# --- one child ---------------------------------------------------------------------------------


def invite_event() -> dict[str, Any]:
    """Return a signed API Gateway (REST, proxy) event for a fresh INVITE to ``sales``."""
    from chalicelib.signing import sign

    body = json.dumps(
        {
            "sourceIp": "203.0.113.10",
            "sourcePort": 5060,
            "transport": "udp",
            "requestUri": "sip:sales@sip.localhost",
            "fromUri": "sip:+15551234567@carrier.example",
            "fromDisplayName": "Alice Caller",
            "fromTag": uuid.uuid4().hex[:10],
            "toUri": "sip:sales@sip.localhost",
            "sipCallId": f"{uuid.uuid4()}@carrier.example",
            "headers": [
                ["Via", "SIP/2.0/UDP 203.0.113.10;branch=z9hG4bK74bf9"],
                ["X-Customer-Name", "Alice"],
            ],
            "offeredCodecs": ["PCMU/8000", "PCMA/8000", "telephone-event/8000"],
        }
    )
    headers = {
        "content-type": "application/json",
        "host": "api.example.test",
        **{
            k.lower(): v
            for k, v in sign(
                WEBHOOK_SECRET, int(time.time()), body.encode(), method="POST", path=INVITE_PATH
            ).items()
        },
    }
    return {
        "resource": INVITE_PATH,
        "path": INVITE_PATH,
        "httpMethod": "POST",
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": INVITE_PATH,
            "httpMethod": "POST",
            "path": f"/api{INVITE_PATH}",
            "stage": "api",
            "requestId": str(uuid.uuid4()),
            "identity": {"sourceIp": "198.51.100.7"},
        },
        "body": body,
        "isBase64Encoded": False,
    }


@dataclass
class Run:
    """One child's figures, in milliseconds, measured from the moment it was spawned."""

    interpreter_ms: float
    prelude_ms: float
    import_ms: float
    request_ms: float
    to_decision_ms: float
    wall_ms: float
    services_ms: float
    client_ms: float
    api_ms: list[tuple[str, float]]
    later_modules: list[str]
    second_ms: float
    """A second INVITE (another call) in the same process: what a warm Lambda pays."""
    importtime: str = ""

    @property
    def decision_ms(self) -> float:
        """The request minus building the services and the DynamoDB round trips."""
        return self.request_ms - self.services_ms - sum(ms for _, ms in self.api_ms)


@dataclass
class Scenario:
    """How a child is run: extra interpreter flags, environment and what-if prelude."""

    flags: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    prelude: str = ""
    after_import: str = ""
    cwd: Path = ROOT
    """Where ``import app`` finds the app: the repository, or an unpacked deployment package."""
    interpreter: str = sys.executable
    """The Python that runs the child: the venv's, or one of a package's runtime version."""


VARIANTS = {
    "baseline": Scenario(),
    # What a deployment with X-Ray tracing on pays: Powertools' Tracer imports the X-Ray SDK.
    "with tracing on (X-Ray SDK imported)": Scenario(env={"POWERTOOLS_TRACE_DISABLED": "0"}),
}


def run_child(env: dict[str, str], scratch: Path, scenario: Scenario) -> Run:
    """Spawn one fresh interpreter, let it answer one INVITE, and return its figures."""
    event_file, result_file = scratch / "event.json", scratch / "result.json"
    given = {
        "events": [invite_event(), invite_event()],
        "prelude": scenario.prelude,
        "after_import": scenario.after_import,
    }
    event_file.write_text(json.dumps(given))
    result_file.unlink(missing_ok=True)
    command = [scenario.interpreter, *scenario.flags, "-c", CHILD, str(event_file)]
    command.append(str(result_file))
    spawned = time.perf_counter()
    done = subprocess.run(
        command,
        cwd=scenario.cwd,
        env={**env, **scenario.env},
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        check=False,
    )
    exited = time.perf_counter()
    if done.returncode != 0 or not result_file.exists():
        raise RuntimeError(f"child failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result = json.loads(result_file.read_text())
    if result["status"] != 200 or {result["action"], result["second_action"]} != {"accept"}:
        raise RuntimeError(f"the INVITE was not accepted: {result['status']} {result['body']}")
    return _run_of(result, spawned, exited, done.stderr)


def _run_of(result: dict[str, Any], spawned: float, exited: float, stderr: str) -> Run:
    def total(kind: str) -> float:
        return 1e3 * sum(float(s) for k, _, s in result["spans"] if k == kind)

    return Run(
        interpreter_ms=1e3 * (result["started"] - spawned),
        prelude_ms=1e3 * result["prelude_s"],
        import_ms=1e3 * result["import_s"],
        request_ms=1e3 * result["request_s"],
        to_decision_ms=1e3 * (result["decided"] - spawned),
        wall_ms=1e3 * (exited - spawned),
        services_ms=total("services"),
        client_ms=total("client"),
        api_ms=[(name, 1e3 * s) for kind, name, s in result["spans"] if kind == "api"],
        later_modules=result["later_modules"],
        second_ms=1e3 * result["second_s"],
        importtime=stderr,
    )


def run_many(
    env: dict[str, str], scratch: Path, scenario: Scenario, count: int, budget_s: float
) -> list[Run]:
    """Run ``count`` children, fewer if ``budget_s`` runs out (at least one)."""
    runs: list[Run] = []
    deadline = time.perf_counter() + budget_s
    while len(runs) < count and (not runs or time.perf_counter() < deadline):
        runs.append(run_child(env, scratch, scenario))
    return runs


# --- reading -X importtime ---------------------------------------------------------------------


def import_self_ms(stderr: str) -> dict[str, float]:
    """Return each imported module's own import time (ms) from ``-X importtime`` output."""
    own: dict[str, float] = {}
    for line in stderr.splitlines():
        match = _IMPORTTIME.match(line)
        if match:
            own[match[4]] = int(match[1]) / 1e3
    return own


def by_package(own: dict[str, float], modules: set[str] | None = None) -> dict[str, float]:
    """Sum own import times by top-level package (only ``modules``, if given)."""
    totals: dict[str, float] = defaultdict(float)
    for module, ms in own.items():
        if modules is None or module in modules:
            totals[module.split(".")[0]] += ms
    return dict(totals)


def cumulative_ms(stderr: str, module: str) -> float:
    """Return a module's cumulative import time (ms) from ``-X importtime`` output."""
    for line in stderr.splitlines():
        match = _IMPORTTIME.match(line)
        if match and match[4] == module:
            return int(match[2]) / 1e3
    return 0.0


# --- report ------------------------------------------------------------------------------------


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else 0.0


def phase_lines(runs: list[Run]) -> list[str]:
    """Return the median of each phase of ``runs``, then the totals."""
    first_api = [r.api_ms[0][1] for r in runs if r.api_ms]
    later_api = [sum(ms for _, ms in r.api_ms[1:]) for r in runs]
    operations = ", ".join(name for name, _ in runs[0].api_ms)
    rows = [
        ("interpreter start (spawn -> first line)", [r.interpreter_ms for r in runs]),
        ("read the event (+ what-if prelude)", [r.prelude_ms for r in runs]),
        ("import app", [r.import_ms for r in runs]),
        ("first request (app.app(event, context))", [r.request_ms for r in runs]),
        ("  services() built from the environment", [r.services_ms for r in runs]),
        ("    of which boto3.client('dynamodb')", [r.client_ms for r in runs]),
        ("  first DynamoDB round trip", first_api),
        (f"  {len(runs[0].api_ms) - 1} more round trips", later_api),
        ("  the decision itself (the rest)", [r.decision_ms for r in runs]),
    ]
    lines = [f"  {name:<42} {_median(values):>8.1f} ms" for name, values in rows]
    to_decision = [r.to_decision_ms for r in runs]
    lines += [
        f"  {'spawn -> decision: median':<42} {_median(to_decision):>8.1f} ms"
        f"   (min {min(to_decision):.1f}, {len(runs)} runs)",
        f"  {'whole child, with exit: median':<42} {_median([r.wall_ms for r in runs]):>8.1f} ms",
        f"  {'a second INVITE, warm: median':<42} {_median([r.second_ms for r in runs]):>8.1f} ms",
        f"  round trips: {operations}",
    ]
    return lines


def importtime_lines(runs: list[Run], top: int = 12) -> list[str]:
    """Return the packages that take the most import time, during ``import app`` and after."""
    owns = [import_self_ms(r.importtime) for r in runs]
    later = set(runs[0].later_modules)
    at_import = [by_package({m: t for m, t in own.items() if m not in later}) for own in owns]
    on_request = [by_package(own, later) for own in owns]
    lines = ["  own import time by package (median), while importing app:"]
    lines += _package_rows(at_import, top)
    lines += ["  ...and imported lazily by the first request:"]
    lines += _package_rows(on_request, top // 2)
    xray = _median([cumulative_ms(r.importtime, "aws_xray_sdk.core") for r in runs])
    lines += [f"  aws_xray_sdk.core, cumulative (with the botocore it pulls in): {xray:.1f} ms"]
    return lines


def _package_rows(samples: list[dict[str, float]], top: int) -> list[str]:
    packages = {p for sample in samples for p in sample}
    medians = {p: _median([s.get(p, 0.0) for s in samples]) for p in packages}
    ranked = sorted(medians.items(), key=lambda item: -item[1])
    total = sum(medians.values())
    rows = [f"    {name:<28} {ms:>8.1f} ms" for name, ms in ranked[:top]]
    rest = sum(ms for _, ms in ranked[top:])
    return [*rows, f"    {'(others)':<28} {rest:>8.1f} ms", f"    {'total':<28} {total:>8.1f} ms"]


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(prog="python -m bench.cold_start", description=__doc__)
    parser.add_argument("--runs", type=int, default=RUNS)
    parser.add_argument("--budget-s", type=float, default=60.0, help="per set of runs")
    parser.add_argument(
        "--package",
        type=Path,
        action="append",
        help="time this deployment.zip (scripts/package_lambda.py) instead, with and without its"
        " .pyc, run by a Python of its version; repeat to compare packages in one run",
    )
    options = parser.parse_args(argv)
    print(banner("cold start: fresh process -> import app -> first INVITE decision"))
    with tempfile.TemporaryDirectory(prefix="sipline-bench-") as tmp, moto_server() as endpoint:
        scratch = Path(tmp)
        env = child_environment(endpoint, scratch)
        seed(env)
        run_child(env, scratch, Scenario())  # warm-up: .pyc files written, page cache warm
        if options.package:
            _report_package(env, scratch, options.package, options.runs, options.budget_s)
            return
        _report(env, scratch, options.runs, options.budget_s)


def run_interleaved(
    env: dict[str, str],
    scratch: Path,
    count: int,
    budget_s: float,
    variants: dict[str, Scenario] | None = None,
) -> dict[str, list[Run]]:
    """Run every variant ``count`` times, round-robin, so that a machine's drift hits them alike."""
    variants = VARIANTS if variants is None else variants
    found: dict[str, list[Run]] = {title: [] for title in variants}
    deadline = time.perf_counter() + budget_s
    for _ in range(count):
        for title, scenario in variants.items():
            found[title].append(run_child(env, scratch, scenario))
        if time.perf_counter() > deadline:
            break
    return found


def _report(env: dict[str, str], scratch: Path, runs: int, budget_s: float) -> None:
    medians: dict[str, float] = {}
    minima: dict[str, float] = {}
    for title, found in run_interleaved(env, scratch, runs, budget_s).items():
        medians[title] = _median([r.to_decision_ms for r in found])
        minima[title] = min(r.to_decision_ms for r in found)
        print(f"{title} (.pyc present, moto on 127.0.0.1):")
        print("\n".join(phase_lines(found)) + "\n")
    traced = run_many(env, scratch, Scenario(flags=["-X", "importtime"]), IMPORTTIME_RUNS, budget_s)
    print(f"where import time goes (-X importtime, {len(traced)} runs; it adds its own overhead):")
    print("\n".join(importtime_lines(traced)) + "\n")
    no_pyc = Scenario(
        env={"PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": str(scratch / "no-pyc")}
    )
    cold = run_many(env, scratch, no_pyc, NO_PYC_RUNS, budget_s)
    print(f"without .pyc files (every module compiled as it is imported, {len(cold)} runs):")
    print(
        f"  spawn -> decision: median {_median([r.to_decision_ms for r in cold]):.1f} ms,"
        f" of which import app {_median([r.import_ms for r in cold]):.1f} ms\n"
    )
    baseline, fastest = medians["baseline"], minima["baseline"]
    status = "met" if baseline < TARGET_MS else "NOT met"
    print(
        f"target < {TARGET_MS:.0f} ms spawn -> decision: {status}"
        f" (median {baseline:.1f} ms, min {fastest:.1f} ms)"
    )
    for title, ms in medians.items():
        if title != "baseline":
            print(
                f"  {title}: median {ms:.1f} ms ({baseline - ms:.1f} less),"
                f" min {minima[title]:.1f} ms ({fastest - minima[title]:.1f} less)"
            )


def package_variants(zip_path: Path, scratch: Path) -> dict[str, Scenario]:
    """Unpack ``zip_path`` twice, as shipped and without its ``.pyc``; a scenario for each.

    The child is an interpreter of the Python version the package was built for
    (``scripts.package_lambda.find_python``). It runs in the unpacked folder, which comes first on
    its path (as ``/var/task`` does on Lambda) and writes no bytecode (``/var/task`` is
    read-only). What the package does not hold (boto3, which the Lambda runtime provides) comes
    after it, compiled by that interpreter (``scripts/lambda_task.py``).
    """
    from scripts.lambda_task import environment, runtime_dir, unpack, zip_python
    from scripts.package_lambda import find_python

    python = zip_python(zip_path)
    interpreter = find_python(python)
    folder = scratch / f"python{python}"
    runtime = runtime_dir(folder / "runtime", interpreter)
    variants: dict[str, Scenario] = {}
    for keep_pyc in (True, False):
        task = unpack(zip_path, folder / ("task-pyc" if keep_pyc else "task-no-pyc"), keep_pyc)
        title = f"python{python} package {'as shipped (.pyc)' if keep_pyc else 'without .pyc'}"
        variants[title] = Scenario(
            env=environment(task, runtime), cwd=task, interpreter=interpreter
        )
    return variants


def _report_package(
    env: dict[str, str], scratch: Path, zip_paths: list[Path], runs: int, budget_s: float
) -> None:
    variants = {t: v for z in zip_paths for t, v in package_variants(z, scratch).items()}
    found = run_interleaved(env, scratch, runs, budget_s, variants)
    for title, runs_of in found.items():
        print(f"{title} (moto on 127.0.0.1):")
        print("\n".join(phase_lines(runs_of)) + "\n")
    medians = {title: _median([r.to_decision_ms for r in f]) for title, f in found.items()}
    for title, shipped in medians.items():
        if title.endswith(" as shipped (.pyc)"):
            package = title.removesuffix(" as shipped (.pyc)")
            bare = medians[f"{package} without .pyc"]
            print(f"{package}: the .pyc save {bare - shipped:.1f} ms of spawn -> decision (median)")


if __name__ == "__main__":
    main()
