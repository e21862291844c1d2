"""The reader: a thread's messages oldest first, earlier ones folded to a header line."""

from __future__ import annotations

import re
from datetime import tzinfo

from rich.text import Text
from textual import events
from textual.app import ComposeResult, RenderResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import Static

from ..display import line, plain
from ..formatting import clean_line, find_links, full_date, html_to_text, named_address
from ..models import Attachment, Message, ThreadSummary
from .attachments import AttachmentChip
from .triage_keys import triage_bindings

MAX_BODY_CHARS = 200_000
HREF_RE = re.compile(r"""href\s*=\s*["']?([^"'\s>]+)""", re.IGNORECASE)


def links_lost(text: str, html: str) -> bool:
    """Whether the HTML links somewhere the text never mentions (the text was made from the HTML)."""
    targets = [url for url in find_links(html) if url in HREF_RE.findall(html)]
    return bool(targets) and not any(url in text for url in targets)


def message_body(message: Message) -> str:
    """The text part, or the HTML part as readable text when there is no text part."""
    if message.content_html and not (message.content and message.content.strip()):
        body = html_to_text(message.content_html)
    elif message.content_html and links_lost(message.content or "", message.content_html):
        # The server's text of HTML-only mail has no link targets: render the HTML with them.
        body = html_to_text(message.content_html)
    elif message.content and message.content.strip():
        body = message.content.rstrip()
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


def header_line(message: Message, zone: tzinfo | None = None) -> str:
    arrow = "→ " if message.direction == "outbound" else ""
    mark = "⚠ unverified · " if authentication_warning(message) else ""
    sender = named_address(message.sender, message.sender_name) or "unknown sender"
    return f"{arrow}{mark}{sender}  ·  {full_date(message.date, zone)}"


def full_headers(message: Message, zone: tzinfo | None = None) -> str:
    """Every header the API gives for a message, one per line, as `H` shows them."""
    meta = message.metadata
    rows = [("From", named_address(message.sender, message.sender_name))]
    rows += [(label, ", ".join(message.addresses(role)))
             for label, role in (("To", "to"), ("Cc", "cc"), ("Bcc", "bcc"))]
    rows += [("Reply-To", ", ".join(message.reply_to)), ("Subject", message.subject),
             ("Date", full_date(message.sent_at, zone)), ("Received", full_date(message.created_at, zone)),
             ("Message-ID", str(meta.get("message_id") or "")),
             ("In-Reply-To", str(meta.get("in_reply_to") or "")),
             ("References", " ".join(str(r) for r in meta.get("references") or [])),
             ("Inbox", str(meta.get("inbox_address") or "")), ("Direction", message.direction),
             ("Labels", ", ".join(message.labels))]
    auth = message.authentication or {}
    rows += [("Authentication", ", ".join(f"{k}={v}" for k, v in auth.items() if v))]
    return "\n".join(f"{label}: {value}" for label, value in rows if value)


TOGGLE = Binding("enter", "toggle", "Fold/unfold", show=False, id="reader.toggle_message")


class MessageTitle(Static, can_focus=True):
    """An unfolded message's header line: `enter` or a click folds or unfolds the message."""

    BINDINGS = [TOGGLE]

    def on_click(self, event: events.Click) -> None:
        event.stop()
        self.action_toggle()

    def action_toggle(self) -> None:
        view = self.parent
        if isinstance(view, MessageView):
            view.collapsed = not view.collapsed


