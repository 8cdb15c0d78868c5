"""Twilio-compatible identifiers and per-call credentials, so that stock bots can hang up.

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
