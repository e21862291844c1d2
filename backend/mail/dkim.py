"""DKIM signatures (dkimpy) for outgoing mail, with the key and selector of the sending domain."""

from __future__ import annotations

import logging

import dkim

log = logging.getLogger("commune.dkim")

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
