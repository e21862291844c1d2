"""The client's plain-Python half never imports textual; the pure helpers do what mail readers expect."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime

import pytest

from commune_tui.formatting import (
    compact_date,
    html_to_text,
    human_size,
    invalid_addresses,
    prefixed_subject,
    quote_text,
    split_addresses,
)

PLAIN_MODULES = ["commune_tui.client", "commune_tui.models", "commune_tui.config", "commune_tui.formatting",
                 "commune_tui.sendtime"]


@pytest.mark.parametrize("module", PLAIN_MODULES)
def test_module_never_imports_textual(module: str) -> None:
    code = f"import sys, {module}; print(sorted(m for m in sys.modules if m.split('.')[0] == 'textual'))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_compact_dates_read_like_a_mail_list() -> None:
    now = datetime(2026, 3, 15, 18, 0, tzinfo=UTC)
    assert compact_date("2026-03-15T14:30:00.000Z", now) == "14:30"
    assert compact_date("2026-01-02T09:00:00.000Z", now) == "Jan 02"
    assert compact_date("2024-03-15T09:00:00.000Z", now) == "2024-03-15"
    assert compact_date("not a date", now) == ""


def test_reply_helpers() -> None:
    assert prefixed_subject("Re", "Lunch") == "Re: Lunch"
    assert prefixed_subject("Re", "RE: Lunch") == "RE: Lunch"
    quoted = quote_text("Hello\n\nBye", "a@b.test", None)
    assert quoted.endswith("a@b.test wrote:\n> Hello\n>\n> Bye\n")


def test_addresses_are_checked_as_typed() -> None:
    assert invalid_addresses("a@b.test, Bob <bob@example.com>") == []
    assert invalid_addresses("a@b.test, bob@, plain") == ["bob@", "plain"]
    assert split_addresses("a@b.test, Bob <bob@example.com>") == ["a@b.test", "bob@example.com"]


def test_html_body_becomes_readable_text() -> None:
    html = ("<html><head><style>p{}</style></head><body><p>Hello <b>there</b>,</p>"
            "<ul><li>one</li><li>two</li></ul><a href='https://x.test/'>link</a><script>x()</script></body>")
    assert html_to_text(html) == "Hello there,\n\n• one\n• two\nlink <https://x.test/>"


def test_sizes() -> None:
    assert [human_size(n) for n in (512, 2048, 5 * 1024 * 1024)] == ["512 B", "2.0 KB", "5.0 MB"]
