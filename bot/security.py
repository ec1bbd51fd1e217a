"""Phone numbers at rest: AES-GCM ciphertext plus an HMAC for lookup, and masking for display.

Two keys are derived from the one data key, so the lookup hash never reveals anything about the
encryption key and vice versa.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_VERSION = "v1"


def new_data_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def _derive(key: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(key)


class Vault:
    def __init__(self, data_key: bytes):
        if len(data_key) != 32:
            raise ValueError("the data key must be 32 bytes")
        self._aead = AESGCM(_derive(data_key, b"memberbot phone encryption"))
        self._mac_key = _derive(data_key, b"memberbot lookup hash")

    def encrypt(self, plaintext: str) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), _VERSION.encode())
        return f"{_VERSION}:{base64.b64encode(nonce + sealed).decode()}"

    def decrypt(self, token: str) -> str:
        version, _, body = token.partition(":")
        if version != _VERSION:
            raise ValueError(f"unknown ciphertext version {version!r}")
        raw = base64.b64decode(body)
        try:
            return self._aead.decrypt(raw[:12], raw[12:], _VERSION.encode()).decode()
        except InvalidTag:
            raise ValueError("ciphertext does not match the data key") from None

    def lookup_hash(self, value: str) -> str:
        """Deterministic keyed hash: equal inputs give equal hashes, but without the key a
        leaked table cannot be reversed by hashing every phone number."""
        return hmac.new(self._mac_key, value.encode(), hashlib.sha256).hexdigest()

    def code_hash(self, phone_hash: str, code: str) -> str:
        return self.lookup_hash(f"code:{phone_hash}:{code}")


def mask_phone(phone: str) -> str:
    """13800138000 → 138****8000."""
    if len(phone) < 7:
        return "*" * len(phone)
    return f"{phone[:3]}****{phone[-4:]}"


def constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
