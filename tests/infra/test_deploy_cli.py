"""`footfall deploy` and `make deploy`: sam build then sam deploy, and clear errors without a traceback."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from shared import deploy
from shared.cli import main

ROOT = Path(__file__).resolve().parents[2]
MIGRATE_STACK = deploy.migrate_stack
"""The real one: the autouse fixture stands in for it in the other tests."""


@pytest.fixture(autouse=True)
def migrated(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, object]]:
    """`footfall migrate` of the deployed table, recorded instead of run (there is no stack)."""
    calls: list[dict[str, object]] = []
    monkeypatch.setattr(deploy, "migrate_stack", lambda stack, **options: calls.append({"stack": stack, **options}))
    return calls


def fake_sam(tmp_path: Path, *, fail_on: str = "") -> tuple[Path, Path]:
    """An executable standing in for `sam`: it records its arguments and fails on one subcommand if asked."""
    log = tmp_path / "sam.log"
    script = tmp_path / "sam"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> "{log}"\n'
        f'[ "$1" = "{fail_on}" ] && exit 3\n'
        f'echo "FOOTFALL_BUILD_PYTHON=$FOOTFALL_BUILD_PYTHON SAM_CLI_TELEMETRY=$SAM_CLI_TELEMETRY" >> "{log}"\n'
        "exit 0\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script, log


def test_deploy_builds_without_a_container_then_deploys_the_built_template(tmp_path, monkeypatch, capsys):
    # Given a `sam` that only records what it is asked
    sam, log = fake_sam(tmp_path)
    monkeypatch.setenv("FOOTFALL_SAM", str(sam))
    monkeypatch.delenv("SAM_CLI_TELEMETRY", raising=False)
    # When
    code = main(["deploy", "--stack", "shop", "--region", "eu-west-1", "--parameter", "Stage=dev"])
    # Then build, then deploy of what was built, with the stack, region and parameters given
    assert code == 0
    build, build_env, deploy_line, _ = log.read_text().splitlines()
    assert build.split() == [
        "build",
        "--template-file",
        str(deploy.TEMPLATE),
        "--build-dir",
        str(deploy.BUILD_DIR),
        "--config-file",
        str(deploy.SAM_CONFIG),
        "--build-in-source",
    ]
    assert "--use-container" not in build
    assert build_env == f"FOOTFALL_BUILD_PYTHON={sys.executable} SAM_CLI_TELEMETRY=0"
    words = deploy_line.split()
    assert words[:3] == ["deploy", "--template-file", str(deploy.BUILD_DIR / "template.yaml")]
    for option in (["--stack-name", "shop"], ["--region", "eu-west-1"], ["--parameter-overrides", "Stage=dev"]):
        assert " ".join(option) in deploy_line
    assert "--capabilities CAPABILITY_IAM" in deploy_line and "--resolve-s3" in deploy_line


def test_deploy_migrates_the_deployed_table_after_the_stack_is_up(tmp_path, monkeypatch, migrated):
    sam, _ = fake_sam(tmp_path)
    monkeypatch.setenv("FOOTFALL_SAM", str(sam))
    assert main(["deploy", "--stack", "shop", "--region", "eu-west-1", "--profile", "ops"]) == 0
    assert migrated == [{"stack": "shop", "region": "eu-west-1", "profile": "ops"}]


def test_a_dry_run_or_a_failed_deploy_migrates_nothing(tmp_path, monkeypatch, migrated, capsys):
    sam, _ = fake_sam(tmp_path, fail_on="deploy")
    monkeypatch.setenv("FOOTFALL_SAM", str(sam))
    assert main(["deploy", "--dry-run"]) == 0
    assert main(["deploy"]) == 3
    assert migrated == []


def test_guided_deploy_lets_sam_ask(tmp_path, monkeypatch, capsys):
    sam, _ = fake_sam(tmp_path)
    monkeypatch.setenv("FOOTFALL_SAM", str(sam))
    assert main(["deploy", "--guided", "--dry-run"]) == 0
    _, deploy_line = capsys.readouterr().out.splitlines()
    assert "--guided" in deploy_line and "--stack-name footfall" in deploy_line
    assert "--capabilities" not in deploy_line  # sam asks


def test_a_failed_build_stops_before_deploying_and_its_exit_code_is_kept(tmp_path, monkeypatch, capsys):
    sam, log = fake_sam(tmp_path, fail_on="build")
    monkeypatch.setenv("FOOTFALL_SAM", str(sam))
    assert main(["deploy"]) == 3
    assert [line.split()[0] for line in log.read_text().splitlines()] == ["build"]
    assert "`sam build` failed (exit 3)" in capsys.readouterr().err


def test_without_the_sam_cli_deploy_says_how_to_get_it(tmp_path, monkeypatch, capsys):
    # Given no FOOTFALL_SAM, no project copy of the SAM CLI and none on the PATH
    monkeypatch.delenv("FOOTFALL_SAM", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(deploy, "TOOL_SAM", tmp_path / "missing" / "sam")
    # When / Then
    assert main(["deploy"]) == 2
    error = capsys.readouterr().err
    assert "AWS SAM CLI (`sam`) was not found" in error and "make setup" in error


def test_a_missing_sam_is_an_error_message_and_exit_code_not_a_traceback(tmp_path):
    # A real process: what a person sees in the terminal
    env = {**os.environ, "PATH": str(tmp_path)}
    env.pop("FOOTFALL_SAM", None)
    code = (
        "import sys; from pathlib import Path; import shared.deploy as d; "
        "d.TOOL_SAM = Path('/nonexistent/sam'); "
        "from shared.cli import main; sys.exit(main(['deploy', '--stack', 'x']))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert done.returncode == 2
    assert done.stderr.startswith("footfall: the AWS SAM CLI (`sam`) was not found")
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_make_deploy_runs_footfall_deploy_with_the_stack_and_region():
    done = subprocess.run(
        ["make", "-n", "deploy", "STACK=shop", "REGION=eu-west-1"], capture_output=True, text=True, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert ".venv/bin/footfall deploy --stack shop --region eu-west-1" in done.stdout


@pytest.mark.parametrize("bad", ["Stage", "=dev", "Stage Name=dev"])
def test_parameters_must_be_key_value(bad, capsys):
    with pytest.raises(SystemExit):
        main(["deploy", "--dry-run", "--parameter", bad])


def test_migrate_stack_finds_the_table_by_the_stacks_output_and_migrates_it(aws_credentials):
    import boto3
    from moto import mock_aws

    from shared.storage.dynamo import DynamoTrackingStore
    from shared.storage.migrate import latest_version, stored_version
    from shared.storage.schema import TABLE_DEFINITION

    with mock_aws():
        boto3.client("dynamodb").create_table(TableName="shop-table", **TABLE_DEFINITION)
        template = {
            "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
            "Outputs": {"TableName": {"Value": "shop-table"}},
        }
        boto3.client("cloudformation").create_stack(StackName="shop", TemplateBody=json.dumps(template))
        MIGRATE_STACK("shop", region="us-east-1")
        store = DynamoTrackingStore("shop-table", client=boto3.client("dynamodb"))
        assert stored_version(store) == latest_version()
        with pytest.raises(deploy.DeployError, match="no TableName output"):
            bare = json.dumps({"Resources": template["Resources"]})
            boto3.client("cloudformation").create_stack(StackName="bare", TemplateBody=bare)
            MIGRATE_STACK("bare", region="us-east-1")
