"""Snapshots of every screen (pytest-textual-snapshot) with fixed data and a fixed clock.

After a deliberate change of the look, review the HTML report of a failing run, then
`.venv/bin/python -m pytest tests/tui/test_snapshots.py --snapshot-update`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.tui.fakes import NOW, FakeDataSource
from tests.tui.pilot import settle
from tui.app import OperatorApp, make_app

SIZE = (120, 36)


def app(**fake: Any) -> OperatorApp:
    # Slow polls: nothing moves while the screenshot is taken.
    return make_app(FakeDataSource(**fake), clock=lambda: NOW, poll_seconds=3600, refresh_seconds=3600)


def keys(*pressed: str) -> Callable[[Any], Any]:
    async def run_before(pilot: Any) -> None:
        await settle(pilot)
        for key in pressed:
            await pilot.press(key)
            await settle(pilot)

    return run_before


@pytest.mark.parametrize(
    "pressed",
    [
        pytest.param((), id="overview"),
        pytest.param(("2",), id="customers"),
        pytest.param(("2", "enter"), id="customer"),
        pytest.param(("3",), id="segments"),
        pytest.param(("3", "down", "enter"), id="segment"),
        pytest.param(("4",), id="funnels"),
        pytest.param(("5",), id="retention"),
        pytest.param(("6",), id="live"),
        pytest.param(("7",), id="failed"),
        pytest.param(("7", "enter"), id="failed-event"),
        pytest.param(("7", "R"), id="replay-confirmation"),
        pytest.param(("2", "question_mark"), id="help"),
    ],
)
def test_screen(snap_compare: Any, pressed: tuple[str, ...]):
    assert snap_compare(app(), terminal_size=SIZE, run_before=keys(*pressed))


def test_small_terminal(snap_compare: Any):
    """80x24 still shows every part of the overview (tables scroll; nothing overlaps)."""
    assert snap_compare(app(), terminal_size=(80, 24), run_before=keys())


def test_not_available_yet(snap_compare: Any):
    """Before the overview read exists, the screen says so instead of failing."""
    assert snap_compare(app(unavailable={"overview"}), terminal_size=(100, 30), run_before=keys())
