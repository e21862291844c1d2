"""HMAC-signed, expiring tokens (download URLs, deletion confirmations) keyed by the server secret."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time


class Signer:
    def __init__(self, secret: bytes) -> None:
        self.secret = secret

    def sign(self, purpose: str, subject: str, expires_at: int) -> str:
        message = f"{purpose}\n{subject}\n{expires_at}".encode()
        digest = hmac.new(self.secret, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def verify(self, purpose: str, subject: str, expires_at: int, signature: str, now: float | None = None) -> str:
        """'ok', 'expired' or 'invalid' (a bad signature is reported as invalid even if also expired)."""
        expected = self.sign(purpose, subject, expires_at)
        if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
            return "invalid"
        if (now if now is not None else time.time()) > expires_at:
            return "expired"
        return "ok"
