"""`footfall tui`: the operator terminal UI (k9s-style: keyboard first, a screen per task, reads in workers)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, ClassVar

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from tui.data import DataSource
from tui.screens.customers import CustomerScreen
from tui.screens.help import HelpScreen
from tui.screens.segments import SegmentScreen
from tui.sections import SECTIONS, Section

Clock = Callable[[], datetime]

_GLOBAL_KEYS = [
    (f"{SECTIONS[0].key} … {SECTIONS[-1].key}", "switch screen: " + ", ".join(s.title for s in SECTIONS)),
    ("?", "this help"),
    (": or ctrl+p", "command palette (go to a screen, find a customer, theme, quit)"),
    ("tab / shift+tab", "move between panels"),
    ("enter / click", "open the highlighted row"),
    ("escape", "back (or leave a search box)"),
    ("q / ctrl+q", "quit"),
]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class OperatorApp(App[int]):
    """The app: a mode per section (each keeps its own stack of detail screens), an injected data source."""

    CSS_PATH = "app.tcss"
    TITLE = "Footfall"
    SECTIONS: ClassVar[tuple[Section, ...]] = SECTIONS
    """The top-level screens (`tui/sections.py`): modes, keys, the nav bar, help and the command palette."""
    MODES = {s.mode: s.screen for s in SECTIONS}
    DEFAULT_MODE = SECTIONS[0].mode
    BINDINGS = [
        *(Binding(s.key, f"switch_mode('{s.mode}')", s.title, show=False, id=f"app.{s.mode}") for s in SECTIONS),
        Binding("question_mark", "help", "Help", tooltip="Every key of this screen", id="app.help"),
        Binding("colon", "command_palette", "Commands", show=False, id="app.palette"),
        Binding("q", "quit", "Quit", id="app.quit"),
    ]

    def __init__(
        self,
        source: DataSource,
        *,
        clock: Clock = _utcnow,
        poll_seconds: float = 2.0,
        refresh_seconds: float = 10.0,
    ) -> None:
        super().__init__()
        self.source = source
        """Where every screen reads (blocking calls: screens call it from workers)."""
        self.clock = clock
        """Now, for relative times and date ranges (fixed in snapshot tests)."""
        self.poll_seconds = poll_seconds
        """How often the live tail polls."""
        self.refresh_seconds = refresh_seconds
        """How often the overview reads its figures again."""

    def open_customer(self, customer_id: str) -> None:
        """Show a customer (on top of the current screen: Escape comes back)."""
        self.push_screen(CustomerScreen(customer_id))

    def open_segment(self, segment_id: str) -> None:
        """Show a segment (on top of the current screen)."""
        self.push_screen(SegmentScreen(segment_id))

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        own: dict[str, str] = {}
        for active in self.screen.active_bindings.values():
            binding = active.binding
            if active.node is self.screen and binding.description and binding.id:
                own.setdefault(binding.description, self.get_key_display(binding))
        keys = [(display, description) for description, display in own.items()]
        title = next((s.title for s in self.SECTIONS if s.mode == self.current_mode), "Footfall")
        self.push_screen(HelpScreen(title, keys, _GLOBAL_KEYS))

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        for s in self.SECTIONS:
            yield SystemCommand(f"Go to {s.title}", f"Switch to the {s.title} screen (key {s.key})", self._go(s.mode))
        yield SystemCommand("Find a customer", "Search customers by id, user id or e-mail", self._find_customer)
        yield SystemCommand("Refresh", "Read this screen's data again", self._refresh_screen)
        yield SystemCommand("Help", "Every key of this screen", self.action_help)
        yield from super().get_system_commands(screen)

    def _go(self, mode: str) -> Callable[[], None]:
        return lambda: self.call_later(self.switch_mode, mode)

    def _find_customer(self) -> None:
        async def go() -> None:
            await self.switch_mode("customers")
            self.screen.query_one("#search").focus()

        self.call_later(go)

    def _refresh_screen(self) -> None:
        reload = getattr(self.screen, "reload", None)
        if callable(reload):
            reload()


def make_app(
    source: DataSource, *, clock: Clock = _utcnow, poll_seconds: float = 2.0, refresh_seconds: float = 10.0
) -> OperatorApp:
    """The app on a data source: the one constructor, for the CLI and the tests."""
    return OperatorApp(source, clock=clock, poll_seconds=poll_seconds, refresh_seconds=refresh_seconds)


def run(args: argparse.Namespace) -> int:
    """`footfall tui`: connect like every other command, check the table answers, run the app."""
    from botocore.exceptions import BotoCoreError

    from shared.compose import open_store
    from shared.errors import OperatorError
    from tui.connect import check_reachable, describe
    from tui.data import StoreDataSource

    try:
        store, extra = open_store(args)
    except BotoCoreError as exc:  # e.g. an unknown --profile
        raise OperatorError(str(exc)) from exc
    check_reachable(store, profile=args.profile)
    app = make_app(StoreDataSource(store, label=describe(store, extra.get("info"))))
    app.run()
    return app.return_code or 0
