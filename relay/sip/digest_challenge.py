"""Digest challenges: reading WWW-Authenticate and Proxy-Authenticate (pure).

Theory of operation (RFC 3261 §20.27, §20.44, §22; RFC 7616 §3.3; RFC 8760 §2):

1. A 401 carries ``WWW-Authenticate``, a 407 ``Proxy-Authenticate``; a proxy that forked may
   aggregate both kinds into one response (RFC 3261 §16.7 step 7, §22.3), so both are read from
   any response. Each header field may hold one challenge or, as HTTP writes it, a comma list of
   several (``Digest realm="a", nonce="1", Digest realm="a", nonce="2"``); several fields are
   read in wire order.
2. The grammar is ``auth-scheme 1*SP auth-param *("," auth-param)`` with ``auth-param = token
   "=" (token / quoted-string)``: parameter names are case-insensitive, quoted strings may
   escape with ``\\``, a parameter may appear once per challenge. Every value is kept as the
   text it stands for (quotes removed, escapes undone), so it hashes to the bytes the server
   meant (non-UTF-8 bytes survive as ``surrogateescape`` surrogates, as everywhere in the core).
3. The scanner is a loop of anchored matches, linear in the input. Limits bound the work a
   hostile server can cause: a field over :data:`MAX_CHALLENGE_CHARS`, a challenge with more
   than :data:`MAX_AUTH_PARAMS` parameters, a response with more than :data:`MAX_CHALLENGES`
   challenges raise :class:`ChallengeError`, as does any malformed field. Nothing else escapes.
4. A well-formed challenge we cannot answer (another scheme, an unknown ``algorithm``, a
   ``qop`` list without ``auth`` or ``auth-int``, a ``-sess`` algorithm without ``qop``) is not
   an error: it is listed in :attr:`Offered.unsupported` and passed over.
5. Among the challenges of one realm (per header kind), :func:`strongest` keeps the strongest
   algorithm (SHA-512-256, then SHA-256, then MD5; ties go to the topmost). RFC 8760 §2.4 has
   the client use "the topmost header field that it supports, unless a local policy dictates
   otherwise": this is that local policy, because challenges are not integrity-protected and
   an on-path attacker could reorder them to put MD5 first (RFC 8760 §3).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from relay.sip.errors import RemoteProtocolError
from relay.sip.syntax import abnf

if TYPE_CHECKING:
    from collections.abc import Iterable

    from relay.sip.syntax.headers import Headers

__all__ = [
    "MAX_AUTH_PARAMS",
    "MAX_CHALLENGES",
    "MAX_CHALLENGE_CHARS",
    "Algorithm",
    "Challenge",
    "ChallengeError",
    "Offered",
    "Qop",
    "parse_challenges",
    "read_challenges",
    "strongest",
]

MAX_CHALLENGE_CHARS = 4096
"""Longest WWW-Authenticate / Proxy-Authenticate field value read (real ones are ~200)."""
MAX_AUTH_PARAMS = 24
"""Most parameters in one challenge (RFC 7616 defines 9)."""
MAX_CHALLENGES = 16
"""Most challenges read from one response, all fields together."""

_TOKEN = re.compile(abnf.TOKEN)
_QUOTED = re.compile(abnf.QUOTED_STRING)
_BARE_VALUE = re.compile(r"[!#-+\--~]+")  # a token, leniently: any visible ASCII but DQUOTE and ","
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*(?=[ \t]*(?:,|$))")  # RFC 7235 §2.1, other schemes
_SEPARATORS = re.compile(r"[ \t,]*")
_OWS = re.compile(r"[ \t]*")
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)


class ChallengeError(RemoteProtocolError, ValueError):
    """A WWW-Authenticate or Proxy-Authenticate field is malformed or over a limit."""


class Algorithm(Enum):
    """The digest algorithms sipline answers (RFC 7616 §3.3, RFC 8760 §2.1)."""

    MD5 = "MD5"
    MD5_SESS = "MD5-sess"
    SHA_256 = "SHA-256"
    SHA_256_SESS = "SHA-256-sess"
    SHA_512_256 = "SHA-512-256"
    SHA_512_256_SESS = "SHA-512-256-sess"

    @property
    def hash_name(self) -> str:
        """Return the :mod:`hashlib` name of the hash function."""
        return _HASH_NAMES[self.value.removesuffix("-sess")]

    @property
    def session(self) -> bool:
        """Return whether A1 is the ``-sess`` form (RFC 7616 §3.4.2)."""
        return self.value.endswith("-sess")

    @property
    def strength(self) -> int:
        """Return a rank: higher is stronger; a ``-sess`` variant ranks with its hash."""
        return {"md5": 0, "sha256": 1, "sha512_256": 2}[self.hash_name]


_HASH_NAMES = {"MD5": "md5", "SHA-256": "sha256", "SHA-512-256": "sha512_256"}
_ALGORITHMS = {algorithm.value.lower(): algorithm for algorithm in Algorithm}


class Qop(Enum):
    """Quality of protection (RFC 7616 §3.3)."""

    AUTH = "auth"
    AUTH_INT = "auth-int"


_QOPS = {qop.value: qop for qop in Qop}


@dataclass(frozen=True, slots=True)
class Challenge:
    """One Digest challenge sipline can answer."""

    proxy: bool
    """Whether it came in Proxy-Authenticate (407) rather than WWW-Authenticate (401)."""
    realm: str
    nonce: str
    algorithm: Algorithm = Algorithm.MD5
    qop: tuple[Qop, ...] = ()
    """The qop options offered that we support; empty: none offered (RFC 2069 compatibility)."""
    opaque: str | None = None
    stale: bool = False
    userhash: bool = False

    @property
    def authorization_header(self) -> str:
        """Return the header field that answers it (RFC 3261 §22.2, §22.3)."""
        return "Proxy-Authorization" if self.proxy else "Authorization"


@dataclass(frozen=True, slots=True)
class Offered:
    """The challenges of one response, sorted into what can be answered and what cannot."""

    challenges: tuple[Challenge, ...] = ()
    unsupported: tuple[str, ...] = ()
    """Short descriptions of well-formed challenges we cannot answer (``"Basic"``)."""
    errors: tuple[ChallengeError, ...] = ()


def read_challenges(headers: Headers) -> Offered:
    """Read every WWW-Authenticate and Proxy-Authenticate field of a response.

    A malformed field is recorded in :attr:`Offered.errors` and the others are still read.
    """
    challenges: list[Challenge] = []
    unsupported: list[str] = []
    errors: list[ChallengeError] = []
    fields = [(v, False) for v in headers.get_all("WWW-Authenticate")]
    fields += [(v, True) for v in headers.get_all("Proxy-Authenticate")]
    for value, proxy in fields:
        try:
            offered = parse_challenges(value, proxy=proxy)
        except ChallengeError as err:
            errors.append(err)
            continue
        challenges.extend(offered.challenges)
        unsupported.extend(offered.unsupported)
        if len(challenges) + len(unsupported) > MAX_CHALLENGES:
            errors.append(ChallengeError(f"More than {MAX_CHALLENGES} challenges in a response"))
            return Offered((), (), tuple(errors))
    return Offered(tuple(challenges), tuple(unsupported), tuple(errors))


def parse_challenges(value: str, *, proxy: bool) -> Offered:
    """Parse one WWW-Authenticate (``proxy=False``) or Proxy-Authenticate field value.

    Raises:
        ChallengeError: the value is malformed or over a limit; the message says where.
    """
    header = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
    if len(value) > MAX_CHALLENGE_CHARS:
        raise ChallengeError(
            f"{header} longer than {MAX_CHALLENGE_CHARS} characters", header=header
        )
    challenges: list[Challenge] = []
    unsupported: list[str] = []
    for scheme, params in _scan(value, header):
        found = _digest(scheme, params, proxy=proxy, header=header)
        if isinstance(found, Challenge):
            challenges.append(found)
        else:
            unsupported.append(found)
    return Offered(tuple(challenges), tuple(unsupported))


def strongest(challenges: Iterable[Challenge]) -> list[Challenge]:
    """Keep one challenge per (header kind, realm): the strongest, the topmost among equals.

    The result keeps the order in which each realm first appeared.
    """
    best: dict[tuple[bool, str], Challenge] = {}
    for challenge in challenges:
        key = (challenge.proxy, challenge.realm)
        if key not in best or challenge.algorithm.strength > best[key].algorithm.strength:
            best[key] = challenge
    return list(best.values())


def _scan(value: str, header: str) -> list[tuple[str, dict[str, str]]]:
    """Split a field value into ``(scheme, {lower-case name: value})`` challenges."""
    challenges: list[tuple[str, dict[str, str]]] = []
    params: dict[str, str] | None = None
    pos, end = _skip(_SEPARATORS, value, 0), len(value)
    while pos < end:
        name = _TOKEN.match(value, pos)
        if name is None:
            raise ChallengeError(f"{header}: unexpected {value[pos : pos + 20]!r}", header=header)
        pos = _skip(_OWS, value, name.end())
        if pos < end and value[pos] == "=":
            if params is None:
                raise ChallengeError(f"{header}: a parameter before the scheme", header=header)
            pos = _parameter(value, pos + 1, name.group(), params, header)
        else:
            if len(challenges) >= MAX_CHALLENGES:
                raise ChallengeError(
                    f"{header}: more than {MAX_CHALLENGES} challenges", header=header
                )
            params = {}
            challenges.append((name.group(), params))
            token68 = None if name.group().lower() == "digest" else _TOKEN68.match(value, pos)
            if token68 is not None:
                pos = token68.end()
        pos = _separator(value, pos, header)
    return challenges


def _parameter(value: str, pos: int, name: str, params: dict[str, str], header: str) -> int:
    """Read the value of parameter ``name`` that starts after ``=``; return where it ends."""
    pos = _skip(_OWS, value, pos)
    quoted = _QUOTED.match(value, pos)
    if quoted is not None:
        text = _QUOTED_PAIR.sub(r"\1", quoted.group()[1:-1])
    else:
        quoted = _BARE_VALUE.match(value, pos)
        if quoted is None:
            raise ChallengeError(f"{header}: parameter {name} has no valid value", header=header)
        text = quoted.group()
    key = name.lower()
    if key in params:
        raise ChallengeError(f"{header}: parameter {key} appears twice", header=header)
    if len(params) >= MAX_AUTH_PARAMS:
        raise ChallengeError(f"{header}: more than {MAX_AUTH_PARAMS} parameters", header=header)
    params[key] = text
    return quoted.end()


def _separator(value: str, pos: int, header: str) -> int:
    """Skip whitespace and the commas that end a parameter or a challenge."""
    after = _skip(_SEPARATORS, value, pos)
    if after < len(value) and "," not in value[pos:after] and value[pos - 1] not in " \t":
        raise ChallengeError(
            f"{header}: expected a comma at {value[pos : pos + 20]!r}", header=header
        )
    return after


def _skip(pattern: re.Pattern[str], value: str, pos: int) -> int:
    """Return where a match of ``pattern`` (which may match nothing) at ``pos`` ends."""
    match = pattern.match(value, pos)
    return pos if match is None else match.end()


def _digest(scheme: str, params: dict[str, str], *, proxy: bool, header: str) -> Challenge | str:
    """Return the challenge, or a description of why it cannot be answered."""
    if scheme.lower() != "digest":
        return scheme
    for required in ("realm", "nonce"):
        if required not in params:
            raise ChallengeError(f"{header}: Digest challenge without {required}", header=header)
    algorithm = _ALGORITHMS.get(params.get("algorithm", "MD5").lower())
    if algorithm is None:
        return f"Digest algorithm={params['algorithm'][:40]}"
    offered = [part.strip(" \t").lower() for part in params.get("qop", "").split(",")]
    qop = tuple(_QOPS[part] for part in offered if part in _QOPS)
    if "qop" in params and not qop:
        return f"Digest qop={params['qop'][:40]}"
    if algorithm.session and not qop:
        return f"Digest algorithm={algorithm.value} without qop"
    return Challenge(
        proxy=proxy,
        realm=params["realm"],
        nonce=params["nonce"],
        algorithm=algorithm,
        qop=qop,
        opaque=params.get("opaque"),
        stale=params.get("stale", "").lower() == "true",
        userhash=params.get("userhash", "").lower() == "true",
    )
