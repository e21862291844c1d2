"""The direct writer of common plain-text messages (`compose._plain_text`) gives byte for byte what the
`email` package gives (`compose._compose`), over generated messages around every limit it checks; and
anything it does not cover goes to the `email` package."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

from backend.mail.compose import Outgoing, _compose, _plain_text, compose, new_smtp_message_id
from backend.mail.model import IncomingAttachment

NAMES = ["", "Ann", "Ann Lee", "  Ann   Lee ", "Zoë Müller", "O'Brien", "Lee, Ann", "A.B.", "x" * 60, "Ann\r\nBcc: x@y.z",
         "Ann\tLee", "=?utf-8?q?x?=", "李", "Ann (work)"]
LOCALS = ["a", "ann.lee", "ann+tag", "ANN_LEE-1", "a..b", ".a", "a b", "ann@", "zoë", "a=b", "a?b", "x" * 50]
DOMAINS = ["example.org", "mail.example.co.uk", "EXAMPLE.ORG", "ex-ample.org", "bücher.de", "x" * 40 + ".org"]
WORDS = ["report", "Re:", "budget", "(draft)", "ok!", "[tag]", "x" * 30, "report", "Q3", "=?utf-8?q?hi?=", "=?",
         "naïve", "a\tb", ""]
LINES = ["Hello,", "", "From the team", ".", ". dot", "trailing space ", "x" * 77, "y" * 78, "z" * 79, "\t tab",
         "=?utf-8?q?x?=", "ünï", "line\rwith a carriage return"]


def pick(rng: random.Random, choices: list, plain: int) -> object:
    """One of `choices`, the first `plain` of them (what the direct writer takes) more often than the rest."""
    return rng.choice(choices[:plain]) if rng.random() < 0.95 else rng.choice(choices)


def address(rng: random.Random) -> str:
    return f"{pick(rng, LOCALS, 4)}@{pick(rng, DOMAINS, 4)}"


def message_id(rng: random.Random) -> str:
    return str(pick(rng, [new_smtp_message_id(rng.choice(DOMAINS[:4])), "<a@b>", "<x.y-z_1@example.org>", "not-an-id",
                          "<a b@c>", "<" + "m" * 70 + "@example.org>"], 3))


def outgoing(rng: random.Random) -> Outgoing:
    text_lines = [pick(rng, LINES, 10) for _ in range(rng.randrange(0, 12))]
    separator = rng.choice(["\n", "\n", "\r\n", "\r"])
    text = separator.join(text_lines) + rng.choice(["", "\n", separator])
    stamp = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(10**8), microseconds=rng.randrange(10**6))
    return Outgoing(
        sender=address(rng), sender_name=pick(rng, [None, *NAMES[:4]], 5) if rng.random() < 0.8 else rng.choice(NAMES),
        to=[address(rng) for _ in range(int(pick(rng, [1, 2, 3, 0, 6], 3)))],
        cc=[address(rng) for _ in range(rng.choice([0, 0, 0, 1, 2, 5]))],
        reply_to=[address(rng) for _ in range(rng.choice([0, 0, 0, 1, 3]))],
        subject=(" " if rng.random() < 0.8 else "  ").join(pick(rng, WORDS, 9) for _ in range(rng.randrange(0, 14))),
        text=pick(rng, [text, None], 1),
        html=pick(rng, [None, "<p>Hi</p>"], 1),
        in_reply_to=rng.choice([None, None, message_id(rng)]),
        references=[message_id(rng) for _ in range(rng.choice([0, 0, 1, 2, 4]))],
        attachments=pick(rng, [[], [IncomingAttachment("a.txt", "text/plain", b"hi")]], 1),
        headers=pick(rng, [{}, {"X-Tag": "one"}], 1),
        smtp_message_id=message_id(rng) if rng.random() < 0.2 else "",
        date=stamp.astimezone(timezone(timedelta(minutes=rng.choice([0, 60, -300, 330])))),
    )


def test_the_direct_writer_gives_the_email_packages_bytes() -> None:
    rng = random.Random(16)
    direct = 0
    for _ in range(3000):
        out = outgoing(rng)
        written = _plain_text(out)
        try:
            expected = _compose(out)
        except Exception:  # addresses the API never lets through (`a b@x`) trip the email package
            assert written is None, out
            continue
        if written is not None:
            direct += 1
            assert written == expected, out
            assert compose(out) == written
    # The generator reaches both paths often, so the comparison covers the direct one.
    assert 150 < direct < 2700, direct


def test_an_ordinary_plain_message_is_written_directly() -> None:
    out = Outgoing(sender="sender@example.org", sender_name="Ann Lee", to=["bob@example.org"], cc=["cat@example.net"],
                   subject="Quarterly report", text="Hello Bob,\n\nsee you at 10.\n", in_reply_to="<p@example.org>",
                   references=["<r@example.org>", "<p@example.org>"])
    written = _plain_text(out)
    assert written is not None and written == _compose(out)
    assert written.startswith(b"From: Ann Lee <sender@example.org>\r\nTo: bob@example.org\r\n")
    assert written.endswith(b"\r\n\r\nHello Bob,\r\n\r\nsee you at 10.\r\n")
