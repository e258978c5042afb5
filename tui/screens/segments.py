"""Segments: sizes and 7-day trends; a segment's rule, members (paged) and recent entries and exits."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.syntax import Syntax
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import DataTable, Footer, Static

from tui.data import CustomerRow, IteratorPager, SegmentRow, SegmentView
from tui.formatting import DASH, clip, compact_json, count, delta, relative, short_time, spark
from tui.screens.base import DataScreen
from tui.widgets.nav import NavBar

MEMBERS_PAGE = 50


class SegmentsScreen(DataScreen):
    """Every segment with its size now and over the last 7 days; Enter opens one."""

    AUTO_FOCUS = "#segment-table"

    def __init__(self) -> None:
        super().__init__()
        self._rows: dict[str, SegmentRow] = {}

    def compose(self) -> ComposeResult:
        yield NavBar(id="nav")
        yield DataTable(id="segment-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="segment-description", classes="status")
        yield Footer()

    def on_mount(self) -> None:
        self.segment_table.add_columns("Segment", "Name", "Members", "7 days", "Change", "Rule", "Applied")

    @property
    def segment_table(self) -> DataTable[Any]:
        return self.query_one("#segment-table", DataTable)

    def reload(self) -> None:
        self.fetch(
            "segments", lambda: self.source.segments(now=self.now()), self.show_segments, target=self.segment_table
        )

    def show_segments(self, rows: list[SegmentRow]) -> None:
        self._rows = {row.segment_id: row for row in rows}
        table = self.segment_table
        table.clear()
        now = self.now()
        for row in rows:
            table.add_row(
                row.segment_id,
                clip(row.name, 24),
                Text(count(row.size), justify="right"),
                Text(spark(row.trend), "cyan") if row.trend else DASH,
                Text(delta(list(row.trend)), justify="right"),
                f"v{row.version}",
                relative(row.applied_at, now),
                key=row.segment_id,
            )
        if not rows:
            self.query_one("#segment-description", Static).update("No segments yet: `footfall segments apply FILE`")

    @on(DataTable.RowHighlighted, "#segment-table")
    def _describe(self, event: DataTable.RowHighlighted) -> None:
        row = self._rows.get(str(event.row_key.value))
        if row is not None:
            self.query_one("#segment-description", Static).update(
                Text.assemble((row.segment_id, "bold"), "  ", row.description or row.name, ("  · Enter opens", "dim"))
            )

    @on(DataTable.RowSelected, "#segment-table")
    def _open(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value:
            self.operator.open_segment(event.row_key.value)


class SegmentScreen(DataScreen):
    """One segment: its rule, who is in it (a page at a time) and who entered or left lately."""

    AUTO_FOCUS = "#segment-members"

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="segment.back"),
        Binding("n,right_square_bracket", "next_page", "Next members", id="segment.next"),
        Binding("p,left_square_bracket", "previous_page", "Prev members", id="segment.previous"),
    ]

    def __init__(self, segment_id: str) -> None:
        super().__init__()
        self.segment_id = segment_id
        self._pager: IteratorPager | None = None
        self._page = 0
        self._more = False

    def compose(self) -> ComposeResult:
        yield NavBar(id="nav")
        with Horizontal(id="segment-body"):
            with Vertical(id="segment-left"):
                with VerticalScroll(id="segment-rule-box", classes="panel") as rule:
                    rule.border_title = f"Segment {self.segment_id}"
                    yield Static("", id="segment-rule")
                with Vertical(classes="panel") as history:
                    history.border_title = "Recently entered / exited"
                    yield DataTable(id="segment-history", cursor_type="row", zebra_stripes=True)
            with Vertical(id="segment-right", classes="panel") as members:
                members.border_title = "Members"
                yield DataTable(id="segment-members", cursor_type="row", zebra_stripes=True)
                yield Static("", id="segment-members-status", classes="status")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#segment-history", DataTable).add_columns("When", "", "Customer")
        self.query_one("#segment-members", DataTable).add_columns("Customer", "User id", "E-mail", "Last seen")

    def reload(self) -> None:
        self.fetch(
            "segment",
            lambda: self.source.segment(self.segment_id, now=self.now()),
            self.show_segment,
            target=self.query_one("#segment-left"),
        )
        self._pager = IteratorPager(self.source.segment_members(self.segment_id), MEMBERS_PAGE)
        self._page = 0
        self._load_members()

    def _load_members(self) -> None:
        pager, index = self._pager, self._page
        assert pager is not None

        def read() -> tuple[list[CustomerRow], bool]:
            ids, more = pager.page(index)
            return self.source.customer_rows(ids), more

        self.fetch("members", read, self.show_members, target=self.query_one("#segment-members"))

    def show_segment(self, view: SegmentView) -> None:
        width = max(self.query_one("#segment-rule").size.width, 30)
        definition = dict(view.definition)
        rule = definition.pop("rule", definition)
        title = Text.assemble(
            (view.row.name, "bold"),
            f"  v{view.row.version}",
            ("  applied ", "dim"),
            short_time(view.row.applied_at),
            ("  members ", "dim"),
            (count(view.row.size), "bold"),
            "\n",
            (view.row.description or "", "italic"),
            "\n",
        )
        self.query_one("#segment-rule", Static).update(
            Group(title, Syntax(compact_json(rule, width), "json", theme="ansi_dark", background_color="default"))
        )
        table = self.query_one("#segment-history", DataTable)
        table.clear()
        now = self.now()
        for number, entry in enumerate(view.history):
            change = Text("entered", "green") if entry.entered else Text("exited", "red")
            table.add_row(relative(entry.at, now), change, entry.customer_id, key=f"{number}#{entry.customer_id}")
        if not view.history:
            table.add_row("", Text("nobody yet", "dim"), "")

    def show_members(self, page: tuple[list[CustomerRow], bool]) -> None:
        rows, self._more = page
        table = self.query_one("#segment-members", DataTable)
        table.clear()
        now = self.now()
        for row in rows:
            table.add_row(
                clip(row.customer_id, 28),
                row.user_id or DASH,
                row.email or DASH,
                relative(row.last_seen, now),
                key=row.customer_id,
            )
        start = self._page * MEMBERS_PAGE
        shown = f"{start + 1}-{start + len(rows)}" if rows else "none"
        hints = " · ".join(h for h, ok in (("n next", self._more), ("p previous", self._page > 0)) if ok)
        self.query_one("#segment-members-status", Static).update(
            f"members {shown} · page {self._page + 1}{' · ' + hints if hints else ''} · Enter opens"
        )

    def action_next_page(self) -> None:
        if self._more and not self.loading_group("members"):
            self._page += 1
            self._load_members()

    def action_previous_page(self) -> None:
        if self._page and not self.loading_group("members"):
            self._page -= 1
            self._load_members()

    @on(DataTable.RowSelected, "#segment-members")
    def _open_member(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value:
            self.operator.open_customer(event.row_key.value)

    @on(DataTable.RowSelected, "#segment-history")
    def _open_changed(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value:
            self.operator.open_customer(event.row_key.value.split("#", 1)[1])
