"""Reply, forward and attachment actions shared by every screen that shows a thread in a Reader."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from textual import work
from textual.screen import Screen

from ..client import ApiError
from ..formatting import forward_text, prefixed_subject, quote_text
from ..models import Attachment, Draft, Message, ThreadSummary
from ..widgets.reader import Reader, message_body

if TYPE_CHECKING:
    from ..app import CommuneApp


async def load_thread(app: CommuneApp,
                      thread: ThreadSummary) -> tuple[list[Message], dict[str, Attachment]]:
    """A thread's messages and the metadata of every attachment they carry."""
    messages = await app.client.thread_messages(thread.thread_id)
    ids = [a for m in messages for a in m.attachments]
    found = await asyncio.gather(*(app.client.get_attachment(a) for a in ids), return_exceptions=True)
    return messages, {a.attachment_id: a for a in found if isinstance(a, Attachment)}


def unique_path(folder: Path, filename: str) -> Path:
    """A path in `folder` for `filename` that does not overwrite an existing file."""
    name = Path(filename).name or "attachment"
    target = folder / name
    stem, suffix, number = target.stem, target.suffix, 1
    while target.exists():
        target = folder / f"{stem} ({number}){suffix}"
        number += 1
    return target


class ThreadActions(Screen):
    """Mixin for screens with a `Reader`: the keys that act on the thread being read."""

    app: CommuneApp

    def active_reader(self) -> Reader:
        return self.query_one(Reader)

    async def show_in_reader(self, thread: ThreadSummary) -> list[Message] | None:
        """Load `thread` into the reader; None, after an error notice, when it could not be fetched."""
        reader = self.active_reader()
        reader.loading = True
        try:
            messages, attachments = await load_thread(self.app, thread)
        except ApiError as exc:
            self.notify(f"Could not open the thread: {exc.message}", severity="error", markup=False)
            return None
        finally:
            reader.loading = False
        await reader.show(thread, messages, attachments)
        return messages

    async def with_messages(self, thread: ThreadSummary) -> tuple[ThreadSummary, list[Message]] | None:
        """`thread` and its messages for a reply or forward, which need no attachment metadata."""
        messages = await self.app.client.thread_messages(thread.thread_id)
        return (thread, messages) if messages else None

    async def thread_for_action(self) -> tuple[ThreadSummary, list[Message]] | None:
        """The thread the user means: the one in the reader (subclasses may pick another)."""
        reader = self.active_reader()
        if reader.thread is None or not reader.messages:
            self.notify("Open a thread first (enter).", severity="warning")
            return None
        return reader.thread, reader.messages

    def reply_draft(self, thread: ThreadSummary, messages: list[Message], everyone: bool) -> Draft:
        """A reply to the newest inbound message, quoted; `everyone` adds the other recipients."""
        inbox_id = thread.inbox_id or messages[-1].metadata.get("inbox_id")
        own = {inbox.address.lower() for inbox in self.app.inboxes if inbox.id == inbox_id}
        original = next((m for m in reversed(messages) if m.direction == "inbound"), messages[-1])
        if original.direction == "inbound":
            to = [original.sender]
        else:
            to = original.addresses("to")
        cc: list[str] = []
        if everyone:
            others = original.addresses("to") + original.addresses("cc")
            cc = [a for a in dict.fromkeys(others) if a.lower() not in own and a not in to]
        return Draft(
            inbox_id=inbox_id, to=", ".join(to), cc=", ".join(cc), thread_id=thread.thread_id,
            subject=prefixed_subject("Re", original.subject or thread.subject or ""),
            body=quote_text(message_body(original), original.sender, original.created_at),
        )

    @work(group="thread-action")
    async def _start_reply(self, everyone: bool) -> None:
        found = await self.thread_for_action()
        if found is not None:
            self.app.open_composer(self.reply_draft(*found, everyone=everyone))

    def action_reply(self) -> None:
        self._start_reply(False)

    def action_reply_all(self) -> None:
        self._start_reply(True)

    @work(group="thread-action")
    async def action_forward(self) -> None:
        found = await self.thread_for_action()
        if found is None:
            return
        thread, messages = found
        original = messages[-1]
        self.app.open_composer(Draft(
            inbox_id=thread.inbox_id,
            subject=prefixed_subject("Fwd", original.subject or thread.subject or ""),
            body=forward_text(message_body(original), original.sender, original.subject,
                              original.created_at),
        ), forward_attachments=list(original.attachments))

    def action_save_attachment(self) -> None:
        self._fetch_attachment(open_after=False)

    def action_open_attachment(self) -> None:
        self._fetch_attachment(open_after=True)

    def _fetch_attachment(self, open_after: bool) -> None:
        attachment = self.active_reader().current_attachment()
        if attachment is None:
            self.notify("This thread has no attachments.", severity="warning")
        else:
            self._download(attachment, open_after)

    @work(group="download")
    async def _download(self, attachment: Attachment, open_after: bool) -> None:
        try:
            _, content = await self.app.client.download_attachment(attachment.attachment_id)
        except ApiError as exc:
            self.notify(f"Could not fetch {attachment.filename}: {exc.message}", severity="error",
                        markup=False)
            return
        if open_after:
            folder = Path(tempfile.mkdtemp(prefix="commune-"))
        else:
            folder = self.app.settings.downloads_dir
            folder.mkdir(parents=True, exist_ok=True)
        target = unique_path(folder, attachment.filename)
        await asyncio.to_thread(target.write_bytes, content)
        if open_after:
            self.app.open_url(target.as_uri())
            self.notify(f"Opened {attachment.filename}", markup=False)
        else:
            self.notify(f"Saved {attachment.filename} to {target}", markup=False)
