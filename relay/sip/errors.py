"""Errors of the SIP message layer, h11 style: each carries the status a reply should use.

Theory of operation:

1. :class:`RemoteProtocolError` means the peer broke SIP; :class:`LocalProtocolError` means
   our own code misused the core (a bug here, never the network's fault).
2. :class:`SipParseError` is the remote error raised while parsing or validating a message.
   Its message names the header field at fault and is meant to be used verbatim as the
   reason phrase of a stateless error response (RFC 3261 §8.2.6, §21.4.1).
3. The parser attaches what it managed to read (``headers``, ``method``, ``is_request``,
   and for semantic errors the whole ``request``) so that the caller can answer
   statelessly with :func:`relay.sip.syntax.message.error_response`; see that function.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from relay.sip.syntax.headers import Headers
    from relay.sip.syntax.message import Request

__all__ = ["LocalProtocolError", "ProtocolError", "RemoteProtocolError", "SipParseError"]


class ProtocolError(Exception):
    """Base of the SIP core's errors: a message plus the SIP status a reply should carry."""

    def __init__(self, message: str, *, status_hint: int = 400, header: str | None = None):
        """Build the error.

        Args:
            message: what went wrong, naming the header field when there is one.
            status_hint: the SIP status code a response to the offending request should use.
            header: the canonical name of the header field at fault, if any.
        """
        super().__init__(message)
        self.status_hint = status_hint
        self.header = header

    @property
    def message(self) -> str:
        """Return the human-readable message given at construction."""
        return str(self.args[0])


class LocalProtocolError(ProtocolError):
    """We asked the core to do something SIP forbids (our bug; the default hint is 500)."""

    def __init__(self, message: str, *, status_hint: int = 500, header: str | None = None):
        """Build the error with a 500 default, since the fault is ours."""
        super().__init__(message, status_hint=status_hint, header=header)


class RemoteProtocolError(ProtocolError):
    """The peer sent something SIP forbids."""


class SipParseError(RemoteProtocolError, ValueError):
    """A received message (or a URI/header given to a parser) is malformed or unacceptable.

    Attributes:
        status_hint: status for the stateless response (400, 413, 415, 416, 420, 505, 513...).
        header: canonical name of the header field at fault, or ``None``.
        response_headers: header fields the response must carry (e.g. ``Unsupported`` for a
            420, RFC 3261 §8.2.2.3; ``Accept`` for a 415, §8.2.3).
        is_request: whether the offending message was a request (only requests get answers).
        method: the request method, when the request line could be split.
        headers: the header fields read before the error, when the header section was sound.
        request: the fully parsed request, for errors found by semantic validation.
    """

    def __init__(
        self,
        message: str,
        *,
        status_hint: int = 400,
        header: str | None = None,
        response_headers: tuple[tuple[str, str], ...] = (),
    ):
        """Build the error; the parser fills in the context attributes afterwards."""
        super().__init__(message, status_hint=status_hint, header=header)
        self.response_headers = response_headers
        self.is_request = False
        self.method: str | None = None
        self.headers: Headers | None = None
        self.request: Request | None = None
