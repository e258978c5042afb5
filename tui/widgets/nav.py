"""The top bar: the screens by number (clickable), the current one highlighted, and where the data is."""

from __future__ import annotations

from textual.content import Content
from textual.reactive import reactive
from textual.widget import Widget

SECTIONS: tuple[tuple[str, str, str], ...] = (
    ("1", "overview", "Overview"),
    ("2", "customers", "Customers"),
    ("3", "segments", "Segments"),
    ("4", "funnels", "Funnels"),
    ("5", "retention", "Retention"),
    ("6", "live", "Live"),
    ("7", "failed", "Failed"),
)
"""(key, mode, title) of every top-level screen, in order."""


class NavBar(Widget):
    """One line: `Footfall  1 Overview  2 Customers …   <where>`; a click on a section switches to it."""

    DEFAULT_CSS = """
    NavBar {
        height: 1;
        width: 1fr;
        background: $panel;
        color: $text-muted;
    }
    """

    active: reactive[str] = reactive("overview")
    """The mode shown as current."""
    label: reactive[str] = reactive("")
    """Where the data comes from (shown when there is room)."""

    def render(self) -> Content:
        parts = []
        for key, mode, title in SECTIONS:
            style = "b reverse $text-accent" if mode == self.active else "$text"
            parts.append(f"[@click=app.switch_mode('{mode}')][{style}] [b]{key}[/b] {title} [/][/]")
        tabs = Content.from_markup("".join(parts))
        brand = Content.from_markup("[b $text-accent] Footfall [/]")
        width = self.size.width
        if width >= brand.cell_length + tabs.cell_length:
            tabs = brand + tabs
        room = width - tabs.cell_length - 2
        if self.label and room >= 8:
            label = self.label if len(self.label) <= room else self.label[: room - 1] + "…"
            return tabs + Content(" " * (room - len(label) + 1)) + Content.styled(label, "$text-muted")
        return tabs
