"""The translated template deploys into moto's CloudFormation, and deleting the stack keeps the table.

moto's CloudFormation does not know every resource type; those (and what points at them) are left out, by
name, and checked statically in tests/infra/test_template.py instead. Everything else really gets created.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.cloudformation.parsing import get_model_map
from moto.events.models import EventBus

from shared.storage.schema import TABLE_DEFINITION
from tests.infra.cfn import FUNCTIONS, REGION, ROLES, references, sam_template, translate

STACK = "footfall-moto"
BUCKET = "footfall-artifacts"
# What moto 5.2's CloudFormation cannot create; anything else missing from the stack fails the test.
NOT_IN_MOTO = {
    "AWS::CloudWatch::Alarm",
    "AWS::ApiGatewayV2::Api",
    "AWS::ApiGatewayV2::Stage",
    "AWS::SNS::Subscription",
}


def deployable(cfn: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """The template without the resources moto cannot create and those that refer to them; and what was left out."""
    resources = cfn["Resources"]
    supported = set(get_model_map())
    left_out = {name for name, resource in resources.items() if resource["Type"] not in supported}
    while dependents := {
        name for name, resource in resources.items() if name not in left_out and set(references(resource)) & left_out
    }:
        left_out |= dependents
    kept = {name: resource for name, resource in resources.items() if name not in left_out}
    outputs = {name: out for name, out in cfn["Outputs"].items() if not set(references(out)) & left_out}
    return {**cfn, "Resources": kept, "Outputs": outputs}, left_out


@pytest.fixture(scope="module")
def stack() -> Iterator[dict[str, Any]]:
    with pytest.MonkeyPatch.context() as env:
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
        }.items():
            env.setenv(name, value)
        # moto 5.2 gives an EventBus no physical id, so its `Ref` yields a Python object; CloudFormation's is the name.
        env.setattr(EventBus, "physical_resource_id", property(lambda bus: bus.name), raising=False)
        cfn, left_out = deployable(translate(sam_template(), code_bucket=BUCKET))
        with mock_aws():
            s3 = boto3.client("s3")
            s3.create_bucket(Bucket=BUCKET)
            archive = io.BytesIO()
            with zipfile.ZipFile(archive, "w") as zipped:
                zipped.writestr("functions/__init__.py", "")
            for name in FUNCTIONS:
                s3.put_object(Bucket=BUCKET, Key=f"{name}.zip", Body=archive.getvalue())
            cloudformation = boto3.client("cloudformation")
            cloudformation.create_stack(StackName=STACK, TemplateBody=json.dumps(cfn), Capabilities=["CAPABILITY_IAM"])
            summaries = cloudformation.list_stack_resources(StackName=STACK)["StackResourceSummaries"]
            yield {
                "template": cfn,
                "left_out": left_out,
                "status": cloudformation.describe_stacks(StackName=STACK)["Stacks"][0]["StackStatus"],
                "physical": {s["LogicalResourceId"]: s["PhysicalResourceId"] for s in summaries},
                "resource_status": {s["LogicalResourceId"]: s["ResourceStatus"] for s in summaries},
            }


def test_only_what_moto_cannot_create_is_left_out(stack, translated):
    resources = translated["Resources"]
    unsupported = {name for name in stack["left_out"] if resources[name]["Type"] in NOT_IN_MOTO}
    assert {resources[name]["Type"] for name in unsupported} == NOT_IN_MOTO
    # the rest left out are only the API's invoke permissions, which name the API
    for name in stack["left_out"] - unsupported:
        assert resources[name]["Type"] == "AWS::Lambda::Permission" and "HttpApi" in references(resources[name]), name


def test_every_other_resource_is_created(stack):
    assert stack["status"] == "CREATE_COMPLETE"
    assert set(stack["resource_status"]) == set(stack["template"]["Resources"])
    assert set(stack["resource_status"].values()) == {"CREATE_COMPLETE"}


def test_the_table_has_the_codes_keys_indexes_and_stream(stack):
    table = boto3.client("dynamodb").describe_table(TableName=stack["physical"]["Table"])["Table"]
    assert table["KeySchema"] == TABLE_DEFINITION["KeySchema"]
    assert sorted(table["AttributeDefinitions"], key=str) == sorted(TABLE_DEFINITION["AttributeDefinitions"], key=str)
    ((index),) = table["GlobalSecondaryIndexes"]
    expected = TABLE_DEFINITION["GlobalSecondaryIndexes"][0]
    assert (index["IndexName"], index["KeySchema"], index["Projection"]) == (
        expected["IndexName"],
        expected["KeySchema"],
        expected["Projection"],
    )
    assert table["StreamSpecification"] == TABLE_DEFINITION["StreamSpecification"]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    # (moto's CloudFormation does not apply TTL or point-in-time recovery: tests/architecture checks the template)


def test_the_dead_letter_queue_keeps_records_14_days(stack):
    url = stack["physical"]["ProcessDeadLetters"]
    attributes = boto3.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["MessageRetentionPeriod"] == "1209600"


def test_the_audience_bus_and_the_minute_rule_exist(stack):
    events = boto3.client("events")
    assert events.describe_event_bus(Name=f"{STACK}-audiences")["Name"] == f"{STACK}-audiences"
    rule = events.describe_rule(Name=stack["physical"]["ScheduleFunctionEveryMinute"])
    assert rule["ScheduleExpression"] == "rate(1 minute)"
    (target,) = events.list_targets_by_rule(Rule=rule["Name"])["Targets"]
    assert target["Arn"].endswith(f":function:{stack['physical']['ScheduleFunction']}")


def test_the_process_function_reads_the_tables_stream_with_bounded_retries(stack):
    lambdas = boto3.client("lambda")
    (mapping,) = lambdas.list_event_source_mappings(FunctionName=stack["physical"]["ProcessFunction"])[
        "EventSourceMappings"
    ]
    stream = boto3.client("dynamodb").describe_table(TableName=stack["physical"]["Table"])["Table"]["LatestStreamArn"]
    assert mapping["EventSourceArn"] == stream
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert (mapping["BisectBatchOnFunctionError"], mapping["MaximumRetryAttempts"]) == (True, 5)
    assert mapping["MaximumRecordAgeInSeconds"] <= 6 * 3600
    queue = boto3.client("sqs").get_queue_attributes(
        QueueUrl=stack["physical"]["ProcessDeadLetters"], AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    assert mapping["DestinationConfig"]["OnFailure"]["Destination"] == queue


def test_each_function_runs_with_its_own_role(stack):
    lambdas, iam = boto3.client("lambda"), boto3.client("iam")
    for function in FUNCTIONS:
        configuration = lambdas.get_function_configuration(FunctionName=stack["physical"][function])
        role = iam.get_role(RoleName=stack["physical"][ROLES[function]])["Role"]
        assert configuration["Role"] == role["Arn"], function
        assert (configuration["Runtime"], configuration["Handler"].split(".")[0]) == ("python3.11", "functions")
        assert configuration["Environment"]["Variables"]["FOOTFALL_TABLE_NAME"] == stack["physical"]["Table"]
    process = lambdas.get_function_configuration(FunctionName=stack["physical"]["ProcessFunction"])
    assert process["Environment"]["Variables"]["FOOTFALL_EVENT_BUS"] == f"{STACK}-audiences"


def test_deleting_the_stack_keeps_the_table_and_removes_the_rest(stack):
    # Given the deployed stack
    dynamodb, sqs = boto3.client("dynamodb"), boto3.client("sqs")
    assert stack["physical"]["Table"] in dynamodb.list_tables()["TableNames"]
    # When it is deleted
    boto3.client("cloudformation").delete_stack(StackName=STACK)
    # Then the table, with the customers' data, is still there; the queue, the functions and the roles are gone
    assert stack["physical"]["Table"] in dynamodb.list_tables()["TableNames"]
    assert sqs.list_queues().get("QueueUrls", []) == []
    assert boto3.client("lambda").list_functions()["Functions"] == []
    assert not [r for r in boto3.client("iam").list_roles()["Roles"] if r["RoleName"].startswith(STACK)]
