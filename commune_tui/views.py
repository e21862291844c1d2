"""The views of an inbox in the mailbox tree (Inbox, Flagged, Sent, Archive, Trash) as label
filters."""

from __future__ import annotations

from dataclasses import dataclass

from .models import InboxCounts, ThreadSummary


@dataclass(frozen=True)
class MailView:
    """Threads with all of `labels` and none of `exclude` (the server leaves the trash out unless
    asked)."""

    key: str
    title: str
    labels: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    def shows(self, thread: ThreadSummary) -> bool:
        """Whether `thread`, with its current labels, belongs in this view."""
        labels = set(thread.labels)
        if "trash" in labels and "trash" not in self.labels:
            return False
        return set(self.labels) <= labels and not labels & set(self.exclude)

    def count(self, counts: InboxCounts | None) -> str:
        """The figure the tree shows beside the view: unread, flagged or trashed threads."""
        if counts is None:
            return ""
        value = {"inbox": counts.unread_threads, "flagged": counts.flagged_threads,
                 "trash": counts.trash_threads}.get(self.key, 0)
        return str(value) if value else ""


INBOX = MailView("inbox", "Inbox", exclude=("archived",))
VIEWS = (
    INBOX,
    MailView("flagged", "Flagged", labels=("flagged",)),
    MailView("sent", "Sent", labels=("sent",)),
    MailView("archive", "Archive", labels=("archived",)),
    MailView("trash", "Trash", labels=("trash",)),
)


def inbox_count(counts: InboxCounts | None) -> str:
    """`3/12`: unread of all threads (the trash left out), or `12` when all are read."""
    if counts is None:
        return ""
    if counts.unread_threads:
        return f"{counts.unread_threads}/{counts.threads}"
    return str(counts.threads)
