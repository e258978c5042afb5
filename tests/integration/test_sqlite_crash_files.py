"""The embedded database's files as a crash leaves them: a torn write-ahead log keeps every committed transaction
and none by halves; a damaged database file stops the commands with what to do, not a traceback."""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from shared.cli import main
from shared.storage.schema import TABLE_DEFINITION
from shared.storage.sqlite.engine import SqliteClient

pytestmark = pytest.mark.integration
TABLE = "footfall"  # the table a data directory's commands open by default
WAL_HEADER = 32
FRAME_HEADER = 24


def item(key: str, size: int = 10) -> dict[str, Any]:
    return {"PK": {"S": key}, "SK": {"S": "x"}, "entity": {"S": "event"}, "body": {"B": os.urandom(size)}}


def stored_keys(client: SqliteClient) -> set[str]:
    return {i["PK"]["S"] for i in client.scan(TableName=TABLE, ConsistentRead=True)["Items"]}


def change_keys(client: SqliteClient) -> list[str]:
    return [json.loads(keys)["PK"]["S"] for (keys,) in client.read("SELECT keys FROM changes ORDER BY seq")]


def frame_size(wal: Path) -> int:
    """A WAL frame's size: its 24-byte header and one page (the page size is in the WAL header)."""
    (page_size,) = struct.unpack(">I", wal.read_bytes()[8:12])
    return FRAME_HEADER + page_size


