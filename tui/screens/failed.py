"""Failed events: refused input and quarantined stream records, their raw payload and reason, and replay."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Group
from rich.syntax import Syntax
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Footer, Static

from shared.domain.events import format_timestamp
from shared.domain.failures import FailedEvent
from shared.ports import Page
from tui.formatting import DASH, clip, relative, short_time
from tui.screens.base import DataScreen
from tui.widgets.confirm import ConfirmScreen
from tui.widgets.nav import NavBar

PAGE_SIZE = 50


class ReplayMixin(DataScreen):
    """Replay a failed event, after a confirmation (the TUI's only write)."""

    def confirm_replay(self, failure_id: str) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                self.fetch("replay", lambda: self.source.replay(failure_id), self.replayed)

        self.app.push_screen(
            ConfirmScreen(
                "Replay this failed event?",
                f"{failure_id}\n\nIt is processed again as it was received; on success it leaves the failed "
                "events. This writes to the table.",
                confirm="Replay",
            ),
            answered,
        )

    def replayed(self, summary: str) -> None:
        self.notify(summary, title="Replayed", severity="information")


class FailedScreen(ReplayMixin):
    """Failed events, newest first, a page at a time; Enter inspects one, R replays it."""

    AUTO_FOCUS = "#failed-table"

    BINDINGS = [
        Binding("n,right_square_bracket", "next_page", "Next page", id="failed.next"),
        Binding("p,left_square_bracket", "previous_page", "Prev page", id="failed.previous"),
        Binding("R", "replay", "Replay…", tooltip="Process it again (asks first)", id="failed.replay"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._tokens: list[str | None] = [None]
        self._page = 0

    def compose(self) -> ComposeResult:
        yield NavBar(id="nav")
        yield DataTable(id="failed-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="failed-status", classes="status")
        yield Footer()

    def on_mount(self) -> None:
        self.failed_table.add_columns("Received", "Status", "Route", "Source", "Reason")

    @property
    def failed_table(self) -> DataTable[Any]:
        return self.query_one("#failed-table", DataTable)

    def reload(self) -> None:
        token = self._tokens[self._page]
        self.fetch(
            "failed events",
            lambda: self.source.failed(limit=PAGE_SIZE, next_token=token, now=self.now()),
            self.show_page,
            target=self.failed_table,
        )

    def show_page(self, page: Page[FailedEvent]) -> None:
        del self._tokens[self._page + 1 :]
        if page.next_token:
            self._tokens.append(page.next_token)
        table = self.failed_table
        table.clear()
        now = self.now()
        for failure in page.items:
            table.add_row(
                relative(format_timestamp(failure.received_at), now),
                Text(str(failure.status), "red" if failure.status >= 500 else "yellow"),
                failure.route,
                failure.source_id or DASH,
                clip(failure.reason, 80),
                key=failure.id,
            )
        more = " · n next" if self._page + 1 < len(self._tokens) else ""
        back = " · p previous" if self._page else ""
        empty = "no failed events: nothing was refused" if not page.items and not self._page else ""
        self.query_one("#failed-status", Static).update(
            empty or f"page {self._page + 1} · {len(page.items)} failed events{more}{back} · Enter inspects · R replays"
        )

    def action_next_page(self) -> None:
        if self._page + 1 < len(self._tokens) and not self.loading_group("failed events"):
            self._page += 1
            self.reload()

    def action_previous_page(self) -> None:
        if self._page and not self.loading_group("failed events"):
            self._page -= 1
            self.reload()

    def action_replay(self) -> None:
        table = self.failed_table
        if table.row_count:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
            if key:
                self.confirm_replay(key)

    def replayed(self, summary: str) -> None:
        super().replayed(summary)
        self.reload()

    @on(DataTable.RowSelected, "#failed-table")
    def _inspect(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value:
            self.app.push_screen(FailedEventScreen(event.row_key.value))


class FailedEventScreen(ReplayMixin):
    """One failed event: why it was refused, and its raw input (pretty-printed when it is JSON)."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="failed-event.back"),
        Binding("R", "replay", "Replay…", tooltip="Process it again (asks first)", id="failed-event.replay"),
    ]

    def __init__(self, failure_id: str) -> None:
        super().__init__()
        self.failure_id = failure_id

    def compose(self) -> ComposeResult:
        yield NavBar(id="nav")
        with VerticalScroll(id="failed-event-box", classes="panel") as box:
            box.border_title = f"Failed event {self.failure_id}"
            yield Static("", id="failed-event")
        yield Footer()

    def reload(self) -> None:
        self.fetch(
            "failed event",
            lambda: self.source.failed_event(self.failure_id),
            self.show_failure,
            target=self.query_one("#failed-event-box"),
        )

    def show_failure(self, failure: FailedEvent) -> None:
        facts = Text()
        for name, value in (
            ("reason", failure.reason),
            ("status", str(failure.status)),
            ("route", failure.route),
            ("received", short_time(format_timestamp(failure.received_at))),
            ("source", failure.source_id or DASH),
            ("message id", failure.message_id or DASH),
            (
                "raw input",
                f"{len(failure.raw):,} bytes" + (" (cut: the input was larger)" if failure.truncated else ""),
            ),
        ):
            facts.append(f"{name:>11}  ", "dim")
            facts.append(value + "\n", "bold red" if name == "reason" else "")
        self.query_one("#failed-event", Static).update(Group(facts, _raw(failure.raw)))

    def action_replay(self) -> None:
        self.confirm_replay(self.failure_id)

    def replayed(self, summary: str) -> None:
        super().replayed(summary)
        self.app.pop_screen()
        below = self.app.screen
        if isinstance(below, FailedScreen):
            below.reload()


def _raw(raw: bytes) -> Syntax | Text:
    text = raw.decode("utf-8", "replace")
    try:
        parsed = json.loads(text)
    except ValueError:
        return Text(text)
    return Syntax(
        json.dumps(parsed, indent=2, ensure_ascii=False),
        "json",
        theme="ansi_dark",
        word_wrap=True,
        background_color="default",
    )
