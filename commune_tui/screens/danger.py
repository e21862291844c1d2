"""Danger zone: two-phase data deletion — a preview of what goes, then a typed confirmation."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Header, Input, Select, Static

from ..client import ApiError
from ..display import line, plain
from ..models import DeletionRequest
from ..widgets.footer import Footer

if TYPE_CHECKING:
    from ..app import CommuneApp

ORGANISATION = "organization"


def confirmation_phrase(scope: str, target: str) -> str:
    """What the user must type to confirm; naming the target makes a slip of the finger harmless."""
    return f"delete {target}" if scope == "inbox" else "delete everything"


class DangerZoneScreen(Screen):
    """Pick what to delete, review the server's preview, type the phrase, confirm."""

    app: CommuneApp

    BINDINGS = [Binding("escape", "app.pop_screen", "Back", id="danger.back")]

    def __init__(self) -> None:
        super().__init__()
        self.request: DeletionRequest | None = None
        self.phrase = ""

    def compose(self) -> ComposeResult:
        options = [(line(f"Inbox {i.address}"), f"inbox:{i.id}") for i in self.app.inboxes]
        options.append((line("The whole organisation"), ORGANISATION))
        yield Header()
        with Vertical(id="danger"):
            yield Static("Nothing is deleted until you confirm with the typed phrase.", id="danger-intro")
            yield Select(options, id="danger-scope", prompt="What should be deleted?")
            yield DataTable(id="danger-preview", cursor_type="none")
            yield Static("", id="danger-warning")
            yield Input(placeholder="type the phrase shown above, then enter", id="danger-confirm",
                        disabled=True)
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "Danger zone"
        self.query_one("#danger").border_title = "Danger zone"
        self.query_one("#danger-preview", DataTable).add_columns("What", "How many")

    @on(Select.Changed, "#danger-scope")
    def scope_chosen(self, event: Select.Changed) -> None:
        if isinstance(event.value, str):
            self._preview(event.value)

    @work(exclusive=True)
    async def _preview(self, choice: str) -> None:
        scope, _, inbox_id = choice.partition(":")
        try:
            self.request = await self.app.client.request_deletion(scope, inbox_id or None)
        except ApiError as exc:
            message = ("This server does not offer data deletion." if exc.status == 404 else exc.message)
            self.notify(message, severity="error", markup=False)
            return
        table = self.query_one("#danger-preview", DataTable)
        table.clear()
        for name, count in self.request.preview.items():
            table.add_row(line(name.replace("_", " ")), line(str(count)))
        target = next((i.address for i in self.app.inboxes if i.id == inbox_id), "")
        self.phrase = confirmation_phrase(scope, target)
        warning = plain(self.request.warning or "This cannot be undone.")
        warning.append("\n").append_text(line(f"Type “{self.phrase}” to confirm."))
        self.query_one("#danger-warning", Static).update(warning)
        field = self.query_one("#danger-confirm", Input)
        field.disabled = False
        field.value = ""
        field.focus()

    @on(Input.Submitted, "#danger-confirm")
    def confirm(self, event: Input.Submitted) -> None:
        if self.request is None or event.value.strip() != self.phrase:
            self.notify(f"Type exactly: {self.phrase}", severity="warning", markup=False)
            return
        self._confirm(self.request)

    @work(exclusive=True)
    async def _confirm(self, request: DeletionRequest) -> None:
        try:
            done = await self.app.client.confirm_deletion(request.id, request.confirmation_token or "")
        except ApiError as exc:
            self.notify(f"Deletion failed: {exc.message}", severity="error", markup=False)
            return
        counts = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in done.deleted_counts.items() if v)
        self.app.notify(f"Deleted: {counts or 'nothing'}", title="Deletion complete", markup=False)
        self.app.pop_screen()
        self.app.announce_new_mail()
