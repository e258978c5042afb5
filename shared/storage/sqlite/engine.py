"""`SqliteClient`: the part of boto3's DynamoDB client API our store uses, on one SQLite file.

Requests and answers have boto3's shapes (wire-form values, `LastEvaluatedKey`, `UnprocessedItems`), and
failures are the `ClientError`s DynamoDB gives (codes, messages, `CancellationReasons`), so
`DynamoTrackingStore` runs on it unchanged. Each write (an item, a batch, a transaction) is one
`BEGIN IMMEDIATE` transaction that also appends its change records (`feed`); reads are single statements, and in
WAL mode they never wait for the writer. Several processes may open the same file.
"""

from __future__ import annotations

import json
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from botocore.exceptions import ClientError

from shared.storage.sqlite import damaged, feed, sqlite_endpoint
from shared.storage.sqlite.codec import decode, encode
from shared.storage.sqlite.expressions import ExpressionError, Item, equal
from shared.storage.sqlite.hooks import OPERATIONS, Events, Meta, hooked
from shared.storage.sqlite.reads import ReadOperations
from shared.storage.sqlite.tables import FIVE_YEARS, Table
from shared.storage.sqlite.writes import WriteOperations

FILE_MODE = 0o600
SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS tables (name TEXT PRIMARY KEY, definition TEXT NOT NULL, ttl TEXT, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    tbl TEXT NOT NULL,
    pk BLOB NOT NULL,
    sk BLOB NOT NULL,
    ipk BLOB,
    isk BLOB,
    expires INTEGER,
    body TEXT NOT NULL,
    PRIMARY KEY (tbl, pk, sk)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS items_index ON items (tbl, ipk, isk, pk, sk) WHERE ipk IS NOT NULL;
CREATE INDEX IF NOT EXISTS items_expiry ON items (tbl, expires) WHERE expires IS NOT NULL;
"""
    + feed.SCHEMA
)
_ERROR_CODES = (
    "ConditionalCheckFailedException",
    "TransactionCanceledException",
    "ResourceNotFoundException",
    "ResourceInUseException",
    "ValidationException",
)


class SqliteClient(ReadOperations, WriteOperations):
    """A DynamoDB low-level client on one SQLite database file (created 0600 if missing)."""

    def __init__(
        self,
        path: Path | str,
        *,
        region: str = "local",
        synchronous: str = "NORMAL",
        busy_timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Open (or create) the database.

        Args:
            synchronous: SQLite's `synchronous` in WAL mode: NORMAL keeps every committed write through a crash
                or `kill -9` of any process (not through a power cut since the last checkpoint); FULL through both.

        Raises:
            DamagedDatabaseError: the file is not a database, or its schema cannot be read.
        """
        self.path = Path(path)
        self.region = region
        self.clock = clock
        self.exceptions = SimpleNamespace(**{code: type(code, (ClientError,), {}) for code in _ERROR_CODES})
        self.meta = Meta(region, Events(), sqlite_endpoint(self.path, durable=synchronous.upper() == "FULL"))
        for method, operation in OPERATIONS.items():
            setattr(self, method, hooked(self.meta.events, operation, getattr(self, method), self.invalid))
        if str(path) != ":memory:" and not self.path.exists():
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, FILE_MODE))
        # Writes go through one connection under a lock (one writer at a time anyway); reads take a connection of
        # their own from a pool, so the threads of one process (the pipeline's parallel reads, the TUI's workers)
        # read at once, and never wait for a write (WAL). An in-memory database has only the one connection.
        self._busy_timeout = busy_timeout
        self._db = self._connect()
        self._lock = threading.RLock()
        self._readers: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._all_readers: list[sqlite3.Connection] = []
        self._tables: dict[str, Table] = {}
        try:
            with self._database_errors():
                self._db.execute("PRAGMA journal_mode=WAL")  # the first read of the file: its header
                self._db.execute(f"PRAGMA synchronous={synchronous}")
            if not self.read("SELECT 1 FROM sqlite_master WHERE name = 'changes_at'"):  # the schema's last statement
                with self._write() as db:
                    for statement in filter(str.strip, SCHEMA.split(";")):
                        db.execute(statement)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Close the database connections."""
        with self._lock:
            for reader in self._all_readers:
                reader.close()
            self._db.close()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(
            str(self.path) if str(self.path) != ":memory:" else ":memory:",
            isolation_level=None,
            check_same_thread=False,
            timeout=self._busy_timeout,
        )
        db.execute(f"PRAGMA busy_timeout={int(self._busy_timeout * 1000)}")
        return db

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """A connection to read with (the caller's alone while the block runs)."""
        if str(self.path) == ":memory:":
            with self._lock, self._database_errors():
                yield self._db
            return
        try:
            db = self._readers.get_nowait()
        except queue.Empty:
            db = self._connect()
            with self._lock:
                self._all_readers.append(db)
        try:
            with self._database_errors():
                yield db
        finally:
            if db.in_transaction:
                db.execute("ROLLBACK")
            self._readers.put(db)

    # --- plumbing ----------------------------------------------------------------------------------------------

    def error(self, code: str, message: str, operation: str, **extra: Any) -> ClientError:
        """The `ClientError` DynamoDB answers with (a modeled subclass where boto3 has one)."""
        response: dict[str, Any] = {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": 400},
            **extra,
        }
        kind: type[ClientError] = getattr(self.exceptions, code, ClientError)
        return kind(response, operation)  # type: ignore[arg-type]  # the stubs' TypedDict; this is its shape

    def invalid(self, message: str, operation: str) -> ClientError:
        return self.error("ValidationException", message, operation)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taking the write lock up front (no upgrade deadlock between processes)."""
        with self._lock, self._database_errors():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def read(
        self, sql: str, args: Sequence[Any] = (), *, db: sqlite3.Connection | None = None
    ) -> list[tuple[Any, ...]]:
        """Rows of one read statement (a consistent snapshot), on `db` when given (inside its transaction)."""
        if db is not None:
            return db.execute(sql, tuple(args)).fetchall()
        with self.reading() as reader:
            return reader.execute(sql, tuple(args)).fetchall()

    @contextmanager
    def _database_errors(self) -> Iterator[None]:
        """SQLite's failures as the DynamoDB errors the store already handles: the writer lock held past the busy
        timeout is throttling; a full disk or an I/O error is an internal error. Both are transient to the store
        (ThrottledError: the collector answers "retry", having acknowledged nothing), and the transaction is rolled
        back, so nothing half-written remains. A damaged file is not transient: `DamagedDatabaseError`, which names
        the file and what to do (no DynamoDB error means that)."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            error = damaged(exc, self.path)
            if error is not None:
                raise error from exc
            busy = isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc))
            code = "ThrottlingException" if busy else "InternalServerError"
            raise self.error(code, f"SQLite: {exc}", "SQLite") from exc

    def table(self, name: str, operation: str) -> Table:
        """A table's definition (read again from the file when another process may have created it)."""
        if name not in self._tables:
            rows = self.read("SELECT definition, ttl, created FROM tables WHERE name = ?", (name,))
            if not rows:
                raise self.error("ResourceNotFoundException", "Requested resource not found", operation)
            definition, ttl, created = rows[0]
            table = Table.create(name, json.loads(definition), created)
            self._tables[name] = Table(**{**table.__dict__, "ttl": ttl})
        return self._tables[name]

    def load(self, db: sqlite3.Connection, table: Table, key: tuple[Any, Any]) -> Item | None:
        row = db.execute("SELECT body FROM items WHERE tbl = ? AND pk = ? AND sk = ?", (table.name, *key)).fetchone()
        return decode(row[0]) if row else None

    def store(
        self, db: sqlite3.Connection, table: Table, key: tuple[Any, Any], old: Item | None, new: Item | None, **how: Any
    ) -> None:
        """Write (or delete, `new` None) one item and its change record, inside the open transaction."""
        if (old is None and new is None) or (old is not None and new is not None and equal({"M": old}, {"M": new})):
            return  # nothing changed: DynamoDB Streams writes no record either
        body = encode(new) if new is not None else None
        if new is None:
            db.execute("DELETE FROM items WHERE tbl = ? AND pk = ? AND sk = ?", (table.name, *key))
        else:
            db.execute(
                "INSERT OR REPLACE INTO items (tbl, pk, sk, ipk, isk, expires, body) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (table.name, *key, *table.index_columns(new), table.expiry(new), body),
            )
        if table.stream:
            image = new if new is not None else old
            assert image is not None
            keys = encode(table.keys_of(image))
            feed.record_change(
                db, table.name, keys, encode(old) if old is not None else None, body, at=self.clock(), **how
            )

    # --- tables ------------------------------------------------------------------------------------------------

    def create_table(self, **params: Any) -> dict[str, Any]:
        """Create a table (key schema, at most one global secondary index, stream specification)."""
        name = params.pop("TableName")
        try:
            table = Table.create(name, params, self.clock())
        except ExpressionError as exc:
            raise self.invalid(str(exc), "CreateTable") from exc
        with self._write() as db:
            if db.execute("SELECT 1 FROM tables WHERE name = ?", (name,)).fetchone():
                raise self.error("ResourceInUseException", f"Table already exists: {name}", "CreateTable")
            db.execute(
                "INSERT INTO tables (name, definition, created) VALUES (?, ?, ?)",
                (name, json.dumps(params, default=str), table.created),
            )
        self._tables[name] = table
        description = table.description(0, self.region)["Table"]
        return {"TableDescription": {**description, "TableStatus": "ACTIVE"}}

    def describe_table(self, *, TableName: str) -> dict[str, Any]:
        """The table's description, as DynamoDB gives it."""
        # ItemCount is DynamoDB's estimate, refreshed about every six hours: 0 here rather than a count of every item
        # on each call (the stream runner describes the table on every poll).
        return self.table(TableName, "DescribeTable").description(0, self.region)

    def delete_table(self, *, TableName: str) -> dict[str, Any]:
        """Drop a table, its items and its change records."""
        table = self.table(TableName, "DeleteTable")
        with self._write() as db:
            for sql in ("DELETE FROM items WHERE tbl = ?", "DELETE FROM changes WHERE tbl = ?"):
                db.execute(sql, (TableName,))
            db.execute("DELETE FROM tables WHERE name = ?", (TableName,))
        self._tables.pop(TableName, None)
        return {"TableDescription": table.description(0, self.region)["Table"]}

    def update_time_to_live(self, *, TableName: str, TimeToLiveSpecification: dict[str, Any]) -> dict[str, Any]:
        """Turn TTL on (or off) for an attribute; items already stored are indexed by their expiry time."""
        table = self.table(TableName, "UpdateTimeToLive")
        ttl = TimeToLiveSpecification["AttributeName"] if TimeToLiveSpecification.get("Enabled") else None
        with self._write() as db:
            db.execute("UPDATE tables SET ttl = ? WHERE name = ?", (ttl, TableName))
            updated = Table(**{**table.__dict__, "ttl": ttl})
            rows = db.execute("SELECT pk, sk, body FROM items WHERE tbl = ?", (TableName,)).fetchall()
            for pk, sk, body in rows:
                db.execute(
                    "UPDATE items SET expires = ? WHERE tbl = ? AND pk = ? AND sk = ?",
                    (updated.expiry(decode(body)), TableName, pk, sk),
                )
        self._tables[TableName] = updated
        return {"TimeToLiveSpecification": TimeToLiveSpecification}

    def describe_time_to_live(self, *, TableName: str) -> dict[str, Any]:
        table = self.table(TableName, "DescribeTimeToLive")
        if table.ttl is None:
            return {"TimeToLiveDescription": {"TimeToLiveStatus": "DISABLED"}}
        return {"TimeToLiveDescription": {"TimeToLiveStatus": "ENABLED", "AttributeName": table.ttl}}

    def get_waiter(self, name: str) -> Any:
        """`table_exists` (immediate here: tables are created active)."""
        if name != "table_exists":
            raise ValueError(f"waiter {name} is not supported by the embedded engine")
        client = self

        class _Waiter:
            def wait(self, *, TableName: str, **_: Any) -> None:
                client.describe_table(TableName=TableName)

        return _Waiter()

    def get_paginator(self, name: str) -> Any:
        """`scan` and `query` paginators (pages follow `LastEvaluatedKey`)."""
        if name not in ("scan", "query"):
            raise ValueError(f"paginator {name} is not supported by the embedded engine")
        method = getattr(self, name)

        class _Paginator:
            def paginate(self, **params: Any) -> Iterator[dict[str, Any]]:
                while True:
                    page = method(**params)
                    yield page
                    if "LastEvaluatedKey" not in page:
                        return
                    params = {**params, "ExclusiveStartKey": page["LastEvaluatedKey"]}

        return _Paginator()

    # --- time to live and the feed's retention -------------------------------------------------------------------

    def expire_items(self, *, now: float | None = None, limit: int = 1000) -> int:
        """Delete items whose TTL time has passed (REMOVE records with DynamoDB's service identity); items with a
        TTL time more than five years old are left, as DynamoDB leaves them. Returns how many were deleted."""
        now = self.clock() if now is None else now
        deleted = 0
        for name in [row[0] for row in self.read("SELECT name FROM tables WHERE ttl IS NOT NULL")]:
            table = self.table(name, "ExpireItems")
            with self._write() as db:
                rows = db.execute(
                    "SELECT pk, sk, body FROM items WHERE tbl = ? AND expires IS NOT NULL AND expires <= ? "
                    "AND expires >= ? LIMIT ?",
                    (name, now, now - FIVE_YEARS, limit),
                ).fetchall()
                for pk, sk, body in rows:
                    self.store(db, table, (pk, sk), decode(body), None, ttl=True)
                deleted += len(rows)
        return deleted

    def trim_feed(self, *, now: float | None = None) -> int:
        """Drop change records older than 24 hours; returns how many."""
        with self._write() as db:
            return feed.trim(db, now=self.clock() if now is None else now)
