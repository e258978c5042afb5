"""The embedded database: SQLite behind boto3's DynamoDB client API, so the one store runs on both.

A database file is named like an endpoint, `sqlite:///abs/path/footfall.db`, so that everything that passes an
endpoint around (settings, `serve.json`, `--endpoint-url`) can point at one; `make_client` opens it. The endpoint
also carries how commits are made durable, so that every process opening the file commits alike: without a query,
SQLite's `synchronous=NORMAL` (a commit survives a crash or `kill -9` of any process, not a power cut); with
`?synchronous=FULL` (`footfall serve --durable`), each commit is on disk before it returns (a power cut too).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from shared.ports import StorageError

SCHEME = "sqlite://"
DURABLE = "?synchronous=FULL"
_DAMAGED = frozenset({11, 26})
"""SQLITE_CORRUPT (a page that is not what it should be) and SQLITE_NOTADB (no database header)."""


class DamagedDatabaseError(StorageError):
    """The database file is damaged (a page cannot be read, or it is not a database): no retry can help."""


def is_sqlite(endpoint: str | None) -> bool:
    """Whether an endpoint names an embedded database file."""
    return bool(endpoint) and str(endpoint).startswith(SCHEME)


def sqlite_endpoint(path: Path, *, durable: bool = False) -> str:
    """The endpoint naming a database file (absolute: other processes may run elsewhere); `durable` for FULL."""
    return SCHEME + str(path.resolve()) + (DURABLE if durable else "")


def sqlite_path(endpoint: str) -> Path:
    """The database file an endpoint names."""
    return Path(endpoint[len(SCHEME) :].partition("?")[0])


def sqlite_synchronous(endpoint: str) -> str:
    """SQLite's `synchronous` setting the endpoint asks for: FULL or NORMAL."""
    return "FULL" if endpoint.endswith(DURABLE) else "NORMAL"


def damaged(exc: sqlite3.DatabaseError, path: Path) -> DamagedDatabaseError | None:
    """The error to raise for SQLite's `exc` when it says the file is damaged (None otherwise), naming the file and
    what to do.

    Damaged: SQLite found a page that is not what it should be, or no database at all; or a stored text is not
    UTF-8 (every text written here is: its bytes changed on disk).
    """
    code = getattr(exc, "sqlite_errorcode", None)
    text = isinstance(exc, sqlite3.OperationalError) and str(exc).startswith("Could not decode to UTF-8")
    if not text and (code is None or code & 0xFF not in _DAMAGED):
        return None
    return DamagedDatabaseError(
        f"the database {path} is damaged (SQLite: {str(exc)[:120]}). Stop `footfall serve` and move the file aside "
        "with its -wal and -shm files; then restore your last backup into a new file (`footfall import BACKUP "
        f"--endpoint-url {sqlite_endpoint(path)}`, BACKUP written by `footfall export`), or save what is still "
        f"readable: `sqlite3 DAMAGED.db .recover | sqlite3 {path.resolve()}`"
    )
