"""The official SDK (commune-mail 0.3.4), sync and async, drives the mail endpoints of our server."""

from __future__ import annotations

import asyncio
import base64

import httpx
import pytest
from commune import AsyncCommuneClient, CommuneClient
from commune.exceptions import NotFoundError, ValidationError


def test_sync_client_conversation_with_attachment_and_search(running) -> None:
    client = CommuneClient(api_key=running.new_key(), base_url=running.url)
    support = client.inboxes.create(local_part="support-sdk", name="Support")
    customer = client.inboxes.create(local_part="customer-sdk")

    sent = client.messages.send(to=support.address, subject="Order 4521 missing", text="Where is my parcel?",
                                inbox_id=customer.id)
    assert sent.thread_id and sent.message_id and sent.status == "delivered"

    page = client.threads.list(inbox_id=support.id)
    assert page.has_more is False and len(page.data) == 1
    thread = page.data[0]
    assert thread.subject == "Order 4521 missing" and thread.last_direction == "inbound"
    [incoming] = client.threads.messages(thread.thread_id)
    sender = next(p.identity for p in incoming.participants if p.role == "sender")
    assert sender == customer.address and incoming.content == "Where is my parcel?"

    upload = client.attachments.upload(content=base64.b64encode(b"tracking: 123").decode(),
                                       filename="tracking.txt", mime_type="text/plain")
    reply = client.messages.send(to=customer.address, subject="Re: Order 4521 missing",
                                 html="<p>It ships today.</p>", inbox_id=support.id,
                                 thread_id=thread.thread_id, attachments=[upload.attachment_id])
    assert reply.thread_id == thread.thread_id

    history = client.threads.messages(thread.thread_id, order="asc")
    assert [m.direction for m in history] == ["inbound", "outbound"]
    assert history[1].attachments == [upload.attachment_id]
    customer_view = client.threads.messages(sent.thread_id)
    assert [m.direction for m in customer_view] == ["outbound", "inbound"]
    [received_file] = customer_view[1].attachments
    meta = client.attachments.get(received_file)
    assert (meta.filename, meta.size) == ("tracking.txt", 13)
    link = client.attachments.url(received_file, expires_in=600)
    assert httpx.get(link.url).content == b"tracking: 123"

    outbound = client.messages.list(inbox_id=support.id)
    assert [m.direction for m in outbound] == ["outbound", "inbound"]
    from_customer = client.messages.list(sender=customer.address)
    assert {m.thread_id for m in from_customer} == {sent.thread_id, thread.thread_id}
    assert client.messages.list(inbox_id=support.id, after="2999-01-01T00:00:00Z") == []

    [hit] = client.search.threads("parcel", inbox_id=support.id)
    assert hit.thread_id == thread.thread_id and hit.message_count == 2

    with pytest.raises(ValidationError):
        client.threads.list()
    with pytest.raises(NotFoundError):
        client.threads.messages("thread_00000000-0000-0000-0000-000000000000")
    with pytest.raises(ValidationError):
        client.messages.send(to="nobody@nowhere.invalid", subject="x", text="y", inbox_id=support.id)


def test_async_client_pages_and_sends(running) -> None:
    key = running.new_key()

    async def scenario() -> None:
        async with AsyncCommuneClient(api_key=key, base_url=running.url) as client:
            inbox = await client.inboxes.create(local_part="async-sdk")
            for number in range(5):
                await client.messages.send(to=inbox.address, subject=f"Note {number}", text="hello",
                                           inbox_id=inbox.id)
            seen, cursor = [], None
            while True:
                page = await client.threads.list(inbox_id=inbox.id, limit=2, cursor=cursor)
                seen += [t.thread_id for t in page.data]
                if not page.has_more:
                    break
                cursor = page.next_cursor
            assert len(seen) == len(set(seen)) == 5
            newest = await client.threads.messages(seen[0], order="desc", limit=1)
            assert newest[0].metadata.subject == "Note 4"
            messages = await client.messages.list(domain_id=inbox.domain_id, limit=3)
            assert len(messages) == 3
            uploaded = await client.attachments.upload(content=base64.b64encode(b"abc").decode(),
                                                       filename="a.txt", mime_type="text/plain")
            assert (await client.attachments.get(uploaded.attachment_id)).size == 3
            assert (await client.attachments.url(uploaded.attachment_id)).expires_in == 3600
            assert len(await client.search.threads("note", inbox_id=inbox.id, limit=10)) == 5

    asyncio.run(scenario())
