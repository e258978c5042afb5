"""The local data directory is its owner's alone: 0700, every file in it 0600, the database's WAL files included."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from shared.local.files import private_dir
from shared.storage.schema import TABLE_DEFINITION
from shared.storage.sqlite.engine import SqliteClient

pytestmark = pytest.mark.integration


def test_private_dir_narrows_nested_directories_and_files(tmp_path: Path):
    # Given an older data directory with a nested folder and wide modes
    nested = tmp_path / "data" / "logs"
    nested.mkdir(parents=True)
    (nested / "demo.log").write_text("x")
    for path, mode in ((tmp_path / "data", 0o755), (nested, 0o775), (nested / "demo.log", 0o666)):
        path.chmod(mode)
    # When
    private_dir(tmp_path / "data")
    # Then
    assert stat.S_IMODE((tmp_path / "data").stat().st_mode) == 0o700
    assert stat.S_IMODE(nested.stat().st_mode) == 0o700
    assert stat.S_IMODE((nested / "demo.log").stat().st_mode) == 0o600


def test_the_database_and_its_wal_files_are_0600_under_a_permissive_umask(tmp_path: Path):
    # Given a process whose umask lets everyone read what it creates (a CLI run by hand: `footfall import`)
    previous = os.umask(0o022)
    try:
        # When it creates the database and writes to it
        client = SqliteClient(tmp_path / "footfall.db")
        client.create_table(TableName="t", **TABLE_DEFINITION)
        client.put_item(TableName="t", Item={"PK": {"S": "a"}, "SK": {"S": "b"}})
        files = {path.name: stat.S_IMODE(path.stat().st_mode) for path in tmp_path.iterdir()}
        client.close()
    finally:
        os.umask(previous)
    # Then the file and its WAL and shared-memory files are the owner's alone
    assert files == {"footfall.db": 0o600, "footfall.db-wal": 0o600, "footfall.db-shm": 0o600}
