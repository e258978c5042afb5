"""The bench's DynamoDB meter against hand-computed AWS bills: sizes, writes, index entries, failures and reads.

Each step of the script below is billed by hand in its comment (item sizes per the Developer Guide's rules) and
checked as the change it makes to the ledger, through both of the meter's front-ends: a botocore hook on an
in-process moto client, and the HTTP proxy in front of a moto server. Last, the hook the cost bench loads into each
process of `footfall serve` (benchmarks/metered) and the dumps it sums.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from benchmarks.meter import Ledger, Meter, item_size, number_size, start_proxy, value_size
from shared.storage.schema import TABLE_DEFINITION
from tests.conftest import TABLE

BLOB = "x" * 1000
# PK 2+11, SK 2+7, entity 6+7, GSI1PK 6+12, GSI1SK 6+2, n 1+(ceil(5/2)+1) = 66 bytes; keys-only entry 48 bytes
PROFILE = {
    "PK": {"S": "CUSTOMER#c1"},
    "SK": {"S": "PROFILE"},
    "entity": {"S": "profile"},
    "GSI1PK": {"S": "CUSTOMERS#01"},
    "GSI1SK": {"S": "c1"},
    "n": {"N": "12345"},
}
PROFILE_KEY = {"PK": PROFILE["PK"], "SK": PROFILE["SK"]}


def event(pk: str, sk: str) -> dict[str, Any]:
    """PK 2+7, SK 2+10, entity 6+5, body 4+100 = 136 bytes (1 WU, one 4 KB read unit)."""
    return {"PK": {"S": pk}, "SK": {"S": sk}, "entity": {"S": "event"}, "body": {"B": b"\x01" * 100}}


def test_sizes_follow_the_developer_guide() -> None:
    # Given / When / Then: numbers by significant digits, nested documents with their overheads, sets as sums
    assert number_size("12345") == 4
    assert number_size("-0.00100") == 2
    assert number_size("0") == 1
    assert number_size("1.5E+10") == 2
    assert value_size({"M": {"a": {"S": "xy"}, "b": {"L": [{"N": "1"}, {"BOOL": True}]}}}) == 17
    assert value_size({"SS": ["ab", "c"]}) == 3
    assert value_size({"B": b"12345"}) == 5
    assert value_size({"NULL": True}) == 1
    assert item_size(PROFILE) == 66
    assert item_size(event("ID#u#u1", "EVT#web#m1")) == 136


# step name → the call, then the bill by hand: {entity: (item writes, table WU, index writes, index WU, failed, RU)}
Step = tuple[str, Callable[[Any], Any], dict[str, tuple[int, float, int, float, int, float]]]
SCRIPT: list[Step] = [
    # a new 66-byte profile: 1 WU, and its customer-index entry (48 bytes): 1 put, 1 WU
    ("put", lambda c: c.put_item(TableName=TABLE, Item=PROFILE), {"profile": (1, 1, 1, 1, 0, 0)}),
    # the profile grows past 1 KB: 66 + (4 + 1000) = 1070 bytes → the larger of before/after, 2 WU; index untouched
    (
        "update past 1 KB",
        lambda c: c.update_item(
            TableName=TABLE,
            Key=PROFILE_KEY,
            UpdateExpression="SET padx = :b",
            ExpressionAttributeValues={":b": {"S": BLOB}},
        ),
        {"profile": (1, 2, 0, 0, 0, 0)},
    ),
    # the index key changes: 2 WU for the 1070-byte item, and delete + put in the index (2 writes, 2 WU)
    (
        "update an index key",
        lambda c: c.update_item(
            TableName=TABLE,
            Key=PROFILE_KEY,
            UpdateExpression="SET GSI1PK = :g",
            ExpressionAttributeValues={":g": {"S": "CUSTOMERS#02"}},
        ),
        {"profile": (1, 2, 2, 2, 0, 0)},
    ),
    # every action at 2x: put of a 136-byte event 2 WU, condition check of the 1070-byte profile 2x2 = 4 WU,
    # delete of an item that is not there 2x1 = 2 WU (classed by its key prefix)
    (
        "transaction",
        lambda c: c.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": TABLE, "Item": event("ID#u#u1", "EVT#web#m1")}},
                {
                    "ConditionCheck": {
                        "TableName": TABLE,
                        "Key": PROFILE_KEY,
                        "ConditionExpression": "attribute_exists(PK)",
                    }
                },
                {"Delete": {"TableName": TABLE, "Key": {"PK": {"S": "X#1"}, "SK": {"S": "x"}}}},
            ]
        ),
        {"event": (1, 2, 0, 0, 0, 0), "profile": (1, 4, 0, 0, 0, 0), "pk:X": (1, 2, 0, 0, 0, 0)},
    ),
    # a batch: put a second event (1 WU) and delete the first (its 136 bytes: 1 WU)
    (
        "batch with a delete",
        lambda c: c.batch_write_item(
            RequestItems={
                TABLE: [
                    {"PutRequest": {"Item": event("ID#u#u2", "EVT#web#m2")}},
                    {"DeleteRequest": {"Key": {"PK": {"S": "ID#u#u1"}, "SK": {"S": "EVT#web#m1"}}}},
                ]
            }
        ),
        {"event": (2, 2, 0, 0, 0, 0)},
    ),
    # a false condition on the existing 1070-byte profile still bills it: 2 WU, no index write
    (
        "failed condition",
        lambda c: _refused(
            lambda: c.put_item(TableName=TABLE, Item=PROFILE, ConditionExpression="attribute_not_exists(PK)")
        ),
        {"profile": (1, 2, 0, 0, 1, 0)},
    ),
    # a false condition on no item: the minimum, 1 WU
    (
        "failed condition, no item",
        lambda c: _refused(
            lambda: c.update_item(
                TableName=TABLE,
                Key={"PK": {"S": "CUSTOMER#zz"}, "SK": {"S": "PROFILE"}},
                UpdateExpression="SET n = :n",
                ConditionExpression="attribute_exists(PK)",
                ExpressionAttributeValues={":n": {"N": "1"}},
            )
        ),
        {"pk:CUSTOMER": (1, 1, 0, 0, 1, 0)},
    ),
    # deleting the profile bills the deleted 1070 bytes (2 WU) and removes its index entry (1 write, 1 WU)
    ("delete", lambda c: c.delete_item(TableName=TABLE, Key=PROFILE_KEY), {"profile": (1, 2, 1, 1, 0, 0)}),
    # an update that creates an item with index keys: 13+9+13+18+8 = 61 bytes, 1 WU; index entry put, 1 WU
    (
        "index entry put by an update",
        lambda c: c.update_item(
            TableName=TABLE,
            Key={"PK": {"S": "CUSTOMER#c3"}, "SK": {"S": "PROFILE"}},
            UpdateExpression="SET entity = :e, GSI1PK = :g, GSI1SK = :s",
            ExpressionAttributeValues={":e": {"S": "profile"}, ":g": {"S": "CUSTOMERS#03"}, ":s": {"S": "c3"}},
        ),
        {"profile": (1, 1, 1, 1, 0, 0)},
    ),
    # removing an index key: 1 WU for the item, the index entry deleted (1 write, 1 WU)
    (
        "index entry deleted by an update",
        lambda c: c.update_item(
            TableName=TABLE, Key={"PK": {"S": "CUSTOMER#c3"}, "SK": {"S": "PROFILE"}}, UpdateExpression="REMOVE GSI1PK"
        ),
        {"profile": (1, 1, 1, 1, 0, 0)},
    ),
    # a cancelled transaction: each action billed like a failed condition, at 2x: the put of a new event
    # (no existing item: 2x1) and the check of the 43-byte profile (2x1); nothing in the index
    (
        "cancelled transaction",
        lambda c: _refused(
            lambda: c.transact_write_items(
                TransactItems=[
                    {"Put": {"TableName": TABLE, "Item": event("ID#u#u3", "EVT#web#m3")}},
                    {
                        "ConditionCheck": {
                            "TableName": TABLE,
                            "Key": {"PK": {"S": "CUSTOMER#c3"}, "SK": {"S": "PROFILE"}},
                            "ConditionExpression": "attribute_exists(GSI1PK)",
                        }
                    },
                ]
            )
        ),
        {"event": (1, 2, 0, 0, 1, 0), "profile": (1, 2, 0, 0, 1, 0)},
    ),
    # reads: an eventually consistent get of the 43-byte profile is half a unit; a strongly consistent get of
    # nothing still costs one unit
    (
        "get, eventually consistent",
        lambda c: c.get_item(TableName=TABLE, Key={"PK": {"S": "CUSTOMER#c3"}, "SK": {"S": "PROFILE"}}),
        {"profile": (0, 0, 0, 0, 0, 0.5)},
    ),
    (
        "get of a missing item, consistent",
        lambda c: c.get_item(TableName=TABLE, Key={"PK": {"S": "NOPE#1"}, "SK": {"S": "x"}}, ConsistentRead=True),
        {"pk:NOPE": (0, 0, 0, 0, 0, 1)},
    ),
    # a filter that drops everything is billed on what was evaluated (the 136-byte event): half a unit
    (
        "query with a filter",
        lambda c: c.query(
            TableName=TABLE,
            KeyConditionExpression="PK = :pk",
            FilterExpression="entity = :nothing",
            ExpressionAttributeValues={":pk": {"S": "ID#u#u2"}, ":nothing": {"S": "nothing"}},
        ),
        {"event": (0, 0, 0, 0, 0, 0.5)},
    ),
    # a projection does not shrink the bill: the consistent query reads the whole 136-byte item, 1 unit
    (
        "query with a projection, consistent",
        lambda c: c.query(
            TableName=TABLE,
            KeyConditionExpression="PK = :pk",
            ProjectionExpression="SK",
            ExpressionAttributeValues={":pk": {"S": "ID#u#u2"}},
            ConsistentRead=True,
        ),
        {"event": (0, 0, 0, 0, 0, 1)},
    ),
    # batch get: each key on its own, a missing one at the minimum: 0.5 + 0.5
    (
        "batch get",
        lambda c: c.batch_get_item(
            RequestItems={
                TABLE: {
                    "Keys": [
                        {"PK": {"S": "ID#u#u2"}, "SK": {"S": "EVT#web#m2"}},
                        {"PK": {"S": "ID#u#u9"}, "SK": {"S": "EVT#web#m9"}},
                    ]
                }
            }
        ),
        {"event": (0, 0, 0, 0, 0, 0.5), "pk:ID": (0, 0, 0, 0, 0, 0.5)},
    ),
    # a transactional read: 2x a 4 KB unit
    (
        "transact get",
        lambda c: c.transact_get_items(
            TransactItems=[{"Get": {"TableName": TABLE, "Key": {"PK": {"S": "ID#u#u2"}, "SK": {"S": "EVT#web#m2"}}}}]
        ),
        {"event": (0, 0, 0, 0, 0, 2)},
    ),
    # an index query that finds nothing still costs the minimum (index reads are eventually consistent)
    (
        "empty index query",
        lambda c: c.query(
            TableName=TABLE,
            IndexName="GSI1",
            KeyConditionExpression="GSI1PK = :g",
            ExpressionAttributeValues={":g": {"S": "CUSTOMERS#99"}},
        ),
        {"empty query": (0, 0, 0, 0, 0, 0.5)},
    ),
]


def _refused(call: Callable[[], Any]) -> None:
    with pytest.raises(Exception) as refused:
        call()
    assert type(refused.value).__name__ in ("ConditionalCheckFailedException", "TransactionCanceledException")


def _delta(before: Ledger, after: Ledger) -> dict[str, tuple[int, float, int, float, int, float]]:
    changes = {}
    for name, line in after.entities.items():
        old = before.entities.get(name)
        figures = (line.writes, line.wu, line.index_writes, line.index_wu, line.failed_conditions, line.ru)
        if old is not None:
            previous = (old.writes, old.wu, old.index_writes, old.index_wu, old.failed_conditions, old.ru)
            figures = tuple(a - b for a, b in zip(figures, previous, strict=True))  # type: ignore[assignment]
        if any(figures):
            changes[name] = figures
    return changes


@pytest.fixture(params=["botocore hook", "proxy"])
def metered(request: pytest.FixtureRequest, aws_credentials: None) -> Iterator[tuple[Any, Meter]]:
    """A client whose every call is metered, through one front-end or the other, on a fresh table."""
    if request.param == "botocore hook":
        with mock_aws():
            client = boto3.client("dynamodb")
            client.create_table(TableName=TABLE, **TABLE_DEFINITION)
            yield client, Meter.for_client(client, boto3.client("dynamodb"))
        return
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        upstream = f"http://{host}:{port}"
        boto3.client("dynamodb", endpoint_url=upstream).create_table(TableName=TABLE, **TABLE_DEFINITION)
        proxy = start_proxy(upstream)
        try:
            yield boto3.client("dynamodb", endpoint_url=f"http://127.0.0.1:{proxy.server_address[1]}"), proxy.meter
        finally:
            proxy.shutdown()
            proxy.server_close()
    finally:
        server.stop()


def test_meter_bills_the_script_as_aws_would(metered: tuple[Any, Meter]) -> None:
    client, meter = metered
    meter.reset()  # the table's creation (control plane) is free anyway; start from nothing
    for name, call, expected in SCRIPT:
        # Given the ledger so far
        before = meter.snapshot()
        # When one scripted request runs
        call(client)
        # Then it adds exactly the hand-computed bill
        assert _delta(before, meter.snapshot()) == expected, name
    ledger = meter.snapshot()
    assert ledger.unknown == {}
    assert ledger.replay_mismatches == 0
    # 1+2+2+8+2+2+1+2+1+1+4 table WU, 1+0+2+0+0+0+0+1+1+1+0 index WU; 0.5+1+0.5+1+1+2+0.5 RU
    assert (ledger.wu, ledger.ru) == (26 + 6, 6.5)


def test_unprocessed_batch_requests_are_not_billed_and_unknown_operations_are_reported() -> None:
    # Given a meter with no backend to read (no before images: new items)
    meter = Meter()
    first, second = event("ID#u#u1", "EVT#web#m1"), event("ID#u#u2", "EVT#web#m2")
    request = {"RequestItems": {TABLE: [{"PutRequest": {"Item": first}}, {"PutRequest": {"Item": second}}]}}
    # When DynamoDB answers that the second put was not processed, and a PartiQL statement goes by
    meter.after(
        meter.before("BatchWriteItem", request), 200, {"UnprocessedItems": {TABLE: [{"PutRequest": {"Item": second}}]}}
    )
    meter.after(meter.before("ExecuteStatement", {"Statement": "SELECT * FROM t"}), 200, {})
    # Then only the first put is billed, and the statement is counted as unknown rather than skipped
    ledger = meter.snapshot()
    assert _delta(Ledger(), ledger) == {"event": (1, 1, 0, 0, 0, 0)}
    assert ledger.unknown == {"ExecuteStatement": 1}


def test_throttled_requests_are_not_billed() -> None:
    # Given / When: a put answered with throttling
    meter = Meter()
    meter.after(
        meter.before("PutItem", {"TableName": TABLE, "Item": PROFILE}),
        400,
        {"__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException"},
    )
    # Then nothing is billed, and the refusal is on record
    ledger = meter.snapshot()
    assert ledger.entities == {}
    assert ledger.rejected == {"ProvisionedThroughputExceededException": 1}


def test_the_proxy_counts_requests_by_the_function_named_in_their_user_agent(aws_credentials: None) -> None:
    # Given a proxy in front of a moto server, and two clients as the product makes them
    from moto.server import ThreadedMotoServer

    from shared.storage.dynamo import make_client

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        upstream = f"http://{host}:{port}"
        boto3.client("dynamodb", endpoint_url=upstream).create_table(TableName="by-function", **TABLE_DEFINITION)
        proxy = start_proxy(upstream)
        try:
            endpoint = f"http://127.0.0.1:{proxy.server_address[1]}"
            process = make_client(endpoint_url=endpoint, component="process")
            unnamed = make_client(endpoint_url=endpoint)
            proxy.meter.reset()
            # When each makes requests
            for n in range(3):
                process.put_item(TableName="by-function", Item={"PK": {"S": f"p{n}"}, "SK": {"S": "x"}})
            process.get_item(TableName="by-function", Key={"PK": {"S": "p0"}, "SK": {"S": "x"}})
            unnamed.get_item(TableName="by-function", Key={"PK": {"S": "p1"}, "SK": {"S": "x"}})
            # Then the ledger says which function made which
            assert proxy.meter.snapshot().components == {"process": {"PutItem": 3, "GetItem": 1}, "": {"GetItem": 1}}
        finally:
            proxy.shutdown()
            proxy.server_close()
    finally:
        server.stop()


CHILD = """
import sys
from shared.storage.dynamo import make_client
from shared.storage.schema import TABLE_DEFINITION

