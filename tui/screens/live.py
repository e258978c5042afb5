"""Live: the newest events as they arrive (polled), pausable, filtered by event name."""

from __future__ import annotations

from collections import deque

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import DataTable, Footer, Input, Static

from shared.domain.reports import LiveEvent
from tui.formatting import DASH, clip, clock_time
from tui.screens.base import DataScreen
from tui.widgets.nav import NavBar
from tui.widgets.notice import Notice

KEPT = 500
"""Events kept on screen (the newest)."""
READ = 100
"""Events read per poll."""


class LiveScreen(DataScreen):
    """A tail of incoming events, newest on top; polling stops while paused or while another screen shows."""

    AUTO_FOCUS = "#live-table"

    BINDINGS = [
        Binding("space", "toggle_pause", "Pause/resume", id="live.pause"),
        Binding("slash", "filter", "Filter", tooltip="Show only events whose name contains…", id="live.filter"),
        Binding("escape", "clear_filter", "Clear filter", show=False, id="live.clear"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.paused = False
        self._events: deque[LiveEvent] = deque(maxlen=KEPT)
        self._seen: deque[str] = deque(maxlen=KEPT + READ)
        self._seen_set: set[str] = set()

    def compose(self) -> ComposeResult:
        yield NavBar(id="nav")
        with Horizontal(id="live-bar"):
            yield Input(placeholder="/ filter by event name", id="live-filter", compact=True)
            yield Static("", id="live-state")
        yield DataTable(id="live-table", cursor_type="row", zebra_stripes=True)
        yield Notice("", id="live-notice")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#live-table", DataTable).add_columns("Time", "Event", "Customer", "Source", "Channel")
        self.query_one("#live-notice", Notice).display = False
        self.set_interval(self.operator.poll_seconds, self._poll)
        self._draw_state()

    def reload(self) -> None:
        self.fetch(
            "live events",
            lambda: self.source.live(limit=READ),
            self.add_events,
            target=self.query_one("#live-table") if not self._events else None,
            unavailable=self.show_unavailable,
        )

    def _poll(self) -> None:
        if self.paused or not self.is_current or self.loading_group("live events"):
            return
        self.reload()

    def show_unavailable(self, reason: str) -> None:
        notice = self.query_one("#live-notice", Notice)
        notice.update(f"The live tail is not available yet (it needs {reason}).")
        notice.display = True
        self.query_one("#live-table").display = False

    def add_events(self, events: list[LiveEvent]) -> None:
        self.query_one("#live-notice", Notice).display = False
        self.query_one("#live-table").display = True
        fresh = [e for e in sorted(events, key=lambda e: (e.at, e.message_id)) if e.message_id not in self._seen_set]
        for event in fresh:
            if len(self._seen) == self._seen.maxlen:
                self._seen_set.discard(self._seen[0])
            self._seen.append(event.message_id)
            self._seen_set.add(event.message_id)
            self._events.appendleft(event)
        if fresh:
            self._draw()

    def _draw(self) -> None:
        wanted = self.query_one("#live-filter", Input).value.strip().lower()
        table = self.query_one("#live-table", DataTable)
        table.clear()
        for event in self._events:
            if wanted and wanted not in event.event.lower():
                continue
            table.add_row(
                clock_time(event.at),
                Text(event.event, "bold"),
                clip(event.customer, 36),
                event.source,
                event.channel or DASH,
                key=event.message_id,
            )
        self._draw_state()

    def _draw_state(self) -> None:
        state = (
            Text("❚❚ paused", "bold yellow")
            if self.paused
            else Text(f"● live · every {self.operator.poll_seconds:g}s", "bold green")
        )
        state.append(f"  {len(self._events)} events", "dim")
        self.query_one("#live-state", Static).update(state)

    def action_toggle_pause(self) -> None:
        self.paused = not self.paused
        self._draw_state()
        if not self.paused:
            self._poll()

    def action_filter(self) -> None:
        self.query_one("#live-filter", Input).focus()

    def action_clear_filter(self) -> None:
        self.query_one("#live-filter", Input).value = ""
        self.query_one("#live-table", DataTable).focus()

    @on(Input.Changed, "#live-filter")
    def _filter(self) -> None:
        self._draw()

    @on(Input.Submitted, "#live-filter")
    def _done_filtering(self) -> None:
        self.query_one("#live-table", DataTable).focus()
