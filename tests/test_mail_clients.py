"""The official CLI and MCP tools send, list, read, attach and search against our server."""

from __future__ import annotations

import base64
import json

import httpx

from tests.mailtools import make_inbox
from tests.official_clients import mcp_tools, run_cli


def test_cli_mail_commands(running, tmp_path) -> None:
    key = running.new_key()
    with running.client(key) as api:
        alice, bob = make_inbox(api), make_inbox(api)

    def cli(*args: str):
        return run_cli(running.url, key, tmp_path, *args)

    code, sent = cli("messages", "send", "--to", bob["address"], "--subject", "From the CLI",
                     "--text", "typed in a terminal", "--inbox-id", alice["id"])
    assert code == 0, sent
    thread_id = sent["data"]["thread_id"]
    code, threads = cli("threads", "list", "--inbox-id", bob["id"])
    assert code == 0 and threads["data"][0]["subject"] == "From the CLI"
    code, messages = cli("threads", "messages", thread_id)
    assert code == 0 and messages["data"][0]["content"] == "typed in a terminal"
    code, listed = cli("messages", "list", "--inbox-id", alice["id"])
    assert code == 0 and [m["direction"] for m in listed["data"]] == ["outbound"]
    code, reply = cli("messages", "send", "--to", alice["address"], "--subject", "Re", "--text", "ok",
                      "--thread-id", threads["data"][0]["thread_id"])
    assert code == 0 and reply["data"]["thread_id"] == threads["data"][0]["thread_id"]

    path = tmp_path / "notes.txt"
    path.write_bytes(b"meeting notes")
    code, uploaded = cli("attachments", "upload", str(path))
    assert code == 0, uploaded
    attachment_id = uploaded["data"]["attachment_id"]
    assert uploaded["data"]["mime_type"] == "text/plain"
    code, meta = cli("attachments", "get", attachment_id)
    assert code == 0 and meta["data"]["filename"] == "notes.txt"
    code, link = cli("attachments", "url", attachment_id)
    assert code == 0 and httpx.get(link["data"]["url"]).content == b"meeting notes"
    code, hits = cli("search", "threads", "terminal", "--inbox-id", bob["id"])
    assert code == 0 and [h["thread_id"] for h in hits["data"]] == [threads["data"][0]["thread_id"]]
    code, missing = cli("threads", "messages", "thread_unknown")
    assert code == 3


def test_mcp_mail_tools(running, monkeypatch) -> None:
    key = running.new_key()
    with running.client(key) as api:
        alice, bob = make_inbox(api), make_inbox(api)
    server = mcp_tools(monkeypatch, running.url, key)
    upload = json.loads(server.upload_attachment(base64.b64encode(b"%PDF").decode(), "a.pdf", "application/pdf"))
    sent = json.loads(server.send_email(to=f"{bob['address']}, {alice['address']}", subject="Agent hello",
                                        text="sent by a tool", inbox_id=alice["id"],
                                        attachments=upload["attachment_id"]))
    assert sent["thread_id"].startswith("thread_")
    threads = json.loads(server.list_threads(inbox_id=bob["id"]))
    [thread] = threads["data"] if isinstance(threads, dict) and "data" in threads else threads
    messages = json.loads(server.get_thread_messages(thread["thread_id"]))
    assert messages[0]["content"] == "sent by a tool" and len(messages[0]["attachments"]) == 1
    url = json.loads(server.get_attachment_url(messages[0]["attachments"][0]))["url"]
    assert httpx.get(url).content == b"%PDF"
    hits = json.loads(server.search_threads("tool", inbox_id=bob["id"]))
    assert [h["thread_id"] for h in hits] == [thread["thread_id"]]
