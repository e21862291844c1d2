"""Opening attachments: $COMMUNE_OPENER, then mailcap, then xdg-open; a clear notice when nothing
can; the temporary copies go away when the client exits."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from commune_tui.opener import browser_command, open_command
from tests.tui.conftest import Mailbox
from tests.tui.helpers import read_thread, settle, wait_until

pytestmark = pytest.mark.anyio


def script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_the_chain_prefers_commune_opener_then_mailcap_then_xdg_open(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    xdg = script(bin_dir / "xdg-open", "exit 0")
    mailcap = tmp_path / "mailcap"
    mailcap.write_text("# comment\ntext/plain; less %s; needsterminal\n"
                       "application/pdf; pdfviewer --page 1 '%s'; test=test -n \"$DISPLAY\"\n"
                       "application/pdf; evince %s\nimage/*; feh\n")
    env = {"PATH": str(bin_dir), "MAILCAPS": str(mailcap)}
    assert open_command("/t/a.pdf", "application/pdf", {**env, "COMMUNE_OPENER": "myopen --new"}) == [
        "myopen", "--new", "/t/a.pdf"]
    assert open_command("/t/a.pdf", "application/pdf", env) == ["evince", "/t/a.pdf"]
    assert open_command("/t/b.png", "image/png", env) == ["feh", "/t/b.png"]
    # A terminal program cannot run beside the client: the next opener in the chain is used.
    assert open_command("/t/c.txt", "text/plain", env) == [str(xdg), "/t/c.txt"]
    assert open_command("/t/c.txt", "text/plain", {"PATH": str(tmp_path / "empty"),
                                                    "MAILCAPS": str(mailcap)}) is None
    assert browser_command("https://x.test/", {"BROWSER": "firefox:chromium"}) == ["firefox",
                                                                                  "https://x.test/"]
    assert browser_command("https://x.test/", {**env, "BROWSER": ""}) == [str(xdg), "https://x.test/"]


async def test_open_runs_the_opener_and_cleans_up_on_exit(mailbox: Mailbox, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    seen = tmp_path / "seen.txt"
    opener = script(tmp_path / "opener.sh", f'cp "$1" {tmp_path}/copy.pdf; echo "$1" > {seen}')
    monkeypatch.setenv("COMMUNE_OPENER", str(opener))
    app = mailbox.app(tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await read_thread(pilot, "Quarterly report draft")
        await pilot.press("o")
        await wait_until(pilot, lambda: any("Opened report-q1.pdf with opener.sh" in str(n.message)
                                            for n in app._notifications))
        opened = Path(seen.read_text().strip())
        assert opened.name == "report-q1.pdf" and opened.is_relative_to(app.temp_dir)
        assert opened.exists()
        temp_dir = app.temp_dir
    assert (tmp_path / "copy.pdf").read_bytes().startswith(b"%PDF-1.4 quarterly report")
    assert not temp_dir.exists()


async def test_open_says_so_when_nothing_can_open_it(mailbox: Mailbox, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COMMUNE_OPENER", raising=False)
    monkeypatch.setenv("MAILCAPS", str(tmp_path / "no-mailcap"))
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    app = mailbox.app(tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await read_thread(pilot, "Quarterly report draft")
        await pilot.press("o")
        await wait_until(pilot, lambda: bool(app._notifications))
        messages = [str(n.message) for n in app._notifications]
        assert any(m.startswith("Nothing can open report-q1.pdf: set $COMMUNE_OPENER") for m in messages)
        assert not any(m.startswith("Opened") for m in messages)


async def test_a_failing_opener_is_reported(mailbox: Mailbox, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMMUNE_OPENER", str(script(tmp_path / "bad.sh", "echo no viewer >&2; exit 4")))
    app = mailbox.app(tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await read_thread(pilot, "Quarterly report draft")
        await pilot.press("o")
        await wait_until(pilot, lambda: any("Could not open" in str(n.message) for n in app._notifications))
        message = next(str(n.message) for n in app._notifications if "Could not open" in str(n.message))
        assert message == "Could not open report-q1.pdf: bad.sh exited with status 4: no viewer"
