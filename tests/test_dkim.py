"""DKIM signing: signatures verify against the TXT record a domain publishes, served over real DNS."""

from __future__ import annotations

import hashlib

import dkim
import dkim.crypto
import dns.resolver
import pytest

from backend.dns.records import generate_dkim_key, required_records
from backend.mail.compose import Outgoing, compose
from backend.mail.dkim import _PURE_PYTHON_SIGN, rsa_sign, sign_for_domain

RAW = compose(Outgoing(sender="news@signed.test", sender_name="News", to=["reader@elsewhere.test"],
                       subject="Héllo", text="Signed body ✓", html="<p>Signed body ✓</p>"))


def published_domain(dns_server, name: str) -> dict:
    """A domain with a fresh key whose DKIM record is published on the test DNS server."""
    private_pem, public_b64 = generate_dkim_key()
    record = next(r for r in required_records(name, "mx.commune.test", public_b64) if r["record"] == "DKIM")
    dns_server.publish(record["name"], "TXT", f'"{record["value"]}"')
    return {"name": name, "dkim_selector": "commune", "dkim_private_key": private_pem}


def dns_lookup(dns_server):
    """dkimpy's DNS hook, asking the test DNS server."""
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [dns_server.host]
    resolver.port = dns_server.port

    def lookup(name: bytes, timeout: int = 5) -> bytes:
        answer = resolver.resolve(name.decode(), "TXT")
        return b"".join(b"".join(r.strings) for r in answer)

    return lookup


def test_signature_verifies_against_the_published_record(dns_server) -> None:
    domain = published_domain(dns_server, "signed.test")
    signed = sign_for_domain(RAW, domain)
    assert signed.startswith(b"DKIM-Signature:") and b"d=signed.test" in signed and b"s=commune" in signed
    assert dkim.verify(signed, dnsfunc=dns_lookup(dns_server))


def test_changed_subject_or_body_breaks_the_signature(dns_server) -> None:
    domain = published_domain(dns_server, "tamper.test")
    signed = sign_for_domain(RAW, domain)
    lookup = dns_lookup(dns_server)
    assert not dkim.verify(signed.replace(b"Subject: =?utf-8?q?H=C3=A9llo?=", b"Subject: Hi"), dnsfunc=lookup)
    assert not dkim.verify(signed.replace(b"<p>Signed", b"<p>Forged"), dnsfunc=lookup)


def test_a_rotated_key_no_longer_verifies(dns_server) -> None:
    old = published_domain(dns_server, "rotated.test")
    signed = sign_for_domain(RAW, old)
    published_domain(dns_server, "rotated.test")
    assert not dkim.verify(signed, dnsfunc=dns_lookup(dns_server))


def test_domains_without_a_usable_key_send_unsigned() -> None:
    assert sign_for_domain(RAW, None) == RAW
    assert sign_for_domain(RAW, {"name": "x.test", "dkim_private_key": None}) == RAW
    broken = {"name": "x.test", "dkim_selector": "commune", "dkim_private_key": "-----BEGIN PRIVATE KEY-----\nxx"}
    assert sign_for_domain(RAW, broken) == RAW


@pytest.mark.parametrize("algorithm", ["sha256", "sha1"])
def test_openssl_signature_is_byte_for_byte_dkimpys_own(algorithm: str) -> None:
    """The RSA step runs in OpenSSL instead of dkimpy's pure Python: same key, same digest, same bytes."""
    key = dkim.crypto.parse_pem_private_key(generate_dkim_key()[0].encode())
    for text in (b"", b"headers to sign", b"x" * 10_000):
        digest = hashlib.new(algorithm, text)
        assert rsa_sign(digest, key) == _PURE_PYTHON_SIGN(digest, key)
    assert dkim.RSASSA_PKCS1_v1_5_sign is rsa_sign  # what dkim.sign calls
