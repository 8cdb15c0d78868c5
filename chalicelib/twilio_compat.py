"""Twilio-compatible identifiers, per-call credentials and error bodies, so that stock bots can
hang up and transfer.

Bots written for Twilio Media Streams (Pipecat's ``TwilioFrameSerializer`` with ``auto_hang_up``,
for example) end a call with ``POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json`` and
``Status=completed``, authenticated with HTTP Basic ``AccountSid:AuthToken``. sipline answers that
request itself; the edge hands each call's identifiers and token to the agent in the ``start``
message. All of it is derived, nothing is stored:

- ``CallSid`` = ``CA`` + the call id's 32 hex digits (call ids are UUIDs);
- ``AccountSid`` = ``AC`` + 32 hex digits of SHA-256 of the account id;
- ``AuthToken`` = 32 hex digits of HMAC-SHA256(webhook secret, ``CallSid``): valid for that call
  only, so a token leaked by one bot cannot end another call.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid


def call_sid(call_id: str) -> str:
    """Return the Twilio-style CallSid of a call."""
    return "CA" + uuid.UUID(call_id).hex


def call_id_from_sid(sid: str) -> str | None:
    """Return the call id a CallSid names, or None if it is not one of ours."""
    if len(sid) != 34 or not sid.startswith("CA"):
        return None
    try:
        return str(uuid.UUID(hex=sid[2:]))
    except ValueError:
        return None


def account_sid(account_id: str) -> str:
    """Return the Twilio-style AccountSid of an account."""
    return "AC" + hashlib.sha256(account_id.encode()).hexdigest()[:32]


def auth_token(secret: str, sid: str) -> str:
    """Return the per-call AuthToken of the call ``sid`` names."""
    return hmac.new(secret.encode(), sid.encode(), hashlib.sha256).hexdigest()[:32]


def token_matches(secrets: list[str], sid: str, token: str) -> bool:
    """Constant-time check of a presented token against every current secret."""
    presented = token.encode("utf-8", "replace")  # bytes: a non-ASCII str would raise
    return any(hmac.compare_digest(auth_token(s, sid).encode(), presented) for s in secrets if s)


TWILIO_ERROR_CODES = {401: 20003, 403: 20003, 404: 20404, 409: 21220, 429: 20429, 503: 20500}
"""Twilio's error codes for our statuses: 20003 "Authentication Error" (401; 403 when the
account's configuration refuses), 20404 "Not Found", 21220 "Invalid call state", 20429 "Too Many
Requests", 20500 "Internal Server Error"; any other 4xx is 21205-like bad input: 20001."""


def error_code(http_status: int) -> int:
    """Twilio's error code for a refusal of ``http_status``."""
    return TWILIO_ERROR_CODES.get(http_status, 20001)


def error_body(http_status: int, code: int, message: str) -> dict[str, object]:
    """Twilio's error shape: ``code``, ``message``, ``more_info``, ``status``."""
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": http_status,
    }
