"""CommuneApp: owns the API client, the theme, global keys and live updates; `make_app` builds it."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from textual import events, work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.content import Content
from textual.notifications import SeverityLevel
from textual.screen import Screen

from .client import ApiError, CommuneClient
from .config import ServerProfile, Settings
from .dialogs.confirm import ConfirmDialog
from .dialogs.keys import KeysDialog, key_groups
from .dialogs.servers import ServerPicker
from .embedded import EmbeddedServer, first_run, start_embedded
from .formatting import clean_line, clean_text, with_signature
from .messages import MessageSent, NewMail
from .models import Draft, Inbox, ServerEvent
from .outbox import OUTBOX_EVENTS, waiting_notice
from .screens.compose import ComposeScreen
from .screens.danger import DangerZoneScreen
from .screens.domains import DomainsScreen
from .screens.mail import MailScreen
from .screens.outbox import OutboxScreen
from .screens.problem import ProblemScreen
from .screens.search import SearchScreen
from .theme import THEMES

LIVE_EVENT_TYPES = ("message.", "thread.", "resync")


class CommuneApp(App[None]):
    """The terminal mail client."""

    CSS_PATH = "commune.tcss"
    TITLE = "Commune"
    ENABLE_COMMAND_PALETTE = True
    BINDINGS = [
        Binding("ctrl+q", "quit", "Quit", show=False, priority=True, id="app.quit"),
        Binding("f1", "toggle_help", "Keys", show=False, id="app.help"),
        Binding("ctrl+t", "toggle_theme", "Light/dark", show=False, id="app.theme"),
        Binding("S", "switch_server", "Switch server", show=False, id="app.switch_server"),
    ]

    def __init__(self, settings: Settings, client: CommuneClient,
                 embedded: EmbeddedServer | None = None, seed_first_run: bool = False) -> None:
        super().__init__()
        self.settings = settings
        self.client = client
        self.embedded = embedded
        self.seed_first_run = seed_first_run
        self.inboxes: list[Inbox] = []
        self.names: dict[str, str] = {}
        """Address (lower case) → display name, for the thread list's sender column."""
        self.temp_dir = Path(tempfile.mkdtemp(prefix="commune-tui-"))
        """Attachments opened with an external program; removed when the app exits."""
        self.live_mode = "off"
        for theme in THEMES:
            self.register_theme(theme)
        self.theme = settings.theme
        if settings.keymap:
            self.set_keymap(settings.keymap)

    def on_mount(self) -> None:
        self.connect()

    def notify(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
               timeout: float | None = None, markup: bool = True) -> None:
        """Every toast passes here (a widget's or screen's `notify` calls the app's): whatever a
        caller put in it, control characters and escape sequences never reach the terminal."""
        super().notify(clean_text(message), title=clean_line(title), severity=severity, timeout=timeout,
                       markup=markup)

    def format_title(self, title: str, sub_title: str) -> Content:
        """The header shows subjects and addresses as sub-titles: cleaned, on one line."""
        return super().format_title(clean_line(title), clean_line(sub_title))

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        # Tests and screenshots turn blinking off so every capture of a screen is identical.
        if not self.settings.cursor_blink and hasattr(event.widget, "cursor_blink"):
            event.widget.cursor_blink = False  # type: ignore[attr-defined]

    @work(group="connect", exclusive=True)
    async def connect(self) -> None:
        """Check the server and key, seed a first run, then open the mailboxes."""
        try:
            await self.client.list_domains()
            if self.seed_first_run:
                await first_run(self.client)
        except ApiError as exc:
            self.show_problem(exc)
            return
        await self.push_screen(MailScreen())
        if self.settings.live_updates:
            self.live_updates()

    def show_problem(self, error: ApiError) -> None:
        """Cover the app with the screen that explains a connection or key failure."""
        if not isinstance(self.screen, ProblemScreen):
            self.push_screen(ProblemScreen(error, self.client.base_url))

    def mail_screen(self) -> Screen | None:
        """The main screen, if it is on the stack."""
        found = [s for s in self.screen_stack if isinstance(s, MailScreen)]
        return found[0] if found else None

    def announce_new_mail(self) -> None:
        """Ask the main screen to look for changed threads now."""
        screen = self.mail_screen()
        if screen is not None:
            screen.post_message(NewMail())

    @work(group="live", exclusive=True)
    async def live_updates(self) -> None:
        """Follow the server's event stream; poll the thread lists while it is unavailable."""
        last_id: str | None = None
        while True:
            if self.settings.use_event_stream:
                try:
                    self.live_mode = "stream"
                    async for event in self.client.events(last_id):
                        last_id = event.id or last_id
                        if event.type.startswith(LIVE_EVENT_TYPES):
                            self.announce_new_mail()
                        if event.type in OUTBOX_EVENTS:
                            self.outbox_changed(event)
                except ApiError as exc:
                    if exc.status == 404:
                        self.settings.use_event_stream = False
                    self.live_mode = "poll"
            self.live_mode = "poll"
            await asyncio.sleep(self.settings.poll_interval)
            self.announce_new_mail()

    def on_message_sent(self, event: MessageSent) -> None:
        self.announce_new_mail()
        self.outbox_changed(None)

    def outbox_changed(self, event: ServerEvent | None) -> None:
        """Something entered or left the outbox: refresh what shows it, and tell the user when a
        message starts waiting for their approval."""
        if event is not None and event.type == "message.pending_approval":
            self.notify(waiting_notice(event.data), title="Waiting for your approval", severity="warning",
                        markup=False)
        for screen in self.screen_stack:
            if isinstance(screen, OutboxScreen):
                screen.reload()
        mail = self.mail_screen()
        if isinstance(mail, MailScreen):
            mail.load_outbox_counts()

    def open_outbox(self, inbox: Inbox | None, everywhere: bool = False, tab: str = "approvals") -> None:
        """Open the Outbox of `inbox`, or of every inbox, on `tab`."""
        self.push_screen(OutboxScreen(inbox, everywhere=everywhere, tab=tab))

    def open_composer(self, draft: Draft, forward_attachments: list[str] | None = None) -> None:
        """Open the composer on a draft (new, reply or forward, or a saved draft resumed); a new one
        gets the signature."""
        if not draft.draft_id:
            draft.body = with_signature(draft.body, self.settings.signature)
        self.push_screen(ComposeScreen(draft, forward_attachments or []))

    def open_search(self, inbox: Inbox | None) -> None:
        """Open search, scoped to `inbox` when given."""
        self.push_screen(SearchScreen(inbox))

    def open_domains(self) -> None:
        """Open the domains screen."""
        self.push_screen(DomainsScreen())

    def open_danger_zone(self) -> None:
        """Open the two-phase deletion screen."""
        self.push_screen(DangerZoneScreen())

    def show_keys(self) -> None:
        """Every key of the current screen and the global ones, grouped."""
        if not isinstance(self.screen, KeysDialog):
            self.push_screen(KeysDialog(key_groups(self.screen)))

    def unsaved_drafts(self) -> list[ComposeScreen]:
        return [s for s in self.screen_stack if isinstance(s, ComposeScreen) and s.modified]

    def request_quit(self) -> None:
        """Quit, asking first only when a draft would be lost."""
        if not self.unsaved_drafts():
            self.exit()
            return

        def decided(quit_anyway: bool | None) -> None:
            if quit_anyway:
                self.exit()

        self.push_screen(ConfirmDialog("A draft is not saved. Quit and lose it?", yes="Quit",
                                       no="Stay"), decided)

    def action_switch_server(self) -> None:
        """Pick another server from the config file's `[[servers]]`."""
        profiles = self.settings.servers
        if len(profiles) < 2:
            self.notify("Only one server is configured: add [[servers]] entries to"
                        " ~/.config/commune-tui/config.toml to switch between several.",
                        severity="warning", markup=False)
            return

        def chosen(index: int | None) -> None:
            if index is not None:
                self.switch_server(profiles[index])

        current = next((n for n, p in enumerate(profiles) if p.url == self.client.base_url), 0)
        self.push_screen(ServerPicker(profiles, current), chosen)

    @work(group="connect", exclusive=True)
    async def switch_server(self, profile: ServerProfile) -> None:
        """Drop every screen of the old server and open the mailboxes of `profile`."""
        old = self.client
        self.client = CommuneClient(profile.url or "", profile.api_key or "")
        self.settings.base_url, self.settings.api_key = profile.url, profile.api_key
        self.inboxes, self.names = [], {}
        await old.close()
        while len(self.screen_stack) > 1:
            self.pop_screen()
        self.sub_title = profile.name
        self.connect()

    def action_toggle_help(self) -> None:
        """`f1` anywhere (also in the composer, where `?` is typed): the keys dialog, or close it."""
        if isinstance(self.screen, KeysDialog):
            self.screen.dismiss(None)
        else:
            self.show_keys()

    def action_toggle_theme(self) -> None:
        self.theme = "commune-light" if self.theme == "commune-dark" else "commune-dark"

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """Command palette entries for the main actions."""
        yield from super().get_system_commands(screen)
        yield SystemCommand("Compose", "Write a new message", lambda: self.open_composer(Draft()))
        yield SystemCommand("Search", "Search threads", lambda: self.open_search(None))
        yield SystemCommand("Outbox", "Approve held mail, cancel scheduled sends, resume drafts",
                            lambda: self.open_outbox(None, everywhere=True))
        yield SystemCommand("Domains", "Add domains, check DNS, create inboxes", self.open_domains)
        yield SystemCommand("Refresh", "Fetch new mail now", self.announce_new_mail)
        yield SystemCommand("Light/dark theme", "Switch between Commune light and dark",
                            self.action_toggle_theme)
        yield SystemCommand("Danger zone", "Delete an inbox's or the organisation's data",
                            self.open_danger_zone)

    async def on_unmount(self) -> None:
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        await self.client.close()
        if self.embedded is not None:
            await asyncio.to_thread(self.embedded.stop)


def make_app(settings: Settings, client: CommuneClient | None = None) -> CommuneApp:
    """Build the app the same way for the CLI, the tests and the screenshot script."""
    embedded = None
    if settings.embedded:
        embedded = start_embedded(settings.data_dir)
        settings.base_url, settings.api_key = embedded.base_url, embedded.api_key
    if client is None:
        client = CommuneClient(settings.base_url or "", settings.api_key or "")
    return CommuneApp(settings, client, embedded, seed_first_run=embedded is not None)
