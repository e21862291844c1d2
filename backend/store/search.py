"""The search language (Mailpit's syntax) turned into SQL conditions on one message row `m`.

A query is words and operators separated by spaces; `"quoted text"` keeps spaces, also after an
operator (`subject:"quarterly report"`); a leading `-` negates a term. Every term must hold for one and
the same message. Words are substrings of the subject, body, sender or an attachment's file name, any
case: three characters or more are looked up in the trigram index (which also finds words inside
Chinese, Japanese or Korean text, where no spaces separate them); shorter ones are whole words of the
word index, or substrings when they hold non-ASCII letters.

Operators: `from:` (address or name), `to:` (to, cc or bcc), `subject:`, `label:`, `is:unread`,
`is:read`, `is:flagged`, `is:unflagged`, `has:attachment`, `before:` and `after:` (a date or ISO 8601
time; arrival time), `auth:fail` (SPF, DKIM or DMARC failed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..models.mail import clean_label
from ..util import iso, parse_iso

TRIGRAM = 3
_TOKEN = re.compile(r'(-?)(?:([A-Za-z]+):)?(?:"([^"]*)"?|(\S+))')
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
AUTH_FAILED = "instr(authentication, '\"fail\"') > 0"
"""A message whose SPF, DKIM or DMARC result is `fail` (`auth:fail`), written as the partial index
`messages_auth_failed` is defined. The only other value in the object is `from_domain`, which always
holds a dot, so it never reads `"fail"`."""
RECIPIENT = ("EXISTS (SELECT 1 FROM json_each(m.participants) WHERE json_extract(value, '$.role') != 'sender'"
             " AND instr(json_extract(value, '$.identity'), ?) > 0)")
FIELDS = ("from", "to", "subject", "label", "is", "has", "before", "after", "auth")
IS_LABELS = {"unread": ("unread", True), "read": ("unread", False), "flagged": ("flagged", True),
             "unflagged": ("flagged", False)}


class SearchSyntaxError(ValueError):
    """A query the search language cannot take (an unknown `is:` value, a bad date, ...)."""


@dataclass(frozen=True)
class Term:
    field: str
    """An operator's name, or "" for a word."""
    value: str
    negated: bool = False


@dataclass
class Query:
    terms: list[Term]

    @property
    def labels(self) -> tuple[str, ...]:
        """Labels the query asks for positively (`label:trash` lifts the default exclusion of the trash)."""
        return tuple(clean_label(t.value) for t in self.terms if t.field == "label" and not t.negated)

    @property
    def empty(self) -> bool:
        return not self.terms


def parse(text: str) -> Query:
    """The terms of a query; words that only look like operators (`10:30`, `http://x`) stay words."""
    terms = []
    for match in _TOKEN.finditer(text.replace("\0", " ")):
        negated, field, quoted, bare = match.groups()
        value = quoted if quoted is not None else bare
        field = (field or "").lower()
        if field and field not in FIELDS:
            value, field = f"{match.group(2)}:{value}", ""
        if not value.strip() and not field:
            continue
        if field and not value.strip():
            raise SearchSyntaxError(f"q: '{field}:' needs a value")
        terms.append(Term(field, value.strip(), bool(negated)))
    return Query(terms)


def contains(column: str, value: str) -> tuple[str, str]:
    """`column` contains `value` in any case: SQLite's lower() when the value is ASCII (the column's other
    letters cannot match it anyway), else Unicode case folding (a Python function, slower)."""
    if value.isascii():
        return f"instr(lower({column}), ?) > 0", value.lower()
    return f"instr(casefold({column}), ?) > 0", value.casefold()


def _word(value: str) -> tuple[str, list]:
    if len(value) >= TRIGRAM:
        return ("m.seq IN (SELECT rowid FROM messages_trigram WHERE messages_trigram MATCH ?)",
                ['"' + value.replace('"', '""') + '"'])
    if value.isascii():
        return ("m.seq IN (SELECT rowid FROM messages_fts WHERE messages_fts MATCH ?)",
                ['"' + value.replace('"', '""') + '"'])
    parts = [contains(column, value) for column in ("m.subject", "m.text_body", "m.filenames")]
    return "(" + " OR ".join(sql for sql, _ in parts) + ")", [param for _, param in parts]


def _moment(field: str, value: str) -> str:
    try:
        return iso(parse_iso(value + "T00:00:00Z" if _DATE.match(value) else value))
    except (ValueError, OverflowError):
        raise SearchSyntaxError(f"q: {field}: takes a date (2025-03-15) or an ISO 8601 time") from None


def _label(label: str) -> tuple[str, list]:
    # The label table answers by primary key; reading `m.labels` would read the whole row, body included.
    return "EXISTS (SELECT 1 FROM message_labels WHERE message_id = m.id AND label = ?)", [label]


def _condition(term: Term) -> tuple[str, list]:
    value, field = term.value, term.field
    if field == "":
        return _word(value)
    if field == "from":
        name, param = contains("coalesce(json_extract(m.extra, '$.sender_name'), '')", value)
        return f"(instr(m.sender, ?) > 0 OR {name})", [value.lower(), param]
    if field == "to":
        return RECIPIENT, [value.lower()]
    if field == "subject":
        sql, param = contains("m.subject", value)
        return sql, [param]
    if field == "label":
        try:
            return _label(clean_label(value))
        except ValueError as exc:
            raise SearchSyntaxError(f"q: label: {exc}") from None
    if field == "is":
        if value.lower() not in IS_LABELS:
            raise SearchSyntaxError(f"q: is: takes {', '.join(IS_LABELS)}")
        label, wanted = IS_LABELS[value.lower()]
        sql, params = _label(label)
        return (sql if wanted else f"NOT {sql}"), params
    if field == "has":
        if value.lower() not in ("attachment", "attachments"):
            raise SearchSyntaxError("q: has: takes attachment")
        return "m.attachment_ids != '[]'", []
    if field in ("before", "after"):
        return f"m.created_at {'<' if field == 'before' else '>='} ?", [_moment(field, value)]
    if value.lower() != "fail":
        raise SearchSyntaxError(f"q: unknown operator 'auth:{value[:40]}'; auth:fail is the authentication filter")
    return AUTH_FAILED, []


def _phrase(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


@dataclass
class Plan:
    """A query as SQL: `fts`, the trigram index expression of its long words (None without one), which
    leads the scan newest first; `where`, the other terms as conditions on `m` (leading " AND ")."""

    fts: str | None
    where: str
    params: tuple


def plan(query: Query) -> Plan:
    """The query's words of three characters or more become one trigram expression (`"a" AND "b" NOT "c"`),
    the index that leads; every other term is a condition on the message row."""
    long_words = [t for t in query.terms if t.field == "" and len(t.value) >= TRIGRAM]
    wanted = [t for t in long_words if not t.negated]
    fts = None
    if wanted:
        fts = " AND ".join(_phrase(t.value) for t in wanted)
        fts += "".join(f" NOT {_phrase(t.value)}" for t in long_words if t.negated)
    sql, params = "", []
    for term in query.terms:
        if fts is not None and term in long_words:
            continue
        condition, values = _condition(term)
        sql += f" AND NOT ({condition})" if term.negated else f" AND {condition}"
        params += values
    return Plan(fts, sql, tuple(params))
