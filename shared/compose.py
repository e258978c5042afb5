"""Where the operator's tools get their store: the one place the CLI and the TUI connect.

Both connect the same way: the local stack found in `--data-dir` (its `serve.json`), or the table that
`--endpoint-url/--table/--region/--profile` name; the store itself is built by the composition root
(`shared.wiring.store_at`), as the Lambdas' are. Not shipped to Lambda (infra/Makefile).
"""

from __future__ import annotations

import argparse
from typing import Any

from shared.errors import OperatorError
from shared.storage.dynamo import DynamoTrackingStore
from shared.wiring import store_at


def open_store(args: argparse.Namespace) -> tuple[DynamoTrackingStore, dict[str, Any]]:
    """The store the connection arguments name, and what the TUI shows and probes with.

    Args:
        args: `data_dir`, `endpoint_url`, `table`, `region` and `profile` (the CLI's connection arguments).

    Returns:
        The store, and `{"info": <the local stack's info or None>}`.

    Raises:
        OperatorError: nothing names a table and no local stack runs in `data_dir`, or the embedded database file
            is damaged (what to do is in the message).
    """
    from shared.local.stack import DATABASE_FILE, DEFAULT_REGION, DEFAULT_TABLE, read_info
    from shared.storage.sqlite import DamagedDatabaseError, sqlite_endpoint

    info = read_info(args.data_dir)
    endpoint = args.endpoint_url
    if endpoint is None and info is None and (args.data_dir / DATABASE_FILE).exists():
        endpoint = sqlite_endpoint(args.data_dir / DATABASE_FILE)  # a data dir never served (an import): the file
    if endpoint is None and args.profile is None and args.table is None:
        if info is None:
            raise OperatorError(
                f"no local stack found in {args.data_dir} (start one with `footfall serve`), "
                "or pass --endpoint-url / --table / --profile"
            )
        endpoint = info.dynamodb_endpoint
    table = args.table or (info.table if info else DEFAULT_TABLE)
    region = args.region or (info.region if info and endpoint == info.dynamodb_endpoint else None)
    if endpoint:
        region = region or DEFAULT_REGION
    try:
        store = store_at(table, endpoint_url=endpoint, region=region, profile=args.profile)
    except DamagedDatabaseError as exc:
        raise OperatorError(str(exc)) from exc
    return store, {"info": info}
