"""What the command groups share: the connection arguments, `--json`, the user's error, argument parsing helpers."""

from __future__ import annotations

import argparse
import json
import re
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from shared.domain.sources import Source
from shared.errors import OperatorError
from shared.ports import TrackingStore

DEFAULT_DATA_DIR = Path(".footfall")

CliError = OperatorError
"""A problem the user can fix; printed without a traceback (the TUI raises the same, from `shared.errors`)."""


def add_connection(parser: argparse.ArgumentParser) -> None:
    """`--data-dir` (the local stack) or `--endpoint-url/--table/--region/--profile` (any DynamoDB)."""
    group = parser.add_argument_group("where the data is")
    group.add_argument(
        "--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="local stack data directory (default .footfall)"
    )
    group.add_argument("--endpoint-url", help="DynamoDB-compatible endpoint (instead of the local stack)")
    group.add_argument("--table", help="table name")
    group.add_argument("--region", help="AWS region")
    group.add_argument("--profile", help="AWS profile (for AWS)")


def add_data_options(parser: argparse.ArgumentParser) -> None:
    """The connection arguments and `--json`, as most data commands take them."""
    add_connection(parser)
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def existing_source(store: TrackingStore, source_id: str) -> Source:
    source = store.get_source(source_id)
    if source is None:
        raise CliError(f"no source {source_id!r}")
    return source


def duration(text: str) -> timedelta:
    match = re.fullmatch(r"(\d+)([smhd])", text.strip())
    if not match:
        raise CliError(f"duration like 30m, 12h or 7d expected, not {text!r}")
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
    return timedelta(**{unit: int(match.group(1))})


def pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise CliError(f"--property wants key=value, not {text!r}")
    return key, value


def day(text: str | None, default: date) -> date:
    try:
        return date.fromisoformat(text) if text else default
    except ValueError as exc:
        raise CliError(f"not a date (YYYY-MM-DD): {text!r}") from exc


def rule_document(path: str) -> Any:
    """A rule or definitions file: JSON, or YAML when its name says so."""
    text = Path(path).read_text()
    if path.endswith((".yaml", ".yml")):
        try:
            import yaml
        except ImportError as exc:
            raise CliError("YAML rule files need PyYAML (pip install pyyaml), or use JSON") from exc
        return yaml.safe_load(text)
    return json.loads(text)
