"""An outgoing call's trunk credentials: the ``dial`` command's password, decrypted, held safely.

Theory of operation
===================

The control plane never puts a trunk password in a command in clear: ``POST .../calls``
encrypts it with the deployment's key (``chalicelib/crypto.py``: KMS on AWS,
``SIPLINE_KMS_KEY_ID``; a Fernet key locally, ``SIPLINE_PASSWORD_KEY``) into the ``dial``
command's ``passwordCiphertext``, whose prefix (``kms:``, ``fernet:``) names the scheme. The
relay is configured with the same key (:func:`password_cipher`) and decrypts it when it places
the call (:func:`dial_credentials`; a bridged transfer's ``transfer`` command the same way), in a worker thread (KMS is a network call; boto3 blocks).

The plain password exists only inside a :class:`~relay.sip.digest.Credentials`, whose ``repr``
hides it, and leaves the relay only hashed in a digest answer. A ciphertext that does not
decrypt (another key, damaged, no key configured) raises :class:`CredentialsUnavailable`,
whose message names the reason and never the ciphertext or the password; the call then ends
before its INVITE (docs/relay.md, An outgoing call).

Without a ``username`` the call carries no credentials (a challenge then ends it, REJECTED
with 401 or 407); a ``username`` without a password answers with an empty password.
"""

from __future__ import annotations

import asyncio

from chalicelib.contracts import DialCommand, TransferCommand
from chalicelib.crypto import Cipher, CipherError, FernetCipher, KmsCipher
from relay.sip.digest import Credentials

__all__ = ["CredentialsUnavailable", "dial_credentials", "password_cipher"]


class CredentialsUnavailable(Exception):
    """The command's password could not be decrypted (the message never holds a secret)."""


def password_cipher(password_key: str | None, kms_key_id: str | None) -> Cipher | None:
    """The relay's cipher: KMS when ``SIPLINE_KMS_KEY_ID`` is set, else Fernet, else none."""
    if kms_key_id:
        import boto3

        return KmsCipher(boto3.client("kms"), kms_key_id)
    if password_key:
        return FernetCipher(password_key)
    return None


async def dial_credentials(
    command: DialCommand | TransferCommand, cipher: Cipher | None
) -> Credentials | None:
    """The credentials that answer the call's digest challenges, or ``None`` (no username).

    Raises:
        CredentialsUnavailable: the password is there but cannot be decrypted, or the username
            cannot be carried in a header field.
    """
    if not command.username:
        return None
    password = ""
    if command.password_ciphertext:
        if cipher is None:
            raise CredentialsUnavailable(
                "the command carries a password and the relay has no key to decrypt it"
                " (set SIPLINE_PASSWORD_KEY or SIPLINE_KMS_KEY_ID as the control plane's)"
            )
        try:
            password = await asyncio.to_thread(cipher.decrypt, command.password_ciphertext)
        except CipherError as error:
            raise CredentialsUnavailable(f"the password does not decrypt: {error}") from None
        except Exception as error:  # KMS refused or unreachable: name the kind, not the text
            raise CredentialsUnavailable(
                f"the password could not be decrypted ({type(error).__name__})"
            ) from None
    try:
        return Credentials(command.username, password)
    except ValueError as error:  # names the field, never the password
        raise CredentialsUnavailable(str(error)) from None
