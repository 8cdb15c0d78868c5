"""One stage's settings, read from CDK context: ``cdk deploy -c stage=prod -c sip_domain=...``.

Every knob of the deployment is a field of :class:`StageConfig`; the constructs read nothing else.
A value comes from the command line (``-c key=value``, always a string), from ``cdk.json``'s
``context`` (a JSON value), or from the stage's default below, in that order of precedence (CDK
merges the first two). A malformed value stops the synth with :class:`ConfigError` naming the
context key, before any resource is defined. docs/deployment.md ("The CDK app") lists the keys.

Stages: any short lower-case name; ``prod`` changes the defaults that protect data and capacity
(``removal_retain``, ``max_relays``), every other stage gets the ``dev`` defaults. The stage is in
every physical name (``sipline-<stage>-...``, :meth:`StageConfig.name`), so several stages can
share one account and region.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[2]
"""The repository (``infra/``'s parent): the Chalice project the Lambda package is built from."""

LOG_RETENTION_DAYS = frozenset(
    {0, 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557}
    | {2922, 3288, 3653}
)
"""What CloudWatch Logs accepts as a retention (0 here = never expire)."""

STAGE = re.compile(r"[a-z][a-z0-9]{0,11}")
"""Short enough that ``sipline-<stage>-edge-`` stays within the relays' 40-character queue-name
prefix (``chalicelib/commands.py``) and every function name within Lambda's 64."""

T = TypeVar("T")


class ConfigError(ValueError):
    """A context value is malformed; the message names the key."""


@dataclass(frozen=True)
class StageConfig:
    """The settings of one stage (one stack, ``Sipline-<stage>``)."""

    stage: str = "dev"
    removal_retain: bool = False
    """RETAIN the table and the password key when the stack is deleted (default: ``prod`` only)."""
    deletion_protection: bool = True
    """DynamoDB deletion protection on the table (every stage: turn it off to delete a dev stack)."""
    sip_domain: str | None = None
    """The SIP domain accounts' addresses live under; unset = the NLB's DNS name (Edge)."""
    rtp_port_range: tuple[int, int] = (20000, 20999)
    relay_cpu: int = 1024
    relay_memory: int = 2048
    min_relays: int = 2
    max_relays: int = 10
    target_calls_per_relay: int = 100
    drain_seconds: int = 100
    tls_secret_arn: str | None = None
    carrier_cidrs: tuple[str, ...] = ("0.0.0.0/0",)
    alarm_email: str | None = None
    snap_start: bool = False
    """Lambda SnapStart on the API function: a published version and an alias behind API Gateway."""
    tracing: bool = False
    """X-Ray on the functions and the API stage (off: it costs cold-start time, docs/deployment.md)."""
    lambda_package_dir: Path | None = None
    """A directory holding ``deployment.zip`` and ``sam.json`` from ``scripts/package_lambda.py``;
    unset = the app packages the control plane itself into ``infra/build/lambda-<stage>``."""
    wheelhouse: Path | None = None
    """Package from these wheels only (offline), as ``scripts/package_lambda.py --wheelhouse``."""
    api_reserved_concurrency: int | None = None
    """Concurrent executions reserved for (and capping) the API function. Unset by default: a new
    account's quota is 10 and Lambda refuses a reservation that leaves fewer than 10 unreserved."""
    api_throttle_rate: int = 200
    """API Gateway stage throttling, requests per second (steady), over all clients."""
    api_throttle_burst: int = 400
    log_retention_days: int = 30
    max_concurrent_calls: int = 50
    """Calls one account may have up at once (``SIPLINE_MAX_CONCURRENT_CALLS``, docs/api.md): beyond
    it an incoming INVITE gets 503 and an outgoing call 429. The control plane's own default."""
    """The functions' and the API's access logs (CloudWatch retention; 0 = keep forever)."""

    def name(self, suffix: str) -> str:
        """The physical name of a resource of this stage: ``sipline-<stage>-<suffix>``."""
        return f"sipline-{self.stage}-{suffix}"

    @classmethod
    def from_context(cls, get: Callable[[str], Any]) -> StageConfig:
        """Read every field from ``get(key)`` (``node.try_get_context``); None = default."""
        stage = _text(get, "stage") or "dev"
        if not STAGE.fullmatch(stage):
            raise ConfigError(
                f"context stage: 1-12 lower-case letters and digits, starting with a letter"
                f" (got {stage!r})"
            )
        prod = stage == "prod"
        first, last = _value(get, "rtp_port_range", _port_range, (20000, 20999))
        min_relays = _value(get, "min_relays", _count, 2)
        max_relays = _value(get, "max_relays", _count, 20 if prod else 10)
        if max_relays < min_relays:
            raise ConfigError(
                f"context max_relays ({max_relays}) is below min_relays ({min_relays})"
            )
        return cls(
            stage=stage,
            removal_retain=_value(get, "removal_retain", _flag, prod),
            deletion_protection=_value(get, "deletion_protection", _flag, True),
            sip_domain=_text(get, "sip_domain"),
            rtp_port_range=(first, last),
            relay_cpu=_value(get, "relay_cpu", _count, 1024),
            relay_memory=_value(get, "relay_memory", _count, 2048),
            min_relays=min_relays,
            max_relays=max_relays,
            target_calls_per_relay=_value(get, "target_calls_per_relay", _count, 100),
            drain_seconds=_value(get, "drain_seconds", _count, 100),
            tls_secret_arn=_text(get, "tls_secret_arn"),
            carrier_cidrs=_value(get, "carrier_cidrs", _words, ("0.0.0.0/0",)),
            alarm_email=_text(get, "alarm_email"),
            snap_start=_value(get, "snap_start", _flag, False),
            tracing=_value(get, "tracing", _flag, False),
            lambda_package_dir=_value(get, "package_dir", _path, None),
            wheelhouse=_value(get, "wheelhouse", _path, None),
            api_reserved_concurrency=_value(get, "api_reserved_concurrency", _count, None),
            api_throttle_rate=_value(get, "api_throttle_rate", _count, 200),
            api_throttle_burst=_value(get, "api_throttle_burst", _count, 400),
            log_retention_days=_value(get, "log_retention_days", _retention, 30),
            max_concurrent_calls=_value(get, "max_concurrent_calls", _count, 50),
        )


def _text(get: Callable[[str], Any], key: str) -> str | None:
    raw = get(key)
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str):
        raise ConfigError(f"context {key}: expected a string (got {raw!r})")
    return raw


