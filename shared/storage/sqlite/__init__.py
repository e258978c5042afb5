"""The embedded database: SQLite behind boto3's DynamoDB client API, so the one store runs on both.

A database file is named like an endpoint, `sqlite:///abs/path/footfall.db`, so that everything that passes an
endpoint around (settings, `serve.json`, `--endpoint-url`) can point at one; `make_client` opens it.
"""

from __future__ import annotations

from pathlib import Path

SCHEME = "sqlite://"


def is_sqlite(endpoint: str | None) -> bool:
    """Whether an endpoint names an embedded database file."""
    return bool(endpoint) and str(endpoint).startswith(SCHEME)


def sqlite_endpoint(path: Path) -> str:
    """The endpoint naming a database file (absolute: other processes may run elsewhere)."""
    return SCHEME + str(path.resolve())


def sqlite_path(endpoint: str) -> Path:
    """The database file an endpoint names."""
    return Path(endpoint[len(SCHEME) :])
