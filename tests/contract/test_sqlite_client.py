"""The embedded database answers the store's own requests as DynamoDB (here moto) does: the same items, the same
pages, the same errors. Every expression string in `shared/storage/*.py` is here, and every limit."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from shared.storage.schema import TABLE_DEFINITION
from shared.storage.sqlite.engine import SqliteClient

pytestmark = pytest.mark.integration

T = "t"


def s(value: str) -> dict[str, str]:
    return {"S": value}


def n(value: int) -> dict[str, str]:
    return {"N": str(value)}


def key(pk: str, sk: str) -> dict[str, Any]:
    return {"PK": s(pk), "SK": s(sk)}


def put(pk: str, sk: str, **attributes: Any) -> dict[str, Any]:
    return {"TableName": T, "Item": key(pk, sk) | attributes}


SEED = [
    put("C#1", "PROFILE", entity=s("profile"), version=n(1), GSI1PK=s("CUSTOMERS#0"), GSI1SK=s("c1")),
    put("C#2", "PROFILE", entity=s("profile"), version=n(3), GSI1PK=s("CUSTOMERS#0"), GSI1SK=s("c2")),
    put("C#3", "PROFILE", entity=s("profile"), version=n(1), GSI1PK=s("CUSTOMERS#1"), GSI1SK=s("c3")),
    put("C#1", "MEMBER#buyers", entity=s("membership"), state=s("in"), customer_id=s("c1")),
    put("ID#u#1", "EVENT#2026-11-01#a", entity=s("event"), body={"B": b"\x00zip"}),
    put("ID#u#1", "EVENT#2026-11-02#b", entity=s("event"), body={"B": b"\x01zip"}),
    put("ID#u#1", "EVENT#2026-11-03#c", entity=s("event")),
    put("ID#u#1", "LINK", entity=s("link"), customer_id=s("c1")),
    put("ID#u#2", "FORGOTTEN", entity=s("forgotten")),
    put("DUE#5", "c1#buyers", entity=s("due"), segment=s("buyers")),
    put("DUE#5", "c2", entity=s("due_index"), minute=s("5")),
    put("DUE#6", "c3", entity=s("due_index")),
    put("SEGHIST#buyers", "2026-11-01#c1#in", customer_id=s("c1")),
    put("SEGHIST#buyers", "2026-11-02#c2#in", customer_id=s("c2")),
    put("SEGHIST#buyers", "2026-11-03#c1#out", customer_id=s("c1")),
    put("COUNTER#f", "2026-11-01", entity=s("counter"), step0=n(4)),
]

Q = {"TableName": T}
CASES: dict[str, list[tuple[str, dict[str, Any]]]] = {
    # dynamo.py
    "events of an identity": [
        (
            "query",
            Q
            | {
                "KeyConditionExpression": "PK = :pk AND begins_with(SK, :sk)",
                "ExpressionAttributeValues": {":pk": s("ID#u#1"), ":sk": s("EVENT#")},
            },
        ),
    ],
    "failed days since": [
        (
            "query",
            Q
            | {
                "KeyConditionExpression": "PK = :pk AND SK >= :oldest",
                "ProjectionExpression": "SK",
                "ExpressionAttributeValues": {":pk": s("ID#u#1"), ":oldest": s("EVENT#2026-11-02")},
            },
        ),
    ],
    "a count query": [
        (
            "query",
            Q
            | {
                "KeyConditionExpression": "PK = :pk",
                "Select": "COUNT",
                "ExpressionAttributeValues": {":pk": s("ID#u#1")},
            },
        ),
    ],
    "newest first, a page at a time": [
        (
            "query",
            Q
            | {
                "KeyConditionExpression": "PK = :pk AND begins_with(SK, :sk)",
                "ScanIndexForward": False,
                "Limit": 2,
                "ExpressionAttributeValues": {":pk": s("ID#u#1"), ":sk": s("EVENT#")},
            },
        ),
        (
            "query",
            Q
            | {
                "KeyConditionExpression": "PK = :pk AND begins_with(SK, :sk)",
                "ScanIndexForward": False,
                "Limit": 2,
                "ExclusiveStartKey": key("ID#u#1", "EVENT#2026-11-02#b"),
                "ExpressionAttributeValues": {":pk": s("ID#u#1"), ":sk": s("EVENT#")},
            },
        ),
    ],
    "the customers index, keys only, paged": [
        (
            "query",
            Q
            | {
                "IndexName": "GSI1",
                "KeyConditionExpression": "GSI1PK = :pk",
                "Limit": 1,
                "ExpressionAttributeValues": {":pk": s("CUSTOMERS#0")},
            },
        ),
        (
            "query",
            Q
            | {
                "IndexName": "GSI1",
                "KeyConditionExpression": "GSI1PK = :pk",
                "Limit": 5,
                "ExclusiveStartKey": key("C#1", "PROFILE") | {"GSI1PK": s("CUSTOMERS#0"), "GSI1SK": s("c1")},
                "ExpressionAttributeValues": {":pk": s("CUSTOMERS#0")},
            },
        ),
    ],
    "link unless linked": [
        ("put_item", put("ID#u#1", "LINK", customer_id=s("c9")) | {"ConditionExpression": "attribute_not_exists(PK)"}),
        ("put_item", put("ID#u#9", "LINK", customer_id=s("c9")) | {"ConditionExpression": "attribute_not_exists(PK)"}),
        ("get_item", {"TableName": T, "Key": key("ID#u#9", "LINK"), "ConsistentRead": True}),
    ],
    "versioned profile write": [
        (
            "put_item",
            put("C#2", "PROFILE", version=n(4))
            | {"ConditionExpression": "version = :v", "ExpressionAttributeValues": {":v": n(2)}},
        ),
        (
            "put_item",
            put("C#2", "PROFILE", version=n(4))
            | {"ConditionExpression": "version = :v", "ExpressionAttributeValues": {":v": n(3)}},
        ),
        ("get_item", {"TableName": T, "Key": key("C#2", "PROFILE")}),
    ],
    "merge: a transaction with a failing condition is all or nothing": [
        (
            "transact_write_items",
            {
                "TransactItems": [
                    {
                        "Put": put("C#1", "PROFILE", version=n(2))
                        | {"ConditionExpression": "version = :v", "ExpressionAttributeValues": {":v": n(1)}}
                    },
                    {
                        "Put": put("C#2", "PROFILE", version=n(9))
                        | {"ConditionExpression": "version = :v", "ExpressionAttributeValues": {":v": n(1)}}
                    },
                    {"Put": put("ID#a#1", "LINK", customer_id=s("c1"))},
                ]
            },
        ),
        (
            "batch_get_item",
            {"RequestItems": {T: {"Keys": [key("C#1", "PROFILE"), key("ID#a#1", "LINK")], "ConsistentRead": True}}},
        ),
    ],
    "batch write and batch get": [
        (
            "batch_write_item",
            {
                "RequestItems": {
                    T: [{"PutRequest": {"Item": key("X", str(i)) | {"v": n(i)}}} for i in range(24)]
                    + [{"DeleteRequest": {"Key": key("C#3", "PROFILE")}}]
                }
            },
        ),
        (
            "batch_get_item",
            {
                "RequestItems": {
                    T: {
                        "Keys": [key("X", "3"), key("C#3", "PROFILE")],
                        "ProjectionExpression": "#v",
                        "ExpressionAttributeNames": {"#v": "v"},
                    }
                }
            },
        ),
    ],
    # segments.py
    "due rows between": [
        (
            "query",
            Q
            | {
                "KeyConditionExpression": "PK = :pk AND SK BETWEEN :low AND :high",
                "ConsistentRead": True,
                "ExpressionAttributeValues": {":pk": s("DUE#5"), ":low": s("c"), ":high": s("c1~")},
            },
        ),
    ],
    "membership enters and exits": [
        (
            "put_item",
            put("C#1", "MEMBER#buyers", state=s("in"))
            | {
                "ConditionExpression": "attribute_not_exists(PK) OR #state = :out",
                "ExpressionAttributeNames": {"#state": "state"},
                "ExpressionAttributeValues": {":out": s("out")},
            },
        ),
        (
            "put_item",
            put("C#1", "MEMBER#buyers", state=s("out"))
            | {
                "ConditionExpression": "#state = :in",
                "ExpressionAttributeNames": {"#state": "state"},
                "ExpressionAttributeValues": {":in": s("in")},
            },
        ),
        (
            "put_item",
            put("C#5", "MEMBER#buyers", state=s("in"))
            | {
                "ConditionExpression": "attribute_not_exists(PK) OR #state = :out",
                "ExpressionAttributeNames": {"#state": "state"},
                "ExpressionAttributeValues": {":out": s("out")},
            },
        ),
        (
            "scan",
            {
                "TableName": T,
                "FilterExpression": "begins_with(SK, :m)",
                "ExpressionAttributeValues": {":m": s("MEMBER#")},
            },
        ),
    ],
    "history up to, latest first": [
        (
            "query",
            Q
            | {
                "KeyConditionExpression": "PK = :pk AND SK <= :until",
                "ExpressionAttributeValues": {":pk": s("SEGHIST#buyers"), ":until": s("2026-11-02~")},
            },
        ),
        (
            "query",
            Q
            | {
                "KeyConditionExpression": "PK = :pk",
                "ScanIndexForward": False,
                "Limit": 1,
                "ExpressionAttributeValues": {":pk": s("SEGHIST#buyers")},
            },
        ),
    ],
    "old due items, scanned with a filter": [
        (
            "scan",
            {
                "TableName": T,
                "ConsistentRead": True,
                "FilterExpression": "(#e = :due AND attribute_exists(#segment)) "
                "OR (#e = :index AND attribute_exists(#minute))",
                "ExpressionAttributeNames": {"#e": "entity", "#segment": "segment", "#minute": "minute"},
                "ExpressionAttributeValues": {":due": s("due"), ":index": s("due_index")},
            },
        ),
    ],
    # analytics.py
    "fold mark and counters in one transaction": [
        (
            "transact_write_items",
            {
                "TransactItems": [
                    {
                        "Update": {
                            "TableName": T,
                            "Key": key("COUNTER#f", "2026-11-01"),
                            "UpdateExpression": "ADD #0 :0, #1 :1 SET entity = :entity",
                            "ExpressionAttributeNames": {"#0": "step0", "#1": "step1"},
                            "ExpressionAttributeValues": {":0": n(2), ":1": n(1), ":entity": s("counter")},
                        }
                    },
                    {
                        "Update": {
                            "TableName": T,
                            "Key": key("FOLD", "mark"),
                            "UpdateExpression": "SET mark = :upto, entity = :entity",
                            "ConditionExpression": "attribute_not_exists(PK)",
                            "ExpressionAttributeValues": {":upto": s("2026-11-01"), ":entity": s("fold")},
                        }
                    },
                ]
            },
        ),
        (
            "transact_write_items",
            {
                "TransactItems": [
                    {
                        "Update": {
                            "TableName": T,
                            "Key": key("FOLD", "mark"),
                            "UpdateExpression": "SET mark = :upto, entity = :entity",
                            "ConditionExpression": "mark = :after",
                            "ExpressionAttributeValues": {
                                ":upto": s("2026-11-02"),
                                ":entity": s("fold"),
                                ":after": s("2026-10-31"),
                            },
                        }
                    },
                ]
            },
        ),
        (
            "query",
            Q
            | {
                "KeyConditionExpression": "#pk = :pk AND SK BETWEEN :a AND :b",
                "ExpressionAttributeNames": {"#pk": "PK"},
                "ExpressionAttributeValues": {":pk": s("COUNTER#f"), ":a": s("2026-11-01"), ":b": s("2026-11-30")},
            },
        ),
        ("get_item", {"TableName": T, "Key": key("FOLD", "mark")}),
    ],
    # erasure.py, migrate.py
    "erasure epoch and marks": [
        (
            "update_item",
            {
                "TableName": T,
                "Key": key("ERASURE", "EPOCH"),
                "UpdateExpression": "ADD #epoch :one SET #entity = :entity",
                "ExpressionAttributeNames": {"#epoch": "epoch", "#entity": "entity"},
                "ExpressionAttributeValues": {":one": n(1), ":entity": s("erasure_epoch")},
                "ReturnValues": "ALL_NEW",
            },
        ),
        (
            "update_item",
            {
                "TableName": T,
                "Key": key("ERASURE", "EPOCH"),
                "UpdateExpression": "ADD #epoch :one SET #entity = :entity",
                "ExpressionAttributeNames": {"#epoch": "epoch", "#entity": "entity"},
                "ExpressionAttributeValues": {":one": n(1), ":entity": s("erasure_epoch")},
            },
        ),
        (
            "update_item",
            {
                "TableName": T,
                "Key": key("ERASURE", "EPOCH"),
                "UpdateExpression": "SET #marks = :hashed, #entity = :entity",
                "ExpressionAttributeNames": {"#marks": "marks", "#entity": "entity"},
                "ExpressionAttributeValues": {":hashed": s("hashed"), ":entity": s("erasure_epoch")},
            },
        ),
        (
            "scan",
            {
                "TableName": T,
                "FilterExpression": "SK = :forgotten AND begins_with(PK, :raw)",
                "ExpressionAttributeValues": {":forgotten": s("FORGOTTEN"), ":raw": s("ID#")},
            },
        ),
        (
            "query",
            Q
            | {
                "KeyConditionExpression": "PK = :pk",
                "ProjectionExpression": "PK, SK, customer_id",
                "ExpressionAttributeValues": {":pk": s("SEGHIST#buyers")},
            },
        ),
        ("delete_item", {"TableName": T, "Key": key("ID#u#2", "FORGOTTEN"), "ReturnValues": "ALL_OLD"}),
    ],
    "schema version only goes up": [
        *[
            (
                "update_item",
                {
                    "TableName": T,
                    "Key": key("SCHEMA", "VERSION"),
                    "UpdateExpression": "SET #version = :v, #entity = :entity",
                    "ConditionExpression": "attribute_not_exists(#version) OR #version < :v",
                    "ExpressionAttributeNames": {"#version": "version", "#entity": "entity"},
                    "ExpressionAttributeValues": {":v": n(v), ":entity": s("schema")},
                },
            )
            for v in (3, 2, 4)
        ],
        ("get_item", {"TableName": T, "Key": key("SCHEMA", "VERSION")}),
    ],
    # the rest of the grammar
    "comparisons, IN, NOT, contains, attribute_type": [
        (
            "put_item",
            put("G", "1", tags={"SS": ["a", "b"]}, nums={"NS": ["1", "2"]}, name_=s("hello"), l={"L": [s("x")]}),
        ),
        *[
            ("scan", {"TableName": T, "FilterExpression": expression, "ExpressionAttributeValues": values})
            for expression, values in [
                ("contains(tags, :a) AND NOT contains(tags, :z)", {":a": s("a"), ":z": s("z")}),
                ("attribute_type(nums, :ns) AND contains(nums, :one)", {":ns": s("NS"), ":one": n(1)}),
                (
                    "name_ IN (:a, :b) OR version BETWEEN :lo AND :hi",
                    {":a": s("x"), ":b": s("hello"), ":lo": n(2), ":hi": n(3)},
                ),
                ("version <> :one AND version >= :one", {":one": n(1)}),
                ("begins_with(name_, :h) AND contains(l, :x)", {":h": s("he"), ":x": s("x")}),
            ]
        ],
    ],
    "update grammar: arithmetic, if_not_exists, list_append, REMOVE, ADD and DELETE on sets": [
        (
            "update_item",
            {
                "TableName": T,
                "Key": key("U", "1"),
                "UpdateExpression": "SET a = if_not_exists(a, :zero) + :two, "
                "l = list_append(if_not_exists(l, :empty), :l) ADD tags :t",
                "ExpressionAttributeValues": {
                    ":zero": n(0),
                    ":two": n(2),
                    ":empty": {"L": []},
                    ":l": {"L": [s("x")]},
                    ":t": {"SS": ["a", "b"]},
                },
                "ReturnValues": "ALL_NEW",
            },
        ),
        (
            "update_item",
            {
                "TableName": T,
                "Key": key("U", "1"),
                "UpdateExpression": "SET a = a - :one REMOVE l DELETE tags :a",
                "ExpressionAttributeValues": {":one": n(1), ":a": {"SS": ["a"]}},
                "ReturnValues": "UPDATED_NEW",
            },
        ),
        (
            "update_item",
            {
                "TableName": T,
                "Key": key("U", "1"),
                "UpdateExpression": "DELETE tags :b",
                "ExpressionAttributeValues": {":b": {"SS": ["b"]}},
                "ReturnValues": "ALL_NEW",
            },
        ),
    ],
}

ERRORS: dict[str, tuple[str, dict[str, Any]]] = {
    "an item over 400 KB": ("put_item", put("BIG", "1", data=s("x" * 400 * 1024))),
    "a partition key over 2048 bytes": ("put_item", put("P" * 2049, "1")),
    "a sort key over 1024 bytes": ("put_item", put("P", "S" * 1025)),
    "an index key over 1024 bytes": ("put_item", put("P", "1", GSI1PK=s("g"), GSI1SK=s("S" * 1025))),
    "an empty key": ("put_item", put("", "1")),
    "an empty index key": ("put_item", put("P", "1", GSI1PK=s(""), GSI1SK=s("x"))),
    "an index key of the wrong type": ("put_item", put("P", "1", GSI1PK=n(1), GSI1SK=s("x"))),
    "a key of the wrong type": ("put_item", {"TableName": T, "Item": {"PK": n(1), "SK": s("1")}}),
    "a missing key": ("put_item", {"TableName": T, "Item": {"PK": s("1")}}),
    "a key with an extra attribute": ("get_item", {"TableName": T, "Key": key("C#1", "PROFILE") | {"x": s("1")}}),
    "101 transaction actions": (
        "transact_write_items",
        {"TransactItems": [{"Put": put("P", str(i))} for i in range(101)]},
    ),
    "two actions on one item": (
        "transact_write_items",
        {"TransactItems": [{"Put": put("P", "1")}, {"Put": put("P", "1")}]},
    ),
    "26 batch writes": (
        "batch_write_item",
        {"RequestItems": {T: [{"PutRequest": {"Item": key("P", str(i))}} for i in range(26)]}},
    ),
    "one item twice in a batch write": (
        "batch_write_item",
        {"RequestItems": {T: [{"PutRequest": {"Item": key("P", "1")}}] * 2}},
    ),
    "101 batch gets": ("batch_get_item", {"RequestItems": {T: {"Keys": [key("P", str(i)) for i in range(101)]}}}),
    "an unknown table": ("get_item", {"TableName": "nope", "Key": key("P", "1")}),
    "an unused value": (
        "put_item",
        put("P", "1")
        | {"ConditionExpression": "attribute_not_exists(PK)", "ExpressionAttributeValues": {":x": s("x")}},
    ),
    "an unused name": (
        "put_item",
        put("P", "1") | {"ConditionExpression": "attribute_not_exists(PK)", "ExpressionAttributeNames": {"#x": "x"}},
    ),
    "an undefined value": ("put_item", put("P", "1") | {"ConditionExpression": "version = :v"}),
    "a reserved word": (
        "put_item",
        put("P", "1") | {"ConditionExpression": "state = :s", "ExpressionAttributeValues": {":s": s("in")}},
    ),
    "a syntax error": ("put_item", put("P", "1") | {"ConditionExpression": "attribute_not_exists(PK) AND"}),
    "empty values": (
        "put_item",
        put("P", "1") | {"ConditionExpression": "attribute_not_exists(PK)", "ExpressionAttributeValues": {}},
    ),
    "an update of a key attribute": (
        "update_item",
        {
            "TableName": T,
            "Key": key("P", "1"),
            "UpdateExpression": "SET SK = :x",
            "ExpressionAttributeValues": {":x": s("2")},
        },
    ),
    "two updates of one attribute": (
        "update_item",
        {
            "TableName": T,
            "Key": key("P", "1"),
            "UpdateExpression": "SET a = :x, a = :x",
            "ExpressionAttributeValues": {":x": s("2")},
        },
    ),
    "ADD to a string": (
        "update_item",
        {
            "TableName": T,
            "Key": key("C#1", "PROFILE"),
            "UpdateExpression": "ADD entity :x",
            "ExpressionAttributeValues": {":x": n(1)},
        },
    ),
    "a key condition without the partition key": (
        "query",
        Q | {"KeyConditionExpression": "SK = :x", "ExpressionAttributeValues": {":x": s("1")}},
    ),
    "a query filter on a key": (
        "query",
        Q
        | {
            "KeyConditionExpression": "PK = :p",
            "FilterExpression": "SK = :x",
            "ExpressionAttributeValues": {":p": s("P"), ":x": s("1")},
        },
    ),
    "a consistent read of the index": (
        "query",
        Q
        | {
            "IndexName": "GSI1",
            "ConsistentRead": True,
            "KeyConditionExpression": "GSI1PK = :p",
            "ExpressionAttributeValues": {":p": s("P")},
        },
    ),
    "a starting key outside the partition": (
        "query",
        Q
        | {
            "KeyConditionExpression": "PK = :p",
            "ExclusiveStartKey": key("C#1", "PROFILE"),
            "ExpressionAttributeValues": {":p": s("C#2")},
        },
    ),
    "an empty set": ("put_item", put("P", "1", tags={"SS": []})),
    "an unknown index": (
        "query",
        Q | {"IndexName": "GSI9", "KeyConditionExpression": "GSI1PK = :p", "ExpressionAttributeValues": {":p": s("P")}},
    ),
}


@pytest.fixture(scope="module")
def moto_client() -> Iterator[Any]:
    """One moto for the module (starting it is most of a test's time); each test gets the table anew."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
        }.items():
            patch.setenv(name, value)
        with mock_aws():
            yield boto3.client("dynamodb")


