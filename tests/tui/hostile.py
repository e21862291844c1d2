"""A hostile corpus: mail whose sender, subject, body and file names try markup and terminal escapes.

Shared by the Pilot tests and the pseudo-terminal test; everything is delivered over real SMTP.
"""

from __future__ import annotations

import smtplib
from email.message import EmailMessage

# Subjects Textual would parse as markup: a style it does not know (a crash), a tag that would vanish,
# and actions a click would run.
TICKET = "[ticket=#4711] Refund"
ANNOUNCEMENT = "[ANN] v2"
QUIT_CLICK = "[@click=app.quit]Click me to win"
STYLED = "[b]not bold[/b] [link=file:///etc/passwd]passwd[/link]"
MARKUP_SUBJECTS = (TICKET, ANNOUNCEMENT, QUIT_CLICK, STYLED)


def screenshot_click(folder: str) -> str:
    """A subject whose click would make the client write a file into `folder`."""
    return f"[@click=app.screenshot('pwned.svg','{folder}')]Free screenshot"


# The reader's header line shows the sender: a quoted local part carries markup through SMTP.
CRAFTED_SENDER = '"[@click=app.quit]boss"@outside.test'
CRAFTED_FILENAME = "[ANN] minutes [@click=app.quit].txt"

ESCAPES_SUBJECT = "Escapes \u202eexe.txt"
# Each payload sits between unique words, so a test can tell it from anything Textual writes itself.
ESCAPE_PAYLOADS = {
    "OSC 0 window title": "\x1b]0;pwned-title\x07",
    "OSC 52 clipboard": "\x1b]52;c;cHduZWQtY2xpcA==\x07",
    "OSC 8 hyperlink": "\x1b]8;;file:///etc/passwd\x1b\\passwd-link\x1b]8;;\x1b\\",
    "CSI 2J clear": "CLS>\x1b[2J<CLS",
    "CSI colour": "RED>\x1b[31;1m<RED\x1b[0m",
    "DCS": "\x1bPpwned-dcs\x1b\\",
    "BEL": "BEL>\x07<BEL",
    "NUL": "NUL>\x00<NUL",
    "bidi override": "BIDI>\u202e<BIDI",
}
LONG_LINE = "L" * 10_000
END_MARK = "END-OF-HOSTILE-BODY"
ESCAPES_BODY = "\n".join([
    "Start of the hostile body.",
    *(f"{name}: before {payload} after" for name, payload in ESCAPE_PAYLOADS.items()),
    LONG_LINE,
    END_MARK,
])
# What must never reach the terminal: each escape with its unique payload.
FORBIDDEN_OUTPUT = (
    b"\x1b]0;pwned", b"\x1b]52;c;cHduZWQ", b"\x1b]8;;file:///etc/passwd", b"CLS>\x1b[2J", b"RED>\x1b[31;1m",
    b"\x1bPpwned", b"BEL>\x07", b"NUL>\x00", "\u202e".encode(),
)


def deliver(port: int, recipient: str, subject: str, body: str = "Hello.",
            sender: str = "mallory@outside.test", filename: str | None = None) -> None:
    """Send one message to the server's SMTP port, as any stranger could."""
    message = EmailMessage()
    message["From"], message["To"] = sender, recipient
    message["Subject"] = subject
    message.set_content(body, cte="base64")
    if filename:
        message.add_attachment(b"minutes\n", maintype="text", subtype="plain", filename=filename)
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.send_message(message, from_addr="mallory@outside.test", to_addrs=[recipient])
