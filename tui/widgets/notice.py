"""A placeholder for a part of a screen that has nothing to show (yet), and why."""

from __future__ import annotations

from textual.widgets import Static


class Notice(Static):
    """Centred, dim text standing in for a chart or table: "not available yet", "no data", …"""

    DEFAULT_CSS = """
    Notice {
        width: 1fr;
        height: auto;
        padding: 1 2;
        color: $text-muted;
        text-align: center;
        text-style: italic;
    }
    """