@pytest.fixture
def clients(moto_client: Any, tmp_path: Path) -> Iterator[tuple[Any, SqliteClient]]:
    """moto's client and the embedded database's, each with the table and the same seed items."""
    sqlite = SqliteClient(tmp_path / "footfall.db")
    for client in (moto_client, sqlite):
        client.create_table(TableName=T, **TABLE_DEFINITION)
        client.batch_write_item(RequestItems={T: [{"PutRequest": {"Item": p["Item"]}} for p in SEED]})
    yield moto_client, sqlite
    moto_client.delete_table(TableName=T)
    sqlite.close()


def outcome(client: Any, operation: str, params: dict[str, Any]) -> Any:
    """What a request answered (its metadata left out), or the error code and cancellation reasons it raised."""
    try:
        answer = getattr(client, operation)(**params)
    except ClientError as exc:
        reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
        return ("error", exc.response["Error"]["Code"], reasons)
    noise = ("ResponseMetadata", "ConsumedCapacity", "ItemCollectionMetrics")  # moto's empty metrics: no LSI here
    answer = {k: v for k, v in answer.items() if k not in noise}
    if operation == "scan":  # DynamoDB scans in hash order, moto in insertion order: compare as sets
        answer["Items"] = sorted(answer.get("Items", []), key=lambda i: (i["PK"]["S"], i["SK"]["S"]))
    if not answer.get("UnprocessedItems", True):
        answer.pop("UnprocessedItems")
    if not answer.get("UnprocessedKeys", True):
        answer.pop("UnprocessedKeys")
    return answer


