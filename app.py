"""sipline's control plane: Chalice routes only. Parse, call one chalicelib function, map errors.

Every ``/api`` route needs an ``X-API-Key``; the ``/webhooks/sip`` routes need the edge's HMAC
signature instead. Domain errors are mapped to responses in one place, :func:`_error_response`.

Size: over 400 lines by Chalice's design: every route of the Lambda is registered in this one
module, and most lines are decorators and thin handlers.
"""

from __future__ import annotations

import gc

gc.disable()  # no collections while importing: the objects built now live as long as the process

import base64
import functools
import time
from collections.abc import Callable
from datetime import date
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlencode

from chalice.app import Chalice, CloudWatchEvent, Rate, Request, Response
from pydantic import BaseModel, ValidationError

from chalicelib import (
    agents,
    calls,
    command_routing,
    events,
    invites,
    reaper,
    registrations,
    sip_config,
    snapstart,
    transfer_requests,
    twilio_compat,
)
from chalicelib.api_keys import authenticate
from chalicelib.call_models import AgentCallCreate, Call, CallCreate
from chalicelib.contracts import (
    CallEventBatch,
    DialClaim,
    EdgeHeartbeat,
    InviteRejected,
    InviteWebhook,
    dump,
)
from chalicelib.errors import DomainError, InvalidInput, PayloadTooLarge, Unauthorized
from chalicelib.models import (
    AgentFields,
    AgentPatch,
    RegistrationFields,
    RegistrationPatch,
    SipConfigPatch,
)
from chalicelib.observability import count, flush, logger, tracer
from chalicelib.request_size import check_body_size
from chalicelib.runtime import services
from chalicelib.signing import SignatureError, verify
from chalicelib.store.paging import MAX_PAGE_SIZE, PageRequest, PageResult
from chalicelib.transfer_requests import TransferCreate, TransferOutcome
from chalicelib.transfers import TransferAsk
from chalicelib.twiml import TwimlRefused
from chalicelib.validation import invalid_input

app = Chalice(app_name="sipline")
REAPER_BUDGET_S = 45.0
"""The reaper stops taking calls after this long (its Lambda times out at 60 s)."""
TWILIO_PREFIX = "/2010-04-01/"
M = TypeVar("M", bound=BaseModel)
Handler = Callable[..., Any]


# --- plumbing --------------------------------------------------------------------------------


def _error_response(error: DomainError) -> Response:
    """The one place where domain errors become HTTP responses."""
    body: dict[str, Any] = {"code": error.code, "detail": error.message}
    if isinstance(error, InvalidInput):
        body["field"] = error.field
    headers: dict[str, str | list[str]] = {}
    if error.retry_after_s is not None:
        headers["Retry-After"] = str(error.retry_after_s)
    return Response(body=body, status_code=error.http_status, headers=headers)


def _request() -> Request:
    request = app.current_request
    assert request is not None, "only called while a request is handled"
    return request


def _body(model: type[M]) -> M:
    raw = _request().raw_body or b"{}"
    try:
        return model.model_validate_json(raw)
    except ValidationError as error:
        raise invalid_input(error) from None


def _account() -> str:
    presented = _request().headers.get("x-api-key", "")
    key = authenticate(services().settings.api_keys, presented) if presented else None
    if key is None:
        raise Unauthorized("missing or unknown X-API-Key")
    logger.append_keys(account_id=key.account_id, key_id=key.key_id)
    return key.account_id


