"""infra/template.yaml passes cfn-lint, translates offline, and declares the settings, alarms and outputs promised."""

from __future__ import annotations

from typing import Any

import pytest

from shared.deploy import TEMPLATE
from tests.infra.cfn import FUNCTIONS, references, sam_template, translate

# AWS's defaults for a region's API Gateway account: 10,000 requests/s steady, 5,000 burst, across all its APIs.
ACCOUNT_RATE, ACCOUNT_BURST = 10_000, 5_000


def of_type(cfn: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: resource for name, resource in cfn["Resources"].items() if resource["Type"] == kind}


def test_cfn_lint_reports_no_errors_and_no_warnings():
    from cfnlint.api import ManualArgs, lint_file

    matches = lint_file(TEMPLATE, ManualArgs(regions=["us-east-1", "eu-west-1"]))
    assert [f"{m.rule.id} {m.message} (line {m.linenumber})" for m in matches if m.rule.id[0] in "EW"] == []


def test_cfn_lint_does_catch_a_broken_template(tmp_path):
    # The lint test above is only worth something if cfn-lint really reads SAM templates: break one on purpose.
    from cfnlint.api import ManualArgs, lint_file

    broken = tmp_path / "template.yaml"
    broken.write_text(TEMPLATE.read_text().replace("Threshold: 60000", "Threshold: sixty"))
    assert any(m.rule.id.startswith("E") for m in lint_file(broken, ManualArgs(regions=["us-east-1"])))


def test_the_sam_template_translates_to_plain_cloudformation_offline(translated):
    kinds = {resource["Type"] for resource in translated["Resources"].values()}
    assert not {kind for kind in kinds if kind.startswith("AWS::Serverless::")}
    assert {
        "AWS::DynamoDB::Table",
        "AWS::Lambda::Function",
        "AWS::Lambda::EventSourceMapping",
        "AWS::ApiGatewayV2::Api",
        "AWS::ApiGatewayV2::Stage",
        "AWS::Events::Rule",
        "AWS::Events::EventBus",
        "AWS::SQS::Queue",
        "AWS::IAM::Role",
        "AWS::CloudWatch::Alarm",
    } <= kinds
    assert set(of_type(translated, "AWS::Lambda::Function")) == set(FUNCTIONS)


