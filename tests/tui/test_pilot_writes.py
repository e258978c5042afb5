"""Pilot tests that change the table (replay, new events arriving): each on a seeded table of its own."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from textual.widgets import DataTable, Static

from shared.domain.failures import failed_event, new_failure_id
from tests.tui.conftest import World, app_on
from tests.tui.pilot import column, drive, notifications, rows, settle, text, type_into
from tui.screens.failed import FailedEventScreen
from tui.widgets.confirm import ConfirmScreen

pytestmark = pytest.mark.integration


def test_failed_events_inspect_and_replay_only_after_confirmation(fresh_world: World):
    # Given a refused event that would be accepted now (say, storage was down when it came)
    store = fresh_world.store
    received = datetime.now(UTC)
    retry_id = new_failure_id(received, "retry")
    store.put_failed(
        [
            failed_event(
                failure_id=retry_id,
                received_at=received,
                route="/v1/track",
                reason="storage unavailable",
                status=503,
                raw=b'{"userId": "kai", "event": "Product Viewed", "messageId": "kai-1"}',
                source_id="web",
                message_id="kai-1",
            )
        ]
    )

    async def body(pilot: Any) -> None:
        await pilot.press("7")
        await settle(pilot)
        table = pilot.app.screen.query_one("#failed-table", DataTable)
        assert sorted(r[1] for r in rows(table)) == ["400", "503"]
        # Inspect the one refused for a missing event name: reason and raw payload
        table.move_cursor(row=[r[1] for r in rows(table)].index("400"))
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(pilot.app.screen, FailedEventScreen)
        shown = text(pilot.app.screen.query_one("#failed-event", Static))
        assert '"userId": "zed"' in shown and "event is required" in shown
        # Replay asks first; "n" changes nothing
        await pilot.press("R")
        await pilot.pause()
        assert isinstance(pilot.app.screen, ConfirmScreen)
        await pilot.press("n")
        await settle(pilot)
        assert isinstance(pilot.app.screen, FailedEventScreen)
        assert store.get_failed(pilot.app.screen.failure_id) is not None
        # Confirmed, it is still invalid: an error notification, and it stays
        await pilot.press("R", "y")
        await settle(pilot)
        assert any(sev == "error" and "still invalid" in msg for sev, msg in notifications(pilot.app))
        assert store.get_failed(pilot.app.screen.failure_id) is not None
        await pilot.press("escape")
        await pilot.pause()
        # The replayable one, from the list, confirmed with a click: stored, and out of the failed events
        table.move_cursor(row=[r[1] for r in rows(table)].index("503"))
        await pilot.press("R")
        await pilot.pause()
        await pilot.click("#confirm-ok")
        await settle(pilot)
        assert any(f"replayed {retry_id}" in msg for _, msg in notifications(pilot.app))
        assert store.get_failed(retry_id) is None
        assert [e.message_id for e in store.list_identity_events("u", "kai")] == ["kai-1"]
        assert retry_id not in [key.value for key in table.rows]
        assert "503" not in [r[1] for r in rows(table)]

    drive(app_on(fresh_world), body)


def test_live_tail_deduplicates_filters_and_pauses(fresh_world: World):
    async def body(pilot: Any) -> None:
        await pilot.press("6")
        await settle(pilot)
        table = pilot.app.screen.query_one("#live-table", DataTable)
        first = len(table.rows)
        assert first >= 12 and len(set(table.rows)) == first
        await pilot.pause(0.5)  # a few polls of the same events: nothing is shown twice
        await settle(pilot)
        assert len(table.rows) == first
        # Filter by name
        await pilot.press("slash")
        await type_into(pilot, "order")
        assert column(table, 1) == ["Order Completed"]
        await pilot.press("escape")
        # Paused, new events wait; resumed, they come
        await pilot.press("space")
        fresh_world.send([{"type": "track", "userId": "fox", "event": "Email Opened", "messageId": "fox-1"}])
        await pilot.pause(0.6)
        await settle(pilot)
        assert "Email Opened" not in column(table, 1)
        await pilot.press("space")
        await pilot.pause(0.3)
        await settle(pilot)
        assert column(table, 1)[0] == "Email Opened"
        assert len(table.rows) == first + 1

    drive(app_on(fresh_world), body)
