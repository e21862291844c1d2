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

import httpx

from backend.config import Settings as ServerSettings
from backend.server import ServerThread
from commune_tui.app import CommuneApp, make_app
from commune_tui.config import Settings
from commune_tui.widgets.thread_list import ThreadList
from screenshots.demo import seed_demo
from tests.dnsserver import TestDNSServer
from tests.smtp_sink import SmtpSink
from tests.tui.helpers import settle

OUT = ROOT / "screenshots"
SIZE = (120, 36)


def start_seeded_server(folder: Path, dns: TestDNSServer, sink: SmtpSink) -> tuple[ServerThread, str, str]:
    """A fresh server with the demo mailbox (replies relayed to `sink`); returns it, its URL and the
    user's key."""
    thread = ServerThread(ServerSettings(data_dir=folder, port=0, smtp_port=0, rate_limit=0,
                                         dns_servers=[dns.address], relay=f"127.0.0.1:{sink.port}"))
    server = thread.start()
    with httpx.Client(base_url=server.base_url,
                      headers={"Authorization": f"Bearer {server.admin_key}"}) as api:
        seed_demo(api, server.smtp_port, folder / "commune.db", dns)
    return thread, server.base_url, server.admin_key


async def capture(app: CommuneApp, attachment: Path) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.save_screenshot("main.svg", str(OUT))

        threads = app.screen.query_one(ThreadList)
        row = next(i for i, t in enumerate(threads.ordered()) if t.subject == "Relay migration plan")
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
        await pilot.press(*"The report is attached; thanks again for a smooth cut-over.")
        app.save_screenshot("composer.svg", str(OUT))
        await pilot.press("escape", "y")
        await settle(pilot)

        await pilot.press("slash")
        await settle(pilot)
        app.screen.query_one("#query").value = "figures"
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
    sink = SmtpSink().start()
    with tempfile.TemporaryDirectory(prefix="commune-screens-") as folder:
        thread, url, key = start_seeded_server(Path(folder) / "server", dns, sink)
        attachment = Path(folder) / "post-migration-report.pdf"
        attachment.write_bytes(b"%PDF-1.4 post-migration report " * 900)
        try:
            settings = Settings(base_url=url, api_key=key, data_dir=Path(folder) / "client",
                                state_dir=Path(folder) / "state", live_updates=False, cursor_blink=False,
                                clock=lambda: datetime.now(UTC))
            asyncio.run(capture(make_app(settings), attachment))
        finally:
            thread.stop()
            sink.stop()
            dns.stop()
    for name in ("main", "thread", "composer", "search", "domains"):
        print(OUT / f"{name}.svg")
    return 0


if __name__ == "__main__":
    sys.exit(main())