class MessageView(Widget, can_focus=True):
    """One message: a header line that folds open to addresses, body and attachment chips.

    Until it is first unfolded, a message is one widget that draws its own header line and folds
    open like a title: a long thread opens without laying out and styling a title, addresses and
    a body for every message nobody looks at. Unfolded, it holds a `MessageTitle` and the details.
    """

    BINDINGS = [TOGGLE]
    collapsed: reactive[bool] = reactive(True, init=False)

    def __init__(self, message: Message, attachments: list[Attachment], collapsed: bool,
                 zone: tzinfo | None = None, current: bool = False) -> None:
        super().__init__(classes="message -collapsed -line" if collapsed else "message")
        self.set_class(current, "current", update=False)
        self.message, self.attachments, self.zone = message, attachments, zone
        self.filled = not collapsed
        self.can_focus = collapsed
        self.set_reactive(MessageView.collapsed, collapsed)
        self.heading = self._title_text()
        self.title: MessageTitle | None = None
        """The header line once the message is unfolded; before, the view draws `heading` itself."""

    def _title_text(self) -> Text:
        return line(("▶ " if self.collapsed else "▼ ") + header_line(self.message, self.zone))

    def render(self) -> RenderResult:
        return super().render() if self.filled else self.heading

    def compose(self) -> ComposeResult:
        if self.filled:
            yield from self._unfolded()

    def _unfolded(self) -> list[Widget]:
        self.title = MessageTitle(self._title_text())
        return [self.title, *self.details()]

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Unfolded, `enter` belongs to the title line, not to whatever is focused in the details.
        return not (action == "toggle" and self.filled)

    def on_click(self, event: events.Click) -> None:
        if not self.filled:
            event.stop()
            self.action_toggle()

    def action_toggle(self) -> None:
        self.collapsed = not self.collapsed

    def details(self) -> list[Widget]:
        """The unfolded part: authentication warning, addresses and date, body, attachment chips."""
        message = self.message
        headers = Text()
        rows = [("From", named_address(message.sender, message.sender_name)),
                ("Reply-To", ", ".join(message.reply_to)),
                ("To", ", ".join(message.addresses("to"))), ("Cc", ", ".join(message.addresses("cc"))),
                ("Date", full_date(message.date, self.zone))]
        for label, value in rows:
            if value:
                headers.append(f"{label}: ", style="bold")
                headers.append(clean_line(value) + "\n")
        children: list[Widget] = []
        warning = authentication_warning(message)
        if warning:
            children.append(Static(plain(warning, style="bold"), classes="auth-warning detail"))
        children += [
            Static(headers, classes="message-headers detail"),
            Static(plain(message_body(message)), classes="message-body detail"),
        ]
        if self.attachments:
            children.append(Horizontal(*(AttachmentChip(a, classes="chip") for a in self.attachments),
                                       classes="attachment-bar detail"))
        return children

    def watch_collapsed(self, collapsed: bool) -> None:
        if not self.filled:  # unfolded for the first time
            focused = self.has_focus
            self.filled, self.can_focus = True, False
            self.remove_class("-line")
            children = self._unfolded()
            self.mount_all(children)
            if focused:
                children[0].focus()
        elif self.title is not None:
            self.title.update(self._title_text())
        self.set_class(collapsed, "-collapsed")


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
        Binding("J", "next_message", "Next msg", show=False, id="reader.next_message"),
        Binding("K", "previous_message", "Prev msg", show=False, id="reader.previous_message"),
        Binding("space", "page_down", "Page down", show=False, id="reader.page_down"),
        Binding("H", "screen.headers", "Headers", show=False, id="reader.headers"),
        Binding("V", "screen.raw", "Raw", show=False, id="reader.raw"),
        Binding("vertical_line", "screen.pipe", "Pipe", show=False, id="reader.pipe", key_display="|"),
        Binding("L", "screen.links", "Links", show=False, id="reader.links"),
        *triage_bindings("reader"),
    ]

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.thread: ThreadSummary | None = None
        self.messages: list[Message] = []
        self.attachments: dict[str, Attachment] = {}
        self.current = 0
        """Index of the message `J`/`K` moved to; reply, forward, `H`, `V`, `|` and `L` act on it."""

    def compose(self) -> ComposeResult:
        yield self._placeholder()

    @staticmethod
    def _placeholder() -> Static:
        return Static("Select a thread and press enter to read it.", classes="reader-empty")

    def clear(self) -> None:
        """Show no thread (the one shown left the list)."""
        self.thread, self.messages, self.attachments, self.current = None, [], {}, 0
        self.border_title = "Message"
        self.query("*").remove()
        self.mount(self._placeholder())

    async def show(self, thread: ThreadSummary, messages: list[Message],
                   attachments: dict[str, Attachment], focus: bool = False) -> None:
        """Replace the content with `thread`; only the newest message is unfolded."""
        self.thread, self.messages, self.attachments = thread, messages, attachments
        subject = messages[-1].subject if messages else ""
        widgets: list[Static | MessageView] = [
            Static(line(thread.subject or subject or "(no subject)", style="bold"), classes="reader-subject")
        ]
        zone = self.app.settings.timezone  # type: ignore[attr-defined]
        self.current = max(0, len(messages) - 1)
        for index, message in enumerate(messages):
            found = [attachments[a] for a in message.attachments if a in attachments]
            widgets.append(MessageView(message, found, collapsed=index < self.current, zone=zone,
                                       current=index == self.current))
        # Mounting spans several frames: laid out and drawn once, when all of it is there.
        with self.app.batch_update():
            await self.remove_children()
            if focus:
                # Focus restyles every widget inside the reader: cheaper while it is empty.
                self.screen.set_focus(self)
            await self.mount_all(widgets)
            self.scroll_home(animate=False)
        if focus and self.screen.focused is not self:
            self.focus()  # the early focus did not take (the reader was still loading)

    @property
    def current_message(self) -> Message | None:
        return self.messages[self.current] if 0 <= self.current < len(self.messages) else None

    def _mark_current(self) -> None:
        for index, view in enumerate(self.query(MessageView)):
            if view.has_class("current") != (index == self.current):
                view.set_class(index == self.current, "current")

    def move_to_message(self, index: int) -> None:
        """Unfold message `index` and scroll it to the top of the reader."""
        views = list(self.query(MessageView))
        if not views:
            return
        self.current = max(0, min(index, len(views) - 1))
        self._mark_current()
        views[self.current].collapsed = False
        self.call_after_refresh(self.scroll_to_widget, views[self.current], top=True, animate=False)

    def action_next_message(self) -> None:
        if self.current >= len(self.messages) - 1:
            self.notify("This is the last message of the thread.", severity="warning")
        else:
            self.move_to_message(self.current + 1)

    def action_previous_message(self) -> None:
        if self.current <= 0:
            self.notify("This is the first message of the thread.", severity="warning")
        else:
            self.move_to_message(self.current - 1)

    def action_page_down(self) -> None:
        self.scroll_page_down(animate=False)

    def current_attachment(self) -> Attachment | None:
        """The focused chip's attachment, else the newest message's first one."""
        focused = self.app.focused
        if isinstance(focused, AttachmentChip):
            return focused.attachment
        for message in reversed(self.messages):
            for attachment_id in message.attachments:
                if attachment_id in self.attachments:
                    return self.attachments[attachment_id]
        return None
