"""Helpers for Pilot tests (plain pytest: each test runs its coroutine with `asyncio.run`)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Awaitable, Callable
from typing import Any

from rich.console import Console
from textual.app import App
from textual.content import Content
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Static

SIZE = (100, 30)


def drive(app: App[Any], body: Callable[[Pilot[Any]], Awaitable[None]], *, size: tuple[int, int] = SIZE) -> None:
    """Run `body` against the app under Pilot."""

    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await settle(pilot)
            await body(pilot)

    asyncio.run(main())


async def settle(pilot: Pilot[Any], rounds: int = 6) -> None:
    """Until no worker runs: reads finish, their results are drawn, and reads they start finish too."""
    for _ in range(rounds):
        await pilot.pause()
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        if not any(worker.is_running for worker in pilot.app.workers):
            return
    running = [worker.name or repr(worker) for worker in pilot.app.workers if worker.is_running]
    raise AssertionError(f"the app did not settle in {rounds} rounds: {running} still running")


async def type_into(pilot: Pilot[Any], value: str, *keys: str) -> None:
    """Put `value` in the focused input (as typing would, one change event), then press `keys`."""
    focused = pilot.app.focused
    assert isinstance(focused, Input), focused
    focused.value = value
    await pilot.pause()
    if keys:
        await pilot.press(*keys)


def rows(table: DataTable[Any]) -> list[list[str]]:
    """A table's cells as plain text."""
    return [[str(getattr(cell, "plain", cell)) for cell in table.get_row_at(i)] for i in range(table.row_count)]


def column(table: DataTable[Any], index: int = 0) -> list[str]:
    return [row[index] for row in rows(table)]


def text(widget: Static) -> str:
    """What a Static shows, as plain text."""
    content = widget.content
    if isinstance(content, str):
        return Content.from_markup(content).plain
    if hasattr(content, "plain"):
        return str(content.plain)
    console = Console(width=200, record=True, color_system=None, file=io.StringIO())
    console.print(content)
    return console.export_text()


def notifications(app: App[Any]) -> list[tuple[str, str]]:
    """(severity, message) of every notification so far."""
    return [(n.severity, n.message) for n in app._notifications]
