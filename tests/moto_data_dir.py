"""Data directories as the former moto backend of `footfall serve` wrote them, for the tests of
`footfall import --from-moto`: the product reads them and no longer writes them.

The format, frozen since: `dynamodb.snapshot` is a pickle of `{"generation": g, "backends": {account: {region:
moto's DynamoDBBackend}}}`; `dynamodb.journal.<g>` holds, one JSON line each, every request that changed the state
after that snapshot and succeeded: `{"target": X-Amz-Target, "auth": the SigV4 header with the key id and signature
replaced, "body": the request body}`. `serve.json` carried the backend's per-start credentials.
"""

from __future__ import annotations

import json
import pickle
import threading
from pathlib import Path
from typing import Any

from shared.local.files import private_dir, write_private_json

SNAPSHOT = "dynamodb.snapshot"
JOURNAL = "dynamodb.journal.{}"
MUTATING = frozenset(
    {"CreateTable", "UpdateTable", "PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}
    | {"UpdateTimeToLive", "TagResource", "UntagResource"}
)


def write_snapshot(data_dir: Path, generation: int) -> None:
    """Pickle the in-process moto's DynamoDB state as the backend's snapshot; `generation` names the journal after
    it."""
    from moto.dynamodb.models import dynamodb_backends

    private_dir(data_dir)
    backends = {account: dict(regions) for account, regions in dynamodb_backends.items()}
    with (data_dir / SNAPSHOT).open("wb") as handle:
        pickle.dump({"generation": generation, "backends": backends}, handle, protocol=pickle.HIGHEST_PROTOCOL)


class Journal:
    """Appends every successful state-changing request `client` makes to the journal of `generation`, as the
    backend did (the client's requests are sent, signed and answered as usual)."""

    def __init__(self, client: Any, data_dir: Path, generation: int) -> None:
        private_dir(data_dir)
        self.path = data_dir / JOURNAL.format(generation)
        self.region = client.meta.region_name
        self.local = threading.local()  # requests of several threads (processing's pools) are under way at once
        self.lock = threading.Lock()
        self.records = 0
        client.meta.events.register("request-created.dynamodb", self._created)
        client.meta.events.register("after-call.dynamodb", self._answered)

    def _created(self, request: Any, operation_name: str, **_: Any) -> None:
        body = request.body.decode("utf-8") if isinstance(request.body, bytes) else request.body
        self.local.sent = {"target": request.headers["X-Amz-Target"], "body": body, "operation": operation_name}

    def _answered(self, http_response: Any, model: Any, **_: Any) -> None:
        sent, self.local.sent = getattr(self.local, "sent", None), None
        if sent is None or model.name not in MUTATING or http_response.status_code != 200:
            return
        auth = f"AWS4-HMAC-SHA256 Credential=footfall/20261130/{self.region}/dynamodb/aws4_request, "
        record = {"target": sent["target"], "auth": auth + "SignedHeaders=host, Signature=0", "body": sent["body"]}
        with self.lock, self.path.open("ab") as handle:
            handle.write(json.dumps(record, separators=(",", ":")).encode() + b"\n")
            self.records += 1

    def tear(self) -> None:
        """A request whose record was being written when the backend died (never answered): a torn last line."""
        with self.path.open("ab") as handle:
            handle.write(b'{"target":"DynamoDB_20120810.PutItem","auth":"AWS4-HMAC-SHA256 Cre')


def write_checkpoints(data_dir: Path, process: dict[str, str], fold: dict[str, str]) -> None:
    """The stream runners' positions (shard id -> last sequence number handed over), as the runners save them."""
    write_private_json(data_dir / "stream-checkpoint.json", process)
    write_private_json(data_dir / "fold-checkpoint.json", fold)


def write_stack_info(data_dir: Path, table: str, region: str) -> None:
    """`serve.json` as that version wrote it: its backend's endpoint (gone) and credentials."""
    write_private_json(
        data_dir / "serve.json",
        {
            "collector_url": "http://127.0.0.1:8788",
            "dynamodb_endpoint": "http://127.0.0.1:45678",
            "table": table,
            "region": region,
            "write_key": "ffk_old",
            "pid": 999999,
            "credentials": {"aws_access_key_id": "FFLOCALOLD", "aws_secret_access_key": "old"},
        },
    )
