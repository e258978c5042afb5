"""Customers: a searchable, paged list; the customer screen (traits, segments and why, identities, timeline)."""

from __future__ import annotations

import json
from typing import Any

from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.widgets import DataTable, Footer, Input, Static, TabbedContent, TabPane

from shared.domain.reports import TimingReport
from shared.ports import Page
from tui.data import CustomerRow, CustomerView
from tui.formatting import DASH, clip, count, hour_of_week, money, pairs, percent, relative, short_time
from tui.screens.base import DataScreen
from tui.widgets.nav import NavBar

PAGE_SIZE = 50
TIMELINE_PAGE = 25


def customer_cells(row: CustomerRow, now: Any) -> tuple[Any, ...]:
    """The cells of a customer in a list (the customer and segment-member tables share them)."""
    return (
        clip(row.customer_id, 30),
        row.user_id or DASH,
        row.email or DASH,
        Text(count(row.events), justify="right"),
        Text(count(row.orders), justify="right"),
        Text(money(row.revenue), justify="right"),
        relative(row.last_seen, now),
    )


CUSTOMER_COLUMNS = ("Customer", "User id", "E-mail", "Events", "Orders", "Revenue", "Last seen")


class CustomersScreen(DataScreen):
    """Every customer, a page at a time; type to filter the page, Enter to look anyone up by id or e-mail."""

    AUTO_FOCUS = "#customer-table"

    BINDINGS = [
        Binding("slash", "search", "Search", tooltip="Find a customer by id, user id or e-mail", id="customers.search"),
        Binding("n,right_square_bracket", "next_page", "Next page", id="customers.next"),
        Binding("p,left_square_bracket", "previous_page", "Prev page", id="customers.previous"),
        Binding("escape", "clear_search", "Clear", show=False, id="customers.clear"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._tokens: list[str | None] = [None]
        """Page index → the token that reads it."""
        self._page = 0
        self._rows: tuple[CustomerRow, ...] = ()

    def compose(self) -> ComposeResult:
        yield NavBar(id="nav")
        yield Input(
            placeholder="/ search: customer id, user id, anonymous id or e-mail (Enter looks up)",
            id="search",
            compact=True,
        )
        yield DataTable(id="customer-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="customer-status", classes="status")
        yield Footer()

    def on_mount(self) -> None:
        self.customer_table.add_columns(*CUSTOMER_COLUMNS)

    @property
    def customer_table(self) -> DataTable[Any]:
        return self.query_one("#customer-table", DataTable)

    @property
    def search(self) -> Input:
        return self.query_one("#search", Input)

    def reload(self) -> None:
        token = self._tokens[self._page]
        self.fetch(
            "customers",
            lambda: self.source.customers(limit=PAGE_SIZE, next_token=token),
            self.show_page,
            target=self.customer_table,
        )

    def show_page(self, page: Page[CustomerRow]) -> None:
        del self._tokens[self._page + 1 :]
        if page.next_token:
            self._tokens.append(page.next_token)
        self._rows = page.items
        self._draw()

    def _draw(self) -> None:
        wanted = self.search.value.strip().lower()
        rows = [r for r in self._rows if not wanted or any(wanted in (v or "").lower() for v in _searchable(r))]
        table = self.customer_table
        table.clear()
        now = self.now()
        for row in rows:
            table.add_row(*customer_cells(row, now), key=row.customer_id)
        more = "more: n" if self._page + 1 < len(self._tokens) else "last page"
        shown = f"{len(rows)} of {len(self._rows)} on this page match" if wanted else f"{len(rows)} customers"
        back = " · previous: p" if self._page else ""
        self.query_one("#customer-status", Static).update(
            f"page {self._page + 1} · {shown} · {more}{back} · Enter opens · / searches"
        )

    def action_next_page(self) -> None:
        if self._page + 1 < len(self._tokens) and not self.loading_group("customers"):
            self._page += 1
            self.reload()

    def action_previous_page(self) -> None:
        if self._page > 0 and not self.loading_group("customers"):
            self._page -= 1
            self.reload()

    def action_search(self) -> None:
        self.search.focus()

    def action_clear_search(self) -> None:
        self.search.value = ""
        self.customer_table.focus()

    @on(Input.Changed, "#search")
    def _filter(self) -> None:
        self._draw()

    @on(Input.Submitted, "#search")
    def _look_up(self, event: Input.Submitted) -> None:
        reference = event.value.strip()
        if not reference:
            return
        self.fetch("lookup", lambda: self.source.find_customer(reference), lambda found: self._found(reference, found))

    def _found(self, reference: str, customer_id: str | None) -> None:
        if customer_id is None:
            # Not an id: an e-mail (or part of one) that matches exactly one customer of this page will do.
            wanted = reference.lower()
            matches = {
                row.customer_id for row in self._rows if any(wanted in (v or "").lower() for v in _searchable(row))
            }
            if len(matches) != 1:
                self.notify(f"No customer {reference!r}", severity="warning")
                return
            customer_id = matches.pop()
        self.customer_table.focus()  # back from the customer, keys act on the list again
        self.operator.open_customer(customer_id)

    @on(DataTable.RowSelected, "#customer-table")
    def _open(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value:
            self.operator.open_customer(event.row_key.value)


def _searchable(row: CustomerRow) -> tuple[str | None, ...]:
    return (row.customer_id, row.user_id, row.email)


class CustomerScreen(DataScreen):
    """One customer: who they are, their segments and why, their traits, identities and events."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="customer.back"),
        Binding("s", "tab('customer-segments-tab')", "Segments", id="customer.segments"),
        Binding("t", "tab('customer-traits-tab')", "Traits", id="customer.traits"),
        Binding("i", "tab('customer-identities-tab')", "Identities", id="customer.identities"),
        Binding("e", "tab('customer-timeline-tab')", "Events", id="customer.events"),
        Binding("n,right_square_bracket", "next_page", "Next", show=False, id="customer.next"),
        Binding("p,left_square_bracket", "previous_page", "Prev", show=False, id="customer.previous"),
    ]

    def __init__(self, customer_id: str) -> None:
        super().__init__()
        self.customer_id = customer_id
        self._view: CustomerView | None = None
        self._timeline_page = 0

    def compose(self) -> ComposeResult:
        yield NavBar(id="nav")
        with Vertical(id="customer-head", classes="panel") as head:
            head.border_title = f"Customer {self.customer_id}"
            yield Static("", id="customer-summary")
            yield Static("best time and channel: …", id="customer-timing")
        with TabbedContent(id="customer-tabs", initial="customer-segments-tab"):
            with TabPane("Segments", id="customer-segments-tab"), VerticalScroll():
                yield Static("", id="customer-segments")
            with TabPane("Traits", id="customer-traits-tab"):
                yield DataTable(id="customer-traits", cursor_type="row", zebra_stripes=True)
            with TabPane("Identities", id="customer-identities-tab"):
                yield DataTable(id="customer-identities", cursor_type="row")
            with TabPane("Timeline", id="customer-timeline-tab"), Vertical():
                yield DataTable(id="customer-timeline", cursor_type="row", zebra_stripes=True)
                yield Static("", id="customer-timeline-status", classes="status")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#customer-traits", DataTable).add_columns("Trait", "Value")
        self.query_one("#customer-identities", DataTable).add_columns("Identity", "Kind")
        self.query_one("#customer-timeline", DataTable).add_columns("Time", "Type", "Event", "Source", "Properties")

    def reload(self) -> None:
        self.fetch(
            "customer",
            lambda: self.source.customer(self.customer_id, now=self.now()),
            self.show_customer,
            target=self.query_one("#customer-tabs"),
        )
        self.fetch(
            "best time",
            lambda: self.source.timing(self.customer_id),
            self.show_timing,
            unavailable=lambda reason: self.query_one("#customer-timing", Static).update(
                Text(f"best time and channel: not available yet (needs {reason})", "dim italic")
            ),
        )

    def action_tab(self, tab: str) -> None:
        self.query_one("#customer-tabs", TabbedContent).active = tab

    def show_customer(self, view: CustomerView) -> None:
        self._view = view
        row, computed = view.row, view.computed
        rolling = computed.get("rolling", {}).get("30d", {})
        self.query_one("#customer-summary", Static).update(
            Text.assemble(
                ("user ", "dim"),
                (row.user_id or DASH, "bold"),
                ("  e-mail ", "dim"),
                row.email or DASH,
                "\n",
                ("seen ", "dim"),
                f"{short_time(view.first_seen)} → {short_time(row.last_seen)}",
                (f" ({relative(row.last_seen, self.now())})", "dim"),
                "\n",
                ("orders ", "dim"),
                (count(row.orders), "bold"),
                ("  revenue ", "dim"),
                (money(row.revenue), "bold"),
                ("  aov ", "dim"),
                money(computed.get("average_order_value")),
                ("  events ", "dim"),
                count(row.events),
                ("  30 days ", "dim"),
                pairs(rolling),
            )
        )
        self._draw_segments(view)
        traits = self.query_one("#customer-traits", DataTable)
        traits.clear()
        for name, value in sorted(view.traits.items()):
            traits.add_row(name, _compact(value))
        for name in ("average_order_value", "last_order_at", "open_cart", "first_touch", "last_touch"):
            traits.add_row(Text(name, "italic cyan"), _compact(computed.get(name)))
        for window, figures in sorted(computed.get("rolling", {}).items()):
            traits.add_row(Text(f"rolling {window}", "italic cyan"), pairs(figures))
        for name, n in sorted(computed.get("event_counts", {}).items()):
            traits.add_row(Text(f"count {name}", "italic cyan"), count(n))
        identities = self.query_one("#customer-identities", DataTable)
        identities.clear()
        for identity in view.identities:
            kind = {"u": "user id", "a": "anonymous id"}.get(identity.split(":", 1)[0], "")
            identities.add_row(identity, kind)
        self._draw_timeline()

    def _draw_segments(self, view: CustomerView) -> None:
        # Two columns, so that long reasons wrap under themselves, not under the marks.
        grid = Table.grid(padding=(0, 1))
        grid.add_column(width=5, no_wrap=True)
        grid.add_column(ratio=1)
        if not view.segments:
            grid.add_row("", Text("No segments are defined.", "dim italic"))
        now = self.now()
        for why in view.segments:
            head = Text.assemble((why.segment_id, "bold" if why.member else ""), (f"  {why.name}", "dim"))
            if why.member != why.rule_says:
                head.append("  (changing now)", "yellow")
            grid.add_row(Text("● in", "bold green") if why.member else Text("○ out", "dim"), head)
            for reason in why.reasons:
                grid.add_row("", Text(reason, "" if why.member else "dim"))
            if why.next_change:
                when = f"next change {short_time(why.next_change)} ({relative(why.next_change, now)})"
                grid.add_row("", Text(f"{when} unless a new event decides it", "yellow"))
        self.query_one("#customer-segments", Static).update(grid)

    def _draw_timeline(self) -> None:
        if self._view is None:
            return
        events = self._view.events
        pages = max(1, -(-len(events) // TIMELINE_PAGE))
        self._timeline_page = min(self._timeline_page, pages - 1)
        start = self._timeline_page * TIMELINE_PAGE
        table = self.query_one("#customer-timeline", DataTable)
        table.clear()
        for event in events[start : start + TIMELINE_PAGE]:
            table.add_row(
                short_time(event.at), event.type, event.event or event.type, event.source, _compact(event.properties)
            )
        shown = (
            f"events {start + 1}-{min(start + TIMELINE_PAGE, len(events))} of {len(events)}" if events else "no events"
        )
        self.query_one("#customer-timeline-status", Static).update(
            f"{shown} · newest first · page {self._timeline_page + 1}/{pages} · n next · p previous"
        )

    def action_next_page(self) -> None:
        self.action_tab("customer-timeline-tab")
        if self._view and (self._timeline_page + 1) * TIMELINE_PAGE < len(self._view.events):
            self._timeline_page += 1
            self._draw_timeline()

    def action_previous_page(self) -> None:
        self.action_tab("customer-timeline-tab")
        if self._timeline_page:
            self._timeline_page -= 1
            self._draw_timeline()

    def show_timing(self, report: TimingReport) -> None:
        best = report.recommendation
        widget = self.query_one("#customer-timing", Static)
        if best is None:
            widget.update(Text("best time and channel: not enough engagement yet", "dim"))
            return
        widget.update(
            Text.assemble(
                ("best time ", "dim"),
                (hour_of_week(best.hour_of_week), "bold green"),
                ("  channel ", "dim"),
                (best.channel, "bold green"),
                ("  confidence ", "dim"),
                percent(best.confidence, digits=0),
                (f" ({best.events} own events, the rest from everyone's)", "dim"),
            )
        )


def _compact(value: Any) -> str:
    if value is None:
        return DASH
    if isinstance(value, str):
        return value
    return clip(json.dumps(value, default=str, separators=(", ", ": ")), 200)
