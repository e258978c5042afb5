"""The SAM template and the code agree: table keys and indexes, TTL, stream, routes, handler (IAM: tests/infra)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import boto3
import yaml
from moto import mock_aws

from shared.local.apigw import http_api_event
from shared.storage.schema import TABLE_DEFINITION, TTL_ATTRIBUTE
from tests.conftest import TABLE

TEMPLATE = Path(__file__).resolve().parents[2] / "infra" / "template.yaml"


class _CloudFormationLoader(yaml.SafeLoader):
    """Reads `!Ref`, `!GetAtt`, `!Sub`… as plain values."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return {suffix: loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {suffix: loader.construct_sequence(node, deep=True)}
    return {suffix: loader.construct_mapping(node, deep=True)}


_CloudFormationLoader.add_multi_constructor("!", _tag)


def template() -> dict[str, Any]:
    return yaml.load(TEMPLATE.read_text(), Loader=_CloudFormationLoader)


def table() -> dict[str, Any]:
    return template()["Resources"]["Table"]["Properties"]


def test_template_table_declares_the_same_keys_and_indexes_as_the_code():
    declared = table()
    for key in ("AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes", "BillingMode"):
        assert declared[key] == TABLE_DEFINITION[key], key
    assert (
        declared["StreamSpecification"]["StreamViewType"] == TABLE_DEFINITION["StreamSpecification"]["StreamViewType"]
    )


def test_template_table_expires_items_on_the_codes_ttl_attribute_and_keeps_backups():
    declared = table()
    assert declared["TimeToLiveSpecification"] == {"AttributeName": TTL_ATTRIBUTE, "Enabled": True}
    assert declared["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True


def test_every_template_route_reaches_a_handler_route(lambda_context):
    # Given the collect handler named by the template, inside moto
    function = template()["Resources"]["CollectFunction"]["Properties"]
    module_name, _, attribute = function["Handler"].rpartition(".")
    with mock_aws():
        boto3.client("dynamodb").create_table(TableName=TABLE, **TABLE_DEFINITION)
        module = importlib.import_module(module_name)
        module.collector.cache_clear()
        handler = getattr(module, attribute)

        def status(method: str, path: str) -> int:
            return int(handler(http_api_event(method, path), lambda_context)["statusCode"])

        # When each template route is called with a concrete path; Then the resolver knows it (never a 404)
        for event in function["Events"].values():
            path = re.sub(r"\{\w+\}", "track", event["Properties"]["Path"])
            assert status(event["Properties"]["Method"], path) != 404, path
        assert status("GET", "/v1/nothing/here") == 404
        module.collector.cache_clear()


ENTITIES = ("event", "membership", "analytics_cells", "profile", "link", "counter", "fold")


def _let_in(stream: dict[str, Any], local_filter: Any) -> set[tuple[str, str]]:
    """What a mapping's event filter lets through, asserted equal to the local runner's filter record by record."""
    import json

    patterns = [json.loads(f["Pattern"]) for f in stream["FilterCriteria"]["Filters"]]
    let_in = set()
    for name in ("INSERT", "MODIFY", "REMOVE"):
        for entity in ENTITIES:
            # A REMOVE carries only the old image, the others the new one (a MODIFY both: its entity never changes).
            images = (
                ("OldImage",) if name == "REMOVE" else ("NewImage", "OldImage") if name == "MODIFY" else ("NewImage",)
            )
            record = {"eventName": name, "dynamodb": {image: {"entity": {"S": entity}} for image in images}}
            template_lets_it_in = any(
                name in p["eventName"]
                and any(entity in p["dynamodb"].get(image, {}).get("entity", {}).get("S", []) for image in images)
                for p in patterns
            )
            assert template_lets_it_in == local_filter(record), (name, entity)
            if template_lets_it_in:
                let_in.add((name, entity))
    return let_in


def _mapping(function: str) -> dict[str, Any]:
    stream = template()["Resources"][function]["Properties"]["Events"]["Stream"]["Properties"]
    assert stream["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert stream["BisectBatchOnFunctionError"] is True
    assert 0 < stream["MaximumRetryAttempts"] <= 10
    assert stream["MaximumRecordAgeInSeconds"] <= 6 * 3600
    assert "OnFailure" in stream["DestinationConfig"]
    return stream  # type: ignore[no-any-return]


def test_process_function_consumes_the_stream_like_the_local_runner():
    from shared.local.streams import process_filter

    stream = _mapping("ProcessFunction")
    assert stream["MaximumBatchingWindowInSeconds"] <= 1  # segments within seconds
    assert _let_in(stream, process_filter) == {
        ("INSERT", "event"),
        ("INSERT", "membership"),
        ("MODIFY", "membership"),
        ("INSERT", "profile"),
        ("MODIFY", "profile"),
    }


def test_fold_function_consumes_the_stream_like_the_local_runner():
    from shared.local.streams import FOLD_BATCH_SIZE, FOLD_SECONDS, fold_filter

    stream = _mapping("FoldFunction")
    # the shard's id comes in each event only with a tumbling window: the fold keeps a mark per shard
    assert 0 < stream["TumblingWindowInSeconds"] <= 900
    # a longer window than processing's: counters are written once per window; locally it is no longer
    assert FOLD_SECONDS <= stream["MaximumBatchingWindowInSeconds"] <= 30
    assert stream["BatchSize"] == FOLD_BATCH_SIZE  # a counter item is written once per invocation, here as there
    assert _let_in(stream, fold_filter) == {
        (name, entity)
        for name in ("INSERT", "MODIFY", "REMOVE")
        for entity in ("membership", "profile", "analytics_cells")
    }
    # (its role, and every other role, is checked in tests/infra/test_iam.py)
