"""`footfall deploy`: `sam build` then `sam deploy` of infra/template.yaml, then `footfall migrate` of the
deployed table, with errors a person can act on.

The SAM CLI is an external tool (its pins clash with ours, so `make setup` installs it in its own virtualenv,
`.venv/sam`). The build runs infra/Makefile, which packages `functions/` and `shared/` without the local-only
code; tests/infra/test_packaging.py runs this same build and the handlers from its output.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "infra" / "template.yaml"
SAM_CONFIG = ROOT / "infra" / "samconfig.toml"
BUILD_DIR = ROOT / "infra" / ".aws-sam" / "build"
TOOL_SAM = ROOT / ".venv" / "sam" / "bin" / "sam"
DEFAULT_STACK = "footfall"


class DeployError(Exception):
    """A problem the user can fix (no SAM CLI, no template, a failed `sam` step); printed without a traceback."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def find_sam(env: Mapping[str, str] | None = None) -> str:
    """The SAM CLI to run: `$FOOTFALL_SAM`, else the one `make setup` installs (`TOOL_SAM`), else `sam` on the PATH.

    Raises:
        DeployError: none of them is there.
    """
    env = os.environ if env is None else env
    tool = TOOL_SAM
    explicit = env.get("FOOTFALL_SAM")
    if explicit:
        found = shutil.which(explicit, path=env.get("PATH"))
        if found is None:
            raise DeployError(f"FOOTFALL_SAM={explicit} is not an executable")
        return found
    if tool.is_file() and os.access(tool, os.X_OK):
        return str(tool)
    found = shutil.which("sam", path=env.get("PATH"))
    if found is None:
        raise DeployError(
            "the AWS SAM CLI (`sam`) was not found: run `make setup` (it installs the tested version in .venv/sam), "
            "or install it (`pip install aws-sam-cli`) and put `sam` on your PATH"
        )
    return found


def build_command(sam: str, *, template: Path = TEMPLATE, build_dir: Path = BUILD_DIR) -> list[str]:
    """`sam build` of the template into `build_dir`: no container, straight from the checkout."""
    return [
        sam,
        "build",
        "--template-file",
        str(template),
        "--build-dir",
        str(build_dir),
        "--config-file",
        str(SAM_CONFIG),
        "--build-in-source",
    ]


def deploy_command(
    sam: str,
    *,
    stack: str,
    region: str | None = None,
    profile: str | None = None,
    guided: bool = False,
    parameters: Sequence[str] = (),
    build_dir: Path = BUILD_DIR,
) -> list[str]:
    """`sam deploy` of what `build_command` built.

    Args:
        parameters: template parameter overrides as `Key=Value`.
    """
    command = [
        sam,
        "deploy",
        "--template-file",
        str(build_dir / "template.yaml"),
        "--config-file",
        str(SAM_CONFIG),
        "--stack-name",
        stack,
    ]
    if guided:
        command.append("--guided")
    else:
        command += ["--capabilities", "CAPABILITY_IAM", "--resolve-s3", "--no-fail-on-empty-changeset"]
    if region:
        command += ["--region", region]
    if profile:
        command += ["--profile", profile]
    if parameters:
        command += ["--parameter-overrides", *parameters]
    return command


def sam_environment(env: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The environment for `sam`: infra/Makefile's pip runs with this interpreter; no telemetry unless asked for."""
    merged = dict(env)
    merged.setdefault("FOOTFALL_BUILD_PYTHON", sys.executable)
    merged.setdefault("SAM_CLI_TELEMETRY", "0")
    return merged


def run(command: Sequence[str], *, env: Mapping[str, str] | None = None, **options: Any) -> None:
    """Run one `sam` step, its output going to the terminal.

    Raises:
        DeployError: it could not start, or it failed (with its exit code).
    """
    try:
        done = subprocess.run(list(command), env=dict(env if env is not None else sam_environment()), **options)
    except OSError as exc:
        raise DeployError(f"could not run {command[0]}: {exc}") from exc
    if done.returncode != 0:
        raise DeployError(f"`sam {command[1]}` failed (exit {done.returncode}); see its output above", done.returncode)


def migrate_stack(stack: str, *, region: str | None = None, profile: str | None = None) -> None:
    """`footfall migrate` on the deployed stack's table (its `TableName` output), after `sam deploy`.

    Raises:
        DeployError: the table could not be found or migrated (the stack itself is deployed).
    """
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    from shared.ports import StorageError
    from shared.storage.dynamo import DynamoTrackingStore, make_client
    from shared.storage.migrate import migrate

    retry = f"run `footfall migrate --table <TableName output> --region {region or '<region>'}` once it is fixed"
    try:
        session = boto3.session.Session(profile_name=profile, region_name=region)
        described = session.client("cloudformation").describe_stacks(StackName=stack)["Stacks"][0]
        outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
        table = outputs["TableName"]
        store = DynamoTrackingStore(table, client=make_client(region=region, profile=profile))
        for name, changed in migrate(store):
            print(f"migrated {table}: {name} ({changed} items changed)")
    except KeyError:
        raise DeployError(f"stack {stack} has no TableName output; the table was not migrated: {retry}") from None
    except (BotoCoreError, ClientError, StorageError) as exc:
        raise DeployError(f"the stack is deployed but its table was not migrated ({exc}): {retry}") from exc


def _parameter(value: str) -> str:
    key, equals, _ = value.partition("=")
    if not equals or not key.isalnum():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE with a template parameter name, not {value!r}")
    return value


def command(args: argparse.Namespace) -> int:
    """`footfall deploy`: build, then deploy (or, with `--dry-run`, print both commands)."""
    try:
        if not TEMPLATE.is_file():
            raise DeployError(f"{TEMPLATE} not found: deploy from a Footfall checkout (pip install -e .)")
        sam = find_sam()
        steps = [
            build_command(sam),
            deploy_command(
                sam,
                stack=args.stack,
                region=args.region,
                profile=args.profile,
                guided=args.guided,
                parameters=args.parameter,
            ),
        ]
        for step in steps:
            if args.dry_run:
                print(shlex.join(step))
            else:
                run(step)
        if not args.dry_run:
            migrate_stack(args.stack, region=args.region, profile=args.profile)  # after the stack is up
    except DeployError as exc:
        print(f"footfall: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Register `footfall deploy` on the CLI's subcommands."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "deploy",
        help="deploy to AWS with the SAM CLI (sam build + sam deploy of infra/template.yaml)",
        description="Build the Lambda artifacts and deploy the stack (AWS credentials from the usual places).",
    )
    parser.add_argument("--stack", default=DEFAULT_STACK, help=f"CloudFormation stack name (default {DEFAULT_STACK})")
    parser.add_argument("--region", help="AWS region (default: your AWS configuration's)")
    parser.add_argument("--profile", help="AWS profile")
    parser.add_argument(
        "--guided", action="store_true", help="let `sam deploy` ask for each setting and save the answers"
    )
    parser.add_argument(
        "--parameter",
        action="append",
        default=[],
        type=_parameter,
        metavar="KEY=VALUE",
        help="template parameter, repeatable: Stage=dev, AlarmEmail=ops@example.com, CorsOrigins=https://shop.example",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the sam commands instead of running them")
    parser.set_defaults(func=command)
    return parser