client = make_client(endpoint_url=sys.argv[1], component="process")
client.create_table(TableName="t", **TABLE_DEFINITION)
client.put_item(TableName="t", Item={"PK": {"S": "ID#u#1"}, "SK": {"S": "LINK"}, "entity": {"S": "link"}})
print("READY", flush=True)
sys.stdin.readline()
client.put_item(TableName="t", Item={"PK": {"S": "ID#u#2"}, "SK": {"S": "LINK"}, "entity": {"S": "link"}})
client.get_item(TableName="t", Key={"PK": {"S": "ID#u#2"}, "SK": {"S": "LINK"}})
print("DONE", flush=True)
sys.stdin.readline()
"""


def test_a_process_started_with_the_bench_hook_bills_its_embedded_database_requests_into_its_dump(tmp_path) -> None:
    # Given a Python process started as the cost bench starts `footfall serve` (benchmarks/metered on PYTHONPATH),
    # which makes an embedded-database client through make_client and writes one item before the ledger is reset
    import os
    import subprocess
    import sys
    from pathlib import Path

    from benchmarks.meter import MeterDumps

    root = Path(__file__).resolve().parents[2]
    meter_dir = tmp_path / "meter"
    meter_dir.mkdir()
    env = dict(os.environ, FOOTFALL_METER_DIR=str(meter_dir))
    env["PYTHONPATH"] = os.pathsep.join([str(root / "benchmarks" / "metered"), str(root / "benchmarks"), str(root)])
    endpoint = f"sqlite:///{tmp_path / 'footfall.db'}"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, endpoint], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout.readline().strip() == "READY"
        dumps = MeterDumps(meter_dir)
        dumps.reset()
        # When it writes a second item (PK 2+6, SK 2+4, entity 6+4 = 24 bytes: 1 WU) and reads it back (0.5 RU)
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "DONE"
        ledger = dumps.ledger()
    finally:
        child.stdin.close()
        child.wait(timeout=30)
    # Then the summed dumps hold exactly what followed the reset, named after the function that made it
    assert ledger.entities["link"].writes == 1
    assert ledger.wu == 1
    assert ledger.ru == 0.5
    assert ledger.components == {"process": {"PutItem": 1, "GetItem": 1}}
