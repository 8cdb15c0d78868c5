"""Encryption of stored secrets (registration and trunk passwords, fallback signing secrets).

On AWS a KMS key encrypts them (``SIPLINE_KMS_KEY_ID``); locally a configured Fernet key does
(``SIPLINE_PASSWORD_KEY``). Ciphertexts carry a prefix naming the scheme (``kms:`` / ``fernet:``),
so the relay, which shares the key, knows how to decrypt what a command carries.
"""

from __future__ import annotations

import base64
from typing import Any, Protocol


class Cipher(Protocol):
    """Encrypts and decrypts short secrets."""

    def encrypt(self, plaintext: str) -> str: ...

    def decrypt(self, ciphertext: str) -> str: ...


class CipherError(Exception):
    """A ciphertext could not be decrypted (wrong key, corrupted, unknown scheme)."""


class FernetCipher:
    """AES-128-CBC + HMAC-SHA256 (Fernet) under a configured key."""

    prefix = "fernet:"

    def __init__(self, key: str) -> None:
        self._key = key
        self._fernet_instance: Any = None

    @property
    def _fernet(self) -> Any:
        if self._fernet_instance is None:  # cryptography is imported on first use: cold starts
            from cryptography.fernet import Fernet

            self._fernet_instance = Fernet(self._key.encode())
        return self._fernet_instance

    def encrypt(self, plaintext: str) -> str:
        return self.prefix + str(self._fernet.encrypt(plaintext.encode()).decode())

    def decrypt(self, ciphertext: str) -> str:
        from cryptography.fernet import InvalidToken

        if not ciphertext.startswith(self.prefix):
            raise CipherError("not a fernet ciphertext")
        try:
            return str(self._fernet.decrypt(ciphertext[len(self.prefix) :].encode()).decode())
        except InvalidToken:
            raise CipherError("fernet ciphertext does not decrypt under this key") from None


class KmsCipher:
    """AWS KMS ``Encrypt``/``Decrypt`` under one key, with an encryption context."""

    prefix = "kms:"
    _context = {"purpose": "sipline-secret"}

    def __init__(self, client: Any, key_id: str) -> None:
        self._client = client
        self._key_id = key_id

    def encrypt(self, plaintext: str) -> str:
        response = self._client.encrypt(
            KeyId=self._key_id, Plaintext=plaintext.encode(), EncryptionContext=self._context
        )
        return self.prefix + base64.b64encode(response["CiphertextBlob"]).decode()

    def decrypt(self, ciphertext: str) -> str:
        if not ciphertext.startswith(self.prefix):
            raise CipherError("not a kms ciphertext")
        blob = base64.b64decode(ciphertext[len(self.prefix) :])
        response = self._client.decrypt(CiphertextBlob=blob, EncryptionContext=self._context)
        return bytes(response["Plaintext"]).decode()


def generate_fernet_key() -> str:
    """Return a new random Fernet key (for the local stack and tests)."""
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()
