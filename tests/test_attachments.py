"""Attachments: upload both ways, metadata, signed keyless downloads, sending them between inboxes."""

from __future__ import annotations

import base64
import time
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
from commune.types import Attachment, AttachmentUpload, AttachmentUrl

from tests.conftest import start_server
from tests.mailtools import make_inbox, raw_of

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 4


def upload(api, content: bytes = PDF, filename: str = "invoice.pdf", mime_type: str = "application/pdf") -> dict:
    response = api.post("/v1/attachments/upload", json={
        "content": base64.b64encode(content).decode(), "filename": filename, "mime_type": mime_type,
    })
    assert response.status_code == 201, response.text
    return response.json()["data"]


def test_upload_metadata_and_signed_download(running, api) -> None:
    uploaded = upload(api)
    AttachmentUpload.model_validate(uploaded)
    assert len(uploaded["attachment_id"]) == 32 and uploaded["size"] == len(PDF)
    meta = api.get(f"/v1/attachments/{uploaded['attachment_id']}").json()["data"]
    assert Attachment.model_validate(meta).source == "upload"
    assert meta["filename"] == "invoice.pdf" and meta["mime_type"] == "application/pdf"

    link = api.get(f"/v1/attachments/{uploaded['attachment_id']}/url", params={"expires_in": 120}).json()["data"]
    AttachmentUrl.model_validate(link)
    assert link["expires_in"] == 120
    assert link["url"].startswith(running.url + "/v1/attachments/")
    fetched = httpx.get(link["url"])  # no API key at all
    assert fetched.status_code == 200
    assert fetched.content == PDF
    assert fetched.headers["content-type"] == "application/pdf"
    assert 'filename="invoice.pdf"' in fetched.headers["content-disposition"]


def test_tampered_or_expired_links_are_403(running, api) -> None:
    uploaded = upload(api)
    other = upload(api, b"second file", "b.txt", "text/plain")
    url = api.get(f"/v1/attachments/{uploaded['attachment_id']}/url").json()["data"]["url"]
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    base = f"{parts.scheme}://{parts.netloc}"
    later = {**query, "expires": str(int(query["expires"]) + 3600)}
    for target in (
        f"{base}/v1/attachments/{uploaded['attachment_id']}/download?{urlencode(later)}",
        f"{base}/v1/attachments/{other['attachment_id']}/download?{parts.query}",
        f"{base}/v1/attachments/{uploaded['attachment_id']}/download?expires={query['expires']}&signature=AAAA",
        f"{base}/v1/attachments/{uploaded['attachment_id']}/download",
    ):
        response = httpx.get(target)
        assert response.status_code == 403, target
        assert "error" in response.json()
    services = running.server.services
    past = int(time.time()) - 10
    signature = services.signer.sign("attachment-download", uploaded["attachment_id"], past)
    expired = httpx.get(f"{base}/v1/attachments/{uploaded['attachment_id']}/download",
                        params={"expires": past, "signature": signature})
    assert expired.status_code == 403 and "expired" in expired.json()["error"]


def test_raw_upload_as_the_cli_sends_it(running, api) -> None:
    response = api.post("/v1/attachments/upload", content=b"a,b\n1,2\n", headers={"X-Filename": "report.csv"})
    assert "content-type" not in response.request.headers
    assert response.status_code == 201, response.text
    data = response.json()["data"]
    assert (data["filename"], data["mime_type"], data["size"]) == ("report.csv", "text/csv", 8)
    sneaky = api.post("/v1/attachments/upload", content=b"x", headers={"X-Filename": "../../etc/passwd"})
    assert sneaky.json()["data"]["filename"] == "passwd"


def test_bad_uploads_are_400_and_oversize_is_413(tmp_path, dns_server, api, engine) -> None:
    for body, field in (({"content": "***not base64***", "filename": "a.bin", "mime_type": "x/y"}, "content"),
                        ({"filename": "a.bin"}, "content"),
                        ({"content": "aGVsbG8=", "mime_type": "text/plain"}, "filename")):
        response = api.post("/v1/attachments/upload", json=body)
        assert response.status_code == 400, body
        assert field in response.json()["error"]
    uploaded = upload(api)
    for expires_in in ("0", "abc", str(8 * 24 * 3600)):
        response = api.get(f"/v1/attachments/{uploaded['attachment_id']}/url", params={"expires_in": expires_in})
        assert response.status_code == 400 and "expires_in" in response.json()["error"]
    small = start_server(tmp_path, dns_server, max_attachment_bytes=1000, public_url="https://mail.example.test/", engine=engine)
    try:
        with small.client() as client:
            too_big = client.post("/v1/attachments/upload", json={
                "content": base64.b64encode(b"x" * 1001).decode(), "filename": "big.bin"})
            assert too_big.status_code == 413
            raw = client.post("/v1/attachments/upload", content=b"x" * 1001, headers={"X-Filename": "big.bin"})
            assert raw.status_code == 413
            fits = client.post("/v1/attachments/upload", json={
                "content": base64.b64encode(b"x" * 1000).decode(), "filename": "ok.bin"})
            assert fits.status_code == 201
            link = client.get(f"/v1/attachments/{fits.json()['data']['attachment_id']}/url").json()["data"]
            assert link["url"].startswith("https://mail.example.test/v1/attachments/")
    finally:
        small.stop()


def test_send_with_attachment_between_inboxes(running, api) -> None:
    alice, bob = make_inbox(api), make_inbox(api)
    uploaded = upload(api)
    sent = api.post("/v1/messages/send", json={
        "to": bob["address"], "subject": "Invoice", "text": "Attached.", "inboxId": alice["id"],
        "attachments": [uploaded["attachment_id"]],
    })
    assert sent.status_code == 200, sent.text
    mime = raw_of(running, sent.json()["data"]["id"])
    assert mime.get_content_type() == "multipart/mixed"
    [part] = list(mime.iter_attachments())
    assert (part.get_filename(), part.get_content_type(), part.get_content()) == ("invoice.pdf", "application/pdf", PDF)
    [outbound] = api.get("/v1/messages", params={"inbox_id": alice["id"]}).json()["data"]
    assert outbound["attachments"] == [uploaded["attachment_id"]]
    [received] = api.get("/v1/messages", params={"inbox_id": bob["id"]}).json()["data"]
    [copy_id] = received["attachments"]
    assert copy_id != uploaded["attachment_id"]
    copy = api.get(f"/v1/attachments/{copy_id}").json()["data"]
    assert (copy["filename"], copy["size"], copy["source"]) == ("invoice.pdf", len(PDF), "email")
    url = api.get(f"/v1/attachments/{copy_id}/url").json()["data"]["url"]
    assert httpx.get(url).content == PDF
    [thread] = api.get("/v1/threads", params={"inbox_id": bob["id"]}).json()["data"]
    assert thread["has_attachments"] is True


def test_other_organisations_attachments_are_404_everywhere(running, api) -> None:
    uploaded = upload(api)
    with running.client(running.new_key()) as stranger:
        inbox = make_inbox(stranger)
        attachment_id = uploaded["attachment_id"]
        assert stranger.get(f"/v1/attachments/{attachment_id}").status_code == 404
        assert stranger.get(f"/v1/attachments/{attachment_id}/url").status_code == 404
        sent = stranger.post("/v1/messages/send", json={
            "to": inbox["address"], "subject": "s", "text": "t", "inboxId": inbox["id"],
            "attachments": [attachment_id]})
        assert sent.status_code == 404
    assert api.get("/v1/attachments/0123456789abcdef0123456789abcdef").status_code == 404