def cut_mid_first_frame(wal: Path, acknowledged: int) -> None:
    """The power went as the last transaction's first frame was being written."""
    os.truncate(wal, acknowledged + frame_size(wal) // 2)


def cut_mid_commit_frame(wal: Path, acknowledged: int) -> None:
    """The power went as the last transaction's last frame (the one that commits it) was being written."""
    os.truncate(wal, wal.stat().st_size - frame_size(wal) // 2)


def garbage_after_commit(wal: Path, acknowledged: int) -> None:
    """A frame's worth of garbage after the last commit (a write the disk made of something never committed)."""
    with wal.open("ab") as handle:
        handle.write(os.urandom(frame_size(wal) + 100))


@pytest.mark.parametrize(
    ("tear", "last_kept"),
    [(cut_mid_first_frame, False), (cut_mid_commit_frame, False), (garbage_after_commit, True)],
    ids=["cut in its first frame", "cut in its commit frame", "garbage after its commit"],
)
def test_a_torn_wal_keeps_every_committed_transaction_and_none_by_halves(tmp_path: Path, tear: Any, last_kept: bool):
    # Given 20 acknowledged writes (each its own commit, with its change record), then a last transaction of 25
    # items spanning several WAL frames, and the files as the machine left them (no checkpoint ran: the writes are
    # in the WAL only; no -shm: shared memory does not survive a power cut)
    live = SqliteClient(tmp_path / "footfall.db")
    live.create_table(TableName=TABLE, **TABLE_DEFINITION)
    acknowledged = {f"ack-{n}" for n in range(20)}
    for key in sorted(acknowledged):
        live.put_item(TableName=TABLE, Item=item(key))
    wal = tmp_path / "footfall.db-wal"
    acknowledged_bytes = wal.stat().st_size
    last = {f"last-{n}" for n in range(25)}
    live.batch_write_item(RequestItems={TABLE: [{"PutRequest": {"Item": item(k, 3000)}} for k in sorted(last)]})
    crash = tmp_path / "crash"
    crash.mkdir()
    for name in ("footfall.db", "footfall.db-wal"):
        shutil.copyfile(tmp_path / name, crash / name)
    live.close()
    frame = frame_size(crash / "footfall.db-wal")
    assert (acknowledged_bytes - WAL_HEADER) % frame == 0
    assert (crash / "footfall.db-wal").stat().st_size - acknowledged_bytes > 3 * frame
    # When the write-ahead log is torn, and the database opened again
    tear(crash / "footfall.db-wal", acknowledged_bytes)
    reopened = SqliteClient(crash / "footfall.db")
    try:
        # Then every acknowledged write is there with its change record, the last transaction whole or not at all,
        # and the database takes writes again
        expected = acknowledged | (last if last_kept else set())
        assert stored_keys(reopened) == expected
        assert sorted(change_keys(reopened)) == sorted(expected)
        reopened.put_item(TableName=TABLE, Item=item("after"))
        assert "after" in stored_keys(reopened)
    finally:
        reopened.close()


def damaged_data_dir(path: Path, where: str) -> Path:
    """A data directory whose database (never served: commands open the file) has garbage over part of a page:
    the header of page 1 (`header`), or the page in the middle of the file (`middle`, in the items' b-tree)."""
    path.mkdir()
    client = SqliteClient(path / "footfall.db")
    client.create_table(TableName=TABLE, KeySchema=TABLE_DEFINITION["KeySchema"], **_attributes())
    for start in range(0, 2000, 25):  # items small enough to fit their b-tree pages (no overflow pages)
        batch = [{"PutRequest": {"Item": item(f"k{n:05d}", 500)}} for n in range(start, start + 25)]
        client.batch_write_item(RequestItems={TABLE: batch})
    client.close()  # the last close checkpoints: everything is in the database file
    database = path / "footfall.db"
    assert not (path / "footfall.db-wal").exists()
    page_size = 4096
    offset = 0 if where == "header" else (database.stat().st_size // page_size // 2) * page_size
    with database.open("r+b") as handle:
        handle.seek(offset)
        handle.write(b"\xff" * 100)
    return path


def _attributes() -> dict[str, Any]:
    # The table without its index and stream: the file is then almost all items, so the middle page is one of theirs.
    names = {key["AttributeName"] for key in TABLE_DEFINITION["KeySchema"]}
    return {
        "AttributeDefinitions": [a for a in TABLE_DEFINITION["AttributeDefinitions"] if a["AttributeName"] in names],
        "BillingMode": "PAY_PER_REQUEST",
    }


def _says_what_to_do(message: str, database: Path) -> None:
    assert str(database) in message
    assert "damaged" in message and "footfall export" in message and ".recover" in message
    assert "Traceback" not in message


@pytest.mark.parametrize(
    ("where", "command"),
    [("header", ["customers", "list"]), ("middle", ["export", "-"])],
    ids=["not a database: found at open", "a damaged page: found when read"],
)
def test_a_damaged_database_stops_the_command_with_what_to_do(tmp_path: Path, capsys, where: str, command: list[str]):
    # Given a data directory whose database file is damaged
    data_dir = damaged_data_dir(tmp_path / "data", where)
    # When a command reads it
    code = main([*command, "--data-dir", str(data_dir)])
    # Then it stops with an operator's error naming the file and what to do
    assert code == 2
    _says_what_to_do(capsys.readouterr().err, data_dir / "footfall.db")


def test_footfall_serve_refuses_a_database_that_is_not_one_with_what_to_do(tmp_path: Path):
    # Given a data directory whose database's header is garbage
    data_dir = damaged_data_dir(tmp_path / "data", "header")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    # When `footfall serve` starts on it
    serve = subprocess.run(
        [sys.executable, "-m", "shared.cli", "serve", "--data-dir", str(data_dir), "--port", port],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # Then it does not start, and says why and what to do
    assert serve.returncode == 2
    _says_what_to_do(serve.stderr, data_dir / "footfall.db")


@pytest.mark.parametrize(("durable", "synchronous"), [(False, 1), (True, 2)], ids=["default NORMAL", "--durable FULL"])
def test_every_process_opening_the_endpoint_commits_as_footfall_serve_was_told(
    tmp_path: Path, durable: bool, synchronous: int
):
    # Given the endpoint `footfall serve [--durable]` hands its workers (and writes in serve.json)
    from shared.storage.dynamo import make_client
    from shared.storage.sqlite import sqlite_endpoint

    endpoint = sqlite_endpoint(tmp_path / "footfall.db", durable=durable)
    # When a worker opens it
    client = make_client(endpoint_url=endpoint)
    try:
        # Then its commits are synced as asked (SQLite: 1 = NORMAL, 2 = FULL), and it names the same endpoint
        assert client._db.execute("PRAGMA synchronous").fetchone() == (synchronous,)
        assert client.meta.endpoint_url == endpoint
    finally:
        client.close()


def test_durable_is_refused_with_an_endpoint_of_your_own(capsys):
    assert main(["serve", "--durable", "--endpoint-url", "http://127.0.0.1:8000"]) == 2
    assert "--durable is for the embedded database" in capsys.readouterr().err


def test_a_checkpoint_past_the_feed_reads_on_from_its_end(tmp_path: Path):
    # Given a runner whose checkpoint is past the feed's end, as after a power cut rolled back committed changes
    # it had handed over (synchronous=NORMAL): the numbers past the end will be given again
    from shared.local.streams import StreamRunner
    from shared.storage.sqlite.feed import SqliteChangeFeed

    client = SqliteClient(tmp_path / "footfall.db")
    try:
        client.create_table(TableName=TABLE, **TABLE_DEFINITION)
        client.put_item(TableName=TABLE, Item=item("before"))
        (tmp_path / "checkpoint.json").write_text(json.dumps({"shardId-00000000000000000000-00000001": "9" * 10}))
        seen: list[str] = []

        def handler(event: dict[str, Any], _: Any) -> dict[str, Any]:
            seen.extend(r["dynamodb"]["Keys"]["PK"]["S"] for r in event["Records"])
            return {"batchItemFailures": []}

        runner = StreamRunner(
            feed=SqliteChangeFeed(client, TABLE),
            handler=handler,
            checkpoint_path=tmp_path / "checkpoint.json",
            quarantine=lambda *_: None,
            batch_window=0,
            accepts=lambda _: True,
        )
        # When a change is made after the restart (the runner started with it)
        client.put_item(TableName=TABLE, Item=item("after"))
        runner.catch_up()
        # Then it is handed over (not skipped as seen), and what was handed over before is not handed over again
        assert seen == ["after"]
    finally:
        client.close()
