"""The SAM template as CloudFormation: offline translation, and helpers to read what a resource refers to."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.deploy import TEMPLATE

FUNCTIONS = ("CollectFunction", "ProcessFunction", "FoldFunction", "ScheduleFunction")
ROLES = {
    "CollectFunction": "CollectRole",
    "ProcessFunction": "ProcessRole",
    "FoldFunction": "FoldRole",
    "ScheduleFunction": "ScheduleRole",
}
REGION = "us-east-1"


class _NoManagedPolicies:
    """The translator asks for AWS's managed-policy names only when a function lets SAM make its role; ours don't."""

    def load(self) -> dict[str, str]:
        return {}


def sam_template(path: Path = TEMPLATE) -> dict[str, Any]:
    """The SAM template parsed as SAM itself parses it (short-form intrinsics such as `!Ref` included)."""
    from samtranslator.yaml_helper import yaml_parse

    return yaml_parse(path.read_text())  # type: ignore[no-any-return]


def translate(
    template: dict[str, Any], *, parameters: dict[str, Any] | None = None, code_bucket: str = "footfall-artifacts"
) -> dict[str, Any]:
    """CloudFormation from SAM with aws-sam-translator, offline.

    Local `CodeUri`s become S3 locations, as `sam deploy` makes them after uploading the zips. Like the transform
    CloudFormation runs at deploy time, SAM resolves some parameters itself (CORS origins): `parameters` gives them.
    """
    from samtranslator.translator.transform import transform

    sam = copy.deepcopy(template)
    for name, resource in sam["Resources"].items():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = f"s3://{code_bucket}/{name}.zip"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_DEFAULT_REGION", REGION)  # the translator fills in AWS::Region from the boto session
        return transform(sam, dict(parameters or {}), _NoManagedPolicies())  # type: ignore[no-any-return]


def references(node: Any) -> Iterator[str]:
    """Logical ids (and parameter names) a piece of template refers to: Ref, Fn::GetAtt, Fn::Sub variables."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref":
                yield value
            elif key == "Fn::GetAtt":
                yield value[0] if isinstance(value, list) else value.split(".")[0]
            elif key == "Fn::Sub":
                text, variables = (value, {}) if isinstance(value, str) else (value[0], value[1])
                for name in re.findall(r"\$\{([^}!]+)\}", text):
                    if name.split(".")[0] not in variables:
                        yield name.split(".")[0]
                yield from references(variables)
            else:
                yield from references(value)
    elif isinstance(node, list):
        for item in node:
            yield from references(item)


def resource_ref(node: Any) -> str:
    """A policy `Resource` as a short name: `Table`, `Table.StreamArn`, `Table/index/GSI1`, or the literal string."""
    if isinstance(node, str):
        return node
    if "Fn::GetAtt" in node:
        logical, attribute = node["Fn::GetAtt"]
        return logical if attribute == "Arn" else f"{logical}.{attribute}"
    if "Fn::Sub" in node and isinstance(node["Fn::Sub"], str):
        return re.sub(r"\$\{(\w+)\.Arn\}", r"\1", node["Fn::Sub"])
    if "Ref" in node:
        return str(node["Ref"])
    raise AssertionError(f"unexpected policy resource {node}")


def statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    """Every inline policy statement of a role, with Action and Resource as lists."""
    found = []
    for policy in role["Properties"].get("Policies", []):
        for statement in policy["PolicyDocument"]["Statement"]:
            actions, resources = statement["Action"], statement["Resource"]
            found.append(
                {
                    **statement,
                    "Action": actions if isinstance(actions, list) else [actions],
                    "Resource": resources if isinstance(resources, list) else [resources],
                }
            )
    return found


def allowed(role: dict[str, Any]) -> set[tuple[str, str]]:
    """(action, resource) pairs a role allows, resources as `resource_ref` names."""
    return {
        (action, resource_ref(resource))
        for statement in statements(role)
        if statement["Effect"] == "Allow"
        for action in statement["Action"]
        for resource in statement["Resource"]
    }
