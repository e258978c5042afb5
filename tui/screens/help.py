"""`?`: every key of the current screen and of the app, in a modal."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

ABOUT = (
    "Keyboard first; the mouse works too (click a section, a row, a tab). Reads never block the screen; "
    "only replay writes, and it asks first."
)


class HelpScreen(ModalScreen[None]):
    """Keys of the screen below (`keys`, as key → description) and the global ones."""

    DEFAULT_CSS = """
    HelpScreen {
        align: center middle;
        background: $background 60%;
    }
    HelpScreen > VerticalScroll {
        width: 72;
        max-width: 95%;
        height: auto;
        max-height: 90%;
        border: thick $accent;
        border-title-style: bold;
        background: $surface;
        padding: 0 1;
    }
    """
    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close", id="help.close")]

    def __init__(self, title: str, keys: list[tuple[str, str]], global_keys: list[tuple[str, str]]) -> None:
        super().__init__()
        self.help_title = title
        self.keys = keys
        self.global_keys = global_keys

    def compose(self) -> ComposeResult:
        with VerticalScroll() as box:
            box.border_title = f"Help · {self.help_title}"
            yield Static(self._table(), id="help-keys")

    def _table(self) -> Table:
        table = Table(box=None, show_header=False, expand=True, padding=(0, 1))
        table.add_column(style="bold cyan", no_wrap=True, width=16)
        table.add_column()
        table.add_row(Text("This screen", "bold underline"), "")
        for key, description in self.keys or [("", "no keys of its own")]:
            table.add_row(key, description)
        table.add_row("", "")
        table.add_row(Text("Everywhere", "bold underline"), "")
        for key, description in self.global_keys:
            table.add_row(key, description)
        table.add_row("", "")
        table.add_row("", Text(ABOUT, "dim"))
        return table

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)
