"""Pilot tests on a moto table seeded through the real collector, stream processing and segments."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from textual.command import CommandPalette
from textual.widgets import DataTable, Static

from shared.storage.items import CUSTOMER_INDEX_SHARDS
from tests.tui.conftest import Seeded, World
from tests.tui.pilot import column, drive, notifications, rows, settle, text, type_into
from tui.app import OperatorApp
from tui.screens.customers import CustomerScreen, CustomersScreen
from tui.screens.help import HelpScreen
from tui.screens.live import LiveScreen
from tui.screens.overview import OverviewScreen
from tui.screens.segments import SegmentScreen, SegmentsScreen
from tui.sections import SECTIONS
from tui.widgets.nav import NavBar

pytestmark = pytest.mark.integration

REQUEST_BUDGET = 10
"""DynamoDB requests any one screen may make to draw itself (issue 6)."""


def budget(mode: str) -> int:
    # A customer page is filled from the customer index's shards in turn: with 100k customers the first shard fills
    # it (one Query, one BatchGet); with the five seeded here every shard is read before the page is done. (Failed
    # events are read only from the days marked as having some: within the budget.)
    extra = {"customers": CUSTOMER_INDEX_SHARDS}
    return REQUEST_BUDGET + extra.get(mode, 0)


def count_requests(store: Any) -> Counter[str]:
    """Every DynamoDB request the store's client makes from now on, by operation."""
    seen: Counter[str] = Counter()

    def record(event_name: str, **_: Any) -> None:
        seen[event_name.rsplit(".", 1)[-1]] += 1

    store.client.meta.events.register("before-call.dynamodb", record)
    return seen


def nav_x(mode: str, width: int) -> int:
    """Where a section's title is on the nav bar (the bar shows the brand when there is room)."""
    titles = [f" {s.key} {s.title} " for s in SECTIONS]
    x = len(" Footfall ") if width >= len(" Footfall ") + sum(map(len, titles)) else 0
    for section, title in zip(SECTIONS, titles, strict=True):
        if section.mode == mode:
            return x + 2
        x += len(title)
    raise KeyError(mode)


def test_every_section_by_key_click_and_palette_within_the_request_budget(pilot_app: OperatorApp, world: World):
    requests = count_requests(world.store)

    async def body(pilot: Any) -> None:
        # Keys 1-7, each screen read within the budget of requests
        for section in SECTIONS:
            requests.clear()
            await pilot.press(section.key)
            await settle(pilot)
            assert isinstance(pilot.app.screen, section.screen)
            assert pilot.app.screen.query_one(NavBar).active == section.mode
            assert sum(requests.values()) <= budget(section.mode), (section.mode, requests)
        # A click on the nav bar
        await pilot.click(NavBar, offset=(nav_x("segments", pilot.app.size.width), 0))
        await settle(pilot)
        assert isinstance(pilot.app.screen, SegmentsScreen)
        # ? shows this screen's keys, Escape closes it
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(pilot.app.screen, HelpScreen)
        assert "Refresh" in text(pilot.app.screen.query_one("#help-keys", Static))
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(pilot.app.screen, SegmentsScreen)
        # : opens the command palette; "Go to Live" goes there
        await pilot.press("colon")
        await pilot.pause()
        assert isinstance(pilot.app.screen, CommandPalette)
        await pilot.press(*"go to live")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(pilot.app.screen, LiveScreen)

    drive(pilot_app, body)


def test_customers_filter_look_up_by_id_and_email_and_unknown(pilot_app: OperatorApp, seeded: Seeded):
    async def body(pilot: Any) -> None:
        await pilot.press("2")
        await settle(pilot)
        table = pilot.app.screen.query_one("#customer-table", DataTable)
        assert sorted(column(table)) == sorted(f"u:{who}" for who in ["ann", "bob", *seeded.browsers])
        # Typing filters this page (by e-mail here); Enter opens the one match
        await pilot.press("slash")
        await type_into(pilot, "ann@ex")
        assert column(table) == ["u:ann"]
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(pilot.app.screen, CustomerScreen) and pilot.app.screen.customer_id == "u:ann"
        await pilot.press("escape")
        await pilot.pause()
        # A user id is looked up in the table (not only on this page)
        await pilot.press("slash")
        await type_into(pilot, "bob", "enter")
        await settle(pilot)
        assert isinstance(pilot.app.screen, CustomerScreen) and pilot.app.screen.customer_id == "u:bob"
        await pilot.press("escape")
        await pilot.pause()
        # Nobody: a warning, and the list stays
        await pilot.press("slash")
        await type_into(pilot, "nobody", "enter")
        await settle(pilot)
        assert isinstance(pilot.app.screen, CustomersScreen)
        assert ("warning", "No customer 'nobody'") in notifications(pilot.app)

    drive(pilot_app, body)


