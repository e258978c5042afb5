"""The embedded backend and its data directory are closed to other local users, other processes and web pages."""

from __future__ import annotations

import json
import signal
import stat
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from shared.local.backend import JOURNAL_PREFIX, SNAPSHOT_NAME, Durability
from shared.local.files import private_dir
from shared.storage.dynamo import make_client
from shared.storage.schema import TABLE_DEFINITION
from tests.integration.local_backend import Backend

pytestmark = pytest.mark.integration
ITEM_KEY = {"PK": {"S": "customer-1"}, "SK": {"S": "profile"}}


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[Backend]:
    running = Backend(tmp_path / "data", compact_mb=256)
    yield running
    if running.process and running.process.poll() is None:
        running.process.kill()


def _seeded(backend: Backend) -> Any:
    client = backend.start()
    client.create_table(TableName="t", **TABLE_DEFINITION)
    client.put_item(TableName="t", Item={**ITEM_KEY, "plan": {"S": "gold"}})
    return client


def _raw(backend: Backend, path: str, headers: dict[str, str], body: bytes = b"{}") -> tuple[int, dict[str, str]]:
    request = urllib.request.Request(backend.endpoint + path, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, dict(answer.headers)
    except urllib.error.HTTPError as refused:
        return refused.code, dict(refused.headers)


def _stored(client: Any) -> dict[str, Any] | None:
    return client.get_item(TableName="t", Key=ITEM_KEY, ConsistentRead=True).get("Item")


def test_a_cross_origin_simple_post_to_moto_api_reset_is_refused_and_the_data_survives_a_stop(backend: Backend):
    # Given a stored item
    client = _seeded(backend)
    # When a web page posts a "simple" cross-origin request to moto's reset route (no preflight needed)
    status, headers = _raw(
        backend, "/moto-api/reset", {"Origin": "https://evil.example", "Content-Type": "text/plain"}, b""
    )
    # Then it is refused without CORS headers, nothing is wiped, and a stop and restart keep the item
    assert status == 403
    assert not [name for name in headers if name.lower().startswith("access-control-")]
    assert _raw(backend, "/moto-api/reset", {"Content-Type": "text/plain"}, b"")[0] in (403, 404)
    assert _stored(client) is not None
    backend.stop(signal.SIGTERM)
    assert _stored(backend.start())["plan"] == {"S": "gold"}


def test_unsigned_wrong_key_and_cross_origin_api_requests_are_refused(backend: Backend):
    # Given a running backend
    client = _seeded(backend)
    target = {"X-Amz-Target": "DynamoDB_20120810.Scan", "Content-Type": "application/x-amz-json-1.0"}
    # When: no signature, another access key, the right key from a web page (Origin)
    unsigned = _raw(backend, "/", target, json.dumps({"TableName": "t"}).encode())[0]
    stranger = make_client(
        endpoint_url=backend.endpoint,
        region="us-east-1",
        credentials={"aws_access_key_id": "footfall", "aws_secret_access_key": "footfall"},
    )
    with pytest.raises(ClientError) as wrong_key:
        stranger.scan(TableName="t")
    client.meta.events.register("before-sign.dynamodb.*", _add_origin)
    with pytest.raises(ClientError) as from_a_page:
        client.scan(TableName="t")
    # Then every one is refused, and only the backend's own key reads the data
    assert unsigned == 403
    assert wrong_key.value.response["Error"]["Code"] == "UnrecognizedClientException"
    assert from_a_page.value.response["Error"]["Code"] == "AccessDeniedException"
    owner = make_client(endpoint_url=backend.endpoint, region="us-east-1", credentials=backend.credentials)
    assert _stored(owner) is not None


def _add_origin(request: Any, **_: Any) -> None:
    request.headers["Origin"] = "https://evil.example"


def test_no_request_deletes_the_table_and_a_stop_after_the_attempt_keeps_the_data(backend: Backend):
    # Given a stored item
    client = _seeded(backend)
    # When the owner's own client tries to delete the table, then the stack stops
    with pytest.raises(ClientError) as refused:
        client.delete_table(TableName="t")
    backend.stop(signal.SIGTERM)
    # Then the delete was refused and the item is there after a restart
    assert refused.value.response["Error"]["Code"] == "AccessDeniedException"
    assert _stored(backend.start())["plan"] == {"S": "gold"}


def test_the_data_directory_is_0700_and_every_file_in_it_0600_even_when_made_wider_before(backend: Backend):
    # Given a data directory and a journal left world-readable by an older version
    backend.data_dir.mkdir(mode=0o755)
    backend.data_dir.chmod(0o755)
    old_journal = backend.data_dir / f"{JOURNAL_PREFIX}0"
    old_journal.touch(mode=0o644)
    old_journal.chmod(0o644)
    # When the backend starts, stores, stops (snapshot) and starts again (new journal)
    _seeded(backend)
    backend.stop(signal.SIGTERM)
    backend.start()
    # Then the directory is its owner's alone, and so is every file (journal, snapshot, credentials)
    files = [path for path in backend.data_dir.iterdir() if path.is_file()]
    assert stat.S_IMODE(backend.data_dir.stat().st_mode) == 0o700
    assert {path.name for path in files} >= {SNAPSHOT_NAME, "backend-credentials.json", f"{JOURNAL_PREFIX}1"}
    assert {path.name: stat.S_IMODE(path.stat().st_mode) for path in files} == {path.name: 0o600 for path in files}


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


def test_a_snapshot_is_refused_when_the_table_emptied_and_the_journal_is_kept(ddb: Any, tmp_path: Path):
    # Given a loaded backend state holding items, and its journal
    from moto.dynamodb.models import dynamodb_backends

    ddb.put_item(TableName="footfall-test", Item={**ITEM_KEY})
    durability = Durability(tmp_path, compact_bytes=1 << 30)
    durability.load(app=lambda *_: [])
    journal = durability.journal_path(durability.generation)
    durability.append({"target": "DynamoDB_20120810.PutItem", "auth": "", "body": "{}"})
    # When the tables vanish underneath it (as moto's reset did) and the stack stops
    for regions in dynamodb_backends.values():
        for backend in regions.values():
            backend.tables.clear()
    durability.compact()
    # Then no (empty) snapshot replaced the state and the journal that rebuilds it is still there
    assert not (tmp_path / SNAPSHOT_NAME).exists()
    assert journal.exists() and journal.stat().st_size > 0
    assert durability.generation == 0
