"""The app on a fake data source: failures become notifications, missing reads placeholders; the CLI entry."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import DataTable

from shared.cli import main
from tests.tui.fakes import NOW, FakeDataSource
from tests.tui.pilot import column, drive, notifications, settle, text
from tui.app import make_app
from tui.screens.customers import CustomersScreen
from tui.screens.help import HelpScreen
from tui.sections import SECTIONS, section
from tui.widgets.nav import NavBar
from tui.widgets.notice import Notice


def fake_app(**fake: Any) -> Any:
    return make_app(FakeDataSource(**fake), clock=lambda: NOW, poll_seconds=3600, refresh_seconds=3600)


def test_a_failing_read_is_a_notification_and_the_app_goes_on():
    async def body(pilot: Any) -> None:
        await pilot.press("2")
        await settle(pilot)
        assert isinstance(pilot.app.screen, CustomersScreen)
        assert ("error", "RuntimeError: customers exploded") in notifications(pilot.app)
        assert not pilot.app.screen.query_one("#customer-table").loading
        await pilot.press("3")  # still answering keys
        await settle(pilot)
        assert column(pilot.app.screen.query_one("#segment-table", DataTable))[:1] == ["browsers"]

    drive(fake_app(failing={"customers"}), body)


def test_every_section_has_its_key_its_nav_tab_its_help_line_and_its_palette_command():
    async def body(pilot: Any) -> None:
        palette = [command.title for command in pilot.app.get_system_commands(pilot.app.screen)]
        assert [f"Go to {s.title}" for s in SECTIONS] == palette[: len(SECTIONS)]
        for s in SECTIONS:
            await pilot.press(s.key)
            await settle(pilot)
            assert (pilot.app.current_mode, type(pilot.app.screen)) == (s.mode, s.screen)
            nav = pilot.app.screen.query_one(NavBar)
            assert nav.active == s.mode
            tabs = " ".join(f"{t.key} {t.title}" for t in SECTIONS)
            assert f"Footfall {tabs} fake" in " ".join(nav.render().plain.split())
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(pilot.app.screen, HelpScreen) and pilot.app.screen.help_title == SECTIONS[-1].title
        shown = " ".join(text(pilot.app.screen.query_one("#help-keys")).split())
        assert "switch screen: " + ", ".join(s.title for s in SECTIONS) in shown

    drive(fake_app(), body, size=(140, 30))


@pytest.mark.parametrize(
    ("mode", "notice"),
    [
        ("overview", "#overview-notice"),
        ("funnels", "#funnel-notice"),
        ("retention", "#retention-notice"),
        ("live", "#live-notice"),
    ],
)
def test_a_read_that_does_not_exist_yet_shows_a_placeholder(mode: str, notice: str):
    async def body(pilot: Any) -> None:
        await pilot.press(section(mode).key)
        await settle(pilot)
        shown = pilot.app.screen.query_one(notice, Notice)
        assert shown.display and "not available yet" in text(shown)
        assert not [n for n in notifications(pilot.app) if n[0] == "error"]

    drive(fake_app(unavailable={mode}), body)


def test_the_customer_screen_without_timing_still_shows_the_rest():
    async def body(pilot: Any) -> None:
        pilot.app.open_customer("u:bob")
        await settle(pilot)
        assert "not available yet" in text(pilot.app.screen.query_one("#customer-timing"))
        assert "cart_abandoners" in text(pilot.app.screen.query_one("#customer-segments"))

    drive(fake_app(unavailable={"timing"}), body)


def test_a_refused_replay_is_an_error_notification():
    fake = FakeDataSource(failing={"replay"})

    async def body(pilot: Any) -> None:
        await pilot.press("7")
        await settle(pilot)
        await pilot.press("R", "y")
        await settle(pilot)
        assert any(sev == "error" and "still invalid" in msg for sev, msg in notifications(pilot.app))
        assert fake.replayed == [] and len(fake.failures) == 2

    drive(make_app(fake, clock=lambda: NOW, poll_seconds=3600), body)


def test_footfall_tui_without_a_stack_says_how_to_start_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["tui", "--data-dir", str(tmp_path)]) == 2
    assert "footfall serve" in capsys.readouterr().err


def test_footfall_tui_with_nothing_at_the_endpoint_says_so_quickly(capsys: pytest.CaptureFixture[str]):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    assert main(["tui", "--endpoint-url", f"http://127.0.0.1:{port}"]) == 2
    assert time.monotonic() - started < 10
    err = capsys.readouterr().err
    assert f"nothing answers at http://127.0.0.1:{port}" in err and "Traceback" not in err
