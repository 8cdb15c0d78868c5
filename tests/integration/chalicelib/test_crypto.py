"""KMS encryption of stored secrets, on moto's KMS."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from chalicelib.crypto import CipherError, FernetCipher, KmsCipher, generate_fernet_key


def test_kms_round_trip_on_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        kms = boto3.client("kms", region_name="us-east-1")
        key_id = kms.create_key(Description="sipline secrets")["KeyMetadata"]["KeyId"]
        cipher = KmsCipher(kms, key_id)
        ciphertext = cipher.encrypt("trunk-pass")
        assert ciphertext.startswith("kms:") and "trunk-pass" not in ciphertext
        assert cipher.decrypt(ciphertext) == "trunk-pass"
        with pytest.raises(CipherError):
            cipher.decrypt(FernetCipher(generate_fernet_key()).encrypt("x"))
