"""A funnel as horizontal bars: customers per step, conversion, drop-off and time to convert."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from shared.domain.reports import FunnelReport
from tui.formatting import bar, clip, count, duration, percent

LABEL_WIDTH = 21
COUNT_WIDTH = 9


class FunnelChart(Widget):
    """Draws `report`: per step a bar scaled to the first step, then its conversion, drop-off and timing."""

    DEFAULT_CSS = """
    FunnelChart {
        height: auto;
        width: 1fr;
    }
    """

    report: reactive[FunnelReport | None] = reactive(None, layout=True)
    """The funnel figures to draw (None draws nothing)."""

    def render(self) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")
        for line in self._lines(self.size.width):
            text.append_text(line)
            text.append("\n")
        text.rstrip()
        return text

    def get_content_height(self, container: object, viewport: object, width: int) -> int:
        return len(self._lines(width))

    def _lines(self, width: int) -> list[Text]:
        report = self.report
        if report is None:
            return []
        first = report.steps[0].customers if report.steps else 0
        width = max(width, LABEL_WIDTH + COUNT_WIDTH + 6)
        bar_width = width - LABEL_WIDTH - COUNT_WIDTH - 1
        lines: list[Text] = []
        for number, step in enumerate(report.steps, start=1):
            share = step.customers / first if first else 0.0
            lines.append(
                Text.assemble(
                    (clip(f"{number} {step.label}", LABEL_WIDTH - 1).ljust(LABEL_WIDTH), "bold"),
                    (bar(share, bar_width), "bold bright_blue" if number == 1 else "bright_blue"),
                    (count(step.customers).rjust(COUNT_WIDTH), "bold"),
                )
            )
            details = [f"{percent(step.from_first)} of first"]
            if number > 1:
                lost = 1 - step.from_previous if step.from_previous is not None else None
                details += [
                    f"{percent(step.from_previous)} of previous",
                    f"{count(step.drop_off)} dropped ({percent(lost)})",
                    f"median {duration(step.median_seconds)}, p90 {duration(step.p90_seconds)}",
                ]
            lines += [Text(line, "dim") for line in _wrap(details, width)]
        return lines


def _wrap(parts: list[str], width: int) -> list[str]:
    """Join parts with ` · `, starting a new (indented) line where the next part would not fit."""
    lines = ["  " + parts[0]]
    for part in parts[1:]:
        if len(lines[-1]) + 3 + len(part) <= width:
            lines[-1] += " · " + part
        else:
            lines.append("  " + part)
    return lines
