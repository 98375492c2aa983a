"""Enrollment requests prove key possession; secrets open only with the device's own key."""

from __future__ import annotations

import nacl.signing
import pytest

from protocol.errors import MalformedError, SignatureError
from protocol.provisioning import (
    EnrollmentRequest,
    key_fingerprint,
    normalize_fingerprint,
    open_secret,
    seal_secret,
)


def request(key: nacl.signing.SigningKey) -> EnrollmentRequest:
    import base64

    return EnrollmentRequest(serial="TS-0001", kind="gate", hardware_model="rpi4", software_version="0.1.0",
                             public_key=base64.b64encode(bytes(key.verify_key)).decode(),
                             reply_to="a" * 32, nonce="b" * 32, at=1.0).sign(key)


def test_a_request_is_signed_by_the_key_it_carries() -> None:
    key = nacl.signing.SigningKey.generate()
    req = request(key)
    req.verify()
    with pytest.raises(SignatureError):
        req.model_copy(update={"kind": "kiosk"}).verify()
    with pytest.raises(SignatureError):
        request(key).model_copy(update={"public_key": request(nacl.signing.SigningKey.generate()).public_key}).verify()


def test_a_sealed_secret_opens_only_with_its_device_key() -> None:
    key, other = nacl.signing.SigningKey.generate(), nacl.signing.SigningKey.generate()
    sealed = seal_secret({"password": "s3cret"}, request(key).public_key)
    assert open_secret(sealed, key) == {"password": "s3cret"}
    with pytest.raises(MalformedError):
        open_secret(sealed, other)


def test_the_key_fingerprint_is_64_bits_of_sha256_in_readable_groups() -> None:
    import base64
    import hashlib

    key = nacl.signing.SigningKey.generate()
    req = request(key)
    fp = key_fingerprint(req.public_key)
    assert fp == req.fingerprint
    raw = hashlib.sha256(bytes(key.verify_key)).hexdigest()[:16].upper()
    assert fp == "-".join(raw[i:i + 4] for i in range(0, 16, 4)) and len(fp) == 19
    assert key_fingerprint(base64.b64encode(bytes(nacl.signing.SigningKey.generate().verify_key)).decode()) != fp
    assert normalize_fingerprint(fp.lower().replace("-", " ")) == fp
    assert normalize_fingerprint(f" {raw} ") == normalize_fingerprint(raw.replace("", ":")[1:-1]) == fp
    for bad in ("", "AB12-CD34-EF56", "AB12-CD34-EF56-789G", fp + "0"):
        with pytest.raises(MalformedError):
            normalize_fingerprint(bad)
