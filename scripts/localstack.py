"""The local stack: moto server (DynamoDB, SQS), ``chalice local``, and what they need.

Used by ``make dev`` (``scripts/dev.py``) and by the end-to-end tests, so that the tests run the
system exactly the way a developer does. Every process listens on 127.0.0.1 and is stopped with
its whole process group.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
REGION = "us-east-1"
TABLE = "sipline"
QUEUE = "sipline-commands"


def free_port() -> int:
    """Return a TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout_s: float, process: subprocess.Popen[bytes] | None = None) -> None:
    """Poll ``url`` until it answers (any HTTP status), or raise after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout_s}s")


@dataclass
class Credentials:
    """The local stack's secrets: kept in ``.dev/credentials.json`` so they survive restarts."""

    api_key: str
    webhook_secret: str
    password_key: str

    @classmethod
    def load_or_create(cls, path: Path) -> Credentials:
        if path.exists():
            return cls(**json.loads(path.read_text()))
        from cryptography.fernet import Fernet

        made = cls(
            api_key="sk_local_" + secrets.token_urlsafe(18),
            webhook_secret="whsec_local_" + secrets.token_urlsafe(24),
            password_key=Fernet.generate_key().decode(),
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(made.__dict__, indent=2))
        path.chmod(0o600)
        return made


@dataclass
class LocalStack:
    """moto server + ``chalice local``, configured for each other."""

    credentials: Credentials
    moto_port: int = 5000
    api_port: int = 8000
    media_endpoint: str = "ws://127.0.0.1:8765/agent"
    log_dir: Path = ROOT / ".dev" / "logs"
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    queue_url: str = ""

    @property
    def moto_url(self) -> str:
        return f"http://127.0.0.1:{self.moto_port}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def aws_environment(self) -> dict[str, str]:
        """What a boto3 client needs to talk to moto."""
        return {
            "AWS_ENDPOINT_URL": self.moto_url,
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_DEFAULT_REGION": REGION,
        }

    def environment(self) -> dict[str, str]:
        """The control plane's environment, as ``chalice local`` gets it."""
        return {
            **os.environ,
            **self.aws_environment(),
            "SIPLINE_TABLE": TABLE,
            "SIPLINE_COMMAND_QUEUE_URL": self.queue_url,
            "SIPLINE_API_KEYS": self.credentials.api_key,
            "SIPLINE_WEBHOOK_SECRET": self.credentials.webhook_secret,
            "SIPLINE_PASSWORD_KEY": self.credentials.password_key,
            "SIPLINE_DEFAULT_MEDIA_ENDPOINT": self.media_endpoint,
            "POWERTOOLS_TRACE_DISABLED": "1",
            "POWERTOOLS_METRICS_NAMESPACE": "sipline",
        }

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_dir / f"{name}.log", "wb")  # noqa: SIM115 - lives as long as the process
        process = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.processes.append(process)
        return process

    def start(self) -> None:
        """Start moto, create the table and the queue, then start ``chalice local``."""
        moto = self._spawn(
            "moto",
            [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.moto_port)],
            {**os.environ},
        )
        wait_http(f"{self.moto_url}/moto-api/", 20, moto)
        self._create_resources()
        chalice = self._spawn(
            "chalice",
            [
                str(BIN / "chalice"),
                "local",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.api_port),
                "--no-autoreload",
            ],
            self.environment(),
        )
        wait_http(f"{self.api_url}/health", 30, chalice)

    def _create_resources(self) -> None:
        import boto3

        from chalicelib.store.schema import create_table

        env = self.aws_environment()
        session = boto3.Session(
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            region_name=REGION,
        )
        create_table(session.client("dynamodb", endpoint_url=self.moto_url), TABLE)
        sqs = session.client("sqs", endpoint_url=self.moto_url)
        self.queue_url = sqs.create_queue(QueueName=QUEUE)["QueueUrl"]

    def stop(self) -> None:
        """Stop every process this stack started (its whole process group), newest first."""
        for process in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in reversed(self.processes):
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        self.processes.clear()
