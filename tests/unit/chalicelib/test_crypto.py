"""Fernet encryption of stored secrets (KMS, on moto: tests/integration/chalicelib/test_crypto.py)."""

from __future__ import annotations

import pytest

from chalicelib.crypto import CipherError, FernetCipher, generate_fernet_key


def test_fernet_round_trip_never_shows_the_plaintext() -> None:
    cipher = FernetCipher(generate_fernet_key())
    ciphertext = cipher.encrypt("hunter2")
    assert ciphertext.startswith("fernet:") and "hunter2" not in ciphertext
    assert cipher.decrypt(ciphertext) == "hunter2"


def test_fernet_refuses_another_keys_ciphertext() -> None:
    ciphertext = FernetCipher(generate_fernet_key()).encrypt("hunter2")
    with pytest.raises(CipherError, match="does not decrypt under this key"):
        FernetCipher(generate_fernet_key()).decrypt(ciphertext)
