"""Messages between the TUI's workers, widgets and screens."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from textual.message import Message
from textual.widget import Widget


@dataclass
class Loaded(Message):
    """A worker's read finished: `done(value)` runs on the UI thread (if no newer read of the group started)."""

    group: str
    generation: int
    value: Any
    done: Callable[[Any], None]
    target: Widget | None


@dataclass
class LoadFailed(Message):
    """A worker's read failed: the screen notifies (and shows a placeholder for `NotAvailable`)."""

    group: str
    generation: int
    error: BaseException
    target: Widget | None
    unavailable: Callable[[str], None] | None
