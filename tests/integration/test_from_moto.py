"""`footfall import --from-moto DIR`: a data directory of the former moto backend (snapshot, journal) moves into
`DIR/footfall.db`, read with stock moto, and audits the same there."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from shared.cli import main
from shared.local.stack import read_info
from shared.services.segments import apply_segments
from shared.storage.dynamo import DynamoTrackingStore
from shared.storage.sqlite import sqlite_endpoint
from shared.storage.sqlite.engine import SqliteClient
from shared.storage.transfer import export_lines
from tests.builders import a_track
from tests.conftest import TABLE
from tests.integration.test_oracle import RULES, _now, _story
from tests.integration.test_transfer import _comparable
from tests.moto_data_dir import Journal, write_checkpoints, write_snapshot, write_stack_info
from tests.oracle import audit

pytestmark = pytest.mark.integration
REGION = "us-east-1"


def footfall(*args: str) -> subprocess.CompletedProcess[str]:
    """The `footfall` command in a process of its own (moto's state there is its own)."""
    return subprocess.run(
        [sys.executable, "-m", "shared.cli", *args], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize("ddb", ["moto"], indirect=True)
def test_a_former_moto_data_dir_moves_into_its_sqlite_file_and_audits_the_same(
    ddb, http, source, store, stream, tmp_path: Path
):
    # Given a data dir as the moto backend left it: a snapshot, then a processed story in its journal, whose last
    # line was being written when the backend died
    from functions.process import handler

    handler.pipeline().forget_rules()
    apply_segments(store, RULES, source="test", now=_now(), customers=[])
    old = tmp_path / "old"
    write_snapshot(old, generation=3)
    journal = Journal(ddb, old, generation=3)
    _, key = source
    anon, user = _story(http, key, stream)
    journal.tear()
    write_checkpoints(old, stream.positions, stream.fold.positions)
    write_stack_info(old, TABLE, REGION)
    expected = sorted(map(_comparable, export_lines(store)))
    assert journal.records > 10
    # When
    moved = footfall("import", "--from-moto", str(old), "--json")
    # Then every item is in the directory's database, the commands read it there, and the audit is the same
    assert moved.returncode == 0, moved.stderr
    assert "did not apply" not in moved.stderr  # every journaled request applied again
    assert json.loads(moved.stdout) == {"table": TABLE, "imported": len(expected)}
    assert main(["export", str(tmp_path / "again.jsonl"), "--data-dir", str(old)]) == 0
    assert sorted(map(_comparable, (tmp_path / "again.jsonl").read_text().splitlines())) == expected
    database = SqliteClient(old / "footfall.db")
    try:
        report = audit(DynamoTrackingStore(TABLE, client=database))
        assert report.customers == audit(store).customers
        assert report.customer_of(f"u:{user}") == report.customer_of(f"a:{anon}") is not None
    finally:
        database.close()
    info = read_info(old)
    assert info is not None and (info.table, info.dynamodb_endpoint) == (TABLE, sqlite_endpoint(old / "footfall.db"))
    assert {"dynamodb.snapshot", "dynamodb.journal.3"} <= {p.name for p in old.iterdir()}  # left where they were


@pytest.mark.parametrize("ddb", ["moto"], indirect=True)
def test_changes_the_stack_had_not_processed_are_processed_by_the_move(
    ddb, http, source, store, stream, tmp_path: Path
):
    # Given a data dir whose stack stopped before processing caught up: the story processed, then a purchase by its
    # customer and a new visitor accepted, which processing never saw (the checkpoints stop before them)
    from functions.process import handler

    handler.pipeline().forget_rules()
    apply_segments(store, RULES, source="test", now=_now(), customers=[])
    _, key = source
    anon, user = _story(http, key, stream)
    old = tmp_path / "old"
    old.mkdir(mode=0o700)
    write_checkpoints(old, stream.positions, stream.fold.positions)
    late = [
        a_track(userId=user, event="Order Completed", properties={"order_id": "late-1", "revenue": 120.0}),
        a_track(userId=None, anonymousId="late-visitor", event="Product Viewed", properties={"product_id": "p9"}),
    ]
    assert http("POST", "/v1/batch", body=json.dumps({"batch": late}), write_key=key).status == 200
    write_snapshot(old, generation=1)
    write_stack_info(old, TABLE, REGION)
    checkpoints = {name: (old / name).read_text() for name in ("stream-checkpoint.json", "fold-checkpoint.json")}
    # When
    moved = footfall("import", "--from-moto", str(old), "--json")
    # Then the late changes were processed on the way (the profile, the new customer, the counters) and the moved
    # table is what the oracle computes from its raw events; the old directory is left as it was
    assert moved.returncode == 0, moved.stderr
    assert "processing the changes the stack had not processed" in moved.stderr
    database = SqliteClient(old / "footfall.db")
    try:
        moved_store = DynamoTrackingStore(TABLE, client=database)
        report = audit(moved_store)
        customer = report.customer_of(f"u:{user}")
        assert customer == report.customer_of(f"a:{anon}") is not None
        assert moved_store.get_profiles([customer])[customer].profile.event_counts["Order Completed"] >= 1
        assert report.customer_of("a:late-visitor") is not None
    finally:
        database.close()
    assert {name: (old / name).read_text() for name in checkpoints} == checkpoints


def test_without_moto_the_move_names_the_extra_to_install(tmp_path: Path, capsys, monkeypatch):
    # Given a moto data dir, and no moto installed
    (tmp_path / "dynamodb.snapshot").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "moto", None)
    # When
    code = main(["import", "--from-moto", str(tmp_path)])
    # Then
    assert code == 2
    assert "pip install 'footfall[from-moto]'" in capsys.readouterr().err
