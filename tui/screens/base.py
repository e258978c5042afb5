"""The base of every screen: reads in thread workers, loading indicators, errors as notifications."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar, cast

from textual import on
from textual.binding import Binding
from textual.screen import Screen
from textual.widget import Widget

from tui.data import DataSource, NotAvailable
from tui.formatting import error_text
from tui.messages import Loaded, LoadFailed
from tui.widgets.nav import NavBar

if TYPE_CHECKING:
    from tui.app import OperatorApp

T = TypeVar("T")
logger = logging.getLogger(__name__)


class DataScreen(Screen[None]):
    """A screen that reads through the app's data source, never on the UI thread."""

    BINDINGS = [Binding("r", "reload", "Refresh", tooltip="Read this screen's data again", id="screen.refresh")]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._generations: dict[str, int] = {}

    @property
    def operator(self) -> OperatorApp:
        return cast("OperatorApp", self.app)

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
            nav.sections = self.operator.SECTIONS  # from the app: tui.sections imports every screen, this one too
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
        become notifications; `NotAvailable` calls `unavailable(reason)` instead, when given.
        """
        generation = self._generations.get(group, 0) + 1
        self._generations[group] = generation
        if target is not None:
            target.loading = True
        self.run_worker(
            partial(self._read, group, generation, call, done, target, unavailable),
            name=group,
            group=group,
            thread=True,
            exit_on_error=False,
        )

    def _read(
        self,
        group: str,
        generation: int,
        call: Callable[[], Any],
        done: Callable[[Any], None],
        target: Widget | None,
        unavailable: Callable[[str], None] | None,
    ) -> None:
        try:
            value = call()
        except Exception as exc:  # every failure becomes a notification, never a traceback
            self.post_message(LoadFailed(group, generation, exc, target, unavailable))
        else:
            self.post_message(Loaded(group, generation, value, done, target))

    @on(Loaded)
    def _loaded(self, message: Loaded) -> None:
        message.stop()
        if message.generation != self._generations.get(message.group):
            return
        if message.target is not None:
            message.target.loading = False
        try:
            message.done(message.value)
        except Exception as exc:
            logger.exception("could not show %s", message.group)
            self.notify(error_text(exc), title=f"Could not show {message.group}", severity="error")

    @on(LoadFailed)
    def _failed(self, message: LoadFailed) -> None:
        message.stop()
        if message.generation != self._generations.get(message.group):
            return
        if message.target is not None:
            message.target.loading = False
        if isinstance(message.error, NotAvailable) and message.unavailable is not None:
            message.unavailable(str(message.error))
            return
        self.notify(error_text(message.error), title=f"Could not read {message.group}", severity="error", timeout=8)
