"""The top bar: the screens by number (clickable), the current one highlighted, and where the data is."""

from __future__ import annotations

from typing import Protocol

from textual.content import Content
from textual.reactive import reactive
from textual.widget import Widget


class Tab(Protocol):
    """What the bar shows of a section (`tui.sections.Section` is one)."""

    @property
    def key(self) -> str: ...
    @property
    def mode(self) -> str: ...
    @property
    def title(self) -> str: ...


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

    sections: reactive[tuple[Tab, ...]] = reactive(())
    """The sections, in order (the screen hands over the app's)."""
    active: reactive[str] = reactive("")
    """The mode shown as current."""
    label: reactive[str] = reactive("")
    """Where the data comes from (shown when there is room)."""

    def render(self) -> Content:
        parts = []
        for tab in self.sections:
            style = "b reverse $text-accent" if tab.mode == self.active else "$text"
            parts.append(f"[@click=app.switch_mode('{tab.mode}')][{style}] [b]{tab.key}[/b] {tab.title} [/][/]")
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
