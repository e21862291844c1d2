"""Layout at 80×24: the sidebar collapses to a toggle, columns shrink by priority, the footer fits,
the date column is never cut; light-theme borders stand out from the surface."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

from commune_tui.widgets.mailbox_tree import MailboxTree
from commune_tui.widgets.thread_list import DATE_WIDTH, ThreadList
from tests.tui.conftest import Mailbox
from tests.tui.helpers import settle
from tests.tui.seeding import make_inbox, send

pytestmark = pytest.mark.anyio


def footer_fits(app) -> bool:
    keys = list(app.screen.query_one(Footer).query(FooterKey))
    return bool(keys) and max(k.region.right for k in keys) <= app.size.width


def columns_fit(threads: ThreadList) -> bool:
    used = sum(c.get_render_width(threads) for c in threads.columns.values())
    return used <= threads.scrollable_content_region.width


async def test_80x24_collapses_the_sidebar_and_keeps_every_column_whole(mailbox: Mailbox,
                                                                         tmp_path: Path) -> None:
    app = mailbox.app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        tree = app.screen.query_one(MailboxTree)
        threads = app.screen.query_one(ThreadList)
        assert not tree.display and threads.row_count == 4
        assert threads.columns[next(k for k in threads.columns if k.value == "date")].width == DATE_WIDTH
        assert columns_fit(threads) and footer_fits(app)
        await pilot.press("enter")
        await settle(pilot)
        assert footer_fits(app)  # with the reader's keys too
        await pilot.press("m")
        await pilot.pause()
        assert tree.display and app.focused is tree
        await pilot.press("q")  # back to the list, and the sidebar folds away again
        await pilot.pause()
        assert not tree.display and app.focused is threads


async def test_wide_terminal_shows_the_sidebar_and_m_hides_it(mailbox: Mailbox, tmp_path: Path) -> None:
    app = mailbox.app(tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        tree = app.screen.query_one(MailboxTree)
        assert tree.display
        await pilot.press("m")
        await pilot.pause()
        assert not tree.display
        await pilot.press("m")
        await pilot.pause()
        assert tree.display


async def test_date_column_stays_whole_when_a_longer_inbox_opens(mailbox: Mailbox, tmp_path: Path) -> None:
    long_local = "a-very-long-inbox-name-for-the-accounting-department"
    inbox = make_inbox(mailbox.user, long_local)
    sender = make_inbox(mailbox.others, "someone-with-a-remarkably-long-address-indeed")
    send(mailbox.others, sender["id"], inbox["address"], "An exceptionally long subject " * 6, "Body.")
    app = mailbox.app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.screen.query_one(MailboxTree).select_inbox(inbox["id"])
        await settle(pilot)
        threads = app.screen.query_one(ThreadList)
        assert threads.row_count == 1 and columns_fit(threads)
        date = next(c for k, c in threads.columns.items() if k.value == "date")
        assert date.get_render_width(threads) - 2 * threads.cell_padding == DATE_WIDTH


async def test_light_theme_pane_borders_differ_from_the_surface(mailbox: Mailbox, tmp_path: Path) -> None:
    app = mailbox.app(tmp_path, theme="commune-light")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        reader = app.screen.query_one("#reader")
        border = reader.styles.border_top[1]
        assert border.hex.lower() != reader.styles.background.hex.lower()
        assert abs(border.brightness - reader.styles.background.brightness) > 0.2
