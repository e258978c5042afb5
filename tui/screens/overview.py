"""Overview: events per minute, today's totals and top events, segment sizes with their trend, lag, failures."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Footer, Sparkline, Static

from shared.domain.reports import Overview
from tui.formatting import bar, count, delta, duration, lag_level, spark
from tui.screens.base import DataScreen
from tui.widgets.nav import NavBar
from tui.widgets.notice import Notice

_LAG_STYLE = {"ok": "green", "warn": "yellow", "bad": "bold red", "none": "dim"}


class OverviewScreen(DataScreen):
    """The first screen: is data coming in, is processing keeping up, what is happening today."""

    AUTO_FOCUS = "#overview-segments"

    def compose(self) -> ComposeResult:
        yield NavBar(id="nav")
        with Horizontal(id="overview-top"):
            with Vertical(id="overview-rate", classes="panel") as rate:
                rate.border_title = "Events per minute · last 60 min"
                yield Sparkline([], id="overview-sparkline")
                yield Static("", id="overview-rate-text")
            with Vertical(id="overview-totals", classes="panel") as totals:
                totals.border_title = "Today"
                yield Static("", id="overview-totals-text")
        with Horizontal(id="overview-bottom"):
            with Vertical(classes="panel") as top:
                top.border_title = "Top events today"
                yield DataTable(id="overview-events", cursor_type="row", zebra_stripes=True)
            with Vertical(classes="panel") as segments:
                segments.border_title = "Segments · 7-day trend"
                yield DataTable(id="overview-segments", cursor_type="row", zebra_stripes=True)
        yield Notice("", id="overview-notice")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#overview-events", DataTable).add_columns("Event", "Count", "Share")
        self.query_one("#overview-segments", DataTable).add_columns("Segment", "Members", "7 days", "Change")
        self.query_one("#overview-notice", Notice).display = False
        self.set_interval(self.operator.refresh_seconds, self._auto_reload)

    def _auto_reload(self) -> None:
        if self.is_current and not self.loading_group("overview"):
            self.fetch("overview", lambda: self.source.overview(now=self.now()), self.show_overview)

    def reload(self) -> None:
        self.fetch(
            "overview",
            lambda: self.source.overview(now=self.now()),
            self.show_overview,
            target=self.query_one("#overview-top"),
            unavailable=self.show_unavailable,
        )

    def show_unavailable(self, reason: str) -> None:
        notice = self.query_one("#overview-notice", Notice)
        notice.update(f"The overview figures are not available yet (they need {reason}).")
        notice.display = True
        self.query_one("#overview-top").display = self.query_one("#overview-bottom").display = False

    def show_overview(self, overview: Overview) -> None:
        self.query_one("#overview-notice", Notice).display = False
        self.query_one("#overview-top").display = self.query_one("#overview-bottom").display = True
        per_minute = list(overview.events_per_minute)
        self.query_one("#overview-sparkline", Sparkline).data = per_minute or [0]
        latest = per_minute[-1] if per_minute else 0
        peak = max(per_minute, default=0)
        total = sum(per_minute)
        self.query_one("#overview-rate-text", Static).update(
            Text.assemble(
                ("now ", "dim"),
                (f"{latest:,}/min", "bold"),
                ("  peak ", "dim"),
                f"{peak:,}/min",
                ("  last hour ", "dim"),
                f"{total:,}",
            )
        )
        level = lag_level(overview.lag_seconds)
        lag = "nothing processed yet" if overview.lag_seconds is None else duration(overview.lag_seconds)
        failed_style = "bold red" if overview.failed_today else "green"
        self.query_one("#overview-totals-text", Static).update(
            Text.assemble(
                ("events   ", "dim"),
                (f"{overview.events_today:>10,}", "bold"),
                "\n",
                ("failed   ", "dim"),
                (f"{overview.failed_today:>10,}", failed_style),
                "\n",
                ("lag      ", "dim"),
                (f"{lag:>10}", _LAG_STYLE[level]),
            )
        )
        events = self.query_one("#overview-events", DataTable)
        events.clear()
        top = max((n for _, n in overview.top_events), default=0)
        for name, n in overview.top_events:
            events.add_row(name, Text(count(n), justify="right"), Text(bar(n / top if top else 0, 12), "cyan"))
        segments = self.query_one("#overview-segments", DataTable)
        segments.clear()
        for size in overview.segments:
            segments.add_row(
                size.segment_id,
                Text(count(size.size), justify="right"),
                Text(spark(size.trend), "cyan"),
                Text(delta(size.trend), justify="right"),
                key=size.segment_id,
            )

    @on(DataTable.RowSelected, "#overview-segments")
    def _segment_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value:
            self.operator.open_segment(event.row_key.value)
