"""Least privilege, checked on the CloudFormation that gets deployed (the SAM template translated offline).

What each handler really calls is checked against its role in tests/infra/test_packaging.py
(`test_every_aws_call_a_handler_made_is_allowed_by_its_own_role`); these are the static rules.
"""

from __future__ import annotations

from typing import Any

import pytest

from shared.storage.keys import SECRET_PARTITIONS
from tests.infra.cfn import FUNCTIONS, ROLES, allowed, resource_ref, statements

# AWS offers no resource-level permission for these: the only `Resource: "*"` a role may have.
NO_RESOURCE_LEVEL = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}
SECRETS_CONDITION = {"ForAnyValue:StringLike": {"dynamodb:LeadingKeys": list(SECRET_PARTITIONS)}}
STREAM_READ = {"dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator", "dynamodb:ListStreams"}


def role_of(translated: dict[str, Any], function: str) -> dict[str, Any]:
    reference = translated["Resources"][function]["Properties"]["Role"]
    assert reference == {"Fn::GetAtt": [ROLES[function], "Arn"]}, function
    return translated["Resources"][ROLES[function]]  # type: ignore[no-any-return]


def actions(role: dict[str, Any]) -> set[str]:
    return {action for action, _ in allowed(role)}


def test_each_function_has_its_own_role_trusted_by_lambda_only_with_no_managed_policies(translated):
    roles = [role_of(translated, function) for function in FUNCTIONS]  # each names its own role
    assert sorted(name for name, r in translated["Resources"].items() if r["Type"] == "AWS::IAM::Role") == sorted(
        ROLES.values()
    )
    for role in roles:
        (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert (trust["Principal"], trust["Action"]) == ({"Service": "lambda.amazonaws.com"}, "sts:AssumeRole")
        # AWS-managed policies (AWSLambdaBasicExecutionRole, AWSLambdaDynamoDBExecutionRole...) grant `*` resources
        assert "ManagedPolicyArns" not in role["Properties"]


@pytest.mark.parametrize("function", FUNCTIONS)
def test_no_wildcards_and_no_resource_star_but_where_aws_requires_it(translated, function):
    for statement in statements(role_of(translated, function)):
        if statement["Effect"] == "Deny":  # only the secrets' deny, checked below
            assert statement["Condition"] == SECRETS_CONDITION, statement
            continue
        assert statement["Effect"] == "Allow"
        assert not {"NotAction", "NotResource", "Condition"} & set(statement)
        assert not [a for a in statement["Action"] if "*" in a]
        if "*" in statement["Resource"]:
            assert statement["Resource"] == ["*"] and set(statement["Action"]) <= NO_RESOURCE_LEVEL, statement
        else:
            # only resources of this stack, by reference: never an ARN written by hand
            assert all(isinstance(resource, dict) for resource in statement["Resource"]), statement


@pytest.mark.parametrize("function", FUNCTIONS)
def test_each_function_writes_logs_only_to_its_own_log_group(translated, function):
    group = translated["Resources"][function]["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
    logs = {(a, r) for a, r in allowed(role_of(translated, function)) if a.startswith("logs:")}
    assert logs == {("logs:CreateLogStream", group), ("logs:PutLogEvents", group)}


def test_the_collect_role_cannot_query_scan_or_update_and_can_delete_only_through_batch_write(translated):
    role = role_of(translated, "CollectFunction")
    assert {a for a in actions(role) if a.startswith("dynamodb:")} == {
        "dynamodb:GetItem",
        "dynamodb:BatchGetItem",
        "dynamodb:PutItem",  # an event's put is conditional on its key being free: the de-duplication
        "dynamodb:BatchWriteItem",
    }
    assert not {a for a in actions(role) if a.startswith(("sqs:", "events:", "s3:", "lambda:"))}
    assert {r for a, r in allowed(role) if a.startswith("dynamodb:")} == {"Table"}


def test_the_process_role_reads_only_its_own_tables_stream(translated):
    role = role_of(translated, "ProcessFunction")
    stream = {(a, r) for a, r in allowed(role) if a in STREAM_READ}
    assert stream == {
        ("dynamodb:DescribeStream", "Table.StreamArn"),
        ("dynamodb:GetRecords", "Table.StreamArn"),
        ("dynamodb:GetShardIterator", "Table.StreamArn"),
        ("dynamodb:ListStreams", "Table/stream/*"),
    }
    # and it is that stream the event source mappings read (processing's and the fold's: two readers, the most
    # DynamoDB Streams serves a shard without throttling)
    mappings = [r for r in translated["Resources"].values() if r["Type"] == "AWS::Lambda::EventSourceMapping"]
    assert {resource_ref(m["Properties"]["EventSourceArn"]) for m in mappings} == {"Table.StreamArn"}
    assert sorted(m["Properties"]["FunctionName"]["Ref"] for m in mappings) == ["FoldFunction", "ProcessFunction"]


def test_the_fold_role_reads_marks_and_updates_counters_and_nothing_else(translated):
    role = role_of(translated, "FoldFunction")
    assert {(a, r) for a, r in allowed(role) if a.startswith("dynamodb:") and a not in STREAM_READ} == {
        ("dynamodb:GetItem", "Table"),
        ("dynamodb:Query", "Table"),  # the shards seen (`FOLD`)
        ("dynamodb:UpdateItem", "Table"),
        ("dynamodb:BatchWriteItem", "Table"),
    }
    assert {(a, r) for a, r in allowed(role) if a in STREAM_READ} == {
        ("dynamodb:DescribeStream", "Table.StreamArn"),
        ("dynamodb:GetRecords", "Table.StreamArn"),
        ("dynamodb:GetShardIterator", "Table.StreamArn"),
        ("dynamodb:ListStreams", "Table/stream/*"),
    }
    assert {(a, r) for a, r in allowed(role) if not a.startswith(("dynamodb:", "logs:", "xray:"))} == {
        ("sqs:SendMessage", "ProcessDeadLetters"),
    }


def test_the_process_role_writes_profiles_and_publishes_never_scans_and_can_delete_only_through_batch_write(
    translated,
):
    role = role_of(translated, "ProcessFunction")
    assert {(a, r) for a, r in allowed(role) if a.startswith("dynamodb:") and a not in STREAM_READ} == {
        ("dynamodb:GetItem", "Table"),
        ("dynamodb:BatchGetItem", "Table"),
        ("dynamodb:PutItem", "Table"),
        ("dynamodb:UpdateItem", "Table"),
        ("dynamodb:BatchWriteItem", "Table"),
        ("dynamodb:Query", "Table"),
        ("dynamodb:Query", "Table/index/GSI1"),
    }
    assert {(a, r) for a, r in allowed(role) if not a.startswith(("dynamodb:", "logs:", "xray:"))} == {
        ("sqs:SendMessage", "ProcessDeadLetters"),
        ("events:PutEvents", "AudienceBus"),
    }


def test_the_schedule_role_touches_only_the_table(translated):
    role = role_of(translated, "ScheduleFunction")
    assert {(a, r) for a, r in allowed(role) if not a.startswith(("logs:", "xray:"))} == {
        ("dynamodb:GetItem", "Table"),
        ("dynamodb:BatchGetItem", "Table"),
        ("dynamodb:PutItem", "Table"),
        ("dynamodb:UpdateItem", "Table"),
        ("dynamodb:BatchWriteItem", "Table"),
        ("dynamodb:Query", "Table"),
    }


def test_a_role_granting_scan_to_collect_would_be_caught(translated):
    # The checks above are only worth something if they fail on a bad role: give collect a Scan on purpose.
    import copy

    bad = copy.deepcopy(translated)
    statement = bad["Resources"]["CollectRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"][0]
    statement["Action"] = [*statement["Action"], "dynamodb:Scan"]
    with pytest.raises(AssertionError):
        test_the_collect_role_cannot_query_scan_or_update_and_can_delete_only_through_batch_write(bad)


def denied_secrets(role: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (action, resource_ref(resource))
        for statement in statements(role)
        if statement["Effect"] == "Deny" and statement.get("Condition") == SECRETS_CONDITION
        for action in statement["Action"]
        for resource in statement["Resource"]
    }


@pytest.mark.parametrize("function", ["ProcessFunction", "FoldFunction", "ScheduleFunction"])
def test_process_and_schedule_roles_cannot_read_or_write_source_secrets(translated, function):
    # Every table action the role is allowed is denied on the partitions holding write-key hashes and secrets
    role = role_of(translated, function)
    on_table = {(a, r) for a, r in allowed(role) if r == "Table" and a.startswith("dynamodb:")}
    assert on_table and on_table <= denied_secrets(role)
    # and the table has no index those items could be read through by these roles (only GSI1, by its own key)
    assert {r for a, r in allowed(role) if r.startswith("Table/index/")} <= {"Table/index/GSI1"}


def test_the_collect_role_keeps_its_access_to_sources(translated):
    assert denied_secrets(role_of(translated, "CollectFunction")) == set()


def test_a_process_role_without_the_secrets_deny_would_be_caught(translated):
    import copy

    bad = copy.deepcopy(translated)
    policy = bad["Resources"]["ProcessRole"]["Properties"]["Policies"][0]["PolicyDocument"]
    policy["Statement"] = [s for s in policy["Statement"] if s["Effect"] != "Deny"]
    with pytest.raises(AssertionError):
        test_process_and_schedule_roles_cannot_read_or_write_source_secrets(bad, "ProcessFunction")
