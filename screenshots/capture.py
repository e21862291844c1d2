"""Start a seeded server, drive the terminal client and save SVG screenshots for the README.

Run from the repository root: `python3 screenshots/capture.py`.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backend.config import Settings as ServerSettings
from backend.server import ServerThread
from commune_tui.app import CommuneApp, make_app
from commune_tui.config import Settings
from commune_tui.widgets.thread_list import ThreadList
from tests.dnsserver import TestDNSServer
from tests.tui.helpers import settle
from tests.tui.seeding import seed_mailbox

OUT = ROOT / "screenshots"
SIZE = (120, 36)


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
        return (services.keys.create(user["id"], ["read", "write"], "tui")[0],
                services.keys.create(others["id"], ["read", "write"], "seed")[0])

    user_key, others_key = thread.call(keys())  # type: ignore[misc]
    def client(key: str) -> httpx.Client:
        return httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {key}"})

    with client(user_key) as user, client(others_key) as others:
        seed_mailbox(user, others, others_key)
    return thread, server.base_url, user_key


async def capture(app: CommuneApp, attachment: Path) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.save_screenshot("main.svg", str(OUT))

        threads = app.screen.query_one(ThreadList)
        row = next(i for i, t in enumerate(threads.ordered()) if t.subject == "Quarterly report draft")
        threads.move_cursor(row=row, animate=False)
        threads.focus()
        await pilot.press("enter")
        await settle(pilot)
        app.clear_notifications()
        app.save_screenshot("thread.svg", str(OUT))

        await pilot.press("r")
        await settle(pilot)
        await pilot.press("ctrl+a")
        await settle(pilot)
        app.screen.query_one("#attach-path").value = str(attachment)
        await pilot.press("enter")
        await settle(pilot)
        await pilot.press(*"Looks good; my notes are attached.")
        app.save_screenshot("composer.svg", str(OUT))
        await pilot.press("escape", "y")
        await settle(pilot)

        await pilot.press("slash")
        await settle(pilot)
        app.screen.query_one("#query").value = "report"
        await pilot.press("enter")
        await settle(pilot)
        app.save_screenshot("search.svg", str(OUT))
        await pilot.press("escape")
        await settle(pilot)

        await pilot.press("ctrl+d")
        await settle(pilot)
        app.save_screenshot("domains.svg", str(OUT))


def main() -> int:
    dns = TestDNSServer().start()
    with tempfile.TemporaryDirectory(prefix="commune-screens-") as folder:
        thread, url, key = start_seeded_server(Path(folder) / "server", dns)
        attachment = Path(folder) / "review-notes.pdf"
        attachment.write_bytes(b"%PDF-1.4 review notes " * 900)
        try:
            settings = Settings(base_url=url, api_key=key, data_dir=Path(folder) / "client",
                                state_dir=Path(folder) / "state", live_updates=False, cursor_blink=False,
                                clock=lambda: datetime.now(UTC))
            asyncio.run(capture(make_app(settings), attachment))
        finally:
            thread.stop()
            dns.stop()
    for name in ("main", "thread", "composer", "search", "domains"):
        print(OUT / f"{name}.svg")
    return 0


if __name__ == "__main__":
    sys.exit(main())
