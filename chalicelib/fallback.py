"""The fallback handler: asked what to do with an INVITE that no routing rule matched.

sipline POSTs a signed JSON body (``docs/webhooks.md`` shows it; the model is
:class:`FallbackRequest`) and expects either ``{"startAgentCall": {"agentId", "templateContext"}}``
or ``{"reject": {"sipRejectCode", "message"}}``. Anything else, a non-2xx status (a redirect is
not followed), a timeout, or a URL whose host is not a public address (``chalicelib/egress.py``)
is a failure, and the caller is rejected with 480.
"""

from __future__ import annotations

import http.client
import json
import ssl
import time
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from chalicelib import pinned_http, signing
from chalicelib.egress import EgressPolicy, Resolver, TargetRefused, system_resolver
from chalicelib.errors import FallbackFailed

MAX_RESPONSE_BYTES = 64 * 1024


class _Lenient(BaseModel):
    """Third-party shapes: camelCase, unknown fields ignored."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)


class FallbackRequest(_Lenient):
    """What sipline sends to the fallback handler."""

    event: str = "sip.invite.unrouted"
    sip_call_id: str = Field(alias="sipCallId")
    source_ip: str = Field(alias="sourceIp")
    transport: str
    request_uri: str = Field(alias="requestUri")
    from_uri: str = Field(alias="fromUri")
    from_display_name: str | None = Field(alias="fromDisplayName")
    caller_id: str = Field(alias="callerId")
    to_uri: str = Field(alias="toUri")
    to_user: str = Field(alias="toUser")
    headers: list[tuple[str, str]]
    template_context: dict[str, Any] = Field(alias="templateContext")


class StartAgentCall(_Lenient):
    agent_id: str = Field(alias="agentId", min_length=1)
    template_context: dict[str, Any] = Field(default_factory=dict, alias="templateContext")


class Reject(_Lenient):
    sip_reject_code: int = Field(alias="sipRejectCode", ge=400, le=699)
    message: str = ""


class FallbackAnswer(_Lenient):
    """The fallback handler's answer: exactly one of ``startAgentCall`` and ``reject``."""

    start_agent_call: StartAgentCall | None = Field(default=None, alias="startAgentCall")
    reject: Reject | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> FallbackAnswer:
        if (self.start_agent_call is None) == (self.reject is None):
            raise ValueError("answer with exactly one of startAgentCall and reject")
        return self


class FallbackClient(Protocol):
    """Asks a fallback handler what to do."""

    def ask(self, url: str, secrets: list[str], request: FallbackRequest) -> FallbackAnswer: ...


class HttpFallbackClient:
    """Asks over HTTP(S) with a signed POST and a bounded timeout, to a checked address only."""

    def __init__(
        self,
        timeout_s: float,
        *,
        egress: EgressPolicy,
        resolve: Resolver = system_resolver,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """Args:
        egress: where the handler may be (the deployment's ``Settings.egress``).
        resolve: DNS (tests inject one).
        tls: the TLS context of https handlers (default: the system's trust store).
        """
        self._timeout_s = timeout_s
        self._egress = egress
        self._resolve = resolve
        self._tls = tls

    def ask(self, url: str, secrets: list[str], request: FallbackRequest) -> FallbackAnswer:
        body = json.dumps(request.model_dump(mode="json", by_alias=True)).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "sipline-fallback/1"}
        if secrets:  # one v1= signature per secret, so the handler can rotate them
            timestamp = int(time.time())
            signed = [signing.sign_body(secret, timestamp, body) for secret in secrets]
            headers[signing.TIMESTAMP_HEADER] = str(timestamp)
            headers[signing.SIGNATURE_HEADER] = ",".join(
                h[signing.SIGNATURE_HEADER] for h in signed
            )
        try:
            answer = pinned_http.post(
                url,
                body,
                headers,
                timeout_s=self._timeout_s,
                egress=self._egress,
                max_bytes=MAX_RESPONSE_BYTES,
                resolve=self._resolve,
                tls=self._tls,
            )
        except TargetRefused as refused:
            raise FallbackFailed(f"fallback handler refused: {refused}") from None
        except (OSError, http.client.HTTPException, ValueError) as error:
            raise FallbackFailed(f"fallback handler unreachable: {error}") from None
        if not 200 <= answer.status < 300:
            redirect = " (redirects are not followed)" if 300 <= answer.status < 400 else ""
            raise FallbackFailed(f"fallback handler answered HTTP {answer.status}{redirect}")
        raw = answer.body
        if len(raw) > MAX_RESPONSE_BYTES:
            raise FallbackFailed("fallback handler answer is too large")
        try:
            return FallbackAnswer.model_validate_json(raw)
        except ValidationError as error:
            first = error.errors()[0]
            raise FallbackFailed(f"fallback handler answered badly: {first['msg']}") from None
