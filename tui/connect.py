"""Before the TUI opens: is the table there and answering? (A clear message instead of a frozen screen.)"""

from __future__ import annotations

from typing import Any

from shared.errors import OperatorError
from shared.storage.dynamo import DynamoTrackingStore

PROBE_KEY = {"PK": {"S": "TUI#PROBE"}, "SK": {"S": "TUI#PROBE"}}
"""A key no item has: reading it costs half a read unit and needs only the GetItem permission the TUI uses."""


def _custom(endpoint: str | None) -> bool:
    return bool(endpoint) and ".amazonaws.com" not in (endpoint or "")


def probe_client(store: DynamoTrackingStore, *, profile: str | None = None) -> Any:
    """A client to the store's endpoint with short timeouts and no retries: an answer, or an error, in seconds."""
    import boto3
    from botocore.config import Config

    from shared.storage.sqlite import is_sqlite

    endpoint = store.client.meta.endpoint_url
    if is_sqlite(endpoint):
        return store.client  # a file on this machine: it answers at once, or fails at once
    custom = _custom(endpoint)
    session = boto3.session.Session(profile_name=profile, region_name=store.client.meta.region_name)
    keys: dict[str, str] = {}
    if custom and session.get_credentials() is None:
        keys = {"aws_access_key_id": "footfall", "aws_secret_access_key": "footfall"}
    config = Config(
        connect_timeout=2,
        read_timeout=4,
        retries={"mode": "standard", "total_max_attempts": 1},
        account_id_endpoint_mode="disabled" if custom else "preferred",
    )
    return session.client("dynamodb", endpoint_url=endpoint if custom else None, config=config, **keys)


def check_reachable(store: DynamoTrackingStore, *, profile: str | None = None) -> None:
    """One GetItem with short timeouts.

    Raises:
        OperatorError: nothing answers, the table does not exist, or the credentials are refused (with what to do).
    """
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    endpoint = store.client.meta.endpoint_url
    try:
        probe_client(store, profile=profile).get_item(TableName=store.table_name, Key=PROBE_KEY)
    except NoCredentialsError as exc:
        raise OperatorError("no AWS credentials: pass --profile, or --endpoint-url for a local endpoint") from exc
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code == "ResourceNotFoundException":
            raise OperatorError(f"no table {store.table_name!r} at {endpoint} (pass --table?)") from exc
        message = exc.response.get("Error", {}).get("Message", "")
        raise OperatorError(f"{endpoint} refused to read table {store.table_name!r}: {code} {message}".strip()) from exc
    except BotoCoreError as exc:
        hint = " (is `footfall serve` running?)" if _custom(endpoint) else ""
        raise OperatorError(f"nothing answers at {endpoint}{hint}: {exc}") from exc


def describe(store: DynamoTrackingStore, info: Any) -> str:
    """Where the data is, for the title bar: `local · footfall @ http://127.0.0.1:8000` or `aws · table · region`."""
    endpoint = store.client.meta.endpoint_url
    if info is not None and endpoint == getattr(info, "dynamodb_endpoint", None):
        return f"local · {store.table_name} @ {endpoint}"
    if _custom(endpoint):
        return f"{store.table_name} @ {endpoint}"
    return f"aws · {store.table_name} · {store.client.meta.region_name}"