def api(status: int = 200) -> Callable[[Handler], Handler]:
    """Authenticate by API key, pass the account, and map domain errors to responses."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        def wrapped(**params: str) -> Response:
            try:
                result = handler(_account(), **params)
            except DomainError as error:
                return _error_response(error)
            if status == 204:
                return Response(body="", status_code=204)
            return Response(body=result, status_code=status)

        return wrapped

    return decorate


def _call_of_request(call_id: str) -> Call:
    """The call a request may act on: by the account's API key, or by the call's own Twilio-style
    Basic credentials (a bot acting on its call, ``chalicelib/transfer_requests.py``)."""
    request = _request()
    if request.headers.get("x-api-key"):
        return calls.get_call(services(), _account(), call_id)
    user, token = _basic_auth(request.headers.get("authorization", ""))
    if not user:
        raise Unauthorized("missing X-API-Key, or HTTP Basic AccountSid:AuthToken of the call")
    logger.append_keys(call_id=call_id)
    return transfer_requests.call_of_bot(services(), call_id, user, token)


def call_api(status: int = 200) -> Callable[[Handler], Handler]:
    """Like :func:`api`, for routes on one call that its bot may use too: pass the call."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        def wrapped(call_id: str, **params: str) -> Response:
            try:
                result = handler(_call_of_request(call_id), **params)
            except DomainError as error:
                return _error_response(error)
            return Response(body=result, status_code=status)

        return wrapped

    return decorate


def _page_request() -> PageRequest:
    raw = _query("pageSize") or str(MAX_PAGE_SIZE)
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE_SIZE:
        raise InvalidInput(
            "pageSize", f"must be an integer from 1 to {MAX_PAGE_SIZE} (got {raw!r})"
        )
    return PageRequest(cursor=_query("cursor") or None, page_size=int(raw))


def _page_url(cursor: str | None) -> str | None:
    if cursor is None:
        return None
    request = _request()
    query = request.query_params
    params: list[tuple[str, str]] = []
    if query is not None:  # every value of a repeated parameter (agentIds=a&agentIds=b)
        params = [(k, v) for k in query if k != "cursor" for v in query.getlist(k)]
    scheme = request.headers.get("x-forwarded-proto", "http")
    host = request.headers.get("host", "localhost")
    path = request.context.get("path", request.path)
    return f"{scheme}://{host}{path}?{urlencode([*params, ('cursor', cursor)])}"