def test_customers_page_forward_and_back(pilot_app: OperatorApp, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr("tui.screens.customers.PAGE_SIZE", 2)

    async def body(pilot: Any) -> None:
        await pilot.press("2")
        await settle(pilot)
        table = pilot.app.screen.query_one("#customer-table", DataTable)
        seen = [column(table)]
        for _ in range(3):  # the third `n` is past the last page: nothing happens
            await pilot.press("n")
            await settle(pilot)
            seen.append(column(table))
        assert [len(page) for page in seen] == [2, 2, 1, 1]
        assert len({cid for page in seen for cid in page}) == 5
        assert "last page" in text(pilot.app.screen.query_one("#customer-status", Static))
        await pilot.press("p")
        await settle(pilot)
        assert column(table) == seen[1]

    drive(pilot_app, body)


def test_customer_screen_says_why_in_a_segment_and_pages_the_timeline(
    pilot_app: OperatorApp, seeded: Seeded, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr("tui.screens.customers.TIMELINE_PAGE", 2)

    async def body(pilot: Any) -> None:
        pilot.app.open_customer("u:ann")
        await settle(pilot)
        screen = pilot.app.screen
        segments = text(screen.query_one("#customer-segments", Static))
        assert "● in  cart_abandoners" in segments
        assert "Product Added" in segments.split("cart_abandoners", 1)[1]  # the why
        assert "○ out heavy_spenders" in segments
        assert ["email", "ann@example.com"] in rows(screen.query_one("#customer-traits", DataTable))
        assert column(screen.query_one("#customer-identities", DataTable)) == ["u:ann"]
        timeline = screen.query_one("#customer-timeline", DataTable)
        pages = [column(timeline, 2)]
        for _ in range(2):
            await pilot.press("n")
            await pilot.pause()
            pages.append(column(timeline, 2))
        assert [len(page) for page in pages[:2]] == [2, 2]
        assert {"Product Viewed", "Product Added", "identify"} <= {event for page in pages for event in page}
        assert "page 3/" in text(screen.query_one("#customer-timeline-status", Static))

    drive(pilot_app, body)


def test_segment_members_history_and_drill_down_to_the_customer(
    pilot_app: OperatorApp, seeded: Seeded, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr("tui.screens.segments.MEMBERS_PAGE", 2)

    async def body(pilot: Any) -> None:
        await pilot.press("3")
        await settle(pilot)
        table = pilot.app.screen.query_one("#segment-table", DataTable)
        ids = column(table)
        assert {"cart_abandoners", "heavy_spenders", "new_customers", "browsers"} <= set(ids)
        # Open cart_abandoners with the keyboard
        table.move_cursor(row=ids.index("cart_abandoners"))
        await pilot.press("enter")
        await settle(pilot)
        screen = pilot.app.screen
        assert isinstance(screen, SegmentScreen) and screen.segment_id == "cart_abandoners"
        assert "absence" in text(screen.query_one("#segment-rule", Static))
        assert [row[1:] for row in rows(screen.query_one("#segment-history", DataTable))] == [["entered", "u:ann"]]
        members = screen.query_one("#segment-members", DataTable)
        assert column(members) == ["u:ann"]
        # Drill down: Enter on the member opens the customer, Escape comes back
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(pilot.app.screen, CustomerScreen) and pilot.app.screen.customer_id == "u:ann"
        await pilot.press("escape")
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(pilot.app.screen, SegmentsScreen)
        # Members are paged lazily: new_customers has all five, two at a time
        table.move_cursor(row=column(table).index("new_customers"))
        await pilot.press("enter")
        await settle(pilot)
        members = pilot.app.screen.query_one("#segment-members", DataTable)
        pages = [column(members)]
        for _ in range(3):
            await pilot.press("n")
            await settle(pilot)
            pages.append(column(members))
        assert [len(page) for page in pages] == [2, 2, 1, 1]
        assert len({cid for page in pages for cid in page}) == 5

    drive(pilot_app, body)


def test_overview_shows_the_stream_counters_and_opens_a_segment(pilot_app: OperatorApp, seeded: Seeded):
    async def body(pilot: Any) -> None:
        screen = pilot.app.screen
        assert isinstance(screen, OverviewScreen)
        assert sum(screen.query_one("#overview-sparkline").data) > 0
        totals = text(screen.query_one("#overview-totals-text", Static))
        assert "failed" in totals and int(totals.split("failed")[1].split()[0]) >= 1
        top = {row[0]: row[1] for row in rows(screen.query_one("#overview-events", DataTable))}
        assert top["Product Viewed"] == ("8" if seeded.abandoner_today else "7")  # today's, by the app's clock
        segments = {row[0]: row[1] for row in rows(screen.query_one("#overview-segments", DataTable))}
        assert segments["cart_abandoners"] == "1" and segments["heavy_spenders"] == "1"
        # Enter on a segment opens it
        table = screen.query_one("#overview-segments", DataTable)
        table.move_cursor(row=column(table).index("heavy_spenders"))
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(pilot.app.screen, SegmentScreen)
        assert column(pilot.app.screen.query_one("#segment-members", DataTable)) == ["u:bob"]

    drive(pilot_app, body)


def test_funnel_steps_breakdown_and_date_range(pilot_app: OperatorApp, seeded: Seeded):
    async def body(pilot: Any) -> None:
        await pilot.press("4")
        await settle(pilot)
        screen = pilot.app.screen
        report = screen.query_one("#funnel-chart").report
        assert report is not None and report.funnel_id == "purchase"
        assert [step.customers for step in report.steps] == [5, 2, 1, 1]
        assert "Viewed a product" in screen.query_one("#funnel-chart").render().plain
        breakdown = rows(screen.query_one("#funnel-breakdown", DataTable))
        assert sum(int(row[1]) for row in breakdown) == 5
        # d switches the range: the report is read again for 14 days
        await pilot.press("d")
        await settle(pilot)
        assert screen.days == 14
        chart = screen.query_one("#funnel-chart").report
        assert (chart.end - chart.start).days == 13
        # The other funnel, from the list
        await pilot.press("down")
        await settle(pilot)
        assert screen.query_one("#funnel-chart").report.funnel_id == "email_to_order"

    drive(pilot_app, body)


def test_retention_heatmap_and_toggles(pilot_app: OperatorApp, seeded: Seeded):
    async def body(pilot: Any) -> None:
        await pilot.press("5")
        await settle(pilot)
        table = pilot.app.screen.query_one("#retention-table", DataTable)
        today = [row for row in rows(table) if row[0] == seeded.now.date().isoformat()]
        size = "5" if seeded.abandoner_today else "4"  # the abandoner's cohort is yesterday's after midnight
        assert today and today[0][1] == size and today[0][2].strip() == "100%"
        assert [str(c.label) for c in table.columns.values()][:3] == ["Cohort", "Size", "d0"]
        await pilot.press("b")
        await settle(pilot)
        assert [str(c.label) for c in table.columns.values()][2] == "w0"
        await pilot.press("c")
        await settle(pilot)
        assert pilot.app.screen.cumulative and "on or after" in text(pilot.app.screen.query_one("#retention-mode"))

    drive(pilot_app, body)


def test_customer_best_time_and_channel(pilot_app: OperatorApp, seeded: Seeded):
    async def body(pilot: Any) -> None:
        pilot.app.open_customer("u:bob")
        await settle(pilot)
        timing = text(pilot.app.screen.query_one("#customer-timing", Static))
        assert timing.startswith("best time") and "not available" not in timing

    drive(pilot_app, body)
