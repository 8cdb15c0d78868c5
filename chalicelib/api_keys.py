"""API keys: kept as SHA-256 hashes, compared in constant time, named by an id (docs/deployment.md).

Theory of operation:

1. **Configuration.** ``SIPLINE_API_KEYS`` holds comma-separated entries
   ``<keyId>:<accountId>:<credential>``. The credential is ``sha256:<64 hex digits>``, the hash of
   the key (what a deployment should store), or the key itself, which is hashed as it is read.
   Either way :class:`ApiKey` keeps only the hash: the settings, a traceback or a memory dump
   never show a key. The same entries may be given as JSON, one object
   ``{"keyId": ..., "accountId": ..., "key": <credential>}`` or a list of them: that is the form
   Secrets Manager generates the first key in (the CDK app's ``api_keys_secret``), and a value
   starting with ``{`` or ``[`` is read as JSON. Every rule below applies to both forms.
2. **Strength.** A key given in plain text must be at least :data:`MIN_KEY_LENGTH` characters
   and carry at least :data:`MIN_KEY_BITS` bits by the estimate ``length × log2(distinct
   characters)`` (which stops ``aaaa…`` and ``abab…``, not a clever pattern: generate keys with
   :func:`new_key`). A weak key, a malformed entry, a repeated id or a repeated key stops the
   start-up with :class:`ApiKeyError`, whose message names the entry by position and id, never
   by its key.
3. **Why plain SHA-256.** Keys are random and at least 128 bits, so guessing a key from its hash
   costs 2^128 tries whatever the hash's speed; salts and slow hashes exist for passwords people
   choose, and would only make every request slower.
4. **Comparison.** :func:`authenticate` hashes the presented key and compares the digest with
   every configured hash using :func:`hmac.compare_digest`, without stopping at a match, so the
   time taken depends on neither the key nor which entry matched.
5. **Ids.** The key id (``[A-Za-z0-9_-]``, at most 32 characters) is not secret: log lines carry
   ``key_id`` instead of the key, and deleting one entry revokes one key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

MIN_KEY_LENGTH = 32
MIN_KEY_BITS = 128
HASH_PREFIX = "sha256:"
ENTRY_FORMAT = "<keyId>:<accountId>:<key or sha256:<64 hex digits>>"
JSON_FIELDS = ("keyId", "accountId", "key")
JSON_FORMAT = '{"keyId": ..., "accountId": ..., "key": <key or sha256:<64 hex digits>>}'
_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")


class ApiKeyError(ValueError):
    """``SIPLINE_API_KEYS`` is malformed or names a weak key (the control plane does not start)."""


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One configured key: its id, its account, and the SHA-256 of the key (hex)."""

    key_id: str
    account_id: str
    sha256: str


def hash_key(key: str) -> str:
    """Return the SHA-256 of ``key`` (UTF-8), in lower-case hex."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_key(prefix: str = "sk_") -> str:
    """Return a fresh key: ``prefix`` and 256 random bits in URL-safe base64."""
    return prefix + secrets.token_urlsafe(32)


def entry(key_id: str, account_id: str, key: str) -> str:
    """Return the ``SIPLINE_API_KEYS`` entry that stores ``key`` as its hash."""
    return f"{key_id}:{account_id}:{HASH_PREFIX}{hash_key(key)}"


def estimated_bits(key: str) -> float:
    """Return ``len(key) × log2(distinct characters)``: an upper bound of a key's entropy."""
    distinct = len(set(key))
    return len(key) * math.log2(distinct) if distinct > 1 else 0.0


def weakness(key: str) -> str | None:
    """Return why ``key`` is too weak to configure (rule 2), or None if it is strong enough."""
    if len(key) < MIN_KEY_LENGTH:
        return (
            f"the key has {len(key)} characters; at least {MIN_KEY_LENGTH} characters are required"
        )
    if estimated_bits(key) < MIN_KEY_BITS:
        return f"the key is too regular: at least {MIN_KEY_BITS} bits of randomness are required"
    return None


def _parse_entry(position: int, item: str) -> ApiKey:
    where = f"SIPLINE_API_KEYS entry {position}"
    parts = item.split(":", 2)
    if len(parts) != 3 or not all(parts):
        raise ApiKeyError(f"{where}: expected {ENTRY_FORMAT} (docs/deployment.md)")
    return _parse_parts(where, *parts)


def _parse_object(position: int, item: object) -> ApiKey:
    where = f"SIPLINE_API_KEYS entry {position}"
    if not isinstance(item, dict) or set(item) != set(JSON_FIELDS):
        raise ApiKeyError(f"{where}: expected an object {JSON_FORMAT} (docs/deployment.md)")
    key_id, account_id, credential = (item[name] for name in JSON_FIELDS)
    if not all(isinstance(v, str) and v for v in (key_id, account_id, credential)):
        raise ApiKeyError(f"{where}: keyId, accountId and key must be non-empty strings")
    if any(c in account_id for c in ":,"):
        raise ApiKeyError(f"{where}: the account id must not contain ':' or ','")
    return _parse_parts(where, key_id, account_id, credential)


def _parse_parts(where: str, key_id: str, account_id: str, credential: str) -> ApiKey:
    if not _KEY_ID.fullmatch(key_id):
        raise ApiKeyError(f"{where}: the key id must be 1-32 letters, digits, '_' or '-'")
    where += f" (key id {key_id!r})"
    if credential.startswith(HASH_PREFIX):
        digest = credential.removeprefix(HASH_PREFIX)
        if not _HEX_DIGEST.fullmatch(digest):
            raise ApiKeyError(f"{where}: a sha256: credential is 64 lower-case hex digits")
        return ApiKey(key_id, account_id, digest)
    if (weak := weakness(credential)) is not None:
        raise ApiKeyError(f"{where}: {weak} (docs/deployment.md)")
    return ApiKey(key_id, account_id, hash_key(credential))


def parse_api_keys(text: str) -> tuple[ApiKey, ...]:
    """Parse ``SIPLINE_API_KEYS`` (rules 1, 2); raise ApiKeyError on anything wrong."""
    if text.lstrip().startswith(("{", "[")):
        keys = tuple(_parse_object(n, item) for n, item in enumerate(_json_items(text), start=1))
    else:
        items = [part.strip() for part in text.split(",")]
        keys = tuple(_parse_entry(n, item) for n, item in enumerate(items, start=1) if item)
    _unique((k.key_id for k in keys), "key id")
    _unique((k.sha256 for k in keys), "key")
    return keys


def _json_items(text: str) -> list[object]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:  # its message quotes no input, only a position
        raise ApiKeyError(
            f"SIPLINE_API_KEYS is not valid JSON ({error.msg} at line {error.lineno}"
            f" column {error.colno})"
        ) from None
    return value if isinstance(value, list) else [value]


def _unique(values: Iterable[str], what: str) -> None:
    seen: set[str] = set()
    for position, value in enumerate(values, start=1):
        if value in seen:
            shown = repr(value) if what == "key id" else "an earlier entry's"
            raise ApiKeyError(f"SIPLINE_API_KEYS entry {position}: {what} repeats {shown}")
        seen.add(value)


def authenticate(keys: Iterable[ApiKey], presented: str) -> ApiKey | None:
    """Return the configured key whose hash is ``presented``'s, comparing every one (rule 4)."""
    digest = hash_key(presented).encode()
    found: ApiKey | None = None
    for key in keys:
        if hmac.compare_digest(key.sha256.encode(), digest):
            found = key
    return found