def test_functions_run_python_3_11_on_arm64_with_powertools_built_into_the_zip(translated):
    from packaging.requirements import Requirement

    for name in FUNCTIONS:
        properties = translated["Resources"][name]["Properties"]
        assert (properties["Runtime"], properties["Architectures"]) == ("python3.11", ["arm64"])
        assert "Layers" not in properties  # Powertools comes from infra/requirements.txt, not a layer
        assert sam_template()["Resources"][name]["Metadata"]["BuildMethod"] == "makefile"
    pinned = [
        Requirement(line)
        for line in (TEMPLATE.parent / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert [(r.name, str(r.specifier)[:2]) for r in pinned] == [("aws-lambda-powertools", "==")]


def test_every_parameter_is_used_and_stage_tags_the_resources_that_cost_money(translated):
    parameters = set(sam_template()["Parameters"])
    assert {"Stage", "EventRetentionDays", "CorsOrigins", "ApiRateLimit", "ApiBurstLimit", "AlarmEmail"} <= parameters
    used = set(references(translated["Resources"])) | set(references(translated.get("Conditions", {})))
    assert parameters - used == set()
    tagged = set()
    for resource in translated["Resources"].values():
        tags = resource["Properties"].get("Tags", {})
        pairs = tags.items() if isinstance(tags, dict) else [(t["Key"], t["Value"]) for t in tags]
        if ("footfall:stage", {"Ref": "Stage"}) in list(pairs):
            tagged.add(resource["Type"])
    assert {
        "AWS::DynamoDB::Table",
        "AWS::Lambda::Function",
        "AWS::IAM::Role",
        "AWS::Logs::LogGroup",
        "AWS::SQS::Queue",
        "AWS::SNS::Topic",
        "AWS::ApiGatewayV2::Stage",
    } <= tagged


def test_collector_settings_come_from_the_parameters(translated):
    # Given the origins a shop would allow
    origins = ["https://shop.example", "https://www.shop.example"]
    # When CloudFormation transforms the template with them
    api = translate(sam_template(), parameters={"CorsOrigins": origins})["Resources"]["HttpApi"]
    # Then the API answers preflights for exactly those, and the collector is told the same (and the retention)
    assert api["Properties"]["Body"]["x-amazon-apigateway-cors"]["allowOrigins"] == origins
    collect = translated["Resources"]["CollectFunction"]["Properties"]["Environment"]["Variables"]
    assert collect["FOOTFALL_EVENT_RETENTION_DAYS"] == {"Ref": "EventRetentionDays"}
    assert collect["FOOTFALL_CORS_ORIGINS"] == {"Fn::Join": [",", {"Ref": "CorsOrigins"}]}
    for name in FUNCTIONS:
        assert translated["Resources"][name]["Properties"]["Environment"]["Variables"]["FOOTFALL_TABLE_NAME"] == {
            "Ref": "Table"
        }
    assert translated["Resources"]["ProcessFunction"]["Properties"]["Environment"]["Variables"][
        "FOOTFALL_EVENT_BUS"
    ] == {"Ref": "AudienceBus"}


def test_the_http_api_is_throttled_below_the_account_ceiling(translated):
    (stage,) = of_type(translated, "AWS::ApiGatewayV2::Stage").values()
    settings = stage["Properties"]["DefaultRouteSettings"]
    assert settings == {
        "ThrottlingRateLimit": {"Ref": "ApiRateLimit"},
        "ThrottlingBurstLimit": {"Ref": "ApiBurstLimit"},
    }
    assert stage["Properties"]["StageName"] == "$default"  # paths reach the Lambda as /v1/..., as in local mode
    defaults = sam_template()["Parameters"]
    assert 0 < defaults["ApiRateLimit"]["Default"] <= ACCOUNT_RATE
    assert 0 < defaults["ApiBurstLimit"]["Default"] <= ACCOUNT_BURST


def test_the_scheduler_runs_every_minute_one_at_a_time(translated):
    (rule,) = of_type(translated, "AWS::Events::Rule").values()
    assert rule["Properties"]["ScheduleExpression"] == "rate(1 minute)"
    assert rule["Properties"]["Targets"][0]["Arn"] == {"Fn::GetAtt": ["ScheduleFunction", "Arn"]}
    assert translated["Resources"]["ScheduleFunction"]["Properties"]["ReservedConcurrentExecutions"] == 1


def alarm_on(translated: dict[str, Any], metric: str, target: str) -> dict[str, Any]:
    """The one alarm on `metric` whose dimension names the resource `target`."""
    found = [
        alarm["Properties"]
        for alarm in of_type(translated, "AWS::CloudWatch::Alarm").values()
        if alarm["Properties"]["MetricName"] == metric and target in references(alarm["Properties"]["Dimensions"])
    ]
    assert len(found) == 1, (metric, target, found)
    return found[0]


def test_alarms_watch_iterator_age_dead_letters_errors_and_throttles(translated):
    age = alarm_on(translated, "IteratorAge", "ProcessFunction")
    assert (age["Namespace"], age["Statistic"], age["Threshold"]) == ("AWS/Lambda", "Maximum", 60_000)
    assert age["ComparisonOperator"] == "GreaterThanThreshold"  # more than 60 s behind
    fold_age = alarm_on(translated, "IteratorAge", "FoldFunction")  # its window is longer: more than 120 s behind
    assert (fold_age["Statistic"], fold_age["Threshold"]) == ("Maximum", 120_000)
    depth = alarm_on(translated, "ApproximateNumberOfMessagesVisible", "ProcessDeadLetters")
    assert (depth["Namespace"], depth["Threshold"], depth["ComparisonOperator"]) == (
        "AWS/SQS",
        0,
        "GreaterThanThreshold",
    )
    for function in FUNCTIONS:
        for metric in ("Errors", "Throttles"):
            alarm = alarm_on(translated, metric, function)
            assert (alarm["Namespace"], alarm["Statistic"], alarm["Threshold"]) == ("AWS/Lambda", "Sum", 0)
    throttled = alarm_on(translated, "WriteThrottleEvents", "Table")
    assert throttled["Namespace"] == "AWS/DynamoDB"


def test_every_alarm_notifies_the_topic_and_its_dimension_names_a_resource_of_the_stack(translated):
    resources = translated["Resources"]
    dimension_types = {
        "FunctionName": "AWS::Lambda::Function",
        "QueueName": "AWS::SQS::Queue",
        "TableName": "AWS::DynamoDB::Table",
    }
    alarms = of_type(translated, "AWS::CloudWatch::Alarm")
    assert len(alarms) == 12  # iterator age of both stream readers, the queue, the table, per function x 2
    for name, alarm in alarms.items():
        properties = alarm["Properties"]
        assert properties["AlarmActions"] == [{"Ref": "AlarmTopic"}], name
        assert properties["OKActions"] == [{"Ref": "AlarmTopic"}], name
        assert properties["TreatMissingData"] == "notBreaching", name
        for dimension in properties["Dimensions"]:
            (target,) = references(dimension["Value"])
            assert resources[target]["Type"] == dimension_types[dimension["Name"]], name
    subscription = resources["AlarmEmailSubscription"]
    assert subscription["Condition"] == "HasAlarmEmail"
    assert subscription["Properties"]["Endpoint"] == {"Ref": "AlarmEmail"}


def test_each_function_logs_to_its_own_group_with_a_retention(translated):
    groups = {
        name: translated["Resources"][name]["Properties"]["LoggingConfig"]["LogGroup"]["Ref"] for name in FUNCTIONS
    }
    assert len(set(groups.values())) == len(FUNCTIONS)
    for group in groups.values():
        assert translated["Resources"][group]["Type"] == "AWS::Logs::LogGroup"
        assert translated["Resources"][group]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


@pytest.mark.parametrize(
    ("output", "value"),
    [
        ("CollectorUrl", {"Fn::Sub": "https://${HttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}"}),
        ("TableName", {"Ref": "Table"}),
        ("StreamArn", {"Fn::GetAtt": ["Table", "StreamArn"]}),
        ("AudienceBusName", {"Ref": "AudienceBus"}),
        ("AudienceBusArn", {"Fn::GetAtt": ["AudienceBus", "Arn"]}),
        ("DeadLetterQueueUrl", {"Ref": "ProcessDeadLetters"}),
        ("AlarmTopicArn", {"Ref": "AlarmTopic"}),
    ],
)
def test_outputs(translated, output, value):
    assert translated["Outputs"][output]["Value"] == value


def test_the_table_is_kept_when_the_stack_is_deleted_or_replaced(translated):
    table = translated["Resources"]["Table"]
    assert (table["DeletionPolicy"], table["UpdateReplacePolicy"]) == ("Retain", "Retain")
