"""DKIM signatures (dkimpy) for outgoing mail, with the key and selector of the sending domain.

dkimpy canonicalises and hashes; the RSA step is OpenSSL's (`cryptography`), not dkimpy's own
pure-Python big-integer arithmetic, which takes about 13 ms per 2048-bit signature while holding the
GIL (it capped relayed sends near 70 a second and stalled the event loop meanwhile). RSASSA-PKCS1-v1_5
is deterministic, so the signature bytes are the same either way (tests/test_dkim.py compares them).
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import dkim
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

log = logging.getLogger("commune.dkim")
_HASHES = {"sha256": hashes.SHA256, "sha1": hashes.SHA1}
_PURE_PYTHON_SIGN = dkim.crypto.RSASSA_PKCS1_v1_5_sign
_KEY_FIELDS = ("prime1", "prime2", "privateExponent", "exponent1", "exponent2", "coefficient", "publicExponent",
               "modulus")


@functools.lru_cache(maxsize=256)
def _openssl_key(p: int, q: int, d: int, dmp1: int, dmq1: int, iqmp: int, e: int, n: int) -> rsa.RSAPrivateKey:
    return rsa.RSAPrivateNumbers(p, q, d, dmp1, dmq1, iqmp, rsa.RSAPublicNumbers(e, n)).private_key()


def rsa_sign(digest: Any, private_key: dict) -> bytes:
    """dkimpy's `RSASSA_PKCS1_v1_5_sign(hash, key)` computed by OpenSSL; dkimpy's own for what OpenSSL refuses."""
    algorithm = _HASHES.get(digest.name.lower())
    if algorithm is not None:
        try:
            key = _openssl_key(*(private_key[field] for field in _KEY_FIELDS))
            return key.sign(digest.digest(), padding.PKCS1v15(), Prehashed(algorithm()))
        except (ValueError, TypeError, UnsupportedAlgorithm):
            pass
    return _PURE_PYTHON_SIGN(digest, private_key)


# dkimpy looks the function up in its package namespace each time it signs.
dkim.RSASSA_PKCS1_v1_5_sign = rsa_sign

# Headers a reply or forward must not be able to alter without breaking the signature.
SIGNED_HEADERS = [
    b"from", b"to", b"cc", b"subject", b"date", b"message-id", b"in-reply-to", b"references",
    b"reply-to", b"mime-version", b"content-type", b"content-transfer-encoding",
]


def sign(raw: bytes, domain: str, selector: str, private_pem: str) -> bytes:
    """`raw` with a DKIM-Signature header prepended (relaxed/relaxed, rsa-sha256)."""
    signature = dkim.sign(
        raw, selector.encode(), domain.encode(), private_pem.encode(),
        canonicalize=(b"relaxed", b"relaxed"), include_headers=SIGNED_HEADERS, linesep=b"\r\n",
    )
    return signature + raw


def sign_for_domain(raw: bytes, domain: dict | None) -> bytes:
    """Sign with the domain's key when it has one; an unusable key sends the message unsigned."""
    if not domain or not domain.get("dkim_private_key"):
        return raw
    try:
        return sign(raw, domain["name"], domain.get("dkim_selector") or "commune", domain["dkim_private_key"])
    except Exception:
        log.exception("DKIM signing for %s failed; sending unsigned", domain.get("name"))
        return raw
