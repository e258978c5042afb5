"""Retention: cohorts by first-seen day or week, the share that came back at each offset, as a heatmap."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Static

from shared.domain.reports import RetentionReport
from tui.formatting import DASH, count, heat
from tui.screens.base import DataScreen
from tui.widgets.nav import NavBar
from tui.widgets.notice import Notice


class RetentionScreen(DataScreen):
    """One row per cohort; `b` switches day/week cohorts, `c` cumulative (on or after) vs. on the offset."""

    AUTO_FOCUS = "#retention-table"

    BINDINGS = [
        Binding("b", "toggle_by", "Day/week", tooltip="Cohorts by first-seen day or week", id="retention.by"),
        Binding("c", "toggle_cumulative", "Cumulative", tooltip="Came back on, or on or after", id="retention.cumul"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.by = "day"
        self.cumulative = False

    def compose(self) -> ComposeResult:
        yield NavBar(id="nav")
        yield Static("", id="retention-mode", classes="status")
        yield DataTable(id="retention-table", cursor_type="row")
        yield Notice("", id="retention-notice")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#retention-notice", Notice).display = False

    def reload(self) -> None:
        self._draw_mode()
        by, cumulative, today = self.by, self.cumulative, self.now().date()
        self.fetch(
            "retention",
            lambda: self.source.retention(by=by, cumulative=cumulative, today=today),
            self.show_report,
            target=self.query_one("#retention-table"),
            unavailable=self.show_unavailable,
        )

    def _draw_mode(self) -> None:
        by = (
            "[b]by day[/] · [@click=screen.toggle_by]by week[/]"
            if self.by == "day"
            else "[@click=screen.toggle_by]by day[/] · [b]by week[/]"
        )
        offset = "on the day" if self.by == "day" else "in the week"
        cumulative = (
            "[b]on or after[/] · [@click=screen.toggle_cumulative]only on[/]"
            if self.cumulative
            else f"[@click=screen.toggle_cumulative]on or after[/] · [b]{offset}[/]"
        )
        self.query_one("#retention-mode", Static).update(f"cohorts {by}   came back {cumulative}   [dim]any event[/]")

    def show_unavailable(self, reason: str) -> None:
        notice = self.query_one("#retention-notice", Notice)
        notice.update(f"Retention is not available yet (it needs {reason}).")
        notice.display = True
        self.query_one("#retention-table").display = False

    def show_report(self, report: RetentionReport) -> None:
        self.query_one("#retention-notice", Notice).display = False
        self.query_one("#retention-table").display = True
        table = self.query_one("#retention-table", DataTable)
        table.clear(columns=True)
        offsets = max((len(row.percentages) for row in report.rows), default=0)
        unit = "d" if report.by == "day" else "w"
        table.add_column("Cohort")
        table.add_column("Size")
        for offset in range(offsets):
            table.add_column(f"{unit}{offset}")
        for row in report.rows:
            cells = [
                Text(f"{share * 100:4.0f}%" if share is not None else f"{DASH:>5}", style=heat(share))
                for share in row.percentages
            ]
            table.add_row(row.cohort.isoformat(), Text(count(row.size), justify="right"), *cells)
        if not report.rows:
            notice = self.query_one("#retention-notice", Notice)
            notice.update("No cohorts yet.")
            notice.display = True

    def action_toggle_by(self) -> None:
        self.by = "week" if self.by == "day" else "day"
        self.reload()

    def action_toggle_cumulative(self) -> None:
        self.cumulative = not self.cumulative
        self.reload()
