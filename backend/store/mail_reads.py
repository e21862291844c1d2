"""Read side of the mail store: keyset-paged lists, thread messages, search, attachments.

Every list is one indexed range scan: equality on the filter columns, then the keyset written as a
row value `(a, b) < (?, ?)` so the cost of a page does not depend on how deep it is. Where the
filter column has a better index than `org_id`, the org check is written `+org_id`: still a filter
on every row, but no longer a candidate index the planner could wrongly prefer.
"""

from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import dataclass
from typing import Any

from .database import Database
from .search import parse, plan

# Search walks matching messages newest first and stops after this many, so a word found in
# millions of rows (or in other organisations' mail) still answers in bounded time.
SEARCH_SCAN_LIMIT = 20_000
SEARCH_TOTAL_SCAN = 1_000
"""Matching messages a search counts its `total` over once its page is full (a lower bound beyond)."""
_UNSAFE_FILENAME = re.compile(r"[\x00-\x1f\x7f/\\]+")


def safe_filename(name: str) -> str:
    """A filename with no path components or control characters, never empty."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = _UNSAFE_FILENAME.sub("_", base).strip().lstrip(".")
    return cleaned[:255] or "attachment"


QUARANTINED = "instr(labels, '\"quarantine\"') > 0"
"""A message labelled `quarantine`. Labels are stored as a JSON array of strings, where a quote inside a
label is escaped, so `"quarantine"` with its quotes matches that whole label only. The partial indexes
`messages_quarantined_*` are defined with this very expression."""
TRASH = "trash"
QUARANTINE = "quarantine"


@dataclass(frozen=True)
class LabelFilter:
    """`labels=` (every one of them) and `exclude_labels=` (none of them) of a list.

    `trash` and `quarantine` are left out unless asked for: a thread's `hidden` bits say so (1 = all its
    messages quarantined, 2 = in the trash), so `hidden_values` are the values a listed thread may have.
    """

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    @property
    def hidden_values(self) -> tuple[int, ...]:
        trash, quarantine = TRASH in self.include, QUARANTINE in self.include
        if trash:
            return (2, 3) if quarantine else (2,)
        return (0, 1) if quarantine else (0,)

    @property
    def key(self) -> str:
        """The filter as text, for cursors: a cursor is valid only for the same filter."""
        return ",".join(self.include) + "-" + ",".join(self.exclude)

    def thread_conditions(self, key: str, include: tuple[str, ...]) -> tuple[str, list]:
        """Conditions that the thread `key` (a column naming it) has every label of `include` and none
        of `exclude` (leading " AND "), checked by primary key in `thread_labels`."""
        sql, params = "", []
        for label, wanted in [*((label, True) for label in include), *((label, False) for label in self.exclude)]:
            found = f"EXISTS (SELECT 1 FROM thread_labels x WHERE x.thread_id = {key} AND x.label = ?)"
            sql += f" AND {found}" if wanted else f" AND NOT {found}"
            params.append(label)
        return sql, params

    def message_conditions(self, table: str = "") -> tuple[str, tuple]:
        """SQL conditions on a message row's own `labels`, with their parameters (leading " AND ")."""
        sql, params, column = "", [], f"{table}.labels" if table else "labels"
        excluded = [*self.exclude, *(label for label in (TRASH, QUARANTINE) if label not in self.include)]
        for label, wanted in [*((label, True) for label in self.include), *((label, False) for label in excluded)]:
            if label == QUARANTINE:
                # Written as the partial indexes `messages_quarantined_*` are defined.
                condition = QUARANTINED.replace("labels", column)
            else:
                condition = f"instr({column}, ?) > 0"
                params.append(json.dumps(label))
            sql += f" AND {condition}" if wanted else f" AND NOT {condition}"
        return sql, tuple(params)


NO_LABELS = LabelFilter()
COUNT_NAMES = {"threads": "threads", "unread": "unread_threads", "flagged": "flagged_threads",
               "trash": "trash_threads"}
"""The inbox `counts` keys, by the counter's name in `inbox_counts` (migration INBOX_COUNTERS)."""


