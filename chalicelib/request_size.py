"""How large a request body the control plane reads: a 413 beyond, before any parsing.

The limits follow from the largest body the field limits allow (docs/api.md, "Request size"):

- ``/api`` and the Twilio-compatible hang-up: **1 MiB**. The largest legitimate bodies are a
  ``systemPrompt`` of 100,000 characters (up to 300 KB of UTF-8 in a non-Latin script) and a
  ``PATCH /api/sip`` with 2,000 ``allowedAgents`` of a 64-character id and a 200-character
  pattern (about 620 KB); 256 KiB would refuse both.
- ``/webhooks/sip`` (signed by the edge): **2 MiB**. An event batch holds at most 500 events;
  one at the contract's field limits (ids of 128 characters, a 500-character ``detail``) is
  under 2 KB of JSON, so a full batch is under 1 MB, and the relay sends at most 100 per batch.
  An INVITE webhook carries at most the relay's 16 KiB of SIP headers.
"""

from __future__ import annotations

from chalicelib.errors import PayloadTooLarge

KIB = 1024
MIB = 1024 * KIB
API_MAX_BODY_BYTES = 1 * MIB
WEBHOOK_MAX_BODY_BYTES = 2 * MIB
WEBHOOK_PREFIX = "/webhooks/"


def max_body_bytes(path: str) -> int:
    """Return the body limit of the route at ``path``."""
    return WEBHOOK_MAX_BODY_BYTES if path.startswith(WEBHOOK_PREFIX) else API_MAX_BODY_BYTES


def check_body_size(path: str, size: int) -> None:
    """Raise PayloadTooLarge (413) when a body of ``size`` bytes is over ``path``'s limit."""
    limit = max_body_bytes(path)
    if size > limit:
        raise PayloadTooLarge(
            f"the request body is {size} bytes; the limit is {limit} bytes ({limit // MIB} MiB)"
        )