def _value(get: Callable[[str], Any], key: str, parse: Callable[[Any], T], default: T) -> T:
    raw = get(key)
    if raw is None or raw == "":
        return default
    try:
        return parse(raw)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"context {key}: {error} (got {raw!r})") from None


def _flag(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    raise ValueError("expected true or false")


def _whole(raw: Any) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int | str) or not str(raw).isdigit():
        raise ValueError("expected a whole number")
    return int(raw)


def _retention(raw: Any) -> int:
    value = _whole(raw)
    if value not in LOG_RETENTION_DAYS:
        raise ValueError(f"expected one of {', '.join(map(str, sorted(LOG_RETENTION_DAYS)))}")
    return value


def _count(raw: Any) -> int:
    value = _whole(raw)
    if value < 1:
        raise ValueError("expected a whole number from 1")
    return value


def _words(raw: Any) -> tuple[str, ...]:
    items = raw if isinstance(raw, list) else str(raw).split(",")
    words = tuple(str(item).strip() for item in items if str(item).strip())
    if not words:
        raise ValueError("expected at least one value")
    return words


def _port_range(raw: Any) -> tuple[int, int]:
    first, sep, last = str(raw).partition("-")
    if not (sep and first.isdigit() and last.isdigit()):
        raise ValueError("expected FIRST-LAST, e.g. 20000-20999")
    low, high = int(first), int(last)
    if not 1024 <= low < high <= 65535:
        raise ValueError("expected 1024 <= FIRST < LAST <= 65535")
    return low, high


def _path(raw: Any) -> Path:
    if not isinstance(raw, str):
        raise ValueError("expected a path")
    return Path(raw).expanduser().resolve()
