"""``SIPLINE_API_KEYS``: parsed into hashes with ids, weak or malformed entries refused."""

from __future__ import annotations

import pytest

from chalicelib.api_keys import (
    MIN_KEY_BITS,
    ApiKey,
    ApiKeyError,
    authenticate,
    entry,
    estimated_bits,
    hash_key,
    new_key,
    parse_api_keys,
    weakness,
)

KEY = "sk_live_Zq8Lr2Vt5Nw9Xc3Bm7Kp1Hs6Dg4Fj0Ay"
OTHER = "sk_live_Pq4Wm8Rt2Yc6Vb0Nk3Hj7Ls1Fd5Gx9Ez"
# printf %s "$KEY" | sha256sum
KEY_SHA256 = "9bb0c2abd05959b215430b873de9cb8dfb39563cce2bc635eccbfb96db8a3215"


def test_hash_is_sha256_hex() -> None:
    assert hash_key(KEY) == KEY_SHA256


def test_plain_and_hashed_entries_give_the_same_key() -> None:
    plain = parse_api_keys(f"ops:default:{KEY}")
    hashed = parse_api_keys(f"ops:default:sha256:{KEY_SHA256}")

    assert plain == hashed == (ApiKey("ops", "default", KEY_SHA256),)
    assert parse_api_keys(entry("ops", "default", KEY)) == plain


def test_several_entries_spaces_and_empty_items() -> None:
    keys = parse_api_keys(f" ops:default:{KEY} ,, ci:acme:{OTHER},")

    assert [(k.key_id, k.account_id) for k in keys] == [("ops", "default"), ("ci", "acme")]


def test_authenticate_finds_the_key_by_its_hash_and_nothing_else() -> None:
    keys = parse_api_keys(f"ops:default:{KEY},ci:acme:{OTHER}")

    assert authenticate(keys, OTHER) == keys[1]
    assert authenticate(keys, KEY) == keys[0]
    assert authenticate(keys, KEY_SHA256) is None  # the hash is not a key
    assert authenticate(keys, KEY + " ") is None
    assert authenticate(keys, "") is None
    assert authenticate(keys, "é" * 40) is None
    assert authenticate((), KEY) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ops:default:short", "entry 1 (key id 'ops'): the key has 5 characters; at least 32"),
        (f"ops:default:{'a' * 64}", "entry 1 (key id 'ops'): the key is too regular"),
        (KEY, "entry 1: expected <keyId>:<accountId>:"),
        (f"default:{KEY}", "entry 1: expected <keyId>:<accountId>:"),
        (f"ops::{KEY}", "entry 1: expected <keyId>:<accountId>:"),
        (f"op s:default:{KEY}", "entry 1: the key id must be 1-32 letters"),
        ("ops:default:sha256:ABC", "entry 1 (key id 'ops'): a sha256: credential is 64"),
        (f"ops:default:{KEY},ops:acme:{OTHER}", "entry 2: key id repeats 'ops'"),
        (f"ops:default:{KEY},ci:acme:{KEY}", "entry 2: key repeats an earlier entry's"),
    ],
)
def test_malformed_or_weak_entries_are_refused_without_the_key(text: str, message: str) -> None:
    with pytest.raises(ApiKeyError) as refused:
        parse_api_keys(text)

    assert message in str(refused.value)
    assert KEY not in str(refused.value) and "short" not in str(refused.value)


def test_entropy_estimate_stops_repetition_not_randomness() -> None:
    assert estimated_bits("a" * 100) == 0
    assert estimated_bits("ab" * 20) == 40
    assert estimated_bits("0123456789abcdef" * 2) == 128  # 32 hex digits: just enough
    assert weakness("0123456789abcdef" * 2) is None
    assert estimated_bits(new_key()) >= MIN_KEY_BITS


def test_new_keys_are_strong_and_distinct() -> None:
    made = {new_key() for _ in range(50)}

    assert len(made) == 50
    assert all(weakness(key) is None and key.startswith("sk_") for key in made)


# --- The JSON form: what Secrets Manager generates for the CDK app's first key -----------------


def test_a_json_object_is_one_entry() -> None:
    # The shape of the CDK app's generated secret (docs/deployment.md, "API keys").
    secret = f'{{"keyId": "admin", "accountId": "default", "key": "{KEY}"}}'
    assert parse_api_keys(secret) == (ApiKey("admin", "default", KEY_SHA256),)
    assert parse_api_keys(f"  {secret}\n") == parse_api_keys(f"admin:default:{KEY}")


def test_a_json_list_gives_several_entries_plain_or_hashed() -> None:
    text = (
        f'[{{"keyId": "admin", "accountId": "default", "key": "{KEY}"}},'
        f' {{"keyId": "ci", "accountId": "acme", "key": "sha256:{hash_key(OTHER)}"}}]'
    )
    assert parse_api_keys(text) == (
        ApiKey("admin", "default", KEY_SHA256),
        ApiKey("ci", "acme", hash_key(OTHER)),
    )
    assert parse_api_keys("[]") == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"keyId": "admin", "accountId": "default", "key": "' + "a" * 64 + '"}', "too regular"),
        ('{"keyId": "admin", "accountId": "default", "key": "sk_short"}', "at least 32"),
        (f'{{"keyId": "ad min", "accountId": "default", "key": "{KEY}"}}', "key id must be"),
        (f'{{"keyId": "admin", "accountId": "a:b", "key": "{KEY}"}}', "must not contain"),
        (f'{{"keyId": "admin", "accountId": "", "key": "{KEY}"}}', "non-empty strings"),
        (f'{{"keyId": "admin", "accountId": 7, "key": "{KEY}"}}', "non-empty strings"),
        (f'{{"keyId": "admin", "key": "{KEY}"}}', "expected an object"),
        (
            f'{{"keyId": "admin", "accountId": "x", "key": "{KEY}", "extra": 1}}',
            "expected an object",
        ),
        (f'["admin:default:{KEY}"]', "expected an object"),
        ('{"keyId": "admin", "accountId": "default", "key": "sha256:abc"}', "64 lower-case hex"),
        (
            f'[{{"keyId": "a", "accountId": "x", "key": "{KEY}"}},'
            f' {{"keyId": "a", "accountId": "y", "key": "{OTHER}"}}]',
            "key id repeats 'a'",
        ),
        (
            f'[{{"keyId": "a", "accountId": "x", "key": "{KEY}"}},'
            f' {{"keyId": "b", "accountId": "y", "key": "{KEY}"}}]',
            "key repeats an earlier",
        ),
        (f'{{"keyId": "admin", "accountId": "default", "key": "{KEY}"', "not valid JSON"),
    ],
)
def test_a_bad_json_entry_stops_the_start_without_showing_a_key(text: str, message: str) -> None:
    with pytest.raises(ApiKeyError, match=message) as raised:
        parse_api_keys(text)
    assert KEY not in str(raised.value) and OTHER not in str(raised.value)
    assert "a" * 32 not in str(raised.value)
