"""Digest authentication for the requests the relay sends (UAC side; pure).

Theory of operation (RFC 3261 §22, RFC 7616 §3.4, RFC 2617 §3.2.2, RFC 8760):

1. :class:`Credentials` hold a username and password. The password never leaves this module
   except hashed: ``repr``/``str`` hide it, no exception or :class:`GiveUp` names it, and the
   header value carries only the digest.
2. :func:`authorization` answers one :class:`~relay.sip.digest_challenge.Challenge`::

       response = KD(H(A1), nonce ":" nc ":" cnonce ":" qop ":" H(A2))   (qop sent)
       response = H(H(A1) ":" nonce ":" H(A2))                           (no qop: RFC 2069)
       A1 = username ":" realm ":" password        (-sess: H(that) ":" nonce ":" cnonce)
       A2 = method ":" digest-uri                  (auth-int: ... ":" H(entity-body))

   with KD(s, d) = H(s ":" d), H the algorithm's hash in lower-case hex, text as UTF-8 (the
   digest-uri is the Request-URI as sent, RFC 3261 §22.4). ``qop=auth`` is chosen when offered,
   ``auth-int`` only when it is the only option. With ``userhash=true`` the username sent is
   H(username ":" realm) (RFC 7616 §3.4.4).
3. :class:`DigestSession` is the retry policy, held by one usage for one Call-ID (an outgoing
   INVITE, a registration). Give it each final response with the request it answers:
   :meth:`DigestSession.on_response` returns a :class:`Retry` (the credential header fields the
   resubmitted request carries, with a new CSeq, RFC 3261 §22.1), a :class:`GiveUp`, or
   ``None`` for a response that is not a challenge.
4. The give-up rule, which makes a loop impossible: per (header kind, realm), a challenge that
   answers credentials we computed for a challenge ends it (:attr:`GiveUpReason.REJECTED`),
   except one ``stale=true``, retried with the new nonce. Credentials sent pre-emptively (an old
   nonce reused, :meth:`DigestSession.authorization_headers`) get one fresh answer. At most
   :data:`MAX_REALMS` realms are held, so a chain of retries is at most ``2 * MAX_REALMS`` long.
   A response that is not a challenge (2xx, other finals) settles the chain.
5. Every held realm is answered in each request: a realm not challenged again reuses its nonce
   with the nonce count plus one (RFC 7616 §3.4, nc as 8 hex digits), so a proxy's credentials
   survive a later 401 from the UAS, and a REGISTER refresh can be pre-authorized. The cnonce
   comes from the injected :class:`~relay.ids.IdSource`, one per nonce.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from relay.sip.digest_challenge import Algorithm, Challenge, Qop, read_challenges, strongest

if TYPE_CHECKING:
    from collections.abc import Callable

    from relay.ids import IdSource
    from relay.sip.syntax.headers import Headers
    from relay.sip.syntax.message import Request, Response

__all__ = [
    "MAX_REALMS",
    "Credentials",
    "DigestSession",
    "GiveUp",
    "GiveUpReason",
    "Retry",
    "authorization",
    "digest_response",
]

MAX_REALMS = 4
"""Most realms (per header kind) one session answers."""
MAX_NONCE_COUNT = 0xFFFFFFFF  # nc is 8LHEX (RFC 7616 §3.4)
CNONCE_BYTES = 16
CREDENTIAL_HEADERS = ("Authorization", "Proxy-Authorization")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True, repr=False)
class Credentials:
    """A username and password for digest challenges, optionally bound to one realm."""

    username: str
    password: str
    realm: str | None = None
    """Answer only this realm; ``None`` answers any realm that challenges."""

    def __post_init__(self) -> None:
        """Refuse a username or realm that could not be carried in a header field.

        Raises:
            ValueError: naming the field (never the password).
        """
        if not self.username or _CONTROL.search(self.username):
            raise ValueError("Credentials username is empty or holds a control character")
        if self.realm is not None and _CONTROL.search(self.realm):
            raise ValueError("Credentials realm holds a control character")

    def __repr__(self) -> str:
        """Show the username and realm, never the password."""
        return f"Credentials(username={self.username!r}, password=<hidden>, realm={self.realm!r})"

    __str__ = __repr__


def digest_response(
    challenge: Challenge,
    credentials: Credentials,
    *,
    method: str,
    uri: str,
    qop: Qop | None,
    nc: int,
    cnonce: str,
    body: bytes = b"",
) -> str:
    """Return the ``response`` value (RFC 7616 §3.4.1; RFC 2617 §3.2.2.1 when ``qop`` is None)."""
    h = _hasher(challenge.algorithm)
    ha1 = h(f"{credentials.username}:{challenge.realm}:{credentials.password}")
    if challenge.algorithm.session:
        ha1 = h(f"{ha1}:{challenge.nonce}:{cnonce}")
    a2 = f"{method}:{uri}"
    if qop is Qop.AUTH_INT:
        a2 = f"{a2}:{h(body)}"
    if qop is None:
        return h(f"{ha1}:{challenge.nonce}:{h(a2)}")
    return h(f"{ha1}:{challenge.nonce}:{nc:08x}:{cnonce}:{qop.value}:{h(a2)}")


def authorization(
    challenge: Challenge,
    credentials: Credentials,
    *,
    method: str,
    uri: str,
    nc: int,
    cnonce: str,
    body: bytes = b"",
) -> tuple[str, str]:
    """Return the ``(Authorization or Proxy-Authorization, value)`` answering ``challenge``.

    Args:
        method: the request's method (``INVITE``, ``REGISTER``).
        uri: the Request-URI exactly as sent.
        nc: the nonce count, 1 for a nonce's first use.
        cnonce: the client nonce (ignored when the challenge offers no qop).
        body: the request body, hashed for ``qop=auth-int``.
    """
    qop = _choose_qop(challenge)
    response = digest_response(
        challenge, credentials, method=method, uri=uri, qop=qop, nc=nc, cnonce=cnonce, body=body
    )
    username = credentials.username
    if challenge.userhash:
        username = _hasher(challenge.algorithm)(f"{username}:{challenge.realm}")
    parts = [
        f"username={_quote(username)}",
        f"realm={_quote(challenge.realm)}",
        f"nonce={_quote(challenge.nonce)}",
        f"uri={_quote(uri)}",
        f"response={_quote(response)}",
        f"algorithm={challenge.algorithm.value}",
    ]
    if qop is not None:
        parts += [f"cnonce={_quote(cnonce)}", f"qop={qop.value}", f"nc={nc:08x}"]
    if challenge.opaque is not None:
        parts.append(f"opaque={_quote(challenge.opaque)}")
    if challenge.userhash:
        parts.append("userhash=true")
    return challenge.authorization_header, "Digest " + ", ".join(parts)


class GiveUpReason(Enum):
    """Why a challenge is not answered; the call ends ``SIP_TERMINATION_REJECTED``."""

    REJECTED = "rejected"
    """Challenged again after our credentials for that realm (a second ``stale`` included)."""
    NO_CREDENTIALS = "no_credentials"
    """A realm other than the one the credentials are bound to."""
    UNSUPPORTED = "unsupported"
    """No challenge sipline can answer (another scheme, algorithm or qop)."""
    MALFORMED = "malformed"
    """The challenge does not parse, or a 401/407 carries none."""
    TOO_MANY_REALMS = "too_many_realms"
    """More than :data:`MAX_REALMS` realms of one header kind."""


@dataclass(frozen=True, slots=True)
class GiveUp:
    """Do not resubmit: end the call or registration with :attr:`status`."""

    status: int
    reason: GiveUpReason
    detail: str
    """What happened, for the log; it never holds the password."""


@dataclass(frozen=True, slots=True)
class Retry:
    """Resubmit the request (new CSeq, new branch) carrying :attr:`headers`."""

    headers: tuple[tuple[str, str], ...]
    """``(name, value)`` credential fields, one per held realm."""

    def apply(self, headers: Headers) -> Headers:
        """Return ``headers`` with every credential field replaced by :attr:`headers`."""
        for name in CREDENTIAL_HEADERS:
            headers = headers.without(name)
        for name, value in self.headers:
            headers = headers.with_added(name, value)
        return headers


class _Sent(Enum):
    ANSWERED = "answered"  # computed for the challenge just received
    PREEMPTIVE = "preemptive"  # a held nonce reused in a new request
    ACCEPTED = "accepted"  # a response that is not a challenge followed


@dataclass(slots=True)
class _Realm:
    challenge: Challenge
    cnonce: str
    nc: int = 0
    sent: _Sent = _Sent.ANSWERED
    stale_retried: bool = False


class DigestSession:
    """The retry policy of one usage (one Call-ID): see the module docstring, rules 3-5."""

    def __init__(self, credentials: Credentials, ids: IdSource) -> None:
        """Hold ``credentials``; draw each cnonce from ``ids``."""
        self._credentials = credentials
        self._ids = ids
        self._realms: dict[tuple[bool, str], _Realm] = {}

    def __repr__(self) -> str:
        """Show the username and the realms held, never the password."""
        realms = [realm for _, realm in self._realms]
        return f"DigestSession(username={self._credentials.username!r}, realms={realms!r})"

    def on_response(self, response: Response, request: Request) -> Retry | GiveUp | None:
        """Take a response to ``request``: a 401/407 gives a Retry or a GiveUp, others ``None``.

        ``request`` is the challenged request as sent; the retry repeats its method,
        Request-URI and body.
        """
        if response.status < 200:
            return None
        if response.status not in (401, 407):
            for held in self._realms.values():
                held.sent, held.stale_retried = _Sent.ACCEPTED, False
            return None
        verdict = self._learn(response)
        if isinstance(verdict, GiveUp):
            return verdict
        return Retry(self.authorization_headers(request))

    def authorization_headers(self, request: Request) -> tuple[tuple[str, str], ...]:
        """Return the credential fields for ``request``: every held realm, its nonce count + 1.

        Called directly, this pre-authorizes a new request (a REGISTER refresh) with the nonces
        held; a realm whose nonce count is exhausted is left out (its challenge will come).
        """
        fields: list[tuple[str, str]] = []
        for held in self._realms.values():
            if held.nc >= MAX_NONCE_COUNT:
                continue
            held.nc += 1
            if held.sent is _Sent.ACCEPTED:
                held.sent = _Sent.PREEMPTIVE
            fields.append(
                authorization(
                    held.challenge,
                    self._credentials,
                    method=request.method,
                    uri=str(request.uri),
                    nc=held.nc,
                    cnonce=held.cnonce,
                    body=request.body,
                )
            )
        return tuple(fields)

    def _learn(self, response: Response) -> GiveUp | None:
        """Take in a challenge response's realms, or say why to give up (changing nothing)."""
        offered = read_challenges(response.headers)
        chosen = strongest(offered.challenges)
        if not chosen:
            return _unanswerable(response.status, offered.unsupported, offered.errors)
        updates: dict[tuple[bool, str], _Realm] = {}
        for challenge in chosen:
            key = (challenge.proxy, challenge.realm)
            verdict = self._admit(response.status, challenge, len(self._realms) + len(updates))
            if isinstance(verdict, GiveUp):
                return verdict
            updates[key] = verdict
        self._realms.update(updates)
        return None

    def _admit(self, status: int, challenge: Challenge, held: int) -> _Realm | GiveUp:
        """Return the new state of the challenge's realm, or why it is not answered."""
        realm, kind = challenge.realm, challenge.authorization_header
        bound = self._credentials.realm
        if bound is not None and realm != bound:
            return GiveUp(
                status, GiveUpReason.NO_CREDENTIALS, f"no credentials for realm {realm!r}"
            )
        before = self._realms.get((challenge.proxy, realm))
        if before is None and held >= MAX_REALMS:
            return GiveUp(status, GiveUpReason.TOO_MANY_REALMS, f"more than {MAX_REALMS} realms")
        cnonce = self._ids.token(CNONCE_BYTES)
        if before is None or before.sent is not _Sent.ANSWERED:
            return _Realm(challenge, cnonce)
        if challenge.stale and not before.stale_retried:
            return _Realm(challenge, cnonce, stale_retried=True)
        again = "stale again" if challenge.stale else "refused"
        return GiveUp(status, GiveUpReason.REJECTED, f"{kind} for realm {realm!r} {again}")


def _unanswerable(
    status: int, unsupported: tuple[str, ...], errors: tuple[Exception, ...]
) -> GiveUp:
    if errors:
        return GiveUp(status, GiveUpReason.MALFORMED, str(errors[0]))
    if unsupported:
        detail = "no challenge sipline can answer: " + ", ".join(unsupported)
        return GiveUp(status, GiveUpReason.UNSUPPORTED, detail)
    return GiveUp(status, GiveUpReason.MALFORMED, f"{status} without a challenge")


def _choose_qop(challenge: Challenge) -> Qop | None:
    if not challenge.qop:
        return None
    return Qop.AUTH if Qop.AUTH in challenge.qop else Qop.AUTH_INT


def _hasher(algorithm: Algorithm) -> Callable[[str | bytes], str]:
    """Return H: the algorithm's digest of UTF-8 text, in lower-case hex (RFC 7616 §3.4.2)."""
    name = algorithm.hash_name

    def h(data: str | bytes) -> str:
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        return hashlib.new(name, data, usedforsecurity=False).hexdigest()

    return h


def _quote(value: str) -> str:
    """Return ``value`` as a quoted-string, escaping ``\\`` and ``"`` (RFC 3261 §25.1)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
