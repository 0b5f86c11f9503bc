"""Android ADB RSA public keys (``adbkey.pub``) and token signatures, as adbd checks them.

The public key is the 524-byte ``RSAPublicKey`` struct of ``android_pubkey.h`` in standard base64,
optionally followed by `` user@host``. A signature is RSASSA-PKCS1-v1_5 with a SHA-1 DigestInfo
where the 20-byte token stands in for the digest (adbd: ``RSA_verify(NID_sha1, token, 20, ...)``).
"""

from __future__ import annotations

import base64
import binascii
import struct

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

ANDROID_PUBKEY_MODULUS_WORDS = 64  # RSA-2048
ANDROID_PUBKEY_ENCODED_SIZE = 524


class BadPublicKey(ValueError):
    """The text is not an Android ADB public key."""


def parse_adb_public_key(text: str | bytes) -> rsa.RSAPublicKey:
    """Parse ``<base64> [comment]`` (NUL-terminated or not) into an RSA public key."""
    if isinstance(text, bytes):
        text = text.split(b"\0", 1)[0].decode("ascii", errors="replace")
    fields = text.strip().split()
    if not fields:
        raise BadPublicKey("empty public key")
    try:
        raw = base64.b64decode(fields[0], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadPublicKey(f"public key is not base64: {exc}") from exc
    if len(raw) != ANDROID_PUBKEY_ENCODED_SIZE:
        raise BadPublicKey(f"public key struct is {len(raw)} bytes, expected 524")
    words, _n0inv = struct.unpack_from("<II", raw, 0)
    if words != ANDROID_PUBKEY_MODULUS_WORDS:
        raise BadPublicKey(f"modulus has {words} words, expected 64")
    modulus = int.from_bytes(raw[8:264], "little")
    (exponent,) = struct.unpack_from("<I", raw, 520)
    return rsa.RSAPublicNumbers(exponent, modulus).public_key()


def encode_adb_public_key(key: rsa.RSAPublicKey, comment: str = "unknown@peer") -> str:
    """The ``adbkey.pub`` text of ``key`` (what ``adb keygen`` writes)."""
    numbers = key.public_numbers()
    n = numbers.n
    n0inv = (-pow(n, -1, 2**32)) % 2**32
    rr = pow(2, 4096, n)
    raw = (
        struct.pack("<II", ANDROID_PUBKEY_MODULUS_WORDS, n0inv)
        + n.to_bytes(256, "little")
        + rr.to_bytes(256, "little")
        + struct.pack("<I", numbers.e)
    )
    return base64.b64encode(raw).decode("ascii") + " " + comment


def verify_token_signature(key: rsa.RSAPublicKey, token: bytes, signature: bytes) -> bool:
    """True when ``signature`` signs ``token`` the way adb hosts do."""
    try:
        key.verify(signature, token, padding.PKCS1v15(), utils.Prehashed(hashes.SHA1()))
    except (InvalidSignature, ValueError):
        return False
    return True


def same_key(a: rsa.RSAPublicKey, b: rsa.RSAPublicKey) -> bool:
    """Whether two public keys are the same key."""
    return a.public_numbers() == b.public_numbers()
