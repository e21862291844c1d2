"""The DNS records a domain must publish: DKIM (from a generated key), SPF, receiving MX, ownership token,
and a DMARC policy whose aggregate reports (`rua`) come back to this server."""

from __future__ import annotations

import base64
import secrets

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

DKIM_SELECTOR = "commune"
DMARC_REPORT_LOCAL_PART = "dmarc-reports"
"""The reserved local part DMARC aggregate reports are sent to (`rua=mailto:dmarc-reports@<domain>`)."""
OPTIONAL_RECORDS = frozenset({"DMARC"})
"""Records checked and reported on verify but not needed for `verified`: a domain that already publishes
its own DMARC policy keeps it, and reports only reach us once that policy lists our `rua` address."""


def generate_dkim_key() -> tuple[str, str]:
    """A new RSA-2048 key pair: (private key PEM, public key base64 DER for the TXT record)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public_der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, base64.b64encode(public_der).decode()


def dkim_public_from_private(private_pem: str) -> str:
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    public_der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(public_der).decode()


def new_ownership_token() -> str:
    """A random token for one organisation's claim on one domain name."""
    return secrets.token_hex(16)


def dmarc_record_value(domain: str) -> str:
    """Monitoring policy (`p=none`): mail is never refused because of it while the owner watches the
    reports; they can tighten `p` themselves once every legitimate source passes."""
    return f"v=DMARC1; p=none; rua=mailto:{DMARC_REPORT_LOCAL_PART}@{domain}"


def required_records(
    domain: str, mail_host: str, dkim_public: str, selector: str = DKIM_SELECTOR,
    ownership_token: str | None = None, dmarc: bool = True,
) -> list[dict]:
    """Records in the reference's shape, names fully qualified, each starting as `pending`.

    With `ownership_token`, a TXT record at `_commune-verify.<domain>` proves that the organisation
    holding this row controls the name's DNS; another organisation's claim has a different token.
    With `dmarc`, a TXT record at `_dmarc.<domain>` sends aggregate reports to this server.
    """
    records = [
        {
            "record": "DKIM",
            "name": f"{selector}._domainkey.{domain}",
            "type": "TXT",
            "value": f"v=DKIM1; k=rsa; p={dkim_public}",
            "status": "pending",
            "ttl": "Auto",
        },
        {
            "record": "SPF",
            "name": f"send.{domain}",
            "type": "MX",
            "value": mail_host,
            "priority": 10,
            "status": "pending",
            "ttl": "Auto",
        },
        {
            "record": "SPF",
            "name": f"send.{domain}",
            "type": "TXT",
            "value": f"v=spf1 a:{mail_host} mx ~all",
            "status": "pending",
            "ttl": "Auto",
        },
        {
            "record": "Receiving",
            "name": domain,
            "type": "MX",
            "value": mail_host,
            "priority": 10,
            "status": "pending",
            "ttl": "Auto",
        },
    ]
    if ownership_token is not None:
        records.append({
            "record": "Ownership",
            "name": f"_commune-verify.{domain}",
            "type": "TXT",
            "value": f"commune-verification={ownership_token}",
            "status": "pending",
            "ttl": "Auto",
        })
    if dmarc:
        records.append({
            "record": "DMARC",
            "name": f"_dmarc.{domain}",
            "type": "TXT",
            "value": dmarc_record_value(domain),
            "status": "pending",
            "ttl": "Auto",
        })
    return records
