"""What the read and write operations (`reads.ReadOperations`, `writes.WriteOperations`) use of `SqliteClient`:
declared here for the type checker, defined by the client (`engine.py`), which mixes both in."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from botocore.exceptions import ClientError

    from shared.storage.sqlite.expressions import Item
    from shared.storage.sqlite.tables import Table


class ClientBase:
    """The client's connections, tables and errors, as its operations see them."""

    if TYPE_CHECKING:

        def table(self, name: str, operation: str) -> Table: ...
        def read(
            self, sql: str, args: Sequence[Any] = (), *, db: sqlite3.Connection | None = None
        ) -> list[tuple[Any, ...]]: ...
        def reading(self) -> AbstractContextManager[sqlite3.Connection]: ...
        def _write(self) -> AbstractContextManager[sqlite3.Connection]: ...
        def load(self, db: sqlite3.Connection, table: Table, key: tuple[Any, Any]) -> Item | None: ...
        def store(
            self,
            db: sqlite3.Connection,
            table: Table,
            key: tuple[Any, Any],
            old: Item | None,
            new: Item | None,
            **how: Any,
        ) -> None: ...
        def error(self, code: str, message: str, operation: str, **extra: Any) -> ClientError: ...
        def invalid(self, message: str, operation: str) -> ClientError: ...
