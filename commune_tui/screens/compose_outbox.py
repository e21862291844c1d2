"""The composer's outbox half: send later (a scheduled send), postpone (a draft the server keeps), and
sending a resumed draft through the draft itself."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from textual import work
from textual.screen import Screen

from ..client import ApiError
from ..dialogs.send_later import SendLaterDialog
from ..formatting import split_addresses
from ..models import Draft, SendResult
from ..sendtime import describe, wire

if TYPE_CHECKING:
    from ..app import CommuneApp


def draft_fields(draft: Draft, attachments: list[str], complete: bool) -> dict[str, Any]:
    """The `POST /v1/drafts` / `PATCH` body for what the composer holds; `complete` sends empty
    fields too, so a PATCH clears what the user cleared."""
    fields: dict[str, Any] = {
        "inbox_id": draft.inbox_id, "to": split_addresses(draft.to), "cc": split_addresses(draft.cc),
        "bcc": split_addresses(draft.bcc), "subject": draft.subject, "text": draft.body,
        "attachments": attachments, "thread_id": draft.thread_id,
    }
    return fields if complete else {k: v for k, v in fields.items() if v}


class OutboxComposer(Screen):
    """Base of the composer: what it does with the outbox. The composer supplies the draft."""

    app: CommuneApp

    def ready_draft(self) -> Draft | None:
        """The draft when it can be sent, else None after telling the user why (the composer's)."""
        raise NotImplementedError

    def attachment_ids(self) -> list[str]:
        """Ids of the attachments uploaded so far (the composer's)."""
        raise NotImplementedError

    def current_draft(self) -> Draft:
        raise NotImplementedError

    def action_send_later(self) -> None:
        draft = self.ready_draft()
        if draft is None:
            return

        def chosen(moment: datetime | None) -> None:
            if moment is not None and self.ready_draft() is not None:
                self.sending = True
                self._send(self.current_draft(), moment)

        self.app.push_screen(SendLaterDialog(self.app.settings.clock), chosen)

    def _send(self, draft: Draft, send_at: datetime | None = None) -> None:
        raise NotImplementedError

    async def deliver(self, draft: Draft, send_at: datetime | None) -> SendResult:
        """Send now or at `send_at`: a resumed draft through `POST /v1/drafts/{id}/send` after saving
        what was changed in it, anything else through `POST /v1/messages/send`."""
        client = self.app.client
        if draft.draft_id:
            fields = draft_fields(draft, self.attachment_ids(), complete=True)
            fields["send_at"] = wire(send_at) if send_at else None
            await client.save_draft(fields, draft.draft_id)
            return await client.send_draft(draft.draft_id)
        return await client.send(
            inbox_id=draft.inbox_id or "", to=split_addresses(draft.to), cc=split_addresses(draft.cc),
            bcc=split_addresses(draft.bcc), subject=draft.subject.strip(), text=draft.body,
            thread_id=draft.thread_id, attachments=self.attachment_ids(),
            send_at=wire(send_at) if send_at else None)

    def announce_held(self, result: SendResult, draft: Draft, send_at: datetime | None) -> bool:
        """Tell the user a message did not leave yet (scheduled, or held for approval); False when it
        was sent."""
        if result.status == "pending_approval":
            self.app.notify(f"To {draft.to}: a person must approve it before it leaves (Outbox, O).",
                            title="Waiting for approval", markup=False)
            return True
        if result.status == "scheduled" or send_at is not None:
            when = describe(send_at, self.app.settings.clock().astimezone(send_at.tzinfo)) if send_at else ""
            self.app.notify(f"To {draft.to}, {when}. Cancel it in the Outbox (O).", title="Scheduled",
                            markup=False)
            return True
        return False

    def action_postpone(self) -> None:
        """Keep the draft on the server (Outbox · Drafts) and close the composer."""
        draft = self.current_draft()
        if not draft.inbox_id:
            self.notify("Choose an inbox to keep the draft in", title="Not saved", severity="error")
            return
        self._postpone(draft)

    @work(group="send", exclusive=True)
    async def _postpone(self, draft: Draft) -> None:
        try:
            saved = await self.app.client.save_draft(
                draft_fields(draft, self.attachment_ids(), complete=bool(draft.draft_id)), draft.draft_id)
        except ApiError as exc:
            self.notify(f"{exc.message}\nYour draft is still here.", title="Not saved", severity="error",
                        timeout=8, markup=False)
            return
        self.dismiss()
        self.app.notify(f"{saved.subject or '(no subject)'}: resume it from Outbox · Drafts (O, 3).",
                        title="Draft saved", markup=False)
