"""SnapStart's snapshot and restore, reproduced with ``fork`` (chalicelib/snapstart.py).

A SnapStart restore starts an execution environment from a copy of the memory that the
function's initialization left; ``fork`` gives a child such a copy of its parent. So the parent
here initializes as Lambda does (``import app``), takes ``random``'s generator state as the
snapshot holds it, then forks two "restored environments". ``random`` reseeds itself in a forked
child (an ``os.register_at_fork`` hook, which a Firecracker restore does not run), so each child
first puts back the snapshot's state, then runs the after-restore hooks the way the Lambda runtime
runs them (each ``(func, args, kwargs)`` of ``snapshot_restore_py.get_after_restore()``, in
order) or not, and reports what the retry jitter of a DynamoDB table built then would draw (the
``jitter`` default of ``DynamoTable``, bound at import). Without the hooks both draw the same
sequence, the hazard AWS's uniqueness guidance describes; with them each draws its own.

Initialization itself must leave nothing that cannot be shared: a fresh interpreter in a network
namespace with no interface imports the app with every secret given by ARN, and holds no socket
and no services afterwards (they are built on the first request).
"""

from __future__ import annotations

import inspect
import json
import multiprocessing
import os
import random
import subprocess
import sys
from multiprocessing.queues import Queue
from pathlib import Path

import pytest
import snapshot_restore_py

import app  # noqa: F401  (initialization, as on Lambda: registers the hooks)
from chalicelib import snapstart
from chalicelib.store.dynamodb import DynamoTable

ROOT = Path(__file__).resolve().parents[3]
WAIT_S = 30.0
JITTER = inspect.signature(DynamoTable.__init__).parameters["jitter"].default


def _restored(snapshot: object, run_hooks: bool, results: Queue[list[float]]) -> None:
    random.setstate(snapshot)  # type: ignore[arg-type]  # what the snapshot's memory holds
    if run_hooks:
        for func, args, kwargs in snapshot_restore_py.get_after_restore():
            func(*args, **kwargs)
    results.put([JITTER() for _ in range(4)])


def _restore_twice(run_hooks: bool) -> list[list[float]]:
    context = multiprocessing.get_context("fork")
    results: Queue[list[float]] = context.Queue()
    snapshot = random.getstate()
    arguments = (snapshot, run_hooks, results)
    children = [context.Process(target=_restored, args=arguments) for _ in range(2)]
    for child in children:
        child.start()
    draws = [results.get(timeout=WAIT_S) for _ in children]
    for child in children:
        child.join(timeout=WAIT_S)
        assert child.exitcode == 0
    return draws


def test_importing_the_app_registers_the_reseed_hook() -> None:
    registered = [func for func, _, _ in snapshot_restore_py.get_after_restore()]
    assert snapstart.after_restore in registered


def test_two_environments_restored_from_one_snapshot_share_the_jitter_without_the_hook() -> None:
    first, second = _restore_twice(run_hooks=False)

    assert first == second


def test_after_the_restore_hooks_each_environment_draws_its_own_jitter() -> None:
    first, second = _restore_twice(run_hooks=True)

    assert first != second
    assert all(0.0 <= value < 1.0 for value in first + second)


def test_without_the_runtime_hook_library_nothing_is_registered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "snapshot_restore_py", None)  # its import now fails

    assert snapstart.register() is False


def test_initialization_opens_no_connection_and_reads_no_secret() -> None:
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:sipline/{}-AbCdEf"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AWS_DEFAULT_REGION": "us-east-1",
        "SIPLINE_TABLE": "sipline",
        "SIPLINE_COMMAND_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/q",
        "SIPLINE_API_KEYS_ARN": arn.format("api-keys"),
        "SIPLINE_WEBHOOK_SECRET_ARN": arn.format("webhook-secret"),
        "SIPLINE_KMS_KEY_ID": "arn:aws:kms:us-east-1:123456789012:key/1234abcd",
        "POWERTOOLS_TRACE_DISABLED": "1",
    }
    probe = """
import json, os
import app, chalicelib.runtime as runtime
links = []
for fd in os.listdir("/proc/self/fd"):
    try:
        links.append(os.readlink(f"/proc/self/fd/{fd}"))
    except FileNotFoundError:  # the listing's own descriptor, closed by now
        pass
sockets = [link for link in links if link.startswith("socket:")]
print(json.dumps({"sockets": sockets, "services": runtime._from_environment.cache_info().currsize}))
"""
    done = subprocess.run(
        ["unshare", "-n", sys.executable, "-c", probe],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"sockets": [], "services": 0}
