"""What the user sees when the server cannot be reached or refuses the key: what happened, what to do."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Center, Vertical
from textual.screen import Screen
from textual.widgets import Static

from ..client import ApiError
from ..display import plain
from ..widgets.footer import Footer

if TYPE_CHECKING:
    from ..app import CommuneApp


def advice(error: ApiError, base_url: str) -> tuple[str, str]:
    """A title and the steps that fix it."""
    if error.unreachable:
        return (
            f"Cannot reach the Commune server at {base_url}",
            "Check that the server is running (`commune-server serve`) and that the address is right. "
            "Pass it with --server URL or COMMUNE_BASE_URL, or start `commune-tui` without --server "
            "to use the server built into the client.",
        )
    if error.refused_key:
        return (
            "The server refused the API key",
            "The key is wrong, revoked, or lacks the read/write scopes. "
            "Create one with `commune-server keys create --data-dir DIR` and pass it with "
            "--api-key KEY or COMMUNE_API_KEY.",
        )
    return (f"The server answered with an error ({error.status})",
            "Try again in a moment; if it keeps happening, check the server's log.")


class ProblemScreen(Screen):
    """Connection or authentication failure, with retry."""

    app: CommuneApp

    BINDINGS = [
        Binding("r", "retry", "Retry", id="problem.retry"),
        Binding("q", "app.quit", "Quit", id="problem.quit"),
    ]

    def __init__(self, error: ApiError, base_url: str) -> None:
        super().__init__()
        self.error = error
        self.base_url = base_url

    def compose(self) -> ComposeResult:
        title, steps = advice(self.error, self.base_url)
        with Center(), Vertical(id="problem"):
            yield Static(plain(title), id="problem-title")
            yield Static(plain(steps), id="problem-steps")
            yield Static(plain(f"Details: {self.error.message}"), id="problem-detail")
            yield Static("Press r to try again, q to quit.", id="problem-keys")
        yield Footer()

    def action_retry(self) -> None:
        self.dismiss()
        self.app.connect()
