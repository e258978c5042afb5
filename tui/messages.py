"""Messages between the TUI's workers and screens: facts (what was read, what failed), never what to do next."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.message import Message


@dataclass
class Loaded(Message):
    """A worker's read of `group` (the screen's `generation`-th) returned `value`."""

    group: str
    generation: int
    value: Any


@dataclass
class LoadFailed(Message):
    """A worker's read of `group` (the screen's `generation`-th) raised `error`."""

    group: str
    generation: int
    error: BaseException
