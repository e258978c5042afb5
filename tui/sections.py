"""The top-level screens, in order: the one list the app's modes and keys, the nav bar, the help screen, the
command palette and the tests are built from.

To add a top-level screen: write it in `tui/screens/` (a `DataScreen` that yields a `NavBar`), then add its
`Section` here; nothing else lists the screens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.screen import Screen

from tui.screens.customers import CustomersScreen
from tui.screens.failed import FailedScreen
from tui.screens.funnels import FunnelsScreen
from tui.screens.live import LiveScreen
from tui.screens.overview import OverviewScreen
from tui.screens.retention import RetentionScreen
from tui.screens.segments import SegmentsScreen


@dataclass(frozen=True, slots=True)
class Section:
    """A top-level screen of the app."""

    key: str
    """The key that switches to it (shown before its title on the nav bar)."""
    mode: str
    """The app mode that holds it (each mode keeps its own stack of detail screens)."""
    title: str
    screen: type[Screen[Any]]


SECTIONS: tuple[Section, ...] = (
    Section("1", "overview", "Overview", OverviewScreen),
    Section("2", "customers", "Customers", CustomersScreen),
    Section("3", "segments", "Segments", SegmentsScreen),
    Section("4", "funnels", "Funnels", FunnelsScreen),
    Section("5", "retention", "Retention", RetentionScreen),
    Section("6", "live", "Live", LiveScreen),
    Section("7", "failed", "Failed", FailedScreen),
)
"""Every top-level screen, in the order of the nav bar; the first one is shown at start."""


def section(mode: str) -> Section:
    """The section of a mode.

    Raises:
        KeyError: no section has this mode.
    """
    for candidate in SECTIONS:
        if candidate.mode == mode:
            return candidate
    raise KeyError(mode)
