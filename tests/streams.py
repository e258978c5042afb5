"""Stream runners for tests: one that records what it hands over, and the fold's (the second reader of the stream)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from shared import wiring
from shared.local.streams import StreamRunner, fold_filter, quarantine_into
from shared.services.quarantine import FOLD_ROUTE


def fold_runner(client: Any, feed: Any, store: Any, path: Path, monkeypatch: pytest.MonkeyPatch) -> StreamRunner:
    """The local runner feeding the fold Lambda handler (its own filter and checkpoint), on the test's table read
    through `feed` (a feed of its own: a DynamoDB stream feed keeps its iterators); `.calls` are the events it
    handed over (to deliver them again)."""
    from functions.fold import handler

    handler.store.cache_clear()
    monkeypatch.setattr(handler, "function_store", partial(wiring.function_store, client=client))
    return recording_runner(
        handler.lambda_handler,
        feed,
        path / "fold-checkpoint.json",
        quarantine_into(store, FOLD_ROUTE),
        accepts=fold_filter,
        function="footfall-fold",
    )


def recording_runner(
    handler: Callable[[dict[str, Any], Any], dict[str, Any]],
    feed: Any,
    checkpoint: Path,
    quarantine: Callable[[dict[str, Any], str], None],
    **options: Any,
) -> StreamRunner:
    """A stream runner without a batching window whose `.calls` are the events it handed `handler` (to deliver
    them again)."""
    calls: list[dict[str, Any]] = []

    def invoke(event: dict[str, Any], context: Any) -> dict[str, Any]:
        calls.append(event)
        return handler(event, context)

    runner = StreamRunner(
        feed=feed, handler=invoke, checkpoint_path=checkpoint, quarantine=quarantine, batch_window=0, **options
    )
    runner.calls = calls  # type: ignore[attr-defined]
    return runner


def drain(*runners: StreamRunner, limit: int = 1000) -> int:
    """Poll every runner until none delivers anything and none has a batch to retry; returns records delivered."""
    delivered = 0
    for _ in range(limit):
        counts = [runner.poll() for runner in runners]
        delivered += sum(counts)
        if not any(counts) and not any(runner.attempts for runner in runners):
            return delivered
    positions = [runner.positions for runner in runners]
    raise AssertionError(f"the stream did not drain: attempts {[r.attempts for r in runners]}, positions {positions}")
