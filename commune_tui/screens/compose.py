"""The composer: from, recipients validated as you type, subject, body, attachments, send."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.validation import ValidationResult, Validator
from textual.widgets import Header, Input, Label, OptionList, Select, TextArea
from textual.widgets.option_list import Option

from .. import editor
from ..client import ApiError
from ..completion import ContactSuggester
from ..dialogs.attach_file import AttachFileDialog
from ..dialogs.confirm import ConfirmDialog
from ..dialogs.send_report import SendReportDialog
from ..display import line
from ..formatting import human_size, invalid_addresses
from ..messages import MessageSent
from ..models import Attachment, Draft
from ..widgets.attachments import chip_label
from ..widgets.footer import Footer
from .compose_outbox import OutboxComposer

if TYPE_CHECKING:
    from ..app import CommuneApp


class Addresses(Validator):
    """A comma-separated list of mail addresses (empty allowed unless `required`)."""

    def __init__(self, required: bool) -> None:
        super().__init__()
        self.required = required

    def validate(self, value: str) -> ValidationResult:
        if not value.strip():
            return self.failure("At least one recipient is needed") if self.required else self.success()
        bad = invalid_addresses(value)
        return self.failure(f"Not an address: {bad[0]}") if bad else self.success()


@dataclass
class Upload:
    """One attachment in the composer: a local file on its way up, or an uploaded one."""

    key: str
    name: str
    size: int
    state: str = "uploading…"
    attachment: Attachment | None = None


class ComposeScreen(OutboxComposer):
    """Write, reply or forward; `ctrl+s` sends and a failed send keeps everything as it was."""

    app: CommuneApp

    BINDINGS = [
        Binding("ctrl+s", "send", "Send", priority=True, id="compose.send"),
        Binding("ctrl+l", "send_later", "Send later", priority=True, id="compose.send_later",
                tooltip="Schedule the send: in 2h, tomorrow 09:00, …"),
        Binding("ctrl+o", "postpone", "Postpone", priority=True, id="compose.postpone",
                tooltip="Keep it as a draft in the Outbox"),
        Binding("ctrl+e", "edit_body", "$EDITOR", priority=True, id="compose.editor"),
        Binding("ctrl+a", "attach", "Attach", priority=True, id="compose.attach"),
        Binding("escape", "discard", "Discard", id="compose.discard"),
        # Inputs and the body consume `delete` themselves, so this only fires on the attachment list.
        Binding("delete", "remove_attachment", "Remove attachment", show=False, id="compose.remove"),
    ]

    def __init__(self, draft: Draft, forward_attachments: list[str] | None = None) -> None:
        super().__init__()
        self.draft = draft
        self.uploads: list[Upload] = []
        self.forward_attachments = forward_attachments or []
        self.sending = False

    def compose(self) -> ComposeResult:
        d = self.draft
        options = [(line(i.address), i.id) for i in self.app.inboxes]
        inbox_id = d.inbox_id if any(i.id == d.inbox_id for i in self.app.inboxes) else None
        yield Header()
        with Vertical(id="composer"):
            with Horizontal(classes="field"):
                yield Label("From", classes="field-label")
                yield Select(options, value=inbox_id or (options[0][1] if options else Select.BLANK),
                             allow_blank=not options, id="from", prompt="choose an inbox", compact=True)
            for name, label, value, required in (("to", "To", d.to, True), ("cc", "Cc", d.cc, False),
                                                 ("bcc", "Bcc", d.bcc, False)):
                with Horizontal(classes="field"):
                    yield Label(line(label), classes="field-label")
                    yield Input(value, id=name, placeholder="name@example.com, …", compact=True,
                                validators=[Addresses(required)], validate_on=["changed", "blur"],
                                suggester=ContactSuggester(self.app.client))
                yield Label("", id=f"{name}-error", classes="field-error")
            with Horizontal(classes="field"):
                yield Label("Subject", classes="field-label")
                yield Input(d.subject, id="subject", placeholder="Subject", compact=True)
            yield TextArea(d.body, id="body", soft_wrap=True, show_line_numbers=False)
            yield OptionList(id="attachments")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#composer").border_title = "Reply" if self.draft.thread_id else "New message"
        self.query_one("#attachments").border_title = "Attachments (ctrl+a add · delete remove)"
        target = "#body" if self.draft.to else "#to"
        self.query_one(target).focus()
        if self.draft.thread_id:
            self.query_one("#body", TextArea).move_cursor((0, 0))
        if self.forward_attachments:
            self._add_forwarded(self.forward_attachments)

    @on(Input.Changed)
    def show_address_errors(self, event: Input.Changed) -> None:
        if event.input.id in ("to", "cc", "bcc") and event.validation_result is not None:
            errors = event.validation_result.failure_descriptions
            label = self.query_one(f"#{event.input.id}-error", Label)
            label.update(line(errors[0] if errors else ""))
            label.set_class(bool(errors), "shown")

    # Attachments

    def _render_uploads(self) -> None:
        options = self.query_one("#attachments", OptionList)
        highlighted = options.highlighted
        options.clear_options()
        for upload in self.uploads:
            if upload.attachment is not None:
                label = chip_label(upload.attachment, upload.state)
            else:
                label = line(f"📎 {upload.name}  {human_size(upload.size)}  {upload.state}")
            options.add_option(Option(label, id=upload.key))
        if highlighted is not None and self.uploads:
            options.highlighted = min(highlighted, len(self.uploads) - 1)

    def action_attach(self) -> None:
        def chosen(path: Path | None) -> None:
            if path is not None:
                upload = Upload(key=f"u{len(self.uploads)}-{path.name}", name=path.name,
                                size=path.stat().st_size)
                self.uploads.append(upload)
                self._render_uploads()
                self._upload(upload, path)

        self.app.push_screen(AttachFileDialog(), chosen)

    @work(group="uploads")
    async def _upload(self, upload: Upload, path: Path) -> None:
        try:
            upload.attachment = await self.app.client.upload_attachment(path)
            upload.state = "✓ uploaded"
        except (ApiError, OSError) as exc:
            upload.state = f"✗ {getattr(exc, 'message', exc)}"
        if upload in self.uploads:
            self._render_uploads()

    @work(group="uploads")
    async def _add_forwarded(self, attachment_ids: list[str]) -> None:
        for attachment_id in attachment_ids:
            try:
                attachment = await self.app.client.get_attachment(attachment_id)
            except ApiError:
                continue
            self.uploads.append(Upload(key=attachment_id, name=attachment.filename, size=attachment.size,
                                       state="✓ forwarded", attachment=attachment))
        self._render_uploads()

    def action_remove_attachment(self) -> None:
        options = self.query_one("#attachments", OptionList)
        if self.focused is options and options.highlighted is not None and self.uploads:
            del self.uploads[options.highlighted]
            self._render_uploads()

    # Body and sending

    def current_draft(self) -> Draft:
        """The draft as the fields hold it now."""
        select = self.query_one("#from", Select)
        return Draft(
            inbox_id=select.value if isinstance(select.value, str) else None,
            to=self.query_one("#to", Input).value, cc=self.query_one("#cc", Input).value,
            bcc=self.query_one("#bcc", Input).value, subject=self.query_one("#subject", Input).value,
            body=self.query_one("#body", TextArea).text, thread_id=self.draft.thread_id,
            draft_id=self.draft.draft_id,
        )

    def action_edit_body(self) -> None:
        body = self.query_one("#body", TextArea)
        body.text = editor.edit_text(self.app, body.text)

    def problems(self, draft: Draft) -> list[str]:
        """Everything that stops this draft from being sent, worded for the user."""
        found = []
        if not draft.inbox_id:
            found.append("Choose an inbox to send from")
        if not draft.to.strip():
            found.append("Add a recipient in To")
        for name in ("to", "cc", "bcc"):
            bad = invalid_addresses(getattr(draft, name))
            if bad:
                found.append(f"{name.capitalize()}: not an address: {bad[0]}")
        if not draft.subject.strip():
            found.append("Add a subject")
        if any(u.attachment is None and u.state == "uploading…" for u in self.uploads):
            found.append("Wait for the attachments to finish uploading")
        if any(u.attachment is None and u.state != "uploading…" for u in self.uploads):
            found.append("Remove the attachments that failed to upload (delete)")
        return found

    def attachment_ids(self) -> list[str]:
        return [u.attachment.attachment_id for u in self.uploads if u.attachment]

    def ready_draft(self) -> Draft | None:
        if self.sending:
            return None
        draft = self.current_draft()
        problems = self.problems(draft)
        if problems:
            self.notify("\n".join(problems), title="Not sent", severity="error", markup=False)
            return None
        return draft

    def action_send(self) -> None:
        draft = self.ready_draft()
        if draft is not None:
            self.sending = True
            self._send(draft)

    @work(group="send", exclusive=True)
    async def _send(self, draft: Draft, send_at: datetime | None = None) -> None:
        self.query_one("#composer").loading = True
        try:
            result = await self.deliver(draft, send_at)
        except ApiError as exc:
            self.notify(f"{exc.message}\nYour draft is kept.", title="Not sent", severity="error",
                        timeout=8, markup=False)
            return
        finally:
            self.sending = False
            self.query_one("#composer").loading = False
        self.app.post_message(MessageSent(result.thread_id, draft.inbox_id or ""))
        self.dismiss()
        if self.announce_held(result, draft, send_at):
            return
        if result.validation.empty:
            self.app.notify(f"Sent to {draft.to}", title="Sent", markup=False)
        else:
            self.app.push_screen(SendReportDialog(result.validation))

    @property
    def modified(self) -> bool:
        """Whether anything was typed or attached since the composer opened."""
        if not self.is_mounted:
            return False
        now, before = self.current_draft(), self.draft
        fields = ("to", "cc", "bcc", "subject")
        return (now.body.strip() != before.body.strip() or len(self.uploads) > len(self.forward_attachments)
                or any(getattr(now, f).strip() != getattr(before, f).strip() for f in fields))

    def action_discard(self) -> None:
        if not self.modified:
            self.dismiss()
            return

        def decided(discard: bool | None) -> None:
            if discard:
                self.dismiss()

        self.app.push_screen(ConfirmDialog("Discard this draft?", yes="Discard", no="Keep writing"), decided)
