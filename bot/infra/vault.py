"""Phone numbers at rest: AES-GCM ciphertext plus an HMAC for lookup, and masking for display.

Two keys are derived from each data key, so the lookup hash never reveals anything about the
encryption key and vice versa. A vault holds the current key and, while a key is being rotated,
the previous ones: it encrypts and hashes with the current key, decrypts with whichever key a
ciphertext names, and looks values up under every key it holds, so workers keep working while
`memberbot security rotate-key` re-encrypts the rows.
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


class _Key:
    def __init__(self, data_key: bytes):
        if len(data_key) != 32:
            raise ValueError("a data key must be 32 bytes")
        self.aead = AESGCM(_derive(data_key, b"memberbot phone encryption"))
        self.mac_key = _derive(data_key, b"memberbot lookup hash")
        self.id = hashlib.sha256(self.mac_key).hexdigest()[:8]

    def mac(self, value: str) -> str:
        return hmac.new(self.mac_key, value.encode(), hashlib.sha256).hexdigest()


class Vault:
    def __init__(self, data_key: bytes, previous: list[bytes] | tuple[bytes, ...] = ()):
        self._current = _Key(data_key)
        self._keys = {key.id: key for key in (self._current, *map(_Key, previous))}

    @property
    def key_id(self) -> str:
        return self._current.id

    def encrypt(self, plaintext: str) -> str:
        nonce = os.urandom(12)
        header = f"{_VERSION}.{self._current.id}"
        sealed = self._current.aead.encrypt(nonce, plaintext.encode(), header.encode())
        return f"{header}:{base64.b64encode(nonce + sealed).decode()}"

    def key_id_of(self, token: str) -> str:
        return token.partition(":")[0].partition(".")[2]

    def decrypt(self, token: str) -> str:
        header, _, body = token.partition(":")
        version, _, key_id = header.partition(".")
        if version != _VERSION:
            raise ValueError(f"unknown ciphertext version {version!r}")
        key = self._keys.get(key_id)
        if key is None:
            raise ValueError(f"ciphertext made with key {key_id}, which this vault does not hold")
        raw = base64.b64decode(body)
        try:
            return key.aead.decrypt(raw[:12], raw[12:], header.encode()).decode()
        except InvalidTag:
            raise ValueError("ciphertext does not match the data key") from None

    def lookup_hash(self, value: str) -> str:
        """Deterministic keyed hash under the current key: equal inputs give equal hashes, but
        without the key a leaked table cannot be reversed by hashing every phone number."""
        return self._current.mac(value)

    def lookup_hashes(self, value: str) -> list[str]:
        """The value's hash under every key held: what a lookup must match during a rotation."""
        return [key.mac(value) for key in self._keys.values()]

    def code_hash(self, phone_hash: str, code: str) -> str:
        return self.lookup_hash(f"code:{phone_hash}:{code}")


def mask_phone(phone: str) -> str:
    """13800138000 → 138****8000."""
    if len(phone) < 7:
        return "*" * len(phone)
    return f"{phone[:3]}****{phone[-4:]}"


def mask_card(card_no: str) -> str:
    """88****0018: enough for staff to tell cards apart, not enough to use one."""
    if len(card_no) <= 6:
        return "*" * len(card_no)
    return card_no[:2] + "*" * (len(card_no) - 6) + card_no[-4:]


def constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
