"""The local stack: moto server (DynamoDB, SQS), ``chalice local``, the reaper, and what they need.

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
from typing import Any

from chalicelib import api_keys
from chalicelib.commands import DEFAULT_EDGE_QUEUE_PREFIX

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
REGION = "us-east-1"
TABLE = "sipline"
QUEUE = "sipline-commands"
LOCAL_KEY_ID = "local"
"""The id of the local stack's API key, as the control plane's log lines name it."""
LOCAL_PRIVATE_TARGETS = "127.0.0.0/8,::1/128"
"""``SIPLINE_ALLOWED_PRIVATE_TARGETS`` of the local stack: its agents, fallback handlers and PBXs
listen on loopback, and nothing else inside the network is opened (docs/local.md)."""
DEAD_LETTER_QUEUE = "sipline-commands-dlq"
MAX_RECEIVE_COUNT = 5
"""The queue's redrive policy: a message received this often without being deleted moves to the
dead-letter queue (the relay's own poison limit is the same, docs/relay.md)."""
REAPER_EVERY_S = 15.0


def create_command_queues(sqs: Any, name: str = QUEUE) -> tuple[str, str]:
    """Create the command queue and its dead-letter queue (redrive policy); return both URLs."""
    dead_letters = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=dead_letters, AttributeNames=["QueueArn"])
    policy = {
        "deadLetterTargetArn": arn["Attributes"]["QueueArn"],
        "maxReceiveCount": str(MAX_RECEIVE_COUNT),
    }
    queue = sqs.create_queue(QueueName=name, Attributes={"RedrivePolicy": json.dumps(policy)})[
        "QueueUrl"
    ]
    return queue, dead_letters


