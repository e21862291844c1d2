"""Reply, forward and attachment actions shared by every screen that shows a thread in a Reader."""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from textual import work
from textual.screen import Screen

from ..client import ApiError
from ..dialogs.confirm import ConfirmDialog
from ..dialogs.links import LinksDialog
from ..dialogs.prompt import PromptDialog
from ..dialogs.text_view import TextViewDialog
from ..formatting import find_links, forward_text, named_address, prefixed_subject, quote_text
from ..models import Attachment, Draft, Message, ThreadSummary
from ..opener import browser_command, launch, open_command, pipe_to
from ..widgets.reader import Reader, full_headers, message_body
from ..widgets.spinner import spinner_if_slow

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

    async def show_in_reader(self, thread: ThreadSummary, focus: bool = True) -> list[Message] | None:
        """Load `thread` into the reader (and focus it); None, after an error notice, when it could
        not be fetched."""
        reader = self.active_reader()
        try:
            with spinner_if_slow(reader):
                messages, attachments = await load_thread(self.app, thread)
        except ApiError as exc:
            self.notify(f"Could not open the thread: {exc.message}", severity="error", markup=False)
            return None
        for message in messages:
            if message.sender_name:
                self.app.names[message.sender.lower()] = message.sender_name
        await reader.show(thread, messages, attachments, focus)
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

    def focused_message(self, thread: ThreadSummary, messages: list[Message]) -> Message:
        """The message the reader moved to (`J`/`K`) when it shows `thread`, else the newest inbound."""
        reader = self.active_reader()
        if reader.thread is not None and reader.thread.thread_id == thread.thread_id:
            current = reader.current_message
            if current is not None:
                return current
        return next((m for m in reversed(messages) if m.direction == "inbound"), messages[-1])

    def reply_draft(self, thread: ThreadSummary, messages: list[Message], everyone: bool,
                    original: Message | None = None) -> Draft:
        """A reply to `original` (default: the newest inbound message), quoted, to its `Reply-To`
        when it has one; `everyone` adds the other recipients, never one of your own addresses."""
        original = original or next((m for m in reversed(messages) if m.direction == "inbound"),
                                    messages[-1])
        inbox_id = thread.inbox_id or original.metadata.get("inbox_id")
        own = {inbox.address.lower() for inbox in self.app.inboxes}
        if original.direction == "inbound":
            to = original.reply_to or [original.sender]
        else:
            to = original.addresses("to")
        cc: list[str] = []
        if everyone:
            others = [original.sender] if original.reply_to else []
            others += original.addresses("to") + original.addresses("cc")
            to = [a for a in to if a.lower() not in own] or to
            taken = {a.lower() for a in to}
            cc = [a for a in dict.fromkeys(others) if a.lower() not in own and a.lower() not in taken]
        return Draft(
            inbox_id=inbox_id, to=", ".join(to), cc=", ".join(cc), thread_id=thread.thread_id,
            subject=prefixed_subject("Re", original.subject or thread.subject or ""),
            body=quote_text(message_body(original), named_address(original.sender, original.sender_name),
                            original.date, self.app.settings.timezone),
        )

    @work(group="thread-action")
    async def _start_reply(self, everyone: bool) -> None:
        found = await self.thread_for_action()
        if found is not None:
            thread, messages = found
            original = self.focused_message(thread, messages)
            self.app.open_composer(self.reply_draft(thread, messages, everyone, original))

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
        reader = self.active_reader()
        if reader.thread is not None and reader.thread.thread_id == thread.thread_id:
            original = reader.current_message or messages[-1]
        else:
            original = messages[-1]
        self.app.open_composer(Draft(
            inbox_id=thread.inbox_id,
            subject=prefixed_subject("Fwd", original.subject or thread.subject or ""),
            body=forward_text(message_body(original), named_address(original.sender, original.sender_name),
                              original.subject, original.date, self.app.settings.timezone),
        ), forward_attachments=list(original.attachments))

    async def message_for_action(self) -> Message | None:
        """The message `H`, `V`, `|` and `L` act on: the reader's current one, else the newest."""
        found = await self.thread_for_action()
        if found is None:
            return None
        thread, messages = found
        reader = self.active_reader()
        if reader.thread is not None and reader.thread.thread_id == thread.thread_id:
            return reader.current_message or messages[-1]
        return messages[-1]

    @work(group="thread-action")
    async def action_headers(self) -> None:
        message = await self.message_for_action()
        if message is not None:
            headers = full_headers(message, self.app.settings.timezone)
            self.app.push_screen(TextViewDialog(f"Headers · {message.subject}", headers))

    @work(group="thread-action")
    async def action_raw(self) -> None:
        message = await self.message_for_action()
        if message is None:
            return
        try:
            source = await self.app.client.message_source(message.message_id)
        except ApiError as exc:
            self.notify(f"Could not fetch the message: {exc.message}", severity="error", markup=False)
            return
        text = json.dumps(source, indent=2, ensure_ascii=False)
        self.app.push_screen(TextViewDialog(f"Message {message.message_id} (API JSON)", text))

    @work(group="thread-action")
    async def action_links(self) -> None:
        message = await self.message_for_action()
        if message is None:
            return
        links = find_links(message_body(message))
        if not links:
            self.notify("This message has no links.", severity="warning")
            return

        def chosen(url: str | None) -> None:
            if url:
                self.open_link(url)

        self.app.push_screen(LinksDialog(links), chosen)

    @work(group="open")
    async def open_link(self, url: str) -> None:
        """Open `url` in `$BROWSER` (or the file opener chain) and say what happened."""
        command = browser_command(url)
        if command is None:
            self.notify(f"Nothing can open {url}: set $BROWSER", severity="error", markup=False)
            return
        failure = await launch(command)
        if failure:
            self.notify(f"Could not open {url}: {failure}", severity="error", markup=False)
        else:
            self.notify(f"Opened {url}", markup=False)

    @work(group="thread-action")
    async def action_pipe(self) -> None:
        message = await self.message_for_action()
        if message is None:
            return

        def chosen(values: dict[str, str] | None) -> None:
            if values and values.get("command"):
                self._run_pipe(values["command"], message)

        self.app.push_screen(PromptDialog("Pipe the message to a shell command",
                                          [("command", "Command", "e.g. grep -i invoice, wc -l")],
                                          required=("command",)), chosen)

    @work(group="pipe")
    async def _run_pipe(self, command: str, message: Message) -> None:
        text = full_headers(message, self.app.settings.timezone) + "\n\n" + message_body(message) + "\n"
        status, output = await pipe_to(command, text)
        title = f"| {command}" + (f" (exit status {status})" if status else "")
        self.app.push_screen(TextViewDialog(title, output or "(no output)"))

    async def open_file(self, target: Path, attachment: Attachment) -> None:
        """Hand a downloaded attachment to the opener chain and say what happened."""
        command = open_command(str(target), attachment.mime_type)
        if command is None:
            self.notify(f"Nothing can open {attachment.filename}: set $COMMUNE_OPENER, add a mailcap"
                        f" entry for {attachment.mime_type} or install xdg-open. Save it with s.",
                        severity="error", timeout=10, markup=False)
            return
        failure = await launch(command)
        if failure:
            self.notify(f"Could not open {attachment.filename}: {failure}", severity="error",
                        timeout=10, markup=False)
        else:
            self.notify(f"Opened {attachment.filename} with {Path(command[0]).name}", markup=False)

    # Triage: labels on the server

    def chosen_threads(self) -> list[ThreadSummary]:
        """The threads a triage key acts on: the one in the reader (subclasses may pick others)."""
        thread = self.active_reader().thread
        return [thread] if thread is not None else []

    def threads_changed(self, threads: list[ThreadSummary]) -> None:
        """Show the new labels of `threads` (subclasses also move them between views)."""
        reader = self.active_reader()
        for thread in threads:
            if reader.thread is not None and reader.thread.thread_id == thread.thread_id:
                reader.thread = thread

    def _triage(self, add: list[str], remove: list[str], done: str) -> None:
        threads = self.chosen_threads()
        if not threads:
            self.notify("Choose a thread first.", severity="warning")
            return
        self._relabel(threads, add, remove, done)

    @work(group="triage")
    async def _relabel(self, threads: list[ThreadSummary], add: list[str], remove: list[str],
                       done: str) -> None:
        client = self.app.client
        results = await asyncio.gather(*(client.label_thread(t.thread_id, add, remove) for t in threads),
                                       return_exceptions=True)
        updated = [r for r in results if isinstance(r, ThreadSummary)]
        failed = [r for r in results if isinstance(r, BaseException)]
        if updated:
            self.threads_changed(updated)
            count = "the thread" if len(updated) == 1 else f"{len(updated)} threads"
            self.notify(done.replace("{}", count), markup=False)
        if failed:
            reason = failed[0].message if isinstance(failed[0], ApiError) else str(failed[0])
            self.notify(f"{len(failed)} of {len(threads)} not changed: {reason}", severity="error",
                        markup=False)

    def action_trash(self) -> None:
        threads = self.chosen_threads()
        if threads and all("trash" in t.labels for t in threads):
            self._confirm_delete(threads)
        else:
            self._triage(["trash"], [], "Moved {} to the trash (u restores)")

    def _confirm_delete(self, threads: list[ThreadSummary]) -> None:
        """`d` on threads already in the trash deletes them for good, after asking."""
        count = "this thread" if len(threads) == 1 else f"these {len(threads)} threads"

        def decided(delete: bool | None) -> None:
            if delete:
                self._delete(threads)

        self.app.push_screen(ConfirmDialog(f"Delete {count} for good? This cannot be undone.",
                                           yes="Delete", no="Keep"), decided)

    @work(group="triage")
    async def _delete(self, threads: list[ThreadSummary]) -> None:
        results = await asyncio.gather(*(self.app.client.delete_thread(t.thread_id) for t in threads),
                                       return_exceptions=True)
        deleted = [t for t, r in zip(threads, results) if not isinstance(r, BaseException)]
        failed = [r for r in results if isinstance(r, BaseException)]
        if deleted:
            self.threads_deleted([t.thread_id for t in deleted])
            self.notify(f"Deleted {len(deleted)} thread{'s' if len(deleted) > 1 else ''} for good",
                        markup=False)
        if failed:
            reason = failed[0].message if isinstance(failed[0], ApiError) else str(failed[0])
            self.notify(f"{len(failed)} not deleted: {reason}", severity="error", markup=False)

    def threads_deleted(self, thread_ids: list[str]) -> None:
        """Threads that no longer exist (subclasses take them off their lists)."""
        reader = self.active_reader()
        if reader.thread is not None and reader.thread.thread_id in thread_ids:
            reader.clear()

    def action_restore(self) -> None:
        self._triage([], ["trash", "archived"], "Restored {} to the inbox")

    def action_archive(self) -> None:
        self._triage(["archived"], [], "Archived {} (u restores)")

    def action_toggle_flag(self) -> None:
        self._toggle("flagged", "Flagged {}", "Unflagged {}")

    def action_toggle_unread(self) -> None:
        self._toggle("unread", "Marked {} unread", "Marked {} read")

    def _toggle(self, label: str, added: str, removed: str) -> None:
        """Take `label` off the chosen threads when all of them carry it, else put it on every one."""
        threads = self.chosen_threads()
        if threads and all(getattr(t, label) for t in threads):
            self._triage([], [label], removed)
        else:
            self._triage([label], [], added)

    def action_label(self) -> None:
        if not self.chosen_threads():
            self.notify("Choose a thread first.", severity="warning")
            return

        def chosen(values: dict[str, str] | None) -> None:
            name = (values or {}).get("label", "").strip()
            if name.startswith("-") and name[1:].strip():
                self._triage([], [name[1:].strip()], f"Removed the label {name[1:].strip()} from {{}}")
            elif name:
                self._triage([name], [], f"Labelled {{}} {name}")

        self.app.push_screen(PromptDialog("Apply a label (-name removes it)",
                                          [("label", "Label", "e.g. invoices, -invoices")],
                                          required=("label",)), chosen)

    def action_next_unread(self) -> None:
        self.notify("n works on the thread list.", severity="warning")

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
            folder = Path(tempfile.mkdtemp(prefix="open-", dir=self.app.temp_dir))
        else:
            folder = self.app.settings.downloads_dir
            folder.mkdir(parents=True, exist_ok=True)
        target = unique_path(folder, attachment.filename)
        await asyncio.to_thread(target.write_bytes, content)
        if open_after:
            await self.open_file(target, attachment)
        else:
            self.notify(f"Saved {attachment.filename} to {target}", markup=False)
