"""The client's plain-Python half never imports textual; the pure helpers do what mail readers expect."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from commune_tui.formatting import (
    compact_date,
    find_links,
    full_date,
    html_to_text,
    human_size,
    invalid_addresses,
    prefixed_subject,
    quote_text,
    split_addresses,
    with_signature,
)

PLAIN_MODULES = ["commune_tui.client", "commune_tui.models", "commune_tui.config", "commune_tui.formatting",
                 "commune_tui.opener", "commune_tui.sendtime"]


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
    assert html_to_text(html) == "Hello there,\n\n• one\n• two\nlink [1]\n\n[1] https://x.test/"


def test_html_links_are_numbered_once_with_their_targets_below() -> None:
    html = ("<p>See <a href='https://a.test/x'>the docs</a>, <a href='#top'>top</a>,"
            " <a href='https://b.test/'>b</a> and <a href='https://a.test/x'>the docs again</a>.</p>")
    text = html_to_text(html)
    assert text.startswith("See the docs [1], top, b [2] and the docs again [1].")
    assert text.endswith("\n\n[1] https://a.test/x\n[2] https://b.test/")
    assert find_links(text) == ["https://a.test/x", "https://b.test/"]
    assert find_links("go to https://x.test/a?b=1. or (mailto:m@x.test)") == [
        "https://x.test/a?b=1", "mailto:m@x.test"]


def test_dates_follow_the_zone_and_the_day() -> None:
    now = datetime(2026, 3, 15, 23, 30, tzinfo=UTC)
    tokyo = ZoneInfo("Asia/Tokyo")
    # 23:00 UTC on the 15th is 08:00 on the 16th in Tokyo, where "now" is also the 16th: today.
    assert compact_date("2026-03-15T23:00:00Z", now, tokyo) == "08:00"
    assert compact_date("2026-03-15T13:00:00Z", now, tokyo) == "Mar 15"
    assert compact_date("2026-03-15T13:00:00Z", now, UTC) == "13:00"
    assert full_date("2026-03-15T23:00:00Z", tokyo) == "Mon, 16 Mar 2026 08:00 JST"
    assert full_date("2026-07-01T12:00:00Z", ZoneInfo("Europe/Paris")) == "Wed, 01 Jul 2026 14:00 CEST"


def test_signature_goes_under_new_text_and_above_quotes() -> None:
    assert with_signature("", "Ann\nACME") == "\n\n-- \nAnn\nACME"
    assert with_signature("Hi", "Ann") == "Hi\n\n-- \nAnn\n"
    reply = "\n\nOn Mon, bob wrote:\n> hi\n"
    assert with_signature(reply, "Ann") == "\n\n-- \nAnn" + reply
    assert with_signature(with_signature(reply, "Ann"), "Ann") == with_signature(reply, "Ann")
    assert with_signature("Hi", "  ") == "Hi"


def test_sizes() -> None:
    assert [human_size(n) for n in (512, 2048, 5 * 1024 * 1024)] == ["512 B", "2.0 KB", "5.0 MB"]
