"""What a caller may put into a mail header: one line of text, or exactly one mailbox.

Plain functions with no dependencies beyond the standard library, so the send API's request model and
the terminal composer apply the same rule and a user sees the same refusal in both.
"""

from __future__ import annotations

import re
import unicodedata
from typing import NamedTuple

# C0 controls, DEL and C1 controls (U+0085 among them), the Unicode line and paragraph separators,
# and lone surrogates. Some of these end a line for `str.splitlines()` (and so for the email
# package), some for other mail readers; none has a place in a header, and a surrogate cannot be
# encoded at all. TAB is white space in RFC 5322 text and is allowed where the caller says so.
_UNSAFE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_UNSAFE_OR_TAB = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")
# Outside quotes these would make a display name mean something else to an address parser.
_PHRASE_SPECIALS = frozenset('()<>[]:;@\\,"')
# Characters that never belong in one address: separators of address lists, quotes, brackets.
_NOT_IN_ADDRESS = frozenset(' \t,;"<>()[]\\')
_ADDRESS_LIKE = re.compile(r"[^\s@<>\"',;:()\[\]]+@[^\s@<>\"',;:()\[\]]+")
_ANGLE_ADDR = re.compile(r"^(?P<name>[^<>]*)<(?P<address>[^<>]*)>$")


class Mailbox(NamedTuple):
    """One mailbox as a caller wrote it: a display name (possibly empty) and the address used."""

    name: str
    address: str


def _describe(char: str) -> str:
    name = unicodedata.name(char, "")
    return f"U+{ord(char):04X} {name}".rstrip()


def unsafe_header_character(value: str, *, allow_tab: bool = True) -> str | None:
    """The first character that cannot go into a header line, described (`U+2028 LINE SEPARATOR`), or None."""
    found = (_UNSAFE if allow_tab else _UNSAFE_OR_TAB).search(value)
    return _describe(found.group()) if found else None


def validate_header_text(value: str, *, allow_tab: bool = True) -> str:
    """`value` unchanged when it can be one header line; else a ValueError naming the character."""
    bad = unsafe_header_character(value, allow_tab=allow_tab)
    if bad is not None:
        raise ValueError(f"must be one line of text without control characters (found {bad})")
    return value


def validate_body_text(value: str) -> str:
    """`value` unchanged unless it holds a lone surrogate, which no mail body can encode."""
    found = _SURROGATE.search(value)
    if found is not None:
        raise ValueError(f"is not valid Unicode text (found the lone surrogate {_describe(found.group())})")
    return value


def header_safe(value: str) -> str:
    """`value` with every character that cannot go into a header line replaced by a space, and spaces collapsed."""
    return " ".join(_UNSAFE_OR_TAB.sub(" ", value).split())


def _display_name(raw: str) -> str:
    """A display name as written before `<address>`: a quoted string or words without specials."""
    if not raw.startswith('"'):
        if any(c in _PHRASE_SPECIALS for c in raw):
            raise ValueError(f"the display name {raw!r} must be quoted (\"...\") when it holds any of ()<>[]:;@\\,\"")
        return " ".join(raw.split())
    name, escaped = [], False
    for index, char in enumerate(raw[1:], start=1):
        if escaped:
            name.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            if index != len(raw) - 1:
                raise ValueError(f"the display name {raw!r} has text after its closing quote")
            return "".join(name)
        else:
            name.append(char)
    raise ValueError(f"the display name {raw!r} has no closing quote")


def parse_mailbox(value: str) -> Mailbox:
    """Exactly one mailbox, `address` or `Display Name <address>`; anything a reader could take
    for more than one address, or for another address, is a ValueError.

    The address is not checked for syntax here (recipient validation reports a bad one); this only
    makes sure which address is meant cannot be in doubt.
    """
    validate_header_text(value, allow_tab=False)
    text = value.strip()
    if "<" not in text and ">" not in text:
        if any(c in _NOT_IN_ADDRESS for c in text):
            raise ValueError(f"{value!r} is not one email address (write one address, or Name <address>)")
        return Mailbox("", text)
    found = _ANGLE_ADDR.match(text)
    if found is None:
        raise ValueError(f"{value!r} must hold exactly one <address>, at its end")
    address = found["address"].strip()
    if not address or any(c in _NOT_IN_ADDRESS for c in address):
        raise ValueError(f"{value!r} does not hold one email address between < and >")
    raw_name = found["name"].strip()
    if _names_another_address(raw_name, address):
        raise ValueError(f"the display name in {value!r} must not contain another email address")
    name = _display_name(raw_name)
    if _names_another_address(name, address):
        raise ValueError(f"the display name in {value!r} must not contain another email address")
    return Mailbox(name, address)


def _names_another_address(name: str, address: str) -> bool:
    # A name such as "ceo@bank.test" could be read as the address by a later reader; one that only
    # repeats the address itself (as many mail programs write it) cannot mislead.
    return any(m.lower() != address.lower() for m in _ADDRESS_LIKE.findall(name))
