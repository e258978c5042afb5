"""The composition root builds every function's store the same way, from the function's settings."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from shared import wiring
from shared.config import Settings
from shared.publishers import OutboxFile, WebhookPublisher


def settings(**env: str) -> Settings:
    return Settings.from_env({"FOOTFALL_TABLE_NAME": "t", **{f"FOOTFALL_{k}": v for k, v in env.items()}})


def test_a_function_store_keeps_events_and_failures_as_long_as_its_settings_say():
    # Given settings with their own retention, and a client made elsewhere (as a test hands one)
    client = object()
    store = wiring.function_store(
        settings(EVENT_RETENTION_DAYS="45", FAILED_RETENTION_DAYS="7"),
        "process",
        client=client,
    )
    # Then every function's store (not only the collector's) writes with that retention, on that table
    assert (store.table_name, store.client) == ("t", client)
    assert (store.event_retention, store.failed_retention) == (timedelta(days=45), timedelta(days=7))


def test_publishers_are_what_the_settings_configure(tmp_path: Path):
    assert wiring.publishers(settings()) is None
    configured = wiring.publishers(
        settings(
            OUTBOX_PATH=str(tmp_path / "outbox.jsonl"),
            OUTBOX_WEBHOOK_URL="https://hooks.example/x",
            OUTBOX_WEBHOOK_SECRET="s" * 32,
        )
    )
    assert configured is not None
    assert [type(target) for target in configured.targets] == [OutboxFile, WebhookPublisher]
