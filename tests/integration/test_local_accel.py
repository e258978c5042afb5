"""The embedded backend's partition indexes answer every Query exactly as a walk over the whole table does."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from shared.local import accel
from shared.storage.schema import TABLE_DEFINITION

pytestmark = pytest.mark.integration
TABLE = "accel"
PKS = ["ID#a#1", "ID#a#2", "CUSTOMER#x", "CUSTOMER#y"]
SKS = ["EVT#1", "EVT#2", "EVT#3", "PROFILE", "CUSTOMER"]
SHARDS = ["CUSTOMERS#00", "CUSTOMERS#01", "MEMBERS#s"]

keys = st.tuples(st.sampled_from(PKS), st.sampled_from(SKS))
gsi = st.one_of(st.none(), st.tuples(st.sampled_from(SHARDS), st.sampled_from(["c1", "c2", "c3"])))
put = st.tuples(st.just("put"), keys, gsi)
update = st.tuples(st.just("update"), keys, gsi)
delete = st.tuples(st.just("delete"), keys, st.none())
batch = st.tuples(st.just("batch"), st.lists(st.tuples(keys, gsi), min_size=1, max_size=4, unique_by=lambda x: x[0]))
transact = st.tuples(
    st.just("transact"), st.lists(st.tuples(keys, gsi), min_size=1, max_size=3, unique_by=lambda x: x[0]), st.booleans()
)
operations = st.lists(st.one_of(put, update, delete, batch, transact), min_size=1, max_size=25)


@pytest.fixture(scope="module")
def client(aws_credentials_module: None) -> Iterator[Any]:
    accel.install()
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        dynamodb.create_table(TableName=TABLE, **TABLE_DEFINITION)
        yield dynamodb


@pytest.fixture(scope="module")
def aws_credentials_module() -> Iterator[None]:
    patch = pytest.MonkeyPatch()
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
    }.items():
        patch.setenv(name, value)
    yield
    patch.undo()


def _item(key: tuple[str, str], index: tuple[str, str] | None) -> dict[str, Any]:
    item = {"PK": {"S": key[0]}, "SK": {"S": key[1]}, "n": {"N": "1"}}
    if index is not None:
        item |= {"GSI1PK": {"S": index[0]}, "GSI1SK": {"S": index[1]}}
    return item


def _apply(client: Any, operation: tuple[Any, ...]) -> None:
    kind = operation[0]
    if kind == "put":
        client.put_item(TableName=TABLE, Item=_item(operation[1], operation[2]))
    elif kind == "update":
        key = {"PK": {"S": operation[1][0]}, "SK": {"S": operation[1][1]}}
        if operation[2] is None:  # an update that takes the item out of the index
            client.update_item(
                TableName=TABLE,
                Key=key,
                UpdateExpression="REMOVE GSI1PK, GSI1SK ADD n :one",
                ExpressionAttributeValues={":one": {"N": "1"}},
            )
        else:
            client.update_item(
                TableName=TABLE,
                Key=key,
                UpdateExpression="SET GSI1PK = :p, GSI1SK = :s ADD n :one",
                ExpressionAttributeValues={
                    ":p": {"S": operation[2][0]},
                    ":s": {"S": operation[2][1]},
                    ":one": {"N": "1"},
                },
            )
    elif kind == "delete":
        client.delete_item(TableName=TABLE, Key={"PK": {"S": operation[1][0]}, "SK": {"S": operation[1][1]}})
    elif kind == "batch":
        client.batch_write_item(RequestItems={TABLE: [{"PutRequest": {"Item": _item(k, i)}} for k, i in operation[1]]})
    else:  # a transaction, made to fail on its last condition when asked: nothing of it may stay filed
        entries: list[dict[str, Any]] = [{"Put": {"TableName": TABLE, "Item": _item(k, i)}} for k, i in operation[1]]
        if operation[2]:
            entries[-1]["Put"]["ConditionExpression"] = "attribute_not_exists(PK) AND attribute_exists(PK)"
        before, records = sorted(map(str, _everything(client))), len(_stream_records())
        try:
            client.transact_write_items(TransactItems=entries)
        except ClientError as error:
            assert error.response["Error"]["Code"] == "TransactionCanceledException"
            assert sorted(map(str, _everything(client))) == before  # rolled back: nothing of it stays
            assert len(_stream_records()) == records  # and nothing of it reaches the stream


def _stream_records() -> list[Any]:
    from moto.dynamodb.models import dynamodb_backends

    return dynamodb_backends["123456789012"]["us-east-1"].get_table(TABLE).stream_shard.items


def _everything(client: Any) -> list[dict[str, Any]]:
    return client.scan(TableName=TABLE, ConsistentRead=True)["Items"]  # Scan is not narrowed: the reference


def _query_pages(client: Any, **kwargs: Any) -> list[tuple[str, str]]:
    found, start = [], None
    while True:
        page = client.query(TableName=TABLE, Limit=2, **kwargs, **({"ExclusiveStartKey": start} if start else {}))
        found += [(item["PK"]["S"], item["SK"]["S"]) for item in page["Items"]]
        start = page.get("LastEvaluatedKey")
        if not start:
            return found


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=operations)
def test_every_query_answers_what_a_walk_over_the_whole_table_answers(client: Any, operations: list[Any]) -> None:
    for item in _everything(client):
        client.delete_item(TableName=TABLE, Key={"PK": item["PK"], "SK": item["SK"]})
    for operation in operations:
        _apply(client, operation)
    items = _everything(client)
    for pk in PKS:
        expected = sorted((i["PK"]["S"], i["SK"]["S"]) for i in items if i["PK"]["S"] == pk)
        names, values = {"#pk": "PK"}, {":pk": {"S": pk}}
        assert (
            _query_pages(
                client,
                KeyConditionExpression="#pk = :pk",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
            == expected
        )
        events = [key for key in expected if key[1].startswith("EVT#")]
        assert (
            _query_pages(
                client,
                KeyConditionExpression="#pk = :pk AND begins_with(SK, :evt)",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues={**values, ":evt": {"S": "EVT#"}},
                ScanIndexForward=False,
            )
            == events[::-1]
        )
    for shard in SHARDS:
        members = sorted(
            (i["GSI1SK"]["S"], i["PK"]["S"], i["SK"]["S"]) for i in items if i.get("GSI1PK", {}).get("S") == shard
        )
        assert _query_pages(
            client,
            IndexName="GSI1",
            KeyConditionExpression="GSI1PK = :p",
            ExpressionAttributeValues={":p": {"S": shard}},
        ) == [(pk, sk) for _, pk, sk in members]


def test_queries_still_answer_for_a_table_filed_before_the_first_index_query(client: Any) -> None:
    # Given items written before any index query (as a restored snapshot is)
    for item in _everything(client):
        client.delete_item(TableName=TABLE, Key={"PK": item["PK"], "SK": item["SK"]})
    from moto.dynamodb.models import dynamodb_backends

    table = dynamodb_backends["123456789012"]["us-east-1"].get_table(TABLE)
    table.__dict__.pop(accel._GSI, None)
    table.__dict__.pop(accel._WHERE, None)
    client.put_item(TableName=TABLE, Item=_item(("CUSTOMER#x", "PROFILE"), ("CUSTOMERS#00", "x")))
    # Then the first index query files them, and later writes keep the files true
    query = {
        "IndexName": "GSI1",
        "KeyConditionExpression": "GSI1PK = :p",
        "ExpressionAttributeValues": {":p": {"S": "CUSTOMERS#00"}},
    }
    assert _query_pages(client, **query) == [("CUSTOMER#x", "PROFILE")]
    client.delete_item(TableName=TABLE, Key={"PK": {"S": "CUSTOMER#x"}, "SK": {"S": "PROFILE"}})
    assert _query_pages(client, **query) == []


values = st.recursive(
    st.one_of(
        st.text(max_size=5).map(lambda v: {"S": v}),
        st.integers(-(10**6), 10**6).map(lambda v: {"N": str(v)}),
        st.binary(max_size=8).map(lambda v: {"B": v}),
        st.booleans().map(lambda v: {"BOOL": v}),
        st.just({"NULL": True}),
        st.sets(st.binary(min_size=1, max_size=4), min_size=1, max_size=3).map(lambda v: {"BS": sorted(v)}),
        st.sets(st.text(min_size=1, max_size=3), min_size=1, max_size=3).map(lambda v: {"SS": sorted(v)}),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda v: {"L": v}),
        st.dictionaries(st.sampled_from(["B", "BS", "S", "x"]), inner, max_size=3).map(lambda v: {"M": v}),
    ),
    max_leaves=6,
)
attributes = st.dictionaries(st.sampled_from(["B", "BS", "data", "M", "n"]), values, min_size=1, max_size=4)


# 20 examples (~18 s here): each runs every data-plane call twice; the suite stays within its 10 minutes.
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=attributes, second=attributes)
def test_direct_answers_equal_the_serializers_for_every_attribute_type(
    client: Any, monkeypatch: pytest.MonkeyPatch, first: dict[str, Any], second: dict[str, Any]
) -> None:
    from moto.dynamodb.responses import DynamoHandler
    from moto.dynamodbstreams.responses import DynamoDBStreamsHandler

    direct, compared = DynamoHandler.serialized, []

    def both(self: Any, action_result: Any) -> Any:
        answer = direct(self, action_result)
        reference = accel._INSTALLED["serialized"](self, action_result)
        assert answer[0] == reference[0]
        assert answer[1]["Content-Type"] == reference[1]["Content-Type"]
        assert json.loads(answer[2]) == json.loads(reference[2])
        compared.append(self._get_action())
        return answer

    monkeypatch.setattr(DynamoHandler, "serialized", both)
    monkeypatch.setattr(DynamoDBStreamsHandler, "serialized", both)
    key = {"PK": {"S": "P"}, "SK": {"S": "1"}}
    other = {"PK": {"S": "P"}, "SK": {"S": "2"}}
    capacity = {"ReturnConsumedCapacity": "TOTAL"}
    client.put_item(TableName=TABLE, Item={**first, **key}, **capacity)
    client.put_item(TableName=TABLE, Item={**second, **key}, ReturnValues="ALL_OLD")
    client.get_item(TableName=TABLE, Key=key, **capacity)
    client.update_item(
        TableName=TABLE,
        Key=key,
        UpdateExpression="SET extra = :v",
        ExpressionAttributeValues={":v": first[next(iter(first))]},
        ReturnValues="ALL_NEW",
    )
    client.batch_write_item(RequestItems={TABLE: [{"PutRequest": {"Item": {**first, **other}}}]}, **capacity)
    client.batch_get_item(RequestItems={TABLE: {"Keys": [key, other]}})
    client.query(TableName=TABLE, KeyConditionExpression="PK = :p", ExpressionAttributeValues={":p": {"S": "P"}})
    client.scan(TableName=TABLE, Limit=1)
    client.transact_write_items(TransactItems=[{"Put": {"TableName": TABLE, "Item": {**second, **other}}}])
    client.transact_get_items(TransactItems=[{"Get": {"TableName": TABLE, "Key": other}}])
    client.delete_item(TableName=TABLE, Key=key, ReturnValues="ALL_OLD")
    client.delete_item(TableName=TABLE, Key=other)
    streams = boto3.client("dynamodbstreams", region_name="us-east-1")
    arn = client.describe_table(TableName=TABLE)["Table"]["LatestStreamArn"]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][-1]["ShardId"]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
    assert streams.get_records(ShardIterator=iterator["ShardIterator"], Limit=20)["Records"]
    assert set(compared) >= accel.DIRECT_ACTIONS["dynamodb"] | accel.DIRECT_ACTIONS["dynamodbstreams"]