@pytest.mark.parametrize("case", list(CASES))
def test_the_store_requests_get_the_same_answers_from_both(clients, case):
    moto, sqlite = clients
    for operation, params in CASES[case]:
        assert outcome(sqlite, operation, params) == outcome(moto, operation, params), (operation, params)


@pytest.mark.parametrize("case", list(ERRORS))
def test_limits_and_bad_requests_fail_as_on_dynamodb(clients, case):
    moto, sqlite = clients
    operation, params = ERRORS[case]
    expected = ("error", MOTO_DIFFERS.get(case, "ValidationException"), [])
    if case == "an unknown table":
        expected = ("error", "ResourceNotFoundException", [])
    assert outcome(sqlite, operation, params) == expected
    if case not in MOTO_DIFFERS:
        assert outcome(moto, operation, params) == expected


MOTO_DIFFERS = {
    # DynamoDB refuses these (ValidationException); moto accepts them, or fails with a Python error.
    "an index key of the wrong type": "ValidationException",
    "26 batch writes": "ValidationException",
    "an unused value": "ValidationException",
    "a query filter on a key": "ValidationException",
    "an undefined value": "ValidationException",
    "a syntax error": "ValidationException",
    # Refused here, accepted by moto: a page can only continue within the partition it queries (the safe side).
    "a starting key outside the partition": "ValidationException",
    # DynamoDB: "The table does not have the specified index" (ValidationException); moto: ResourceNotFoundException.
    "an unknown index": "ValidationException",
}


