"""Attachments: upload (base64 JSON or raw bytes with `X-Filename`), metadata, signed download URLs."""

from __future__ import annotations

import asyncio
import base64
import binascii
import mimetypes
import re
import time
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote, urlencode

from ..http.errors import BadRequest, Forbidden, NotFound, PayloadTooLarge
from ..http.request import Request
from ..http.response import Response
from ..http.router import Route
from ..mail.content_type import safe_content_type
from ..models.mail import UploadAttachment, attachment_json
from ._common import Context, data, int_arg, parse_body, store_work

if TYPE_CHECKING:
    from ..config import Settings
    from ..services import Services

SIGNATURE_PURPOSE = "attachment-download"
MAX_EXPIRES_IN = 7 * 24 * 3600
HOST_RE = re.compile(r"^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$")


def _mime_type(given: str | None, filename: str) -> str:
    """The given type if it is a well-formed one, else octet-stream; guessed from the name if none given."""
    if given:
        return safe_content_type(given)
    return safe_content_type(mimetypes.guess_type(filename)[0])


def upload_body_limit(settings: Settings) -> int:
    """The largest attachment as base64 (with line breaks, as MIME tools write it) in a JSON body."""
    return settings.max_attachment_bytes * 4 // 3 * 103 // 100 + 64 * 1024


def _decode_base64(content: str, limit: int) -> bytes:
    text = "".join(content.split())
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    if len(text) * 3 // 4 > limit + 3:
        raise PayloadTooLarge(f"content: attachments may be at most {limit} bytes")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("content must be base64-encoded file content") from None


def _receive(request: Request, limit: int) -> tuple[str, str, bytes]:
    """Filename, MIME type and bytes of an upload, from base64 JSON or a raw body with `X-Filename`."""
    raw_name = request.headers.get("x-filename")
    if raw_name is not None:
        # The official CLI posts the file itself, named by X-Filename, usually with no Content-Type.
        filename = unquote(raw_name).strip()
        if not filename:
            raise BadRequest("X-Filename must name the file")
        given = request.headers.get("content-type", "")
        if given.startswith(("application/json", "application/x-www-form-urlencoded")):
            given = ""
        return filename, _mime_type(given or None, filename), request.read_body()
    body = parse_body(request, UploadAttachment)
    return body.filename, _mime_type(body.mime_type, body.filename), _decode_base64(body.content, limit)


async def upload(ctx: Context) -> tuple[int, dict]:
    """`POST /v1/attachments/upload`: base64 JSON, or the raw file named by `X-Filename`."""
    limit, blobs = ctx.services.settings.max_attachment_bytes, ctx.services.blobs

    def store() -> tuple[str, str, int, str]:
        # Parsing up to ~33 MB of JSON, decoding and the fsync'd write would stall the event loop.
        filename, mime_type, content = _receive(ctx.request, limit)
        if len(content) > limit:
            raise PayloadTooLarge(f"content: attachments may be at most {limit} bytes")
        if not content:
            raise BadRequest("content is empty")
        return filename, mime_type, len(content), blobs.put(ctx.org_id, content)

    filename, mime_type, size, sha256 = await asyncio.to_thread(store)
    row = await ctx.run(ctx.services.mail.create_attachment, ctx.org_id, filename, mime_type, size, sha256)
    return 201, data(attachment_json(row), id=row["id"])


def own_attachment(ctx: Context, attachment_id: str) -> dict:
    """The caller's attachment; anyone else's (or none) is a 404."""
    row = ctx.services.mail.get_attachment(ctx.org_id, attachment_id)
    if row is None:
        raise NotFound("Attachment not found")
    return row


@store_work
def get_attachment(ctx: Context) -> dict:
    """`GET /v1/attachments/{id}`: metadata only."""
    return data(attachment_json(own_attachment(ctx, ctx.params["attachment_id"])))


def public_base(ctx: Context) -> str:
    """The server's origin as the caller reached it (or the configured public URL)."""
    configured = ctx.services.settings.public_url.rstrip("/")
    if configured:
        return configured
    host = ctx.request.headers.get("host", "")
    if not HOST_RE.match(host):
        raise BadRequest("The Host header is missing or invalid, so no download URL can be built")
    return f"http://{host}"


@store_work
def attachment_url(ctx: Context) -> dict:
    """`GET /v1/attachments/{id}/url`: an absolute download URL signed until `expires_in` seconds from now."""
    row = own_attachment(ctx, ctx.params["attachment_id"])
    expires_in = int_arg(ctx.request, "expires_in", 3600, 1, MAX_EXPIRES_IN, "expiresIn")
    expires = int(time.time()) + expires_in
    signature = ctx.services.signer.sign(SIGNATURE_PURPOSE, row["id"], expires)
    query = urlencode({"expires": expires, "signature": signature})
    url = f"{public_base(ctx)}/v1/attachments/{quote(row['id'])}/download?{query}"
    return data({"url": url, "expires_in": expires_in, "expires_at": expires, "filename": row["filename"],
                 "mime_type": row["mime_type"], "size": row["size"]}, url=url)


def _stored_attachment(services: Services, attachment_id: str) -> dict | None:
    """Any organisation's attachment whose content is still stored (the signature named it)."""
    row = services.mail.get_attachment_any(attachment_id)
    return row if row is not None and services.blobs.exists(row["org_id"], row["sha256"]) else None


async def download(ctx: Context) -> Response:
    """The signed, keyless download: the signature is the credential; tampered or expired is a 403."""
    attachment_id = ctx.params["attachment_id"]
    try:
        expires = int(ctx.request.arg("expires") or "")
    except ValueError:
        raise Forbidden("This download link is invalid") from None
    verdict = ctx.services.signer.verify(SIGNATURE_PURPOSE, attachment_id, expires, ctx.request.arg("signature") or "")
    if verdict == "expired":
        raise Forbidden("This download link has expired")
    if verdict != "ok":
        raise Forbidden("This download link is invalid")
    row = await ctx.run(_stored_attachment, ctx.services, attachment_id)
    if row is None:
        raise NotFound("Attachment not found")
    fallback = re.sub(r'[^A-Za-z0-9._ -]', "_", row["filename"])
    headers = {
        "content-disposition": f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(row['filename'])}",
        "x-content-type-options": "nosniff",
        "cache-control": "private, no-store",
    }
    content = await asyncio.to_thread(ctx.services.blobs.get, row["org_id"], row["sha256"])
    return Response(content, 200, headers, row["mime_type"])


ROUTES = [
    Route("POST", "/v1/attachments/upload", upload, "attachments:write", "Upload an attachment",
          body_limit=upload_body_limit),
    Route("GET", "/v1/attachments/{attachment_id}", get_attachment, "attachments:read", "Attachment metadata"),
    Route("GET", "/v1/attachments/{attachment_id}/url", attachment_url, "attachments:read",
          "A signed, expiring download URL"),
    Route("GET", "/v1/attachments/{attachment_id}/download", download, None,
          "Download by signed URL (no API key)"),
]
