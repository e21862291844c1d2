"""The search language (Mailpit's syntax) turned into SQL conditions on one message row `m`.

A query is words and operators separated by spaces; `"quoted text"` keeps spaces, also after an
operator (`subject:"quarterly report"`); a leading `-` negates a term. Every term must hold for one and
the same message. Words are substrings of the subject, body, sender or an attachment's file name, any
case: three characters or more are looked up in the trigram index (which also finds words inside
Chinese, Japanese or Korean text, where no spaces separate them); two CJK characters are looked up in
the index of adjacent CJK pairs (store/bigrams.py); other shorter words are whole words of the word
index, or substrings when they hold non-ASCII letters.

Operators: `from:` (address or name), `to:` (to, cc or bcc), `subject:`, `label:`, `is:unread`,
`is:read`, `is:flagged`, `is:unflagged`, `has:attachment`, `before:` and `after:` (a date or ISO 8601
time; arrival time), `auth:fail` (SPF, DKIM or DMARC failed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import ModuleType

from ..models.mail import clean_label
from ..util import iso, parse_iso
from .bigrams import is_bigram

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


def _moment(field: str, value: str) -> str:
    try:
        return iso(parse_iso(value + "T00:00:00Z" if _DATE.match(value) else value))
    except (ValueError, OverflowError):
        raise SearchSyntaxError(f"q: {field}: takes a date (2025-03-15) or an ISO 8601 time") from None


def _label(label: str) -> tuple[str, list]:
    # The label table answers by primary key; reading `m.labels` would read the whole row, body included.
    return "EXISTS (SELECT 1 FROM message_labels WHERE message_id = m.id AND label = ?)", [label]


def _condition(term: Term, dialect: ModuleType) -> tuple[str, list]:
    value, field = term.value, term.field
    if field == "":
        return dialect.word(value)
    if field == "from":
        name, param = dialect.contains("coalesce(json_extract(m.extra, '$.sender_name'), '')", value)
        return f"(instr(m.sender, ?) > 0 OR {name})", [value.lower(), param]
    if field == "to":
        return RECIPIENT, [value.lower()]
    if field == "subject":
        sql, param = dialect.contains("m.subject", value)
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


@dataclass
class Plan:
    """A query as SQL: `wanted` and `unwanted`, its words of three characters or more that lead the scan
    through the trigram index newest first (none: no such lead); `where`, the other terms as conditions
    on `m` (leading " AND ")."""

    wanted: list[str]
    unwanted: list[str]
    where: str
    params: tuple
    bigram: str | None = None
    """Without `wanted`: a two-character CJK word whose entries in `message_bigrams` lead instead."""


def plan(query: Query, dialect: ModuleType) -> Plan:
    """The query's words of three characters or more lead through the trigram index (when one of them
    is wanted); every other term is a condition on the message row, in the engine's `dialect`."""
    long_words = [t for t in query.terms if t.field == "" and len(t.value) >= TRIGRAM]
    wanted = [t.value for t in long_words if not t.negated]
    unwanted = [t.value for t in long_words if t.negated] if wanted else []
    pairs = [t for t in query.terms if t.field == "" and not t.negated and is_bigram(t.value)]
    bigram = pairs[0].value if not wanted and pairs else None
    sql, params = "", []
    for term in query.terms:
        if (wanted and term in long_words) or (bigram is not None and term == pairs[0]):
            continue
        condition, values = _condition(term, dialect)
        sql += f" AND NOT ({condition})" if term.negated else f" AND {condition}"
        params += values
    return Plan(wanted, unwanted, sql, tuple(params), bigram)