def test_a_page_that_ends_at_the_limit_has_a_last_key_as_on_dynamodb(clients):
    # Given a partition of exactly two items, read with Limit 2
    moto, sqlite = clients
    params = Q | {"KeyConditionExpression": "PK = :pk", "Limit": 2, "ExpressionAttributeValues": {":pk": s("DUE#5")}}
    # Then DynamoDB stops at the limit and hands back a LastEvaluatedKey (the next page is empty); moto does not
    assert outcome(sqlite, "query", params)["LastEvaluatedKey"] == key("DUE#5", "c2")
    assert "LastEvaluatedKey" not in outcome(moto, "query", params)
    assert outcome(sqlite, "query", params | {"ExclusiveStartKey": key("DUE#5", "c2")})["Items"] == []


def test_size_of_a_missing_attribute_is_false_not_an_error(clients):
    # Given one item with a two-member set, among items without it
    moto, sqlite = clients
    params = {"TableName": T, "FilterExpression": "size(tags) = :two", "ExpressionAttributeValues": {":two": n(2)}}
    for client in (moto, sqlite):
        client.put_item(**put("G", "1", tags={"SS": ["a", "b"]}))
    # Then DynamoDB's filter keeps that item (the others have no size: false); moto refuses the filter instead
    assert [i["PK"] for i in outcome(sqlite, "scan", params)["Items"]] == [s("G")]
    assert outcome(moto, "scan", params)[:2] == ("error", "ValidationException")


@pytest.mark.parametrize("listened", [False, True], ids=["alone", "with a hook on its events"])
def test_its_errors_are_the_clients_exception_classes_whether_or_not_a_hook_listens(clients, listened):
    # Given the embedded client, with or without a handler on its botocore events (a meter, a fault injector)
    _, sqlite = clients
    if listened:
        sqlite.meta.events.register("after-call.dynamodb", lambda **_: None)
    # Then a missing table and a false condition raise the modeled classes, which callers catch by name
    with pytest.raises(sqlite.exceptions.ResourceNotFoundException):
        sqlite.describe_table(TableName="missing")
    with pytest.raises(sqlite.exceptions.ConditionalCheckFailedException):
        sqlite.put_item(**put("C#1", "PROFILE"), ConditionExpression="attribute_not_exists(PK)")
