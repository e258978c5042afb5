"""The base of every screen: reads in thread workers, loading indicators, errors as notifications."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, Protocol, TypeVar, cast

from textual import on
from textual.binding import Binding
from textual.screen import Screen
from textual.widget import Widget

from tui.data import DataSource, NotAvailable
from tui.formatting import error_text
from tui.messages import Loaded, LoadFailed
from tui.widgets.nav import NavBar, Tab


class Operator(Protocol):
    """What screens use of the app (`tui.app.OperatorApp`), which they never import: the app imports them."""

    source: DataSource
    clock: Callable[[], datetime]
    poll_seconds: float
    refresh_seconds: float
    SECTIONS: Sequence[Tab]
    current_mode: str

    def open_customer(self, customer_id: str) -> None: ...
    def open_segment(self, segment_id: str) -> None: ...


T = TypeVar("T")
logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Pending:
    """The latest read of a group: which one it is, and what the screen does with its answer."""

    generation: int
    done: Callable[[Any], None]
    target: Widget | None
    unavailable: Callable[[str], None] | None


class DataScreen(Screen[None]):
    """A screen that reads through the app's data source, never on the UI thread."""

    BINDINGS = [Binding("r", "reload", "Refresh", tooltip="Read this screen's data again", id="screen.refresh")]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pending: dict[str, _Pending] = {}

    @property
    def operator(self) -> Operator:
        return cast("Operator", self.app)

    @property
    def source(self) -> DataSource:
        return self.operator.source

    def now(self) -> datetime:
        return self.operator.clock()

    def on_mount(self) -> None:
        self._show_where()
        self.reload()

    def on_screen_resume(self) -> None:
        self._show_where()

    def _show_where(self) -> None:
        for nav in self.query(NavBar):
            nav.sections = self.operator.SECTIONS  # from the app: tui.sections imports every screen
            nav.active = self.app.current_mode
            nav.label = self.source.label

    def reload(self) -> None:
        """Read everything this screen shows (each screen overrides it)."""

    def action_reload(self) -> None:
        self.reload()

    def loading_group(self, group: str) -> bool:
        """Whether a read of this group is still running."""
        return any(worker.group == group and worker.is_running for worker in self.workers)

    def fetch(
        self,
        group: str,
        call: Callable[[], T],
        done: Callable[[T], None],
        *,
        target: Widget | None = None,
        unavailable: Callable[[str], None] | None = None,
    ) -> None:
        """Run `call` in a thread worker; `done(result)` then runs on the UI thread.

        A newer read of the same group supersedes an older one still running (its result is dropped). Failures
        become notifications; `NotAvailable` calls `unavailable(reason)` instead, when given. The worker posts
        only what happened (`Loaded`, `LoadFailed`); what to do with it stays here, with the read it answers.
        """
        previous = self._pending.get(group)
        generation = (previous.generation if previous else 0) + 1
        self._pending[group] = _Pending(generation, done, target, unavailable)
        if target is not None:
            target.loading = True
        self.run_worker(
            partial(self._read, group, generation, call), name=group, group=group, thread=True, exit_on_error=False
        )

    def _read(self, group: str, generation: int, call: Callable[[], Any]) -> None:
        try:
            value = call()
        except Exception as exc:  # every failure becomes a notification, never a traceback
            self.post_message(LoadFailed(group, generation, exc))
        else:
            self.post_message(Loaded(group, generation, value))

    def _answered(self, group: str, generation: int) -> _Pending | None:
        """The read this answer is for, if it is still the latest of its group (its loading indicator off)."""
        pending = self._pending.get(group)
        if pending is None or pending.generation != generation:
            return None
        if pending.target is not None:
            pending.target.loading = False
        return pending

    @on(Loaded)
    def _loaded(self, message: Loaded) -> None:
        message.stop()
        pending = self._answered(message.group, message.generation)
        if pending is None:
            return
        try:
            pending.done(message.value)
        except Exception as exc:
            logger.exception("could not show %s", message.group)
            self.notify(error_text(exc), title=f"Could not show {message.group}", severity="error")

    @on(LoadFailed)
    def _failed(self, message: LoadFailed) -> None:
        message.stop()
        pending = self._answered(message.group, message.generation)
        if pending is None:
            return
        if isinstance(message.error, NotAvailable) and pending.unavailable is not None:
            pending.unavailable(str(message.error))
            return
        self.notify(error_text(message.error), title=f"Could not read {message.group}", severity="error", timeout=8)
