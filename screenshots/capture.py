"""Start a seeded server, drive the terminal client and save SVG screenshots for the README.

Run from the repository root: `python3 screenshots/capture.py` for all of them, or name some:
`python3 screenshots/capture.py outbox`.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx
from textual.pilot import Pilot
from textual.widgets import DataTable

from backend.config import Settings as ServerSettings
from backend.server import ServerThread
from backend.services import DEFAULT_ORG
from commune_tui.app import CommuneApp, make_app
from commune_tui.config import Settings
from commune_tui.screens.outbox import OutboxScreen
from commune_tui.widgets.thread_list import ThreadList
from screenshots.demo import seed_demo, seed_outbox
from tests.dnsserver import TestDNSServer
from tests.smtp_sink import SmtpSink
from tests.tui.helpers import settle

OUT = ROOT / "screenshots"
SIZE = (120, 36)
NARROW = (80, 24)
TARGETS = ("main", "thread", "composer", "search", "domains", "outbox", "narrow")


def start_seeded_server(folder: Path, dns: TestDNSServer,
                        sink: SmtpSink) -> tuple[ServerThread, str, str, Callable[[], None]]:
    """A fresh server with the demo mailbox (replies relayed to `sink`); returns it, its URL, the
    user's key and what seeds the Outbox (after the other screenshots, whose threads it would join)."""
    thread = ServerThread(ServerSettings(data_dir=folder, port=0, smtp_port=0, rate_limit=0,
                                         dns_servers=[dns.address], relay=f"127.0.0.1:{sink.port}"))
    server = thread.start()

    async def agent_key() -> str:
        """The triage agent's key: every send it makes waits for a person's approval."""
        org = server.services.orgs.get_or_create_org(DEFAULT_ORG)
        return server.services.keys.create(org["id"], ["read", "write"], "triage agent", hold_sends=True)[0]

    def client(key: str) -> httpx.Client:
        return httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {key}"})

    with client(server.admin_key) as api:
        demo = seed_demo(api, server.smtp_port, folder / "commune.db", dns)
    agent = thread.call(agent_key())

    def outbox() -> None:
        with client(server.admin_key) as api, client(agent) as agent_api:  # type: ignore[arg-type]
            seed_outbox(api, agent_api, demo, datetime.now(UTC))

    return thread, server.base_url, server.admin_key, outbox


async def capture(app: CommuneApp, attachment: Path, targets: list[str],
                  seed_outbox: Callable[[], None]) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        if set(targets) - {"outbox"}:
            await capture_mail(app, pilot, attachment, targets)
        if "outbox" in targets:
            await asyncio.to_thread(seed_outbox)
            await capture_outbox(app, pilot)


async def capture_outbox(app: CommuneApp, pilot: Pilot) -> None:
    """All inboxes' outbox, with the agent's discount offer under review."""
    await pilot.press("O")
    await settle(pilot)
    await pilot.press("O")
    await settle(pilot)
    screen = app.screen
    assert isinstance(screen, OutboxScreen)
    table = screen.query_one("#approvals-table", DataTable)
    row = next(i for i in range(table.row_count) if "88213" in str(table.get_row_at(i)[2]))
    table.move_cursor(row=row, animate=False)
    await settle(pilot)
    app.clear_notifications()
    app.save_screenshot("outbox.svg", str(OUT))


async def capture_narrow(app: CommuneApp) -> None:
    """The same mailbox in an 80×24 terminal: the sidebar folded away, a thread open under the list."""
    async with app.run_test(size=NARROW) as pilot:
        await settle(pilot)
        threads = app.screen.query_one(ThreadList)
        row = next(i for i, t in enumerate(threads.ordered()) if t.subject.startswith("Quarterly figures"))
        threads.move_cursor(row=row, animate=False)
        threads.focus()
        await pilot.press("enter")
        await settle(pilot)
        threads.focus()
        app.clear_notifications()
        app.save_screenshot("narrow.svg", str(OUT))


async def capture_mail(app: CommuneApp, pilot: Pilot, attachment: Path, targets: list[str]) -> None:
    def save(name: str) -> None:
        if name in targets:
            app.save_screenshot(f"{name}.svg", str(OUT))

    save("main")

    threads = app.screen.query_one(ThreadList)
    row = next(i for i, t in enumerate(threads.ordered()) if t.subject == "Relay migration plan")
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
    await pilot.press(*"The report is attached; thanks again for a smooth cut-over.")
    save("composer")
    await pilot.press("escape", "y")
    await settle(pilot)

    await pilot.press("slash")
    await settle(pilot)
    app.screen.query_one("#query").value = "figures"
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
    sink = SmtpSink().start()
    with tempfile.TemporaryDirectory(prefix="commune-screens-") as folder:
        thread, url, key, outbox = start_seeded_server(Path(folder) / "server", dns, sink)
        attachment = Path(folder) / "post-migration-report.pdf"
        attachment.write_bytes(b"%PDF-1.4 post-migration report " * 900)
        try:
            settings = Settings(base_url=url, api_key=key, data_dir=Path(folder) / "client",
                                state_dir=Path(folder) / "state", live_updates=False, cursor_blink=False,
                                clock=lambda: datetime.now(UTC))
            if set(targets) - {"narrow"}:
                asyncio.run(capture(make_app(settings), attachment, targets, outbox))
            if "narrow" in targets:
                asyncio.run(capture_narrow(make_app(settings)))
        finally:
            thread.stop()
            sink.stop()
            dns.stop()
    for name in targets:
        print(OUT / f"{name}.svg")
    return 0


if __name__ == "__main__":
    sys.exit(main())
