"""The sanitiser every shown string passes through: what a stranger's text may and may not do on a terminal."""

from __future__ import annotations

import pytest

from commune_tui.formatting import MAX_LINE_CHARS, clean_line, clean_text
from commune_tui.models import Message, ThreadSummary

ESC = "\x1b"


@pytest.mark.parametrize(("raw", "shown"), [
    ("title \x1b]0;pwned\x07 after", "title  after"),
    ("clip \x1b]52;c;cHduZWQ=\x1b\\ after", "clip  after"),
    ("\x1b]8;;file:///etc/passwd\x1b\\link\x1b]8;;\x1b\\", "link"),
    ("clear\x1b[2J\x1b[H screen", "clear screen"),
    ("\x1b[31;1mred\x1b[0m", "red"),
    ("\x1bP1$qm\x1b\\dcs", "dcs"),
    ("8-bit \x9b2J csi and \x9d0;pwned\x9c osc", "8-bit  csi and  osc"),
    ("reset\x1bc and charset \x1b(0x", "reset and charset x"),
    ("bell\x07 nul\x00 del\x7f bs\x08 vt\x0b ff\x0c c1\x85", "bell nul del bs vt ff c1\n"),
    ("unterminated \x1b]0;pwned\nnext line", "unterminated \nnext line"),
    ("lone escape at the end \x1b", "lone escape at the end "),
])
def test_escape_sequences_and_controls_are_removed(raw: str, shown: str) -> None:
    assert clean_text(raw) == shown


def test_bidi_controls_are_shown_as_placeholders() -> None:
    assert clean_text("invoice\u202egpj.exe") == "invoice⟨U+202E⟩gpj.exe"
    assert clean_text("\u2066a\u2069 \u202a\u202b\u202c\u202d") == (
        "⟨U+2066⟩a⟨U+2069⟩ ⟨U+202A⟩⟨U+202B⟩⟨U+202C⟩⟨U+202D⟩")


def test_line_breaks_and_tabs_survive_in_bodies() -> None:
    assert clean_text("a\r\nb\rc\u2028d\u2029e\x85f\tg") == "a\nb\nc\nd\ne\nf\tg"


def test_one_line_places_get_spaces_for_breaks_and_a_cut() -> None:
    assert clean_line("Re:\n\tLunch\u2028today") == "Re:  Lunch today"
    long = clean_line("x" * 10_000)
    assert len(long) == MAX_LINE_CHARS and long.endswith("…")


def test_plain_text_is_unchanged_and_cleaning_twice_changes_nothing() -> None:
    text = "Grüße — 日本語 [ANN] v2 [@click=app.quit] 🙂\nsecond line\twith tab"
    assert clean_text(text) == text
    hostile = "a\x1b]0;x\x07b\u202ec\x00d\r\ne\ud800"
    assert clean_text(clean_text(hostile)) == clean_text(hostile) == "ab⟨U+202E⟩cd\ne\ufffd"


def test_a_ten_thousand_character_line_full_of_escapes_is_cleaned() -> None:
    line = "\x1b[31m" * 2_000 + "\x1b]0;" * 2_000 + "L" * 10_000
    assert clean_text(line) == ""  # the unterminated OSC runs to the end of the line
    assert clean_text("\x1b[1m" * 2_000 + "L" * 10_000) == "L" * 10_000


def test_models_built_from_server_data_are_already_clean() -> None:
    thread = ThreadSummary.model_validate({
        "thread_id": "thread_1", "last_message_at": "2026-03-15T12:00:00.000Z",
        "subject": "pay \x1b]52;c;eA==\x07now\u202e", "snippet": "\x1b[2Jhi", "last_sender": "a\x07@b.test"})
    assert (thread.subject, thread.snippet, thread.last_sender) == ("pay now⟨U+202E⟩", "hi", "a@b.test")
    message = Message.model_validate({
        "message_id": "msg_1", "thread_id": "thread_1", "content": "body\x1b[2J",
        "participants": [{"role": "sender", "identity": "x\x1b]0;t\x07@y.test"}],
        "metadata": {"subject": "s\x1b[31m"}})
    assert (message.content, message.sender, message.subject) == ("body", "x@y.test", "s")
    assert ESC not in repr(message)
