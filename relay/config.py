"""Settings of the relay (the SIP edge), read once from the environment.

Every value has a default that runs the relay on one machine next to ``make dev``'s control plane
(``chalice local`` on 127.0.0.1:8000). Secrets arrive as plain variables: on ECS the task
definition injects them from Secrets Manager by ARN, so no secret value sits in the task
definition itself.

=============================== ====================================== ===========================
variable                        meaning                                default
=============================== ====================================== ===========================
SIPLINE_CONTROL_URL             control plane base URL                 http://127.0.0.1:8000
SIPLINE_WEBHOOK_SECRET          HMAC secret of the webhooks            "" (requests get 401)
SIPLINE_COMMAND_QUEUE_URL       SQS queue of edge commands             unset: no consumer
SIPLINE_COMMAND_DLQ_URL         where poison commands are moved        unset: logged and deleted
SIPLINE_EDGE_QUEUE_PREFIX       this relay's own command queue is      sipline-edge-
                                ``<prefix><edgeId>`` (with a command
                                queue only; docs/relay.md)
SIPLINE_PASSWORD_KEY            Fernet key for trunk passwords         unset
SIPLINE_KMS_KEY_ID              KMS key for trunk passwords (AWS)      unset
SIPLINE_SIP_HOST                SIP listen address (UDP, TCP, TLS)     127.0.0.1
SIPLINE_SIP_PORT                SIP UDP and TCP port                   5060
SIPLINE_TLS_PORT                SIP TLS port                           5061
SIPLINE_PUBLIC_ADDRESS          address advertised in Via/Contact/SDP  the listen address
                                (``ecs``: relay/ecs_identity.py)
SIPLINE_RTP_PORTS               RTP port range, ``low-high``           20000-20999
SIPLINE_TLS_CERT / _KEY         PEM certificate and key for TLS        unset: no TLS listener
SIPLINE_TLS_CERT_PEM / _KEY_PEM the same as PEM text (from a secret),  unset
                                written to ``<spool>/tls/`` (0600)
SIPLINE_TLS_CA_FILE             PEM CA certificates trusted for        unset: the system store
                                outgoing TLS, besides the system store only
SIPLINE_DECISION_TIMEOUT_S      bound on one INVITE webhook            4.0
SIPLINE_EVENTS_TIMEOUT_S        bound on one event batch post          10.0
SIPLINE_RETRY_AFTER_S           Retry-After of a 503 when down         5
SIPLINE_SPOOL_DIR               durable spool of undelivered events    .dev/relay-spool
SIPLINE_SPOOL_MAX_BYTES         spool size cap                         67108864 (64 MiB)
SIPLINE_ALLOWLIST_REFRESH_S     allowlist poll period                  15
SIPLINE_ALLOWLIST_MAX_AGE_S     age after which the guard fails open   120
SIPLINE_INVITE_RATE_PER_S       INVITEs per second per source          5
SIPLINE_INVITE_BURST            INVITEs at once per source             20
SIPLINE_EDGE_ID                 this edge task's id (in webhooks)      local-edge
                                (``ecs``: the ECS task id)
SIPLINE_ALLOWED_PRIVATE_TARGETS CIDRs agents may be in although not    "" (public addresses only)
                                public (chalicelib/egress.py)
SIPLINE_HEARTBEAT_S             heartbeat period                       15
SIPLINE_DNS_SERVERS             DNS servers, ``ip[:port]``, comma-sep. /etc/resolv.conf's
SIPLINE_DNS_TIMEOUT_S           bound on one DNS query                 2.0
SIPLINE_DNS_DEADLINE_S          bound on locating one SIP target       5.0
SIPLINE_RING_TIMEOUT_S          an outgoing call rings at most this    60 (at most 600)
                                long, then is cancelled
SIPLINE_REFER_TIMEOUT_S         a transfer's REFER without a final     60 (at most 600)
                                NOTIFY this long after it failed (408)
SIPLINE_WARM_DECISION_TIMEOUT_S a warm transfer's operator leg waits     120 (at most 600)
                                this long for the bot's outcome
SIPLINE_DRAIN_S                 after SIGTERM, calls may go on this    0: hang up at once
                                long (``relay/drain.py``)              (at most 3600)
SIPLINE_HEALTH_PORT             TCP port open while the relay takes    unset: none
                                calls (``relay/health_port.py``)
SIPLINE_MAX_CALLS               calls at once; beyond, 503 / dial      0: no cap
                                passed on
SIPLINE_METRICS                 ``emf``: a CloudWatch EMF line a       unset: none
                                minute on stdout (``relay/metrics.py``)
SIPLINE_STAGE                   the metrics' ``stage`` dimension       local
=============================== ====================================== ===========================
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from chalicelib.commands import DEFAULT_EDGE_QUEUE_PREFIX, valid_prefix
from chalicelib.egress import ALLOWANCE_VARIABLE, EgressPolicy
from relay.transport.dns import DnsSettings, parse_nameservers
from relay.transport.tls import write_pem_pair

TLS_FILES_DIRECTORY = "tls"
"""Where in the spool directory the PEM text of ``SIPLINE_TLS_CERT_PEM`` / ``_KEY_PEM`` is
written (private to the relay's user)."""
MAX_RING_S = 600.0
"""``SIPLINE_RING_TIMEOUT_S`` at most: ten minutes of ringing is more than any callee needs."""
MAX_REFER_S = 600.0
"""``SIPLINE_REFER_TIMEOUT_S`` at most: the transferee's INVITE to the target rings at most so long."""
MAX_WARM_DECISION_S = 600.0
"""``SIPLINE_WARM_DECISION_TIMEOUT_S`` at most: a briefing longer than ten minutes holds the caller
(on hold music) and bills two legs for a transfer nobody is deciding."""
MAX_DRAIN_S = 3600.0
"""``SIPLINE_DRAIN_S`` at most: an hour; ECS stops a task 120 s after SIGTERM at most anyway."""
METRICS_CHOICES = ("emf",)


class RelayConfigError(ValueError):
    """A variable of the relay's environment does not parse; the message names it."""


@dataclass(frozen=True)
class RelaySettings:
    """Everything the relay is configured with (see the module docstring for the variables)."""

    control_url: str = "http://127.0.0.1:8000"
    webhook_secret: str = field(default="", repr=False)  # a secret: never in a repr or log
    command_queue_url: str | None = None
    command_dead_letter_queue_url: str | None = None
    edge_queue_prefix: str = DEFAULT_EDGE_QUEUE_PREFIX
    password_key: str | None = field(default=None, repr=False)  # a secret, as above
    kms_key_id: str | None = None
    sip_host: str = "127.0.0.1"
    sip_port: int = 5060
    tls_port: int = 5061
    public_address: str | None = None
    rtp_port_min: int = 20000
    rtp_port_max: int = 20999
    tls_cert_path: Path | None = None
    tls_key_path: Path | None = None
    tls_ca_file: Path | None = None
    decision_timeout_s: float = 4.0
    events_timeout_s: float = 10.0
    retry_after_s: int = 5
    spool_dir: Path = Path(".dev/relay-spool")
    spool_max_bytes: int = 64 * 1024 * 1024
    allowlist_refresh_s: float = 15.0
    allowlist_max_age_s: float = 120.0
    invite_rate_per_s: float = 5.0
    invite_burst: int = 20
    edge_id: str = "local-edge"
    egress: EgressPolicy = field(default_factory=EgressPolicy)
    heartbeat_s: float = 15.0
    dns: DnsSettings = field(default_factory=DnsSettings)
    ring_timeout_s: float = 60.0
    refer_timeout_s: float = 60.0
    warm_decision_timeout_s: float = 120.0
    drain_s: float = 0.0
    health_port: int | None = None
    max_calls: int = 0
    metrics: str | None = None
    stage: str = "local"

    @property
    def advertised_address(self) -> str:
        """Return the address to put in Via, Contact and SDP: the public one, else the listen one."""
        return self.public_address or self.sip_host

    @property
    def tls_enabled(self) -> bool:
        """Return True when a certificate and a key are configured."""
        return self.tls_cert_path is not None and self.tls_key_path is not None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RelaySettings:
        """Build the settings from ``env`` (default: ``os.environ``).

        Raises:
            RelayConfigError: a variable is malformed (the message names it and its value).
        """
        env = os.environ if env is None else env
        reader = _Reader(env)
        rtp_low, rtp_high = reader.port_range("SIPLINE_RTP_PORTS", (20000, 20999))
        spool_dir = reader.path("SIPLINE_SPOOL_DIR") or cls.spool_dir
        cert, key = reader.tls_files(spool_dir / TLS_FILES_DIRECTORY)
        return cls(
            control_url=reader.text("SIPLINE_CONTROL_URL", cls.control_url).rstrip("/"),
            webhook_secret=reader.text("SIPLINE_WEBHOOK_SECRET", ""),
            command_queue_url=reader.optional("SIPLINE_COMMAND_QUEUE_URL"),
            command_dead_letter_queue_url=reader.optional("SIPLINE_COMMAND_DLQ_URL"),
            edge_queue_prefix=reader.queue_prefix("SIPLINE_EDGE_QUEUE_PREFIX"),
            password_key=reader.optional("SIPLINE_PASSWORD_KEY"),
            kms_key_id=reader.optional("SIPLINE_KMS_KEY_ID"),
            sip_host=reader.text("SIPLINE_SIP_HOST", cls.sip_host),
            sip_port=reader.port("SIPLINE_SIP_PORT", cls.sip_port),
            tls_port=reader.port("SIPLINE_TLS_PORT", cls.tls_port),
            public_address=reader.optional("SIPLINE_PUBLIC_ADDRESS"),
            rtp_port_min=rtp_low,
            rtp_port_max=rtp_high,
            tls_cert_path=cert,
            tls_key_path=key,
            tls_ca_file=reader.ca_file("SIPLINE_TLS_CA_FILE"),
            decision_timeout_s=reader.positive("SIPLINE_DECISION_TIMEOUT_S", 4.0),
            events_timeout_s=reader.positive("SIPLINE_EVENTS_TIMEOUT_S", 10.0),
            retry_after_s=int(reader.positive("SIPLINE_RETRY_AFTER_S", 5)),
            spool_dir=spool_dir,
            spool_max_bytes=int(reader.positive("SIPLINE_SPOOL_MAX_BYTES", cls.spool_max_bytes)),
            allowlist_refresh_s=reader.positive("SIPLINE_ALLOWLIST_REFRESH_S", 15.0),
            allowlist_max_age_s=reader.positive("SIPLINE_ALLOWLIST_MAX_AGE_S", 120.0),
            invite_rate_per_s=reader.positive("SIPLINE_INVITE_RATE_PER_S", cls.invite_rate_per_s),
            invite_burst=reader.whole("SIPLINE_INVITE_BURST", cls.invite_burst),
            edge_id=reader.text("SIPLINE_EDGE_ID", cls.edge_id),
            egress=reader.egress(ALLOWANCE_VARIABLE),
            heartbeat_s=reader.positive("SIPLINE_HEARTBEAT_S", cls.heartbeat_s),
            dns=reader.dns(),
            ring_timeout_s=reader.positive("SIPLINE_RING_TIMEOUT_S", 60.0, at_most=MAX_RING_S),
            refer_timeout_s=reader.positive("SIPLINE_REFER_TIMEOUT_S", 60.0, at_most=MAX_REFER_S),
            warm_decision_timeout_s=reader.positive(
                "SIPLINE_WARM_DECISION_TIMEOUT_S", 120.0, at_most=MAX_WARM_DECISION_S
            ),
            drain_s=reader.at_least_zero("SIPLINE_DRAIN_S", at_most=MAX_DRAIN_S),
            health_port=reader.health_port(),
            max_calls=int(reader.at_least_zero("SIPLINE_MAX_CALLS", whole=True)),
            metrics=reader.choice("SIPLINE_METRICS", METRICS_CHOICES),
            stage=reader.text("SIPLINE_STAGE", cls.stage),
        )


class _Reader:
    """Typed reads of environment variables with error messages that name the variable."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def optional(self, name: str) -> str | None:
        value = self._env.get(name, "").strip()
        return value or None

    def text(self, name: str, default: str) -> str:
        return self.optional(name) or default

    def queue_prefix(self, name: str) -> str:
        raw = self.optional(name)
        if raw is None:
            return DEFAULT_EDGE_QUEUE_PREFIX
        if not valid_prefix(raw):
            raise RelayConfigError(f"{name} must be 1 to 40 of A-Z a-z 0-9 _ - (got {raw!r})")
        return raw

    def path(self, name: str) -> Path | None:
        value = self.optional(name)
        return Path(value) if value else None

    def tls_files(self, pem_directory: Path) -> tuple[Path | None, Path | None]:
        """``SIPLINE_TLS_CERT``/``_KEY`` (files), or ``_CERT_PEM``/``_KEY_PEM`` (text), not both.

        The text is written to files in ``pem_directory`` and loaded (``write_pem_pair``); it
        never reaches a message.
        """
        cert, key = self.path("SIPLINE_TLS_CERT"), self.path("SIPLINE_TLS_KEY")
        cert_pem, key_pem = (
            self.optional("SIPLINE_TLS_CERT_PEM"),
            self.optional("SIPLINE_TLS_KEY_PEM"),
        )
        if (cert or key) and (cert_pem or key_pem):
            raise RelayConfigError(
                "SIPLINE_TLS_CERT/_KEY and SIPLINE_TLS_CERT_PEM/_KEY_PEM both give the TLS "
                "certificate: set one pair, not both"
            )
        if cert_pem is None and key_pem is None:
            if (cert is None) != (key is None):
                raise RelayConfigError("SIPLINE_TLS_CERT and SIPLINE_TLS_KEY must be set together")
            return cert, key
        if cert_pem is None or key_pem is None:
            raise RelayConfigError(
                "SIPLINE_TLS_CERT_PEM and SIPLINE_TLS_KEY_PEM must be set together"
            )
        try:
            return write_pem_pair(pem_directory, cert_pem, key_pem)
        except (OSError, ValueError) as error:
            raise RelayConfigError(f"SIPLINE_TLS_CERT_PEM/_KEY_PEM: {error}") from None

    def ca_file(self, name: str) -> Path | None:
        """A PEM bundle, loaded once here so that a bad one stops the relay at start."""
        path = self.path(name)
        if path is not None:
            try:
                ssl.create_default_context(cafile=path)
            except (OSError, ValueError) as error:  # ssl.SSLError is an OSError
                message = f"{name}: cannot load CA certificates from {path}: {error}"
                raise RelayConfigError(message) from None
        return path

    def positive(self, name: str, default: float, *, at_most: float | None = None) -> float:
        raw = self.optional(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise RelayConfigError(f"{name} must be a number (got {raw!r})") from None
        if not value > 0:
            raise RelayConfigError(f"{name} must be positive (got {raw!r})")
        if at_most is not None and not value <= at_most:
            raise RelayConfigError(f"{name} must be at most {at_most:g} (got {raw!r})")
        return value

    def whole(self, name: str, default: int) -> int:
        raw = self.optional(name)
        if raw is None:
            return default
        if not raw.isdigit() or int(raw) < 1:
            raise RelayConfigError(f"{name} must be a whole number from 1 (got {raw!r})")
        return int(raw)

    def at_least_zero(self, name: str, *, at_most: float = 1e9, whole: bool = False) -> float:
        """A number from 0 (0: the feature is off), at most ``at_most``."""
        raw = self.optional(name)
        if raw is None:
            return 0.0
        kind = "a whole number" if whole else "a number"
        try:
            value = int(raw) if whole else float(raw)
        except ValueError:
            raise RelayConfigError(f"{name} must be {kind} from 0 (got {raw!r})") from None
        if not 0 <= value <= at_most:
            raise RelayConfigError(f"{name} must be from 0 to {at_most:g} (got {raw!r})")
        return float(value)

    def choice(self, name: str, choices: tuple[str, ...]) -> str | None:
        raw = self.optional(name)
        if raw is not None and raw not in choices:
            raise RelayConfigError(
                f"{name} must be unset or one of {', '.join(choices)} (got {raw!r})"
            )
        return raw

    def health_port(self) -> int | None:
        """``SIPLINE_HEALTH_PORT``: not the SIP TCP or TLS port (both listen on TCP)."""
        raw = self.optional("SIPLINE_HEALTH_PORT")
        if raw is None:
            return None
        port = _port("SIPLINE_HEALTH_PORT", raw)
        taken = {self.port("SIPLINE_SIP_PORT", 5060), self.port("SIPLINE_TLS_PORT", 5061)}
        if port in taken:
            raise RelayConfigError(
                f"SIPLINE_HEALTH_PORT must differ from the SIP and TLS ports (got {raw!r})"
            )
        return port

    def egress(self, name: str) -> EgressPolicy:
        try:
            return EgressPolicy.from_setting(self.optional(name) or "")
        except ValueError as error:
            raise RelayConfigError(str(error)) from None

    def dns(self) -> DnsSettings:
        try:
            servers = parse_nameservers(self.optional("SIPLINE_DNS_SERVERS") or "")
        except ValueError as error:
            raise RelayConfigError(f"SIPLINE_DNS_SERVERS: {error}") from None
        default = DnsSettings()
        return DnsSettings(
            nameservers=servers,
            timeout_s=self.positive("SIPLINE_DNS_TIMEOUT_S", default.timeout_s),
            deadline_s=self.positive("SIPLINE_DNS_DEADLINE_S", default.deadline_s),
        )

    def port(self, name: str, default: int) -> int:
        raw = self.optional(name)
        return default if raw is None else _port(name, raw)

    def port_range(self, name: str, default: tuple[int, int]) -> tuple[int, int]:
        raw = self.optional(name)
        if raw is None:
            return default
        low, sep, high = raw.partition("-")
        if not sep:
            raise RelayConfigError(f"{name} must look like 20000-20999 (got {raw!r})")
        first, last = _port(name, low.strip()), _port(name, high.strip())
        if first > last:
            raise RelayConfigError(f"{name} must go from low to high (got {raw!r})")
        return first, last


def _port(name: str, raw: str) -> int:
    if not raw.isdigit() or not 0 < int(raw) <= 65535:
        raise RelayConfigError(f"{name} must be a port from 1 to 65535 (got {raw!r})")
    return int(raw)
