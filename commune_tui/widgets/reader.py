"""The reader: a thread's messages oldest first, earlier ones folded to a header line."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widget import Widget
from textual.widgets import Collapsible, Static

from ..display import line, plain
from ..formatting import clean_line, full_date, html_to_text
from ..models import Attachment, Message, ThreadSummary
from .attachments import AttachmentChip

MAX_BODY_CHARS = 200_000


def message_body(message: Message) -> str:
    """The text part, or the HTML part as readable text when there is no text part."""
    if message.content and message.content.strip():
        body = message.content.rstrip()
    elif message.content_html:
        body = html_to_text(message.content_html)
    else:
        return "(empty message)"
    if len(body) > MAX_BODY_CHARS:
        # Laying out megabytes of text would freeze the terminal for seconds at every redraw.
        return body[:MAX_BODY_CHARS] + f"\n\n[… {len(body) - MAX_BODY_CHARS} more characters not shown]"
    return body


def authentication_warning(message: Message) -> str | None:
    """Why the sender of inbound mail is not to be trusted: its From domain did not pass DMARC (failed,
    published no policy, or could not be checked). None for authenticated mail and mail that never
    crossed SMTP (sent from this server)."""
    auth = message.authentication
    if message.direction == "outbound" or not auth or auth.get("dmarc") == "pass":
        return None
    dmarc = auth.get("dmarc") or "none"
    verdict = "FAILED authentication" if dmarc == "fail" else "not verified"
    quarantined = " · quarantined" if "quarantine" in message.labels else ""
    return (f"⚠ Sender {verdict}: DMARC {dmarc} for {auth.get('from_domain') or 'an unknown domain'}"
            f" (SPF {auth.get('spf') or 'none'}, DKIM {auth.get('dkim') or 'none'}) — the From address"
            f" may be forged{quarantined}")


def header_line(message: Message) -> str:
    arrow = "→ " if message.direction == "outbound" else ""
    mark = "⚠ unverified · " if authentication_warning(message) else ""
    return f"{arrow}{mark}{message.sender or 'unknown sender'}  ·  {full_date(message.created_at)}"


class MessageView(Collapsible):
    """One message: a header line that folds open to addresses, body and attachment chips."""

    def __init__(self, message: Message, attachments: list[Attachment], collapsed: bool) -> None:
        headers = Text()
        for label, role in (("To", "to"), ("Cc", "cc")):
            addresses = message.addresses(role)
            if addresses:
                headers.append(f"{label}: ", style="bold")
                headers.append(clean_line(", ".join(addresses)) + "\n")
        children: list[Widget] = []
        warning = authentication_warning(message)
        if warning:
            children.append(Static(plain(warning, style="bold"), classes="auth-warning"))
        children += [
            Static(headers, classes="message-headers"),
            Static(plain(message_body(message)), classes="message-body"),
        ]
        if attachments:
            children.append(Horizontal(*(AttachmentChip(a, classes="chip") for a in attachments),
                                       classes="attachment-bar"))
        super().__init__(*children, title=line(header_line(message)), collapsed=collapsed,  # type: ignore[arg-type]
                         classes="message")
        self.message = message


class Reader(VerticalScroll, can_focus=True):
    """Shows one thread; reply, forward and attachment keys act on it."""

    BINDINGS = [
        Binding("j", "scroll_down", "Down", show=False, id="reader.down"),
        Binding("k", "scroll_up", "Up", show=False, id="reader.up"),
        Binding("g", "scroll_home", "Top", show=False, id="reader.top"),
        Binding("G", "scroll_end", "Bottom", show=False, id="reader.bottom"),
        Binding("r", "screen.reply", "Reply", id="reader.reply"),
        Binding("R", "screen.reply_all", "Reply all", id="reader.reply_all"),
        Binding("f", "screen.forward", "Forward", id="reader.forward"),
        Binding("s", "screen.save_attachment", "Save", id="reader.save", tooltip="Save the attachment"),
        Binding("o", "screen.open_attachment", "Open", id="reader.open", tooltip="Open the attachment"),
    ]

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.thread: ThreadSummary | None = None
        self.messages: list[Message] = []

    def compose(self) -> ComposeResult:
        yield Static("Select a thread and press enter to read it.", classes="reader-empty")

    async def show(self, thread: ThreadSummary, messages: list[Message],
                   attachments: dict[str, Attachment]) -> None:
        """Replace the content with `thread`; only the newest message is unfolded."""
        self.thread, self.messages = thread, messages
        await self.remove_children()
        subject = messages[-1].subject if messages else ""
        widgets: list[Static | MessageView] = [
            Static(line(thread.subject or subject or "(no subject)", style="bold"), classes="reader-subject")
        ]
        for index, message in enumerate(messages):
            found = [attachments[a] for a in message.attachments if a in attachments]
            widgets.append(MessageView(message, found, collapsed=index < len(messages) - 1))
        await self.mount_all(widgets)
        self.scroll_home(animate=False)

    def current_attachment(self) -> Attachment | None:
        """The focused chip's attachment, else the newest message's first one."""
        focused = self.app.focused
        if isinstance(focused, AttachmentChip):
            return focused.attachment
        shown = {c.attachment.attachment_id: c.attachment for c in self.query(AttachmentChip)}
        for message in reversed(self.messages):
            for attachment_id in message.attachments:
                if attachment_id in shown:
                    return shown[attachment_id]
        return None