def _paged(page: PageResult[Any], view: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    return {
        "next": _page_url(page.next_cursor),
        "previous": _page_url(page.previous_cursor),
        "results": [view(item) for item in page.results],
        "total": page.total,
    }


def _query(name: str) -> str | None:
    params = _request().query_params
    return None if params is None else params.get(name)


def _date(name: str) -> date | None:
    raw = _query(name)
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise InvalidInput(name, f"must be a date like 2026-11-25 (got {raw!r})") from None


@app.middleware("http")
def _observe(event: Any, get_response: Callable[[Any], Response]) -> Response:
    logger.append_keys(path=event.path, method=event.method)
    try:
        check_body_size(event.path, len(event.raw_body or b""))  # 413 before any parsing
        return get_response(event)
    except PayloadTooLarge as error:
        logger.warning("request refused", extra={"reason": error.message})
        count("RequestTooLarge")
        if event.path.startswith(TWILIO_PREFIX):  # stock Twilio clients read Twilio's shape
            return _twilio_error(error.http_status, 20001, error.message)
        return _error_response(error)
    finally:
        flush()
        logger.remove_keys(["path", "method", "account_id", "key_id", "call_id", "agent_id"])


# --- /api/sip --------------------------------------------------------------------------------


@app.route("/api/sip", methods=["GET"])
@api()
def get_sip(account: str) -> dict[str, Any]:
    return sip_config.get_sip_config(services(), account)


@app.route("/api/sip", methods=["PATCH"], content_types=["application/json"])
@api()
def patch_sip(account: str) -> dict[str, Any]:
    return sip_config.patch_sip_config(services(), account, _body(SipConfigPatch))


@app.route("/api/sip/registrations", methods=["POST"], content_types=["application/json"])
@api(201)
def create_registration(account: str) -> dict[str, Any]:
    fields = _body(RegistrationFields)
    return registrations.create_registration(services(), account, fields).view()


@app.route("/api/sip/registrations", methods=["GET"])
@api()
def list_registrations(account: str) -> dict[str, Any]:
    page = registrations.list_registrations(services(), account, _page_request())
    return _paged(page, lambda r: r.view())


@app.route("/api/sip/registrations/{registration_id}", methods=["GET"])
@api()
def get_registration(account: str, registration_id: str) -> dict[str, Any]:
    return registrations.get_registration(services(), account, registration_id).view()


@app.route(
    "/api/sip/registrations/{registration_id}",
    methods=["PATCH"],
    content_types=["application/json"],
)
@api()
def patch_registration(account: str, registration_id: str) -> dict[str, Any]:
    patch = _body(RegistrationPatch)
    return registrations.patch_registration(services(), account, registration_id, patch).view()


@app.route("/api/sip/registrations/{registration_id}", methods=["DELETE"])
@api(204)
def delete_registration(account: str, registration_id: str) -> None:
    registrations.delete_registration(services(), account, registration_id)


# --- /api/agents -----------------------------------------------------------------------------


@app.route("/api/agents", methods=["POST"], content_types=["application/json"])
@api(201)
def create_agent(account: str) -> dict[str, Any]:
    return agents.create_agent(services(), account, _body(AgentFields)).view()


@app.route("/api/agents", methods=["GET"])
@api()
def list_agents(account: str) -> dict[str, Any]:
    return _paged(agents.list_agents(services(), account, _page_request()), lambda a: a.view())


@app.route("/api/agents/{agent_id}", methods=["GET"])
@api()
def get_agent(account: str, agent_id: str) -> dict[str, Any]:
    return agents.get_agent(services(), account, agent_id).view()


@app.route("/api/agents/{agent_id}", methods=["PATCH"], content_types=["application/json"])
@api()
def patch_agent(account: str, agent_id: str) -> dict[str, Any]:
    return agents.patch_agent(services(), account, agent_id, _body(AgentPatch)).view()


@app.route("/api/agents/{agent_id}", methods=["DELETE"])
@api(204)
def delete_agent(account: str, agent_id: str) -> None:
    agents.delete_agent(services(), account, agent_id)


@app.route("/api/agents/{agent_id}/calls", methods=["POST"], content_types=["application/json"])
@api(201)
def create_agent_call(account: str, agent_id: str) -> dict[str, Any]:
    body = _body(AgentCallCreate)
    call = calls.create_agent_call(services(), account, agent_id, body)
    logger.info("outgoing call created", extra={"call_id": call.call_id, "agent_id": agent_id})
    return call.view()


# --- /api/calls ------------------------------------------------------------------------------


@app.route("/api/calls", methods=["POST"], content_types=["application/json"])
@api(201)
def create_call(account: str) -> dict[str, Any]:
    call = calls.create_call(services(), account, _body(CallCreate))
    logger.info("outgoing call created", extra={"call_id": call.call_id})
    return call.view()


@app.route("/api/calls", methods=["GET"])
@api()
def list_calls(account: str) -> dict[str, Any]:
    params = _request().query_params
    raw_ids = params.getlist("agentIds") if params and "agentIds" in params else []
    agent_ids = frozenset(i for raw in raw_ids for i in raw.split(",") if i)
    page = calls.list_calls(
        services(),
        account,
        _page_request(),
        from_date=_date("fromDate"),
        to_date=_date("toDate"),
        agent_ids=agent_ids,
    )
    return _paged(page, lambda c: c.view())


@app.route("/api/calls/{call_id}", methods=["GET"])
@api()
def get_call(account: str, call_id: str) -> dict[str, Any]:
    return calls.get_call(services(), account, call_id).view()


@app.route("/api/calls/{call_id}", methods=["DELETE"])
@api(204)
def hang_up_call(account: str, call_id: str) -> None:
    calls.hang_up(services(), account, call_id)


@app.route("/api/calls/{call_id}/transfers", methods=["POST"], content_types=["application/json"])
@call_api(201)
def create_transfer(call: Call) -> dict[str, Any]:
    body = _body(TransferCreate)
    ask = TransferAsk(body.tool_name, body.parameters, body.context)
    transfer = transfer_requests.request_transfer(services(), call, ask)
    logger.info("transfer requested", extra={"call_id": call.call_id, "transfer": transfer})
    return transfer


@app.route("/api/calls/{call_id}/transfers", methods=["GET"])
@call_api()
def list_transfers(call: Call) -> dict[str, Any]:
    return transfer_requests.transfers_of(services(), call)


@app.route(
    "/api/calls/{call_id}/transfers/{transfer_id}/outcome",
    methods=["POST"],
    content_types=["application/json"],
)
@call_api()
def transfer_outcome(call: Call, transfer_id: str) -> dict[str, Any]:
    body = _body(TransferOutcome)
    return transfer_requests.report_outcome(services(), call, transfer_id, body)


@app.route("/api/accounts/me/billing/usage", methods=["GET"])
@api()
def billing_usage(account: str) -> dict[str, Any]:
    return calls.usage(services(), account, _date("fromDate"), _date("toDate"))


# --- Twilio-compatible hang-up, for stock bots ---------------------------------------------


@app.route(
    "/2010-04-01/Accounts/{account_sid}/Calls/{call_file}",
    methods=["POST"],
    content_types=["application/x-www-form-urlencoded"],
)
def twilio_hang_up(account_sid: str, call_file: str) -> Response:
    """Update a call the way Twilio's REST API does (HTTP Basic ``AccountSid:AuthToken``):
    ``Status=completed`` ends it; ``Twiml=...`` transfers it (``chalicelib/twiml.py``)."""
    request = _request()
    user, token = _basic_auth(request.headers.get("authorization", ""))
    form = parse_qs(_raw_body(request).decode("utf-8", "replace"))
    twiml = form.get("Twiml")
    status = (form.get("Status") or [""])[0]
    sid = call_file.removesuffix(".json")
    if twiml is not None:
        return _twilio_transfer(account_sid, sid, user, token, twiml[0])
    try:
        if user != account_sid:
            raise Unauthorized("the Basic auth user must be the AccountSid of the URL")
        body = calls.hang_up_for_bot(services(), account_sid, sid, token, status)
    except DomainError as error:
        return _error_response(error)
    return Response(body=body, status_code=200)


def _twilio_transfer(account_sid: str, sid: str, user: str, token: str, twiml: str) -> Response:
    """A transfer by TwiML; every refusal in Twilio's error shape (``twilio_compat.py``)."""
    try:
        call_id = twilio_compat.call_id_from_sid(sid)
        if user != account_sid or call_id is None:
            raise Unauthorized("AccountSid, CallSid or AuthToken does not match a call")
        call = transfer_requests.call_of_bot(services(), call_id, user, token)
        body = transfer_requests.twiml_transfer(services(), call, twiml)
    except TwimlRefused as refused:
        return _twilio_error(400, refused.code, refused.message)
    except DomainError as error:
        code = twilio_compat.error_code(error.http_status)
        return _twilio_error(error.http_status, code, error.message)
    logger.info("transfer requested by TwiML", extra={"call_id": call.call_id})
    return Response(body=body, status_code=200)


def _twilio_error(status: int, code: int, message: str) -> Response:
    return Response(body=twilio_compat.error_body(status, code, message), status_code=status)


def _basic_auth(header: str) -> tuple[str, str]:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return "", ""
    try:
        user, _, password = base64.b64decode(encoded).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return "", ""
    return user, password


def _raw_body(request: Request) -> bytes:
    raw = request.raw_body or b""
    return raw.encode() if isinstance(raw, str) else raw


# --- /webhooks/sip (signed by the edge) -----------------------------------------------------


def webhook(handler: Callable[[bytes], Any]) -> Callable[[], Response]:
    """Check the edge's signature (401 otherwise), then run ``handler`` on the raw body."""

    @functools.wraps(handler)
    def wrapped() -> Response:
        request = _request()
        body = _raw_body(request)
        current = services()
        try:
            verify(
                current.settings.webhook_secrets,
                dict(request.headers),
                body,
                method=request.method,
                path=request.path,
                now=current.epoch_seconds(),
                window_s=current.settings.replay_window_s,
            )
        except SignatureError as error:
            logger.warning("webhook refused", extra={"reason": str(error)})
            count("WebhookUnauthorized")
            return Response(body={"code": "unauthorized", "detail": str(error)}, status_code=401)
        try:
            return Response(body=handler(body), status_code=200)
        except DomainError as error:
            return _error_response(error)

    return wrapped


@app.route("/webhooks/sip/invite", methods=["POST"], content_types=["application/json"])
@webhook
def invite_webhook(body: bytes) -> dict[str, Any]:
    try:
        invite = InviteWebhook.model_validate_json(body)
    except ValidationError as error:
        raise invalid_input(error) from None
    logger.append_keys(sip_call_id=invite.sip_call_id)
    try:
        accepted = invites.decide_invite(services(), invite)
    except DomainError as error:
        rejected = InviteRejected(
            sip_status=error.sip_status,
            reason=error.code,
            message=error.message,
            retry_after_s=error.retry_after_s,
        )
        logger.info("invite rejected", extra={"reason": error.code, "detail": error.message})
        count("InviteRejected", reason=error.code)
        return dump(rejected)
    finally:
        logger.remove_keys(["sip_call_id"])
    logger.info(
        "invite accepted", extra={"call_id": accepted.call_id, "agent_id": accepted.agent_id}
    )
    count("InviteAccepted")
    return dump(accepted)


@app.route("/webhooks/sip/events", methods=["POST"], content_types=["application/json"])
@webhook
def events_webhook(body: bytes) -> dict[str, Any]:
    try:
        batch = CallEventBatch.model_validate_json(body)
    except ValidationError as error:
        raise invalid_input(error) from None
    result = tracer.capture_method(events.apply_batch)(services(), batch)
    logger.info("events applied", extra=result.model_dump())
    count("EventsApplied", result.applied)
    count("EventsDuplicated", result.duplicates)
    count("EventsUnknown", result.unknown)
    return dump(result)


@app.route("/webhooks/sip/heartbeat", methods=["POST"], content_types=["application/json"])
@webhook
def heartbeat_webhook(body: bytes) -> dict[str, Any]:
    try:
        heartbeat = EdgeHeartbeat.model_validate_json(body)
    except ValidationError as error:
        raise invalid_input(error) from None
    return dump(reaper.record_heartbeat(services(), heartbeat))


@app.route("/webhooks/sip/dial", methods=["POST"], content_types=["application/json"])
@webhook
def dial_claim_webhook(body: bytes) -> dict[str, Any]:
    try:
        claim = DialClaim.model_validate_json(body)
    except ValidationError as error:
        raise invalid_input(error) from None
    return dump(command_routing.claim_dial(services(), claim))


@app.schedule(Rate(1, unit=Rate.MINUTES), name="reap_calls")
def reap_calls(event: CloudWatchEvent) -> dict[str, Any]:
    """Close the calls no relay will end (``chalicelib/reaper.py``), once a minute."""
    deadline = time.monotonic() + REAPER_BUDGET_S
    try:
        result = reaper.reap(services(), time_left=lambda: time.monotonic() < deadline)
        summary = {
            "examined": result.examined,
            "closed": dict(result.closed),
            "finished": result.finished,
            "queuesDeleted": len(result.queues_deleted),
        }
        logger.info("reaper ran", extra=summary)
        count("CallsReaped", sum(result.closed.values()))
        return summary
    finally:
        flush()


@app.route("/webhooks/sip/allowlist", methods=["GET"])
@webhook
def allowlist_webhook(body: bytes) -> dict[str, Any]:
    return dump(sip_config.edge_allowlist(services()))


@app.route("/health", methods=["GET"])
def health() -> dict[str, str]:
    return {"status": "ok"}


snapstart.register()  # with SnapStart on, reseed what a snapshot would share (chalicelib/snapstart.py)
gc.freeze()  # the import-time objects never need collecting: keep them out of every later GC
gc.enable()
