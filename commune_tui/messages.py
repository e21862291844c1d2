"""App-wide messages: what one part of the client tells the others."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from .models import Inbox, ThreadSummary
from .views import INBOX, MailView


@dataclass
class InboxSelected(Message):
    """An inbox (or one of its views: Flagged, Sent, Archive, Trash) was chosen in the tree."""

    inbox: Inbox
    view: MailView = INBOX


@dataclass
class OutboxSelected(Message):
    """The mailbox tree's Outbox entry (or one of its tabs) was chosen: show every inbox's outbox."""

    tab: str = "approvals"


@dataclass
class ThreadSelected(Message):
    thread: ThreadSummary


@dataclass
class NewMail(Message):
    """Threads changed on the server; floods of these coalesce into one refresh."""

    inbox_ids: frozenset[str] = frozenset()

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, NewMail)


@dataclass
class MessageSent(Message):
    thread_id: str | None
    inbox_id: str
