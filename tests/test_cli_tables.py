"""What a person sees running the official CLI (commune-cli 0.2.2) in a terminal, without `--json`.

The CLI prints Rich tables and one-line confirmations from fields it reads by name; each formerly blank
column and id is read back from the table text and compared with what the API stores.
"""

from __future__ import annotations

import re
import smtplib
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from tests.conftest import Running, start_server
from tests.official_clients import run_cli_terminal
from tests.smtp_sink import SmtpSink, wait_until

REMOTE = "cli-tables-remote.test"
SHARED = "commune.localhost"


def terminal(server: Running, key: str, config_dir: Path, *args: str) -> str:
    """Run `commune ...` as in a 200-column terminal; returns what it printed, colours removed."""
    code, text = run_cli_terminal(server.url, key, config_dir, *args)
    assert code == 0, text
    return text


def table(text: str, headers: list[str]) -> list[dict[str, str]]:
    """The rows of the Rich table whose header line holds `headers`, cut at the headers' columns."""
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if all(h in line for h in headers))
    starts, position = [], 0
    for header in headers:
        position = lines[at].index(header, position)
        starts.append(position)
        position += len(header)
    rows = []
    for line in lines[at + 1:]:
        if not line.strip() or set(line.strip()) <= set("━─"):
            continue
        cells = [line[start:end].strip() for start, end in zip(starts, [*starts[1:], None], strict=True)]
        rows.append(dict(zip(headers, cells, strict=True)))
    return rows


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, dns_server, smtp_sink: SmtpSink, engine) -> Iterator[Running]:
    dns_server.publish(REMOTE, "MX", f"10 mx.{REMOTE}.")
    running = start_server(tmp_path_factory.mktemp("cli-tables"), dns_server, relay=f"127.0.0.1:{smtp_sink.port}", engine=engine)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def world(server: Running, smtp_sink: SmtpSink, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One organisation set up the way a person would: a domain and an inbox made with the CLI, a customer's
    mail arriving over SMTP, a reply sent with the CLI and delivered, a file uploaded with the CLI."""
    key = server.new_key()
    home = tmp_path_factory.mktemp("cli-home")
    name = f"tables-{uuid.uuid4().hex[:8]}.example"
    printed: dict[str, str] = {}
    printed["domain"] = terminal(server, key, home, "domains", "create", name)
    printed["inbox"] = terminal(server, key, home, "inboxes", "create", "--local-part", "desk", "--name", "Help Desk")
    with server.client(key) as api:
        domain = next(d for d in api.get("/v1/domains").json()["data"] if d["name"] == name)
        inbox = api.get("/v1/inboxes").json()["data"][0]

        mail = EmailMessage()
        mail["From"] = f"Carol Customer <carol@{REMOTE}>"
        mail["To"] = inbox["address"]
        mail["Cc"] = f"dave@{REMOTE}"
        mail["Subject"] = "Invoice 4471 overdue"
        mail["Message-ID"] = f"<invoice-4471@{REMOTE}>"
        mail.set_content("Hello, invoice 4471 is still unpaid. Could you check? Carol")
        with smtplib.SMTP("127.0.0.1", server.server.smtp_port, timeout=10) as smtp:
            smtp.send_message(mail)
        inbound = wait_until(lambda: api.get("/v1/messages", params={"inbox_id": inbox["id"]}).json()["data"])[0]

        smtp_sink.answer("250 ok")
        printed["send"] = terminal(server, key, home, "messages", "send", "--inbox-id", inbox["id"],
                                   "--thread-id", inbound["thread_id"], "--to", f"carol@{REMOTE}",
                                   "--subject", "Re: Invoice 4471 overdue", "--text", "Paid this morning.")
        messages = api.get("/v1/messages", params={"inbox_id": inbox["id"]}).json()["data"]
        outbound = next(m for m in messages if m["direction"] == "outbound")

        def sent() -> list[dict]:
            events = api.get("/v1/delivery/events", params={"message_id": outbound["id"]}).json()["data"]
            return [e for e in events if e["event_type"] == "sent"]

        wait_until(sent)
        upload = home / "invoice-4471.pdf"
        upload.write_bytes(b"%PDF-1.4 invoice 4471\n")
        printed["upload"] = terminal(server, key, home, "attachments", "upload", str(upload))
        printed["verify"] = terminal(server, key, home, "domains", "verify", domain["id"])
        domain = api.get(f"/v1/domains/{domain['id']}").json()["data"]
        thread = api.get("/v1/threads", params={"inbox_id": inbox["id"]}).json()["data"][0]
        messages = api.get("/v1/messages", params={"inbox_id": inbox["id"]}).json()["data"]
        events = api.get("/v1/delivery/events", params={"inbox_id": inbox["id"]}).json()["data"]
    return {"key": key, "home": home, "domain": domain, "inbox": inbox, "thread": thread, "messages": messages,
            "outbound": outbound, "events": events, "printed": printed}


def cli(server: Running, world: dict, *args: str) -> str:
    return terminal(server, world["key"], world["home"], *args)


def test_domains_table_shows_each_domain_name(server: Running, world: dict) -> None:
    rows = table(cli(server, world, "domains", "list"), ["ID", "Domain", "Status", "Created"])
    by_id = {row["ID"]: row for row in rows}
    domain = world["domain"]
    assert by_id[domain["id"]]["Domain"] == domain["name"]
    assert by_id[domain["id"]]["Status"] == domain["status"]
    assert by_id[world["inbox"]["domain_id"]]["Domain"] == SHARED


def test_inboxes_table_shows_email_name_and_domain(server: Running, world: dict) -> None:
    [row] = table(cli(server, world, "inboxes", "list"), ["ID", "Email", "Name", "Domain", "Created"])
    inbox = world["inbox"]
    assert row == {"ID": inbox["id"], "Email": f"desk@{SHARED}", "Name": "Help Desk",
                   "Domain": inbox["domain_id"], "Created": inbox["createdAt"]}


def test_messages_table_shows_sender_subject_date_and_thread(server: Running, world: dict) -> None:
    rows = table(cli(server, world, "messages", "list", "--inbox-id", world["inbox"]["id"]),
                 ["ID", "From", "Subject", "Date", "Thread"])
    expected = [{"ID": m["id"], "From": m["participants"][0]["identity"], "Subject": m["metadata"]["subject"],
                 "Date": m["created_at"], "Thread": m["thread_id"]} for m in world["messages"]]
    assert rows == expected
    assert {row["From"] for row in rows} == {f"carol@{REMOTE}", f"desk@{SHARED}"}
    assert {row["Subject"] for row in rows} == {"Invoice 4471 overdue", "Re: Invoice 4471 overdue"}
    assert {row["Thread"] for row in rows} == {world["thread"]["thread_id"]}


def test_thread_messages_table_shows_sender_and_date(server: Running, world: dict) -> None:
    thread_id = world["thread"]["thread_id"]
    rows = table(cli(server, world, "threads", "messages", thread_id), ["ID", "Direction", "From", "Date"])
    assert [(row["Direction"], row["From"]) for row in rows] == [("inbound", f"carol@{REMOTE}"),
                                                                 ("outbound", f"desk@{SHARED}")]
    assert [row["Date"] for row in rows] == sorted(m["created_at"] for m in world["messages"])


def test_threads_table_shows_id_participants_and_last_activity(server: Running, world: dict) -> None:
    [row] = table(cli(server, world, "threads", "list", "--inbox-id", world["inbox"]["id"]),
                  ["ID", "Subject", "Status", "Participants", "Last Activity"])
    thread = world["thread"]
    # Carol, Dave (cc) and the inbox itself.
    assert row == {"ID": thread["thread_id"], "Subject": "Invoice 4471 overdue", "Status": "open",
                   "Participants": "3", "Last Activity": thread["last_message_at"]}


def test_search_table_shows_id_score_and_last_activity(server: Running, world: dict) -> None:
    [row] = table(cli(server, world, "search", "threads", "invoice"),
                  ["ID", "Subject", "Status", "Score", "Last Activity"])
    thread = world["thread"]
    assert row["ID"] == thread["thread_id"] and row["Subject"] == "Invoice 4471 overdue"
    assert row["Last Activity"] == thread["last_message_at"]
    assert row["Score"] == "2"  # both messages of the thread mention the invoice


def test_delivery_events_table_shows_type_recipient_and_message(server: Running, world: dict) -> None:
    rows = table(cli(server, world, "delivery", "events", "--inbox-id", world["inbox"]["id"]),
                 ["Type", "Email", "Message ID", "Timestamp"])
    expected = [{"Type": e["event_type"], "Email": e["recipient"], "Message ID": e["message_id"],
                 "Timestamp": e["timestamp"]} for e in world["events"]]
    assert rows == expected
    assert {"Type": "sent", "Email": f"carol@{REMOTE}"}.items() <= next(
        r for r in rows if r["Type"] == "sent").items()
    assert {row["Message ID"] for row in rows} == {world["outbound"]["id"]}


def test_confirmations_name_what_was_made(server: Running, world: dict) -> None:
    printed = world["printed"]
    assert f"Inbox created: desk@{SHARED}" in printed["inbox"]
    assert f"Message sent. ID: {world['outbound']['id']}" in printed["send"]
    assert f"Verification triggered. Status: {world['domain']['status']}" in printed["verify"]
    found = re.search(r"Attachment ID: (\S+)", printed["upload"])
    assert found is not None, printed["upload"]
    attachment_id = found.group(1)
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {world['key']}"}) as api:
        assert api.get(f"/v1/attachments/{attachment_id}").json()["data"]["filename"] == "invoice-4471.pdf"
    url = cli(server, world, "attachments", "url", attachment_id).strip()
    assert url.startswith(f"{server.url}/v1/attachments/{attachment_id}/download?")
    assert httpx.get(url).content == b"%PDF-1.4 invoice 4471\n"
