"""Domain errors that classify themselves.

Each carries the HTTP status the REST API answers with, the SIP status an INVITE decision rejects
with, and a stable ``code`` that names the rule in responses, logs and metrics. ``app.py`` maps
them in one place; nothing above ``store/`` sees botocore.
"""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error the domain raises on purpose."""

    http_status = 400
    sip_status = 500
    code = "domain_error"
    retry_after_s: int | None = None
    """Seconds a client should wait before trying again (a ``Retry-After`` header), if any."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(DomainError):
    """A request names a field with a bad value (400)."""

    code = "invalid_input"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class RecordTooLarge(InvalidInput):
    """What a request would store is over the size of one record, 400 KB (HTTP 413, SIP 480).

    ``field`` is the record's largest field: the one to make smaller. 413, as for a body over its
    limit, but its own code: the body may be small (one more rule in a full configuration).
    """

    http_status = 413
    sip_status = 480
    code = "record_too_large"


class NotFound(DomainError):
    """The named resource does not exist (404)."""

    http_status = 404
    code = "not_found"


class Unauthorized(DomainError):
    """Missing or wrong credentials (401)."""

    http_status = 401
    code = "unauthorized"


class Conflict(DomainError):
    """The request conflicts with the resource's state (409)."""

    http_status = 409
    code = "conflict"


class AlreadyExists(Conflict):
    """A conditional create found the item already there."""

    code = "already_exists"


class StaleVersion(Conflict):
    """A conditional update lost a race with another writer."""

    code = "stale_version"


class SourceIpNotAllowed(DomainError):
    """The INVITE's source address is outside ``allowedCidrRanges`` (SIP 403)."""

    http_status = 403
    sip_status = 403
    code = "source_ip_not_allowed"


class NoAgentMatched(DomainError):
    """No routing rule matched the To user and there is no fallback (SIP 404)."""

    http_status = 404
    sip_status = 404
    code = "no_agent_matched"


class FallbackRejected(DomainError):
    """The fallback handler answered ``reject`` with its own SIP code."""

    code = "fallback_rejected"

    def __init__(self, sip_status: int, message: str) -> None:
        super().__init__(message)
        self.sip_status = sip_status


class FallbackFailed(DomainError):
    """The fallback handler could not be reached or answered nonsense (SIP 480)."""

    http_status = 502
    sip_status = 480
    code = "fallback_failed"


class PayloadTooLarge(DomainError):
    """The request body is over the route's size limit (HTTP 413), refused before parsing."""

    http_status = 413
    code = "payload_too_large"


class StoreBusy(DomainError):
    """The table stayed throttled or in conflict through every retry (HTTP 503, SIP 503)."""

    http_status = 503
    sip_status = 503
    code = "store_busy"
    retry_after_s = 1


class CommandNotSent(DomainError):
    """A command could not be queued for the edge (HTTP 503); the user may retry."""

    http_status = 503
    code = "command_not_sent"


class UnreadableRecord(DomainError):
    """A stored record exists but does not read as its model (HTTP 409, SIP 480).

    Written by a bug, an older version or a hand edit (``docs/storage.md``). 409 rather than 404
    (it exists) or 500 (the request is fine, and retrying it will not help): the record is in a
    state that stops the request, and DELETE of an agent or registration still works.
    ``account_id`` is the record's owner when its keys tell it, so that a 409 never tells one
    account about another's record.
    """

    http_status = 409
    sip_status = 480
    code = "unreadable_record"

    def __init__(self, message: str, *, account_id: str | None = None) -> None:
        super().__init__(message)
        self.account_id = account_id


class AgentUnavailable(DomainError):
    """The matched agent cannot take calls (no media endpoint, or it was deleted) (SIP 480)."""

    http_status = 409
    sip_status = 480
    code = "agent_unavailable"


CONCURRENT_CALLS_RETRY_AFTER_S = 10
"""Retry-After of a call refused by the concurrent-call limit (docs/api.md, docs/routing.md)."""


class TooManyActiveCalls(DomainError):
    """The account has as many calls going on as its limit allows (HTTP 429, SIP 503).

    429 rather than 503 for the API: the account is over its own quota while the service is up
    for everybody else (RFC 6585 §4), and 503 already means "the edge's queue is down" there.
    A SIP caller gets 503, the status SIP has for "not now" (RFC 3261 §21.5.4).
    """

    http_status = 429
    sip_status = 503
    code = "too_many_active_calls"
    retry_after_s = CONCURRENT_CALLS_RETRY_AFTER_S

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"the account has {limit} calls going on, its limit (SIPLINE_MAX_CONCURRENT_CALLS);"
            f" retry when one has ended"
        )
        self.limit = limit