def free_port() -> int:
    """Return a TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_free(port: int, what: str, variable: str) -> None:
    """Fail with a clear message when something already listens on 127.0.0.1:``port``."""
    with socket.socket() as sock:
        if sock.connect_ex(("127.0.0.1", port)) == 0:
            raise RuntimeError(
                f"port {port} ({what}) is in use: is another `make dev` running? "
                f"Stop it, or choose another port with {variable}=..."
            )


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


def wait_tcp(port: int, timeout_s: float, process: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until something accepts TCP connections on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s}s")


def sip_options(port: int, timeout_s: float = 0.5) -> bytes | None:
    """Send one OPTIONS over UDP to 127.0.0.1:``port``; return the response, or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        local = sock.getsockname()[1]
        request = (
            f"OPTIONS sip:ping@127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK{secrets.token_hex(6)};rport\r\n"
            f"From: <sip:probe@127.0.0.1>;tag={secrets.token_hex(4)}\r\n"
            f"To: <sip:ping@127.0.0.1>\r\nCall-ID: {secrets.token_hex(8)}@127.0.0.1\r\n"
            "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
        sock.settimeout(timeout_s)
        sock.sendto(request.encode(), ("127.0.0.1", port))
        try:
            return sock.recv(65535)
        except OSError:
            return None


def wait_sip(port: int, timeout_s: float, process: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until a SIP UDP listener on 127.0.0.1:``port`` answers OPTIONS."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        if sip_options(port) is not None:
            return
    raise TimeoutError(f"no SIP answer on udp 127.0.0.1:{port} after {timeout_s}s")


@dataclass
class Credentials:
    """The local stack's secrets: kept in ``.dev/credentials.json`` so they survive restarts.

    ``api_key`` is the plain key, for the developer (the file is theirs, mode 0600); the control
    plane is given only its SHA-256 (:meth:`LocalStack.environment`).
    """

    api_key: str
    webhook_secret: str
    password_key: str

    @classmethod
    def load_or_create(cls, path: Path) -> Credentials:
        if path.exists():
            return cls(**json.loads(path.read_text()))
        from cryptography.fernet import Fernet

        made = cls(
            api_key=api_keys.new_key("sk_local_"),
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
    media_endpoint: str = ""
    log_dir: Path = ROOT / ".dev" / "logs"
    state_dir: Path = ROOT / ".dev"
    sip_port: int = 5060
    tls_port: int = 5061
    rtp_ports: tuple[int, int] = (20000, 20999)
    agent_port: int = 8765
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    queue_url: str = ""
    dead_letter_queue_url: str = ""

    def __post_init__(self) -> None:
        if not self.media_endpoint:
            self.media_endpoint = f"ws://127.0.0.1:{self.agent_port}/agent"

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
            "SIPLINE_EDGE_QUEUE_PREFIX": DEFAULT_EDGE_QUEUE_PREFIX,
            "SIPLINE_API_KEYS": api_keys.entry(LOCAL_KEY_ID, "default", self.credentials.api_key),
            "SIPLINE_WEBHOOK_SECRET": self.credentials.webhook_secret,
            "SIPLINE_PASSWORD_KEY": self.credentials.password_key,
            "SIPLINE_DEFAULT_MEDIA_ENDPOINT": self.media_endpoint,
            "SIPLINE_ALLOWED_PRIVATE_TARGETS": LOCAL_PRIVATE_TARGETS,
            "SIPLINE_LOCAL": "1",
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
        if (weak := api_keys.weakness(self.credentials.api_key)) is not None:
            raise RuntimeError(
                f"the api_key of .dev/credentials.json is refused: {weak}."
                " Delete the file and `make dev` makes new credentials."
            )
        require_free(self.moto_port, "moto server", "SIPLINE_MOTO_PORT")
        require_free(self.api_port, "chalice local", "SIPLINE_API_PORT")
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

    def relay_environment(self) -> dict[str, str]:
        """The relay's environment: where the control plane and its queue are, where to listen."""
        from relay.transport.tls import ensure_self_signed

        cert, key = self.state_dir / "tls" / "relay.pem", self.state_dir / "tls" / "relay.key"
        ensure_self_signed(cert, key, ["localhost", "127.0.0.1"])
        return {
            **os.environ,
            **self.aws_environment(),
            "SIPLINE_CONTROL_URL": self.api_url,
            "SIPLINE_WEBHOOK_SECRET": self.credentials.webhook_secret,
            "SIPLINE_COMMAND_QUEUE_URL": self.queue_url,
            "SIPLINE_COMMAND_DLQ_URL": self.dead_letter_queue_url,
            "SIPLINE_EDGE_QUEUE_PREFIX": DEFAULT_EDGE_QUEUE_PREFIX,
            "SIPLINE_PASSWORD_KEY": self.credentials.password_key,
            "SIPLINE_SIP_HOST": "127.0.0.1",
            "SIPLINE_SIP_PORT": str(self.sip_port),
            "SIPLINE_TLS_PORT": str(self.tls_port),
            "SIPLINE_TLS_CERT": str(cert),
            "SIPLINE_TLS_KEY": str(key),
            "SIPLINE_RTP_PORTS": f"{self.rtp_ports[0]}-{self.rtp_ports[1]}",
            "SIPLINE_SPOOL_DIR": str(self.state_dir / "relay-spool"),
            "SIPLINE_ALLOWLIST_REFRESH_S": "1",
            "SIPLINE_ALLOWED_PRIVATE_TARGETS": LOCAL_PRIVATE_TARGETS,
        }

    def start_relay(self, overrides: dict[str, str] | None = None) -> None:
        """Start the SIP edge (``python -m relay``) and wait until it answers OPTIONS.

        ``overrides`` change its environment (``relay_environment``) for this start.
        """
        require_free(self.sip_port, "SIP edge", "SIPLINE_SIP_PORT")
        environment = {**self.relay_environment(), **(overrides or {})}
        relay = self._spawn("relay", [sys.executable, "-m", "relay"], environment)
        wait_sip(self.sip_port, 30, relay)

    def start_reaper(self, every_s: float = REAPER_EVERY_S) -> None:
        """Run the reaper's scheduled handler every ``every_s`` (``chalice local`` runs no schedules)."""
        self._spawn(
            "reaper",
            [sys.executable, "-m", "scripts.reaper", "--every", str(every_s)],
            self.environment(),
        )

    def start_demo_agent(self) -> None:
        """Start the demo agent (greets, then echoes) that the default media endpoint names."""
        require_free(self.agent_port, "demo agent", "SIPLINE_AGENT_PORT")
        agent = self._spawn(
            "demo-agent",
            [sys.executable, "-m", "relay.bridge.demo_agent", "--port", str(self.agent_port)],
            {**os.environ},
        )
        wait_tcp(self.agent_port, 20, agent)

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
        self.queue_url, self.dead_letter_queue_url = create_command_queues(sqs)

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