def _thread_page_sql(
    columns: str,
    org_id: str,
    inbox_id: str | None,
    domain_id: str | None,
    order: str,
    limit: int,
    after: tuple[str, str] | None,
    labels: LabelFilter = NO_LABELS,
) -> tuple[str, tuple]:
    """The keyset page query over `threads` by inbox (and/or domain) and labels.

    Without `labels=`, the thread list index leads; with it, the first label's `thread_labels` range
    does (already in list order), the other labels are checked per row by primary key.
    """
    hidden = labels.hidden_values
    hidden_sql = "hidden = ?" if len(hidden) == 1 else f"hidden IN ({', '.join('?' * len(hidden))})"
    table, key = ("threads", "id") if not labels.include else ("thread_labels", "thread_id")
    lead = [] if not labels.include else [labels.include[0]]
    label_sql = " AND label = ?" if lead else ""
    if inbox_id is not None:
        # `+org_id` keeps the planner on the inbox index; the org check stays a plain filter.
        where = f"inbox_id = ?{label_sql} AND {hidden_sql} AND +org_id = ?"
        params = [inbox_id, *lead, *hidden, org_id]
        if domain_id is not None:
            where += " AND domain_id = ?"
            params.append(domain_id)
    else:
        where = f"org_id = ? AND domain_id = ?{label_sql} AND {hidden_sql}"
        params = [org_id, domain_id, *lead, *hidden]
    labelled, label_params = labels.thread_conditions(f"{table}.{key}", labels.include[1:])
    where += labelled
    params += label_params
    cond, order_by, extra = _keyset(order, f"last_message_at, {key}", after)
    if not labels.include:
        return f"SELECT {columns} FROM threads WHERE {where}{cond}{order_by} LIMIT ?", (*params, *extra, limit)
    _, outer_order, _ = _keyset(order, "last_message_at, id", None)
    sql = (f"SELECT {columns} FROM (SELECT thread_id FROM thread_labels WHERE {where}{cond}{order_by} LIMIT ?)"
           f" AS picked JOIN threads ON threads.id = picked.thread_id{outer_order}")
    return sql, (*params, *extra, limit)


def _keyset(order: str, columns: str, after: tuple | None) -> tuple[str, str, tuple]:
    """The row-value condition and ORDER BY for one page in `order`, continuing after `after`."""
    direction = "DESC" if order == "desc" else "ASC"
    first, second = (c.strip() for c in columns.split(","))
    order_by = f" ORDER BY {first} {direction}, {second} {direction}"
    if after is None:
        return "", order_by, ()
    op = "<" if order == "desc" else ">"
    return f" AND ({first}, {second}) {op} (?, ?)", order_by, tuple(after)


