"""Domains: add one, see the DNS records to publish and their status, verify, create inboxes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Header, Static

from ..client import ApiError
from ..dialogs.prompt import PromptDialog
from ..display import line
from ..models import Domain, Inbox
from ..widgets.footer import Footer

if TYPE_CHECKING:
    from ..app import CommuneApp

STATUS_STYLE = {"verified": "bold green", "pending": "yellow", "failed": "bold red", "not_started": "dim"}


def status_text(status: str | None) -> Text:
    value = status or "unknown"
    return line(value, style=STATUS_STYLE.get(value, ""))


class DomainsScreen(Screen):
    """Domains on the left; the highlighted domain's records and inboxes on the right."""

    app: CommuneApp

    BINDINGS = [
        Binding("a", "add_domain", "Add domain", id="domains.add"),
        Binding("v", "verify", "Verify DNS", id="domains.verify"),
        Binding("n", "new_inbox", "New inbox", id="domains.new_inbox"),
        Binding("q,escape", "app.pop_screen", "Back", id="domains.back"),
        Binding("j", "cursor_down", "Down", show=False, id="domains.down"),
        Binding("k", "cursor_up", "Up", show=False, id="domains.up"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.domains: list[Domain] = []
        self.inboxes: list[Inbox] = []

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="domains-panes"):
            yield DataTable(id="domain-table", cursor_type="row", classes="pane")
            with Vertical(id="domain-detail"):
                yield Static("", id="domain-summary")
                yield DataTable(id="record-table", cursor_type="row", classes="pane")
                yield DataTable(id="inbox-table", cursor_type="row", classes="pane")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "Domains"
        domains = self.query_one("#domain-table", DataTable)
        domains.border_title = "Domains"
        domains.add_columns("Domain", "Status", "Inboxes")
        records = self.query_one("#record-table", DataTable)
        records.border_title = "DNS records to publish"
        records.add_columns("Status", "Record", "Type", "Name", "Priority", "Value")
        inboxes = self.query_one("#inbox-table", DataTable)
        inboxes.border_title = "Inboxes"
        inboxes.add_columns("Address", "Name", "Webhook")
        domains.focus()
        self.reload()

    @property
    def current(self) -> Domain | None:
        table = self.query_one("#domain-table", DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return next((d for d in self.domains if d.id == key), None)

    @work(group="domains", exclusive=True)
    async def reload(self, select: str | None = None) -> None:
        """Fetch domains and inboxes again, keeping (or moving to) a domain."""
        try:
            self.domains = await self.app.client.list_domains()
            self.inboxes = await self.app.client.list_inboxes()
        except ApiError as exc:
            self.notify(f"Could not load domains: {exc.message}", severity="error", markup=False)
            return
        self.app.inboxes = self.inboxes
        table = self.query_one("#domain-table", DataTable)
        keep = select or (self.current.id if self.current else None)
        table.clear()
        for domain in self.domains:
            count = sum(1 for i in self.inboxes if i.domain_id == domain.id)
            name = domain.name + ("  (shared)" if domain.shared else "")
            table.add_row(line(name), status_text(domain.status), line(str(count)), key=domain.id)
        if keep and keep in {d.id for d in self.domains}:
            table.move_cursor(row=table.get_row_index(keep), animate=False)
        self.show_detail()

    @on(DataTable.RowHighlighted, "#domain-table")
    def domain_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.show_detail()

    def show_detail(self) -> None:
        """Records and inboxes of the highlighted domain."""
        domain = self.current
        records = self.query_one("#record-table", DataTable)
        inboxes = self.query_one("#inbox-table", DataTable)
        records.clear()
        inboxes.clear()
        summary = self.query_one("#domain-summary", Static)
        if domain is None:
            summary.update("No domains yet: press a to add one.")
            return
        text = line(domain.name, style="bold")
        text.append("  status: ")
        text.append_text(status_text(domain.status))
        text.append("   a add · v verify · n new inbox", style="dim")
        summary.update(text)
        for index, record in enumerate(domain.records):
            priority = "" if record.priority is None else str(record.priority)
            records.add_row(status_text(record.status), line(record.record), line(record.type),
                            line(record.name), line(priority), line(record.value), key=str(index))
        for inbox in self.inboxes:
            if inbox.domain_id == domain.id:
                endpoint = inbox.webhook.endpoint if inbox.webhook and inbox.webhook.endpoint else ""
                inboxes.add_row(line(inbox.address), line(inbox.display_name), line(endpoint), key=inbox.id)

    def action_cursor_down(self) -> None:
        self.query_one("#domain-table", DataTable).action_cursor_down()

    def action_cursor_up(self) -> None:
        self.query_one("#domain-table", DataTable).action_cursor_up()

    def action_add_domain(self) -> None:
        def chosen(values: dict[str, str] | None) -> None:
            if values:
                self._create_domain(values["name"])

        self.app.push_screen(PromptDialog("Add a domain", [("name", "Domain name", "example.com")],
                                          required=("name",)), chosen)

    @work(group="domain-write")
    async def _create_domain(self, name: str) -> None:
        try:
            domain = await self.app.client.create_domain(name)
        except ApiError as exc:
            self.notify(f"Could not add {name}: {exc.message}", severity="error", markup=False)
            return
        self.notify(f"Added {domain.name}: publish the records shown, then press v to verify.",
                    markup=False)
        self.reload(select=domain.id)

    @work(group="domain-write")
    async def action_verify(self) -> None:
        domain = self.current
        if domain is None:
            return
        self.notify(f"Checking DNS for {domain.name}…", markup=False)
        try:
            status = await self.app.client.verify_domain(domain.id)
        except ApiError as exc:
            self.notify(f"Verification failed: {exc.message}", severity="error", markup=False)
            return
        severity = "information" if status == "verified" else "warning"
        self.notify(f"{domain.name}: {status}", severity=severity, markup=False)
        self.reload(select=domain.id)

    def action_new_inbox(self) -> None:
        domain = self.current
        if domain is None:
            self.notify("Add a domain first (a).", severity="warning")
            return

        def chosen(values: dict[str, str] | None) -> None:
            if values:
                self._create_inbox(domain, values)

        self.app.push_screen(PromptDialog(f"New inbox on {domain.name}", [
            ("local_part", "Address (before the @)", "support"),
            ("name", "Display name", "Customer Support"),
            ("webhook", "Webhook endpoint (optional)", "https://example.com/hooks/mail"),
        ], required=("local_part",)), chosen)

    @work(group="domain-write")
    async def _create_inbox(self, domain: Domain, values: dict[str, str]) -> None:
        try:
            inbox = await self.app.client.create_inbox(values["local_part"], domain.id, values.get("name"),
                                                       values.get("webhook") or None)
        except ApiError as exc:
            self.notify(f"Could not create the inbox: {exc.message}", severity="error", markup=False)
            return
        self.notify(f"Created {inbox.address}", markup=False)
        self.app.announce_new_mail()
        self.reload(select=domain.id)
