"""`footfall export` / `footfall import`: a table's items moved to another backend audit the same there."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.cli import main
from shared.services.segments import apply_segments
from shared.storage.dynamo import DynamoTrackingStore
from shared.storage.sqlite import sqlite_endpoint
from shared.storage.sqlite.engine import SqliteClient
from shared.storage.transfer import export_lines
from tests.conftest import TABLE
from tests.integration.test_oracle import RULES, _now, _story
from tests.oracle import audit

pytestmark = [pytest.mark.integration, pytest.mark.parametrize("ddb", ["moto"], indirect=True)]


def test_a_processed_table_exported_from_moto_and_imported_into_sqlite_audits_the_same(
    http, source, store, stream, tmp_path: Path, capsys
):
    # Given a processed story on moto: one customer with two identities, in a segment, with counters
    from functions.process import handler

    handler.pipeline().forget_rules()
    apply_segments(store, RULES, source="test", now=_now(), customers=[])
    _, key = source
    anon, user = _story(http, key, stream)
    exported = tmp_path / "items.jsonl"
    exported.write_text("".join(line + "\n" for line in export_lines(store)))
    database = sqlite_endpoint(tmp_path / "copy" / "footfall.db")
    (tmp_path / "copy").mkdir()
    # When the export is imported into a new local database, then exported from it
    assert main(["import", str(exported), "--endpoint-url", database, "--table", TABLE, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["imported"] == len(exported.read_text().splitlines())
    again = tmp_path / "again.jsonl"
    assert main(["export", str(again), "--endpoint-url", database, "--table", TABLE]) == 0
    # Then the same items, the same audit, and nothing to process again (an import is a restore)
    assert sorted(again.read_text().splitlines()) == sorted(exported.read_text().splitlines())
    copy = SqliteClient(tmp_path / "copy" / "footfall.db")
    try:
        report = audit(DynamoTrackingStore(TABLE, client=copy))
        assert report.customers == audit(store).customers
        assert report.customer_of(f"u:{user}") == report.customer_of(f"a:{anon}") is not None
        assert copy.read("SELECT COUNT(*) FROM changes") == [(0,)]
    finally:
        copy.close()
    assert (again.stat().st_mode & 0o777) == 0o600