class MailReads:
    """Queries of the mail aggregate; every one filters on the caller's organisation."""

    def __init__(self, database: Database) -> None:
        self.database = database

    # threads -------------------------------------------------------------------------------
    def get_thread(self, org_id: str, thread_id: str) -> sqlite3.Row | None:
        """One thread of the organisation, or None."""
        return self.database.one("SELECT * FROM threads WHERE id = ? AND org_id = ?", (thread_id, org_id))

    def list_threads_json(
        self,
        org_id: str,
        inbox_id: str | None,
        domain_id: str | None,
        order: str,
        limit: int,
        after: tuple[str, str] | None = None,
        labels: LabelFilter = NO_LABELS,
    ) -> list[tuple[str, str, str]]:
        """Up to `limit` threads by last activity after the keyset `after`, as `(last_message_at, id, JSON)`.

        The database builds the JSON (the dialect's `THREAD_JSON_SQL`, kept equal to `models.mail.thread_json`
        by a test): half the cost of building Python dicts and encoding them, on the API's busiest list.
        """
        sql, params = _thread_page_sql(f"last_message_at, id, {self.database.dialect.THREAD_JSON_SQL}", org_id,
                                       inbox_id, domain_id, order, limit, after, labels)
        return self.database.tuples(sql, params)

    def inbox_counts(self, inbox_ids: list[str]) -> dict[str, dict[str, int]]:
        """`{threads, unread_threads, flagged_threads, trash_threads}` of each inbox, in ONE primary-key
        read of the counters the triggers keep (`inbox_counts`), whatever the inboxes' size.

        `threads`, `unread_threads` and `flagged_threads` count what the default list shows (neither in
        the trash nor quarantined); `trash_threads` counts the trash.
        """
        counts = {i: dict.fromkeys(COUNT_NAMES.values(), 0) for i in inbox_ids}
        if not inbox_ids:
            return counts
        marks = ", ".join("?" * len(inbox_ids))
        rows = self.database.query(
            f"SELECT inbox_id, name, value FROM inbox_counts WHERE inbox_id IN ({marks})", tuple(inbox_ids))
        for inbox_id, name, value in rows:
            if name in COUNT_NAMES:
                counts[inbox_id][COUNT_NAMES[name]] = max(0, value)
        return counts

    def thread_messages(self, org_id: str, thread_id: str, order: str, limit: int,
                        after: tuple[str, int] | None = None) -> list[dict[str, Any]]:
        """A page of a thread's messages in time order, after the keyset `after`."""
        cond, order_by, extra = _keyset(order, "created_at, seq", after)
        return self.database.dicts(
            f"SELECT * FROM messages WHERE thread_id = ? AND +org_id = ?{cond}{order_by} LIMIT ?",
            (thread_id, org_id, *extra, limit),
        )

    def last_message_ids(self, thread_id: str) -> tuple[str | None, list[str]]:
        """The newest SMTP Message-ID in a thread and its References chain (for a reply's headers)."""
        row = self.database.one(
            "SELECT smtp_message_id, refs FROM messages WHERE thread_id = ? AND smtp_message_id IS NOT NULL"
            " ORDER BY created_at DESC, seq DESC LIMIT 1",
            (thread_id,),
        )
        if row is None:
            return None, []
        return row["smtp_message_id"], json.loads(row["refs"] or "[]")

    # messages --------------------------------------------------------------------------------
    def get_message(self, org_id: str, message_id: str) -> sqlite3.Row | None:
        """One message of the organisation, or None."""
        return self.database.one("SELECT * FROM messages WHERE id = ? AND org_id = ?", (message_id, org_id))

    def list_messages(
        self,
        org_id: str,
        *,
        inbox_id: str | None = None,
        domain_id: str | None = None,
        sender: str | None = None,
        before: str | None = None,
        since: str | None = None,
        order: str = "desc",
        limit: int = 50,
        after: tuple[str, int] | None = None,
        labels: LabelFilter = NO_LABELS,
    ) -> list[sqlite3.Row]:
        """Messages matching every given filter; the most selective one leads (its index is used).

        Quarantined and trashed messages are listed only when asked for (`labels`); quarantined ones
        then come from their small partial indexes.
        """
        filters: list[tuple[str, Any]] = []
        if inbox_id is not None:
            filters += [("inbox_id = ?", inbox_id), ("+org_id = ?", org_id)]
        elif sender is not None:
            filters += [("org_id = ?", org_id), ("sender = ?", sender)]
        else:
            filters += [("org_id = ?", org_id), ("domain_id = ?", domain_id)]
        if sender is not None and inbox_id is not None:
            filters.append(("sender = ?", sender))
        if domain_id is not None and (inbox_id is not None or sender is not None):
            filters.append(("domain_id = ?", domain_id))
        if before is not None:
            filters.append(("created_at < ?", before))
        if since is not None:
            filters.append(("created_at > ?", since))
        where = " AND ".join(f for f, _ in filters)
        labelled, label_params = labels.message_conditions()
        cond, order_by, extra = _keyset(order, "created_at, seq", after)
        return self.database.query(
            f"SELECT * FROM messages WHERE {where}{labelled}{cond}{order_by} LIMIT ?",
            (*(v for f, v in filters if "?" in f), *label_params, *extra, limit),
        )

    # search ---------------------------------------------------------------------------------
    def search_threads(
        self, org_id: str, text: str, inbox_id: str | None, domain_id: str | None, limit: int,
        labels: LabelFilter = NO_LABELS, after: int | None = None,
    ) -> tuple[list[dict[str, Any]], int, bool]:
        """Threads with a message matching every term of `text` (`store.search`), by their newest
        matching message first: up to `limit` of them below the keyset `after` (that message's `seq`),
        how many threads match, and whether that count is exact.

        Matching messages are read newest first, one row at a time, until the page is full and
        SEARCH_TOTAL_SCAN of them have been counted (so a common word answers in bounded time; the
        count is then a lower bound), never more than SEARCH_SCAN_LIMIT. Threads are filtered like the
        lists (`labels`, `exclude_labels`; the trash and quarantine only when asked for, also by a
        `label:` term). Each hit carries `score` (its matching messages) and `_key`, its keyset.
        """
        query = parse(text)
        if query.empty:
            return [], 0, True
        found = plan(query, self.database.dialect)
        labels = LabelFilter(tuple(dict.fromkeys([*labels.include, *query.labels])), labels.exclude)
        hidden = labels.hidden_values
        threads_sql, threads_params = labels.thread_conditions("t.id", labels.include)
        threads_sql = f" AND t.hidden IN ({', '.join('?' * len(hidden))}){threads_sql}"
        if inbox_id is not None:
            scope, scope_params = "m.inbox_id = ? AND m.org_id = ?", [inbox_id, org_id]
        elif domain_id is not None:
            scope, scope_params = "m.org_id = ? AND m.domain_id = ?", [org_id, domain_id]
        else:
            scope, scope_params = "m.org_id = ?", [org_id]
        order = "m.created_at DESC, m.seq DESC"  # the mailbox's message index, newest first
        if found.wanted:
            source, lead, lead_params, order = self.database.dialect.search_lead(found.wanted, found.unwanted)
        elif found.bigram is not None:
            # A two-character CJK word: its entries in the pair index, newest first.
            source = "message_bigrams b CROSS JOIN messages m ON m.seq = b.seq"
            lead, lead_params, order = "b.bigram = ? AND ", [found.bigram], "b.seq DESC"
        else:
            source, lead, lead_params = "messages m", "", []
        above: set[str] = set()
        page: dict[str, int] = {}
        counted: dict[str, int] = {}
        scanned, exact = 0, True
        with self.database.stream(
            f"SELECT m.thread_id, m.seq FROM {source} CROSS JOIN threads t ON t.id = m.thread_id"
            f" WHERE {lead}{scope}{found.where}{threads_sql} ORDER BY {order} LIMIT {SEARCH_SCAN_LIMIT}",
            (*lead_params, *scope_params, *found.params, *hidden, *threads_params),
        ) as rows:
            for thread_id, seq in rows:
                scanned += 1
                counted[thread_id] = counted.get(thread_id, 0) + 1
                if after is not None and seq >= after:
                    above.add(thread_id)  # shown on an earlier page
                elif thread_id not in above and thread_id not in page and len(page) < limit:
                    page[thread_id] = seq
                if len(page) >= limit and scanned >= SEARCH_TOTAL_SCAN:
                    exact = False
                    break
        if scanned >= SEARCH_SCAN_LIMIT:
            exact = False
        if not page:
            return [], len(counted), exact
        return self._search_hits(org_id, page, counted), len(counted), exact

    def _search_hits(self, org_id: str, page: dict[str, int], scores: dict[str, int]) -> list[dict[str, Any]]:
        """The page's threads in order, each with `score` (its matching messages among those read: all of
        them when the count is exact) and `_key`."""
        ids = list(page)
        marks = ",".join("?" * len(ids))
        rows = self.database.query(f"SELECT * FROM threads WHERE +org_id = ? AND id IN ({marks})", (org_id, *ids))
        stamps = dict(self.database.query(f"SELECT seq, created_at FROM messages WHERE seq IN ({marks})",
                                          tuple(page.values())))
        by_id = {row["id"]: row for row in rows}
        return [{**dict(by_id[i]), "score": scores.get(i, 0), "_key": (stamps.get(page[i], ""), page[i])}
                for i in ids if i in by_id]

    # contacts -------------------------------------------------------------------------------
    def list_contacts(self, org_id: str, text: str, limit: int,
                      after: tuple[str, str] | None = None) -> list[dict[str, Any]]:
        """The organisation's correspondents, most recent first (the `contacts_recent` index), whose
        address or name contains `text` (any case), after the keyset `after`."""
        where, params = "org_id = ?", [org_id]
        if text:
            name, param = self.database.dialect.contains("coalesce(name, '')", text)
            where += f" AND (instr(address, ?) > 0 OR {name})"
            params += [text.lower(), param]
        cond, order_by, extra = _keyset("desc", "last_at, address", after)
        return self.database.dicts(f"SELECT * FROM contacts WHERE {where}{cond}{order_by} LIMIT ?",
                      (*params, *extra, limit))

    # attachments ------------------------------------------------------------------------------
    def get_attachment(self, org_id: str, attachment_id: str) -> dict | None:
        """One attachment of the organisation, or None."""
        row = self.database.one("SELECT * FROM attachments WHERE id = ? AND org_id = ?", (attachment_id, org_id))
        return dict(row) if row else None

    def get_attachment_any(self, attachment_id: str) -> dict | None:
        """An attachment by id alone; only for the signed download route, whose signature is the check."""
        row = self.database.one("SELECT * FROM attachments WHERE id = ?", (attachment_id,))
        return dict(row) if row else None

    def attachments_by_ids(self, org_id: str, ids: list[str]) -> list[dict]:
        """The organisation's attachments among `ids`, in the order given (unknown ids left out)."""
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        rows = self.database.query(f"SELECT * FROM attachments WHERE +org_id = ? AND id IN ({marks})",
                                   (org_id, *ids))
        by_id = {row["id"]: dict(row) for row in rows}
        return [by_id[i] for i in ids if i in by_id]
