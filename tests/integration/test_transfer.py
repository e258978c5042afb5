"""`footfall export` / `footfall import`: a table's items moved to another backend audit the same there, and the
pipeline goes on from them."""

from __future__ import annotations

import json
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from shared import wiring
from shared.cli import main
from shared.local.streams import StreamRunner
from shared.services.segments import apply_segments
from shared.storage import items
from shared.storage.dynamo import DynamoTrackingStore, deserialize
from shared.storage.sqlite import sqlite_endpoint
from shared.storage.sqlite.engine import SqliteClient
from shared.storage.sqlite.feed import SqliteChangeFeed
from shared.storage.transfer import export_lines
from tests.conftest import TABLE
from tests.integration.test_oracle import RULES, _now, _story
from tests.oracle import audit
from tests.streams import drain, fold_runner

pytestmark = [pytest.mark.integration, pytest.mark.parametrize("ddb", ["moto"], indirect=True)]


def _comparable(line: str) -> str:
    """An export line, a profile's applied stream positions left out (an import drops them: another stream)."""
    item = json.loads(line)["Item"]
    if item.get("entity") == {"S": items.PROFILE_ENTITY}:
        stored = items.item_to_profile(deserialize(_bytes(item)))
        return json.dumps(["profile", repr(replace(stored, applied={}))])
    return line


def _bytes(item: dict[str, Any]) -> dict[str, Any]:
    import base64

    return {k: {"B": base64.b64decode(v["B"])} if "B" in v else v for k, v in item.items()}


def test_a_processed_table_moved_from_moto_to_sqlite_audits_the_same_and_processing_goes_on(
    http, source, store, stream, tmp_path: Path, capsys, monkeypatch
):
    # Given a processed story on moto: one customer with two identities, in a segment, with counters
    from functions.process import handler

    handler.pipeline().forget_rules()
    apply_segments(store, RULES, source="test", now=_now(), customers=[])
    _, key = source
    anon, user = _story(http, key, stream)
    exported = tmp_path / "items.jsonl"
    exported.write_text("".join(line + "\n" for line in export_lines(store)))
    (tmp_path / "copy").mkdir()
    database = sqlite_endpoint(tmp_path / "copy" / "footfall.db")
    # When the export is imported into a new local database, then exported from it
    capsys.readouterr()  # what the handlers printed so far (metrics) is not the command's answer
    assert main(["import", str(exported), "--endpoint-url", database, "--table", TABLE, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["imported"] == len(exported.read_text().splitlines())
    again = tmp_path / "again.jsonl"
    assert main(["export", str(again), "--endpoint-url", database, "--table", TABLE]) == 0
    # Then the same items (profiles without the old stream's positions), the same audit, nothing to process again
    assert sorted(map(_comparable, again.read_text().splitlines())) == sorted(
        map(_comparable, exported.read_text().splitlines())
    )
    assert (again.stat().st_mode & 0o777) == 0o600
    copy = SqliteClient(tmp_path / "copy" / "footfall.db")
    moved = DynamoTrackingStore(TABLE, client=copy)
    try:
        report = audit(moved)
        assert report.customers == audit(store).customers
        assert report.customer_of(f"u:{user}") == report.customer_of(f"a:{anon}") is not None
        assert copy.read("SELECT COUNT(*) FROM changes") == [(0,)]
        # When a new event of the customer arrives on the new backend
        stream.drain()
        handler.store.cache_clear()
        handler.pipeline.cache_clear()
        monkeypatch.setattr(handler, "function_store", partial(wiring.function_store, client=copy))
        (event,) = [e for e in store.list_identity_events("u", user) if e.event == "Product Viewed"]
        moved.put_events([replace(event, message_id="after-the-move")])
        runner = StreamRunner(
            feed=SqliteChangeFeed(copy, TABLE),
            handler=handler.lambda_handler,
            checkpoint_path=tmp_path / "copy" / "checkpoint.json",
            quarantine=lambda *_: None,
            batch_window=0,
        )
        drain(runner, fold_runner(copy, SqliteChangeFeed(copy, TABLE), moved, tmp_path / "copy", monkeypatch))
        # Then it is folded into the moved profile (its old stream positions do not hide it) and the audit holds
        customer = report.customer_of(f"u:{user}")
        assert moved.get_profiles([customer])[customer].profile.event_counts == {
            **store.get_profiles([customer])[customer].profile.event_counts,
            "Product Viewed": 2,
        }
        audit(moved)
    finally:
        copy.close()


def test_an_import_puts_the_erased_identities_it_brings_in_the_new_tables_digest(store, tmp_path: Path):
    # Given a table where one identity was forgotten, exported
    from shared.storage.migrate import stamp_new_table
    from shared.storage.schema import TABLE_DEFINITION
    from shared.storage.suppression import digest_prefix
    from shared.storage.transfer import import_lines

    stamp_new_table(store)
    store.forget(identities=["u:gone"], customer_ids=[], at="2026-11-30T00:00:00Z")
    lines = list(export_lines(store))
    # And a local database that erased one of its own
    client = SqliteClient(tmp_path / "footfall.db")
    try:
        client.create_table(TableName=TABLE, **TABLE_DEFINITION)
        target = DynamoTrackingStore(TABLE, client=client)
        stamp_new_table(target)
        target.forget(identities=["u:local"], customer_ids=[], at="2026-11-30T00:00:00Z")
        reader = DynamoTrackingStore(TABLE, client=client)
        assert reader.forgotten_identities(["u:warm"]) == set()  # a warm reader, with the digest of epoch 1
        # When the export is imported
        import_lines(target, lines)
        # Then the new epoch's digest holds both, and readers (the warm one too) refuse both
        epoch = int(target._get({"PK": "ERASURE", "SK": "EPOCH"}, consistent=True)["epoch"])
        assert epoch == 2  # the old table's epoch item was not imported over this one's
        assert target.erasure_digest(epoch) == {digest_prefix("u:gone"), digest_prefix("u:local")}
        for _ in range(2):
            assert reader.forgotten_identities(["u:gone", "u:local", "u:new"]) == {"u:gone", "u:local"}
    finally:
        client.close()
