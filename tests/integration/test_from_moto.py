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
def test_the_move_is_refused_while_the_stream_holds_changes_not_processed(ddb, http, source, store, tmp_path: Path):
    # Given a snapshot holding an accepted event that processing never saw
    _, key = source
    assert http("POST", "/v1/batch", body=json.dumps({"batch": [a_track()]}), write_key=key).status == 200
    old = tmp_path / "old"
    write_snapshot(old, generation=1)
    write_stack_info(old, TABLE, REGION)
    # When
    refused = footfall("import", "--from-moto", str(old))
    # Then it says why and what to do, and nothing was written
    assert refused.returncode == 2
    assert "not processed yet" in refused.stderr and "Traceback" not in refused.stderr
    assert not (old / "footfall.db").exists()


def test_without_moto_the_move_names_the_extra_to_install(tmp_path: Path, capsys, monkeypatch):
    # Given a moto data dir, and no moto installed
    (tmp_path / "dynamodb.snapshot").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "moto", None)
    # When
    code = main(["import", "--from-moto", str(tmp_path)])
    # Then
    assert code == 2
    assert "pip install 'footfall[from-moto]'" in capsys.readouterr().err
