"""Start a seeded server, drive the terminal client and save SVG screenshots for the README.

Run from the repository root: `python3 screenshots/capture.py` for all of them, or name some:
`python3 screenshots/capture.py outbox`.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from textual.pilot import Pilot
from textual.widgets import DataTable

from backend.config import Settings as ServerSettings
from backend.server import ServerThread
from commune_tui.app import CommuneApp, make_app
from commune_tui.config import Settings
from commune_tui.screens.outbox import OutboxScreen
from commune_tui.widgets.thread_list import ThreadList
from tests.dnsserver import TestDNSServer
from tests.tui.helpers import settle
from tests.tui.seeding import seed_mailbox, seed_outbox

OUT = ROOT / "screenshots"
SIZE = (120, 36)
TARGETS = ("main", "thread", "composer", "search", "domains", "outbox")


def start_seeded_server(folder: Path, dns: TestDNSServer) -> tuple[ServerThread, str, str]:
    """A fresh server with the README's example mailbox; returns it, its URL and the user's key."""
    import httpx

    thread = ServerThread(ServerSettings(data_dir=folder, port=0, smtp_port=0, rate_limit=0,
                                         dns_servers=[dns.address]))
    server = thread.start()

    async def keys() -> tuple[str, str]:
        services = server.services
        user = services.orgs.get_or_create_org("screenshots")
        others = services.orgs.get_or_create_org("correspondents")
        return (services.keys.create(user["id"], ["read", "write", "approvals:write"], "tui")[0],
                services.keys.create(others["id"], ["read", "write"], "seed")[0],
                services.keys.create(user["id"], ["read", "write"], "billing agent")[0])

    user_key, others_key, agent_key = thread.call(keys())  # type: ignore[misc]
    def client(key: str) -> httpx.Client:
        return httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {key}"})

    send_at = (datetime.now(UTC) + timedelta(hours=20)).isoformat(timespec="seconds")
    with client(user_key) as user, client(others_key) as others, client(agent_key) as agent:
        seed_outbox(user, agent, others, seed_mailbox(user, others, others_key), send_at)
    return thread, server.base_url, user_key


async def capture(app: CommuneApp, attachment: Path, targets: list[str]) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        if set(targets) - {"outbox"}:
            await capture_mail(app, pilot, attachment, targets)
        if "outbox" in targets:
            await capture_outbox(app, pilot)


async def capture_outbox(app: CommuneApp, pilot: Pilot) -> None:
    """All inboxes' outbox, the agent's held reply under review."""
    await pilot.press("O")
    await settle(pilot)
    await pilot.press("O")
    await settle(pilot)
    screen = app.screen
    assert isinstance(screen, OutboxScreen)
    table = screen.query_one("#approvals-table", DataTable)
    row = next(i for i in range(table.row_count) if "Invoice" in str(table.get_row_at(i)[2]))
    table.move_cursor(row=row, animate=False)
    await settle(pilot)
    app.clear_notifications()
    app.save_screenshot("outbox.svg", str(OUT))


async def capture_mail(app: CommuneApp, pilot: Pilot, attachment: Path,
                       targets: list[str]) -> None:
    def save(name: str) -> None:
        if name in targets:
            app.save_screenshot(f"{name}.svg", str(OUT))

    save("main")
    threads = app.screen.query_one(ThreadList)
    row = next(i for i, t in enumerate(threads.ordered()) if t.subject == "Quarterly report draft")
    threads.move_cursor(row=row, animate=False)
    threads.focus()
    await pilot.press("enter")
    await settle(pilot)
    app.clear_notifications()
    save("thread")

    await pilot.press("r")
    await settle(pilot)
    await pilot.press("ctrl+a")
    await settle(pilot)
    app.screen.query_one("#attach-path").value = str(attachment)
    await pilot.press("enter")
    await settle(pilot)
    await pilot.press(*"Looks good; my notes are attached.")
    save("composer")
    await pilot.press("escape", "y")
    await settle(pilot)

    await pilot.press("slash")
    await settle(pilot)
    app.screen.query_one("#query").value = "report"
    await pilot.press("enter")
    await settle(pilot)
    save("search")
    await pilot.press("escape")
    await settle(pilot)

    await pilot.press("ctrl+d")
    await settle(pilot)
    save("domains")
    await pilot.press("escape")
    await settle(pilot)


def main() -> int:
    targets = sys.argv[1:] or list(TARGETS)
    unknown = sorted(set(targets) - set(TARGETS))
    if unknown:
        print(f"unknown screenshot {', '.join(unknown)}; choose from {', '.join(TARGETS)}", file=sys.stderr)
        return 2
    dns = TestDNSServer().start()
    with tempfile.TemporaryDirectory(prefix="commune-screens-") as folder:
        thread, url, key = start_seeded_server(Path(folder) / "server", dns)
        attachment = Path(folder) / "review-notes.pdf"
        attachment.write_bytes(b"%PDF-1.4 review notes " * 900)
        try:
            settings = Settings(base_url=url, api_key=key, data_dir=Path(folder) / "client",
                                state_dir=Path(folder) / "state", live_updates=False, cursor_blink=False,
                                clock=lambda: datetime.now(UTC))
            asyncio.run(capture(make_app(settings), attachment, targets))
        finally:
            thread.stop()
            dns.stop()
    for name in targets:
        print(OUT / f"{name}.svg")
    return 0


if __name__ == "__main__":
    sys.exit(main())
