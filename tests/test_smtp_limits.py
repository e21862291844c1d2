"""One SMTP client must not starve the listener or harvest addresses: caps per client address,
commands without progress and unknown recipients, tried over real SMTP from several loopback addresses."""

from __future__ import annotations

import smtplib
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Running, start_server
from tests.mailtools import make_inbox
from tests.waiting import wait_until

PER_CLIENT = 3
WITHOUT_PROGRESS = 8
DELAY_AFTER_UNKNOWN = 2
MAX_UNKNOWN = 4
# Each test speaks from its own addresses, so no test waits for another's sessions to be released.
CLIENT_A = "127.0.0.2"
CLIENT_B = "127.0.0.3"
IDLER = "127.0.0.4"
HARVESTER = "127.0.0.5"
BUSY = "127.0.0.6"


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory, dns_server) -> Iterator[Running]:
    server = start_server(
        tmp_path_factory.mktemp("smtp-limits"), dns_server, smtp_max_connections_per_client=PER_CLIENT,
        smtp_max_commands_without_progress=WITHOUT_PROGRESS, smtp_delay_after_unknown_recipients=DELAY_AFTER_UNKNOWN,
        smtp_max_unknown_recipients=MAX_UNKNOWN, smtp_unknown_recipient_delay=0.01,
    )
    yield server
    server.stop()


@pytest.fixture
def api(limited: Running) -> Iterator[httpx.Client]:
    with limited.client(limited.new_key()) as client:
        yield client


def smtp_from(server: Running, address: str) -> smtplib.SMTP:
    return smtplib.SMTP("127.0.0.1", server.server.smtp_port, timeout=10, source_address=(address, 0))


def message(sender: str, recipient: str, subject: str) -> bytes:
    return f"From: {sender}\r\nTo: {recipient}\r\nSubject: {subject}\r\n\r\nHello.\r\n".encode()


def subjects(api: httpx.Client, inbox_id: str) -> list[str]:
    response = api.get("/v1/messages", params={"inbox_id": inbox_id, "order": "asc", "limit": 100})
    assert response.status_code == 200, response.text
    return [m["metadata"]["subject"] for m in response.json()["data"]]


def greets(server: Running, address: str) -> bool:
    try:
        with smtp_from(server, address) as client:
            return client.noop()[0] == 250
    except smtplib.SMTPConnectError:
        return False


def test_one_address_is_capped_while_another_still_delivers(limited: Running, api: httpx.Client) -> None:
    inbox = make_inbox(api)
    held = [smtp_from(limited, CLIENT_A) for _ in range(PER_CLIENT)]
    try:
        with pytest.raises(smtplib.SMTPConnectError) as refused:
            smtp_from(limited, CLIENT_A)
        assert refused.value.smtp_code == 421
        assert b"Too many connections from your address" in refused.value.smtp_error
        with smtp_from(limited, CLIENT_B) as other:
            assert other.sendmail("b@sender.example", [inbox["address"]],
                                  message("b@sender.example", inbox["address"], "from another address")) == {}
        assert subjects(api, inbox["id"]) == ["from another address"]
        # The sessions still open were not disturbed, and a closed one frees its place.
        assert all(client.noop()[0] == 250 for client in held)
        held.pop().quit()
        assert wait_until(lambda: greets(limited, CLIENT_A), bool)
    finally:
        for client in held:
            client.close()


@pytest.mark.parametrize("commands", [["NOOP"], ["RSET", "NOOP", "VRFY someone@example.net", "HELP", "EHLO idle"]])
def test_a_session_that_never_delivers_is_cut_off(limited: Running, commands: list[str]) -> None:
    with smtp_from(limited, IDLER) as client:
        for n in range(WITHOUT_PROGRESS):
            code, _ = client.docmd(commands[n % len(commands)])
            assert code in (250, 252), n
        code, reply = client.docmd(commands[WITHOUT_PROGRESS % len(commands)])
        assert (code, reply) == (421, b"4.7.0 Too many commands without a delivered message, closing connection")
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.noop()


def test_a_directory_harvester_gets_550s_then_421_and_is_disconnected(limited: Running, api: httpx.Client) -> None:
    inbox = make_inbox(api)
    domain = inbox["address"].split("@")[1]
    with smtp_from(limited, HARVESTER) as client:
        client.ehlo("harvester.example")
        assert client.mail("probe@harvester.example")[0] == 250
        # Known addresses between the guesses do not reset the count.
        assert client.rcpt(inbox["address"])[0] == 250
        codes = [client.rcpt(f"guess{n}@{domain}")[0] for n in range(MAX_UNKNOWN)]
        assert codes == [550] * MAX_UNKNOWN
        assert client.rcpt(inbox["address"]) == (421, b"4.7.0 Too many unknown recipients")
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.noop()
    assert subjects(api, inbox["id"]) == []


def test_a_busy_session_delivering_many_messages_is_never_cut_off(limited: Running, api: httpx.Client) -> None:
    inbox = make_inbox(api)
    count = WITHOUT_PROGRESS * 6
    with smtp_from(limited, BUSY) as client:
        client.ehlo("busy.example")
        for n in range(count):
            assert client.sendmail("busy@sender.example", [inbox["address"]],
                                   message("busy@sender.example", inbox["address"], f"busy {n}")) == {}
            assert client.rset()[0] == 250
            assert client.noop()[0] == 250
    assert subjects(api, inbox["id"]) == [f"busy {n}" for n in range(count)]


def test_a_slowed_recipient_does_not_hold_up_other_sessions(tmp_path: Path, dns_server) -> None:
    server = start_server(tmp_path, dns_server, smtp_delay_after_unknown_recipients=1,
                          smtp_unknown_recipient_delay=120)
    try:
        with server.client(server.new_key()) as api:
            inbox = make_inbox(api)
            domain = inbox["address"].split("@")[1]
            with smtp_from(server, CLIENT_A) as harvester:
                harvester.ehlo("harvester.example")
                harvester.mail("probe@harvester.example")
                assert harvester.rcpt(f"guess0@{domain}")[0] == 550
                harvester.putcmd("rcpt", f"TO:<guess1@{domain}>")
                with smtp_from(server, CLIENT_B) as other:
                    assert other.sendmail("b@sender.example", [inbox["address"]],
                                          message("b@sender.example", inbox["address"], "not held up")) == {}
                assert subjects(api, inbox["id"]) == ["not held up"]
                # The harvester is still waiting for its answer.
                assert harvester.sock is not None
                harvester.sock.setblocking(False)
                with pytest.raises(BlockingIOError):
                    harvester.sock.recv(1, socket.MSG_PEEK)
                harvester.sock.setblocking(True)
                harvester.close()
    finally:
        server.stop()
