"""`footfall tui` in a real terminal (tmux) against `footfall serve`: keys in, screen text out."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.e2e.conftest import FOOTFALL, LocalStack

pytestmark = pytest.mark.e2e


@dataclass
class Terminal:
    """A tmux session on a private server running one command."""

    socket: str
    session: str = "tui"

    def tmux(self, *args: str) -> str:
        done = subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=10)
        return done.stdout

    def start(self, command: list[str], *, width: int, height: int, env: dict[str, str]) -> None:
        line = " ".join(shlex.quote(part) for part in command)
        # `remain-on-exit` keeps the pane (and what the command printed) after it exits.
        self.tmux("-f", "/dev/null", "new-session", "-d", "-s", self.session, "-x", str(width), "-y", str(height))
        self.tmux("set-option", "-t", self.session, "remain-on-exit", "on")
        self.tmux("resize-window", "-t", self.session, "-x", str(width), "-y", str(height))
        exports = " ".join(f"{name}={shlex.quote(value)}" for name, value in env.items())
        # COLUMNS/LINES inherited from the test run would pin the size at 80x24 whatever the pane's size.
        self.tmux("respawn-pane", "-k", "-t", self.session, f"env -u COLUMNS -u LINES {exports} {line}")

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", self.session)

    def keys(self, *keys: str) -> None:
        for key in keys:
            self.tmux("send-keys", "-t", self.session, key)
            time.sleep(0.15)

    def type(self, text: str) -> None:
        self.tmux("send-keys", "-t", self.session, "-l", text)

    def wait_for(self, *texts: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        shown = ""
        while time.monotonic() < deadline:
            shown = self.screen()
            if all(text in shown for text in texts):
                return shown
            time.sleep(0.2)
        size = self.tmux("display-message", "-p", "-t", self.session, "#{pane_width}x#{pane_height}").strip()
        raise AssertionError(f"{texts} not on screen ({size}) after {timeout}s:\n{shown}")

    def exited(self) -> bool:
        return self.tmux("display-message", "-p", "-t", self.session, "#{pane_dead}").strip() == "1"

    def stop(self) -> None:
        self.tmux("kill-server")


@pytest.fixture
def terminal() -> Iterator[Terminal]:
    if shutil.which("tmux") is None:
        if os.environ.get("CI"):
            pytest.fail("tmux is missing (.ci/run installs it)")
        pytest.skip("tmux is not installed")
    term = Terminal(socket=f"footfall-test-{os.getpid()}")
    yield term
    term.stop()


def _env() -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "PYTHONPATH", "VIRTUAL_ENV")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    return {**env, "TERM": "xterm-256color", "COLORTERM": "truecolor"}


def _customer_processed(stack: LocalStack, user_id: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stack.store().get_links([f"u:{user_id}"]):
            return
        time.sleep(0.2)
    raise AssertionError(f"{user_id} was not processed within {timeout}s")


def test_the_tui_against_footfall_serve(local_stack: LocalStack, terminal: Terminal, tmp_path: Any):
    # Given a customer who carted and an input the collector refused
    calls = [
        {"type": "track", "userId": "tia", "event": "Product Viewed", "properties": {"product_id": "p1"}},
        {"type": "track", "userId": "tia", "event": "Product Added", "properties": {"product_id": "p1"}},
        {"type": "identify", "userId": "tia", "traits": {"email": "tia@example.com"}},
    ]
    assert local_stack.post_json("/v1/batch", {"batch": calls}, write_key=local_stack.write_key).status == 200
    assert local_stack.post_json("/v1/track", {"userId": "tia"}, write_key=local_stack.write_key).status == 400
    _customer_processed(local_stack, "tia")
    # When the TUI opens on the stack (found through its data dir)
    terminal.start([*FOOTFALL, "tui", "--data-dir", str(local_stack.data_dir)], width=120, height=32, env=_env())
    # Then the overview, with where the data is
    terminal.wait_for("1 Overview", "Events per minute", "Top events today", "local · footfall @ sqlite:")
    # Customers: the list, a search by e-mail, the customer screen and back
    terminal.keys("2")
    terminal.wait_for("u:tia", "page 1")
    terminal.keys("/")
    terminal.type("tia@example")
    terminal.keys("Enter")
    shown = terminal.wait_for("Customer u:tia", "new_customers")
    assert "● in" in shown
    terminal.keys("e")
    terminal.wait_for("Product Added", "newest first")
    terminal.keys("Escape")
    terminal.wait_for("page 1")
    # Segments, and the failed event with its reason
    terminal.keys("3")
    terminal.wait_for("cart_abandoners", "new_customers")
    terminal.keys("7")
    terminal.wait_for("/v1/track", "event is required")
    # Help, then quit
    terminal.keys("?")
    terminal.wait_for("This screen", "Everywhere")
    terminal.keys("Escape", "q")
    deadline = time.monotonic() + 10
    while not terminal.exited() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert terminal.exited(), terminal.screen()
    assert "Traceback" not in terminal.screen()
