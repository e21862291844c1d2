"""MIME types from strangers (mail parts, uploads) reduced to a clean `type/subtype` or `application/octet-stream`.

A stored MIME type is later written into HTTP response heads and outgoing mail, so it must be a plain
ASCII token pair: RFC 2045 `token "/" token`, where a token is printable ASCII without spaces, controls
or the tspecials `()<>@,;:\\"/[]?=`. Anything else — 8-bit bytes, a line break folded into the value,
an encoded word, an empty half — is not a type we can vouch for, so it is stored as opaque bytes.
"""

from __future__ import annotations

import re

OCTET_STREAM = "application/octet-stream"
# RFC 6838 §4.2 caps each half at 127 characters.
_TOKEN = r"[!#$%&'*+\-.^_`{|}~0-9a-z]{1,127}"
_MIME_TYPE = re.compile(rf"{_TOKEN}/{_TOKEN}")


def safe_content_type(value: str | None) -> str:
    """`value` as a lowercase `type/subtype` without parameters, or `application/octet-stream` if it is not one."""
    if not value:
        return OCTET_STREAM
    candidate = value.split(";", 1)[0].strip(" \t\r\n")
    # ASCII first: `str.lower` maps some non-ASCII letters (the Kelvin sign) onto ASCII ones.
    if not candidate.isascii() or not _MIME_TYPE.fullmatch(candidate.lower()):
        return OCTET_STREAM
    return candidate.lower()
