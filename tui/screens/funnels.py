"""Funnels: steps as bars with conversion and drop-off, time to convert, breakdown by channel, date ranges."""

from __future__ import annotations

from datetime import timedelta

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import DataTable, Footer, OptionList, Static
from textual.widgets.option_list import Option

from shared.domain.reports import FunnelReport
from tui.data import FunnelRef
from tui.formatting import clip, count, percent
from tui.screens.base import DataScreen
from tui.widgets.funnel import FunnelChart
from tui.widgets.nav import NavBar
from tui.widgets.notice import Notice

RANGES = (7, 14, 30)
"""Date ranges to switch between, in days (ending today)."""


class FunnelsScreen(DataScreen):
    """Pick a funnel on the left; its report for the chosen range on the right."""

    AUTO_FOCUS = "#funnel-list"

    BINDINGS = [
        Binding("d", "next_range", "Range", tooltip="Switch between 7, 14 and 30 days", id="funnels.range"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.days = RANGES[0]
        self.funnel_id: str | None = None

    def compose(self) -> ComposeResult:
        yield NavBar(id="nav")
        with Horizontal(id="funnels-body"):
            with Vertical(id="funnel-list-box", classes="panel") as box:
                box.border_title = "Funnels"
                yield OptionList(id="funnel-list")
            with VerticalScroll(id="funnel-report", classes="panel") as report:
                report.border_title = "Report"
                yield Static("", id="funnel-range")
                yield FunnelChart(id="funnel-chart")
                yield Static("", id="funnel-breakdown-title", classes="subtitle")
                yield DataTable(id="funnel-breakdown", cursor_type="row", zebra_stripes=True)
                yield Notice("", id="funnel-notice")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#funnel-notice", Notice).display = False

    def reload(self) -> None:
        self.fetch(
            "funnels",
            self.source.funnels,
            self.show_funnels,
            target=self.query_one("#funnel-list"),
            unavailable=self.show_unavailable,
        )

    def show_unavailable(self, reason: str) -> None:
        notice = self.query_one("#funnel-notice", Notice)
        notice.update(f"Funnel reports are not available yet (they need {reason}).")
        notice.display = True

    def show_funnels(self, funnels: list[FunnelRef]) -> None:
        options = self.query_one("#funnel-list", OptionList)
        options.clear_options()
        options.add_options([Option(clip(f.name, 30), id=f.id) for f in funnels])
        if not funnels:
            self.query_one("#funnel-notice", Notice).update("No funnels defined yet.")
            self.query_one("#funnel-notice", Notice).display = True
            return
        ids = [f.id for f in funnels]
        self.funnel_id = self.funnel_id if self.funnel_id in ids else ids[0]
        options.highlighted = ids.index(self.funnel_id)
        self._load_report()

    def _load_report(self) -> None:
        if self.funnel_id is None:
            return
        funnel_id, end = self.funnel_id, self.now().date()
        start = end - timedelta(days=self.days - 1)
        self._draw_range(start, end)
        self.fetch(
            "funnel report",
            lambda: self.source.funnel(funnel_id, start=start, end=end),
            self.show_report,
            target=self.query_one("#funnel-chart"),
            unavailable=self.show_unavailable,
        )

    def _draw_range(self, start: object, end: object) -> None:
        choices = " ".join(
            f"[@click=screen.set_range({days})]{'[b reverse]' if days == self.days else ''} {days}d "
            f"{'[/]' if days == self.days else ''}[/]"
            for days in RANGES
        )
        self.query_one("#funnel-range", Static).update(
            f"[b]{self.days} days[/] [dim]{start} → {end}[/]  {choices} [dim](d)[/]"
        )

    def show_report(self, report: FunnelReport) -> None:
        self.query_one("#funnel-notice", Notice).display = False
        self.query_one("#funnel-report").border_title = report.name
        self.query_one("#funnel-chart", FunnelChart).report = report
        overall = report.steps[-1].from_first if report.steps else None
        self.query_one("#funnel-breakdown-title", Static).update(
            Text.assemble(("Conversion ", "bold"), (percent(overall), "bold green"), "  ·  by channel:")
        )
        table = self.query_one("#funnel-breakdown", DataTable)
        table.clear(columns=True)
        table.add_column("Channel")
        for number in range(1, len(report.steps) + 1):
            table.add_column(f"Step {number}")
        table.add_column("Conv.")
        ranked = sorted(report.breakdown.items(), key=lambda item: -(item[1][0].customers if item[1] else 0))
        for channel, steps in ranked:
            conversion = steps[-1].from_first if steps else None
            table.add_row(
                channel,
                *(Text(count(step.customers), justify="right") for step in steps),
                Text(percent(conversion), justify="right"),
            )

    @on(OptionList.OptionSelected, "#funnel-list")
    @on(OptionList.OptionHighlighted, "#funnel-list")
    def _pick(self, event: OptionList.OptionSelected | OptionList.OptionHighlighted) -> None:
        if event.option.id and event.option.id != self.funnel_id:
            self.funnel_id = event.option.id
            self._load_report()

    def action_next_range(self) -> None:
        self.action_set_range(RANGES[(RANGES.index(self.days) + 1) % len(RANGES)])

    def action_set_range(self, days: int) -> None:
        self.days = days
        self._load_report()
