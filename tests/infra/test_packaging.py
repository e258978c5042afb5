"""`sam build` makes zips from which every handler imports and works: the "missing module in the zip" proof.

The build is the one `footfall deploy` runs (no container); `sam package`, the upload step of `sam deploy`, then
zips it into the moto server's S3. Each handler runs from its zip, unzipped, in a fresh `python -I -S` whose only
paths are that directory and one with what the Lambda runtime provides (boto3 and its dependencies), with the
environment the template gives it, against that moto server (another process).
"""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import zipfile
from datetime import UTC, datetime, timedelta
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from shared import deploy
from shared.domain.segments import Due
from shared.domain.sources import new_source
from shared.local.apigw import http_answer, http_api_event
from shared.local.streams import fold_filter, lambda_record, process_filter
from shared.services.customers import find_customer
from shared.services.segments import SETTLE, apply_segments
from shared.storage.dynamo import DynamoTrackingStore, make_client
from shared.storage.migrate import stamp_new_table
from shared.storage.schema import TABLE_DEFINITION
from tests.builders import a_track, random_ref
from tests.infra.cfn import FUNCTIONS, REGION, ROLES, allowed, sam_template, translate

RUNNER = Path(__file__).with_name("lambda_runner.py")
STARTERS = Path(__file__).resolve().parents[2] / "infra" / "segments" / "starters.json"
TABLE = "footfall-packaging"
BUCKET = "footfall-artifacts"
# What the Lambda Python runtime provides besides the standard library; Powertools is not among them.
RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six", "urllib3")
# What may be in a zip besides our two packages: infra/requirements.txt and its dependencies.
REQUIRED = {"aws_lambda_powertools", "jmespath", "typing_extensions"}
# What of `shared` never reaches a zip (the developer's tools; infra/Makefile's LOCAL_ONLY).
LOCAL_ONLY = {"local", "cli", "compose.py", "deploy.py", "simulate"}


@pytest.fixture(scope="module")
def uploaded(built: Path, moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """`sam package`, the upload step of `sam deploy`, into the moto server's S3; each uploaded zip, unzipped.

    The handlers below run from these: what Lambda would receive, not just the build directory.
    """
    moto_client("s3", moto_endpoint).create_bucket(Bucket=BUCKET)
    packaged = tmp_path_factory.mktemp("packaged") / "template.yaml"
    env = deploy.sam_environment() | {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    }
    env.pop("AWS_PROFILE", None)
    command = [deploy.find_sam(), "package", "--template-file", str(built / "template.yaml"), "--s3-bucket", BUCKET]
    done = subprocess.run(
        [*command, "--output-template-file", str(packaged), "--region", REGION],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    s3 = moto_client("s3", moto_endpoint)
    zips, unzipped = {}, {}
    for name in FUNCTIONS:
        uri = sam_template(packaged)["Resources"][name]["Properties"]["CodeUri"]
        key = uri.removeprefix(f"s3://{BUCKET}/")
        zips[name] = zipfile.ZipFile(io.BytesIO(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()))
        target = tmp_path_factory.mktemp(name)
        zips[name].extractall(target)
        unzipped[name] = target
    return {"zips": zips, "unzipped": unzipped}


@pytest.fixture(scope="module")
def built_functions(built: Path, uploaded: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per function: its unzipped upload and, from the built template translated, its handler and environment."""
    cfn = translate(sam_template(built / "template.yaml"))
    functions = {}
    for name in FUNCTIONS:
        properties = cfn["Resources"][name]["Properties"]
        functions[name] = {
            "artifact": uploaded["unzipped"][name],
            "handler": properties["Handler"],
            "environment": properties["Environment"]["Variables"],
            "role": cfn["Resources"][ROLES[name]],
        }
    return functions


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory standing in for the Lambda runtime's own packages (links to this environment's copies)."""
    directory = tmp_path_factory.mktemp("lambda-runtime")
    for package in RUNTIME_PACKAGES:
        spec = find_spec(package)
        assert spec is not None and spec.origin is not None, package
        origin = Path(spec.origin)
        source = origin.parent if origin.name == "__init__.py" else origin
        (directory / source.name).symlink_to(source, target_is_directory=source.is_dir())
    return directory


@pytest.fixture(scope="module")
def world(moto_endpoint: str) -> dict[str, Any]:
    """The moto server with the table (from the code's definition), a source, the starter segments, the bus."""
    client = make_client(endpoint_url=moto_endpoint, region=REGION)
    client.create_table(TableName=TABLE, **TABLE_DEFINITION)
    store = DynamoTrackingStore(TABLE, client=client)
    stamp_new_table(store)  # as `footfall serve`/`deploy` leave a table: no raw erasure mark left (migrated)
    source, write_key = new_source(
        source_id="web", name="Web", created_at=datetime.now(UTC), token=lambda n: random_ref("k") * 2
    )
    store.put_source(source, write_keys=[write_key])
    apply_segments(store, json.loads(STARTERS.read_text()), source="starters", now=datetime.now(UTC), customers=[])
    bus = f"{TABLE}-audiences"
    moto_client("events", moto_endpoint).create_event_bus(Name=bus)
    return {"store": store, "write_key": write_key, "bus": bus, "endpoint": moto_endpoint, "calls": {}}


def moto_client(service: str, endpoint: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(account_id_endpoint_mode="disabled"),
    )


def resolve(value: Any, world: dict[str, Any], parameters: dict[str, Any]) -> str:
    """An environment value of the template, with the stack's names filled in."""
    if isinstance(value, str | int):
        return str(value)
    if "Ref" in value:
        names = {"Table": TABLE, "AudienceBus": world["bus"]}
        return names.get(value["Ref"]) or str(parameters[value["Ref"]]["Default"])
    if "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        joined = (
            resolve(parts, world, parameters)
            if isinstance(parts, dict)
            else [resolve(p, world, parameters) for p in parts]
        )
        return separator.join(joined if isinstance(joined, list) else [joined])
    raise AssertionError(f"unexpected environment value {value}")


def invoke(
    function: dict[str, Any], event: dict[str, Any], runtime: Path, world: dict[str, Any], tmp_path: Path
) -> dict[str, Any]:
    """Run the handler in a clean interpreter; returns its result, the AWS calls it made and the modules it loaded."""
    parameters = sam_template()["Parameters"]
    environment = {name: resolve(value, world, parameters) for name, value in function["environment"].items()}
    environment |= {
        "PATH": "/usr/bin:/bin",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
        "AWS_LAMBDA_FUNCTION_NAME": "footfall-test",
        # Test wiring only: the table and EventBridge are the moto server's.
        "FOOTFALL_DYNAMODB_ENDPOINT": world["endpoint"],
        "AWS_ENDPOINT_URL": world["endpoint"],
    }
    request, answer = tmp_path / "request.json", tmp_path / "answer.json"
    request.write_text(
        json.dumps(
            {
                "artifact": str(function["artifact"]),
                "runtime": str(runtime),
                "handler": function["handler"],
                "event": event,
            }
        )
    )
    done = subprocess.run(
        [sys.executable, "-I", "-S", str(RUNNER), str(request), str(answer)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(answer.read_text())  # type: ignore[no-any-return]


class Stream:
    """Reads the moto table's stream as Lambda's event source mapping would hand it over (filter included)."""

    def __init__(self, endpoint: str, accepts: Any = process_filter) -> None:
        self.accepts = accepts
        self.streams = moto_client("dynamodbstreams", endpoint)
        table = moto_client("dynamodb", endpoint).describe_table(TableName=TABLE)
        self.arn = table["Table"]["LatestStreamArn"]
        self.positions: dict[str, str] = {}

    def next_batch(self) -> list[dict[str, Any]]:
        records = []
        for shard in self.streams.describe_stream(StreamArn=self.arn)["StreamDescription"]["Shards"]:
            shard_id = shard["ShardId"]
            where = (
                {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": self.positions[shard_id]}
                if shard_id in self.positions
                else {"ShardIteratorType": "TRIM_HORIZON"}
            )
            iterator = self.streams.get_shard_iterator(StreamArn=self.arn, ShardId=shard_id, **where)["ShardIterator"]
            for record in self.streams.get_records(ShardIterator=iterator)["Records"]:
                self.positions[shard_id] = record["dynamodb"]["SequenceNumber"]
                records.append(lambda_record(record, self.arn, REGION))
        return [record for record in records if self.accepts(record)]


def test_each_artifact_holds_our_code_and_powertools_and_nothing_else_of_the_repository(built: Path):
    for name in FUNCTIONS:
        artifact = built / name
        top = {path.name.split("-")[0].removesuffix(".py") for path in artifact.iterdir()}
        # Then our two packages, and Powertools with its dependencies (dist-info directories included)
        assert top == {"functions", "shared"} | REQUIRED, (name, top)
        # and none of the developer's tools: the local stack, the CLI, the traffic simulator
        shipped = {str(path.relative_to(artifact)) for path in (artifact / "shared").rglob("*")}
        assert not {path for path in shipped if path.split("/")[1] in LOCAL_ONLY}, (name, sorted(shipped))
        assert (artifact / "functions" / "collect" / "footfall.js").is_file()  # data files travel too
        assert not list(artifact.rglob("__pycache__"))
        size = sum(path.stat().st_size for path in artifact.rglob("*") if path.is_file())
        assert size < 20 * 2**20, f"{name}: {size} bytes unzipped"
    built_template = (built / "template.yaml").read_text()
    assert "CodeUri: CollectFunction" in built_template


def test_the_uploaded_zips_hold_exactly_the_built_files_readable_by_the_lambda_runtime(built, uploaded):
    for name in FUNCTIONS:
        archive = uploaded["zips"][name]
        files = {info.filename for info in archive.infolist() if not info.is_dir()}
        built_files = {str(path.relative_to(built / name)) for path in (built / name).rglob("*") if path.is_file()}
        assert files == built_files, name
        # Lambda runs the code as another user: every file must be readable by all
        assert all((info.external_attr >> 16) & 0o444 == 0o444 for info in archive.infolist()), name


@pytest.fixture(scope="module")
def collected(built_functions, runtime, world, tmp_path_factory) -> dict[str, Any]:
    """The collect handler from its artifact answers a Segment batch."""
    user, anonymous = random_ref("user"), random_ref("anon")
    calls = [
        a_track(userId=None, anonymousId=anonymous, event="Product Added", properties={"cart_id": "c1", "price": 30}),
        a_track(type="identify", userId=user, anonymousId=anonymous, traits={"plan": "pro"}, event=None),
    ]
    calls = [{k: v for k, v in call.items() if v is not None} for call in calls]
    auth = "Basic " + base64.b64encode(f"{world['write_key']}:".encode()).decode()
    event = http_api_event(
        "POST",
        "/v1/batch",
        headers=[("Authorization", auth), ("Content-Type", "application/json")],
        body=json.dumps({"batch": calls}).encode(),
    )
    ran = invoke(built_functions["CollectFunction"], event, runtime, world, tmp_path_factory.mktemp("collect"))
    world["calls"]["CollectFunction"] = ran["calls"]
    return {**ran, "user": user, "anonymous": anonymous}


def test_collect_handler_from_its_artifact_stores_a_batch_in_moto(collected, world):
    status, _, body = http_answer(collected["result"])
    assert status == 200, body
    assert [result["status"] for result in json.loads(body)["results"]] == ["accepted", "accepted"]
    store = world["store"]
    assert [event.event for event in store.list_identity_events("a", collected["anonymous"])] == ["Product Added"]
    assert [event.type for event in store.list_identity_events("u", collected["user"])] == ["identify"]


def test_collect_reads_no_event_key_and_at_most_one_key_per_identity(collected):
    # De-duplication is each event put's condition (no read); the suppression read takes each identity's erasure
    # mark and the erasure epoch, in one strongly consistent batch; the source lookups (two GetItems) are cached by
    # a warm container. infra/README.md prices this.
    batch_reads = [c for c in collected["calls"] if c["operation"] == "BatchGetItem"]
    assert batch_reads and all(c["consistent"] for c in batch_reads)
    # 2 events, the first with 1 identity, the second with 2 (one shared): the erasure epoch and each of the 2
    # identities' erasure mark under its hashed key (raw marks are moved by `footfall migrate`, so the raw key is
    # no longer read): 1 + 2, the shared identity read once. This is a cold container; a warm one that found these
    # identities clear at the same epoch skips their marks: 1 (test_suppression_cache).
    assert len(batch_reads) == 1
    assert sum(c["keys_read"] for c in batch_reads) == 3
    # GetItems: the source lookups (2) and the digest of erased identities at the epoch just read (once per epoch
    # and container: a warm one reads no mark of an identity the digest does not hold).
    gets = [c for c in collected["calls"] if c["operation"] == "GetItem"]
    assert len(gets) == 3
    puts = [c for c in collected["calls"] if c["operation"] == "PutItem"]
    assert len(puts) == 2  # one conditional put per event


@pytest.fixture(scope="module")
def processed(collected, built_functions, runtime, world, tmp_path_factory) -> list[dict[str, Any]]:
    """The process handler from its artifact, fed the table's stream until it has nothing more to say.

    Round 1 folds the events into a customer item (the customer enters `new_customers` in it), round 2 turns that
    item's entry into a member item, history and an Audience Entered event, round 3 publishes that event to the
    EventBridge bus.
    """
    stream, rounds = Stream(world["endpoint"]), []
    for _ in range(6):
        records = stream.next_batch()
        if not records:
            break
        ran = invoke(
            built_functions["ProcessFunction"],
            {"Records": records},
            runtime,
            world,
            tmp_path_factory.mktemp("process"),
        )
        rounds.append({**ran, "records": records})
        world["calls"].setdefault("ProcessFunction", []).extend(ran["calls"])
    return rounds


def test_process_handler_from_its_artifact_folds_the_stream_into_a_profile_and_publishes_audience_events(
    collected, processed, world
):
    # Then no record failed, in any round
    assert processed, "the stream had no records for the process function"
    assert [run["result"] for run in processed] == [{"batchItemFailures": []}] * len(processed)
    # and the batch became one customer with both identities
    customer = find_customer(world["store"], collected["user"])
    assert customer is not None
    assert {f"u:{collected['user']}", f"a:{collected['anonymous']}"} <= set(customer.profile.identities)
    # and the audience event reached the template's bus
    published = [
        c for run in processed for c in run["calls"] if (c["service"], c["operation"]) == ("events", "PutEvents")
    ]
    assert published and all(call["buses"] == [world["bus"]] for call in published)


@pytest.fixture(scope="module")
def folded(processed, built_functions, runtime, world, tmp_path_factory) -> dict[str, Any]:
    """The fold handler from its artifact, fed what its mapping lets through (as one window, one shard)."""
    records = Stream(world["endpoint"], fold_filter).next_batch()
    ran = invoke(
        built_functions["FoldFunction"],
        {"Records": records, "shardId": "shardId-0001", "window": {}, "state": {}},
        runtime,
        world,
        tmp_path_factory.mktemp("fold"),
    )
    world["calls"]["FoldFunction"] = ran["calls"]
    return {**ran, "records": records}


def test_fold_handler_from_its_artifact_folds_the_customers_cells_and_sizes_into_counters(folded, world):
    # Then every record is folded (the customer item with its cells and its `new_customers` entry), none failed
    assert folded["result"] == {"state": {}, "batchItemFailures": []}
    entities = {r["dynamodb"]["NewImage"]["entity"]["S"] for r in folded["records"]}
    assert entities == {"profile"}
    # and the counters equal what the stored cells say (a segment size moved by one)
    sizes = dict(world["store"].counter_items("SEGSIZE"))
    assert sizes["new_customers#0"] == {"net": 1}


@pytest.fixture(scope="module")
def scheduled(processed, collected, built_functions, runtime, world, tmp_path_factory) -> dict[str, Any]:
    """The schedule handler from its artifact, with one customer whose deadline passed seconds ago."""
    store: DynamoTrackingStore = world["store"]
    customer = find_customer(store, collected["user"])
    assert customer is not None
    passed = datetime.now(UTC).replace(microsecond=0) - SETTLE - timedelta(seconds=1)
    store.put_due([Due(customer.profile.customer_id, passed)])
    started = datetime.now(UTC)
    event = {
        "version": "0",
        "id": random_ref("evt"),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/footfall-EveryMinute"],
        "detail": {},
    }
    ran = invoke(built_functions["ScheduleFunction"], event, runtime, world, tmp_path_factory.mktemp("schedule"))
    world["calls"]["ScheduleFunction"] = ran["calls"]
    return {**ran, "swept_between": (started - SETTLE - timedelta(seconds=1), datetime.now(UTC) - SETTLE)}


def test_schedule_handler_from_its_artifact_sweeps_the_due_list(scheduled, world):
    assert scheduled["result"]["due"] == 1
    earliest, latest = scheduled["swept_between"]
    assert earliest <= world["store"].sweep_cursor() <= latest


def test_handlers_load_nothing_but_their_artifact_the_lambda_runtime_and_the_standard_library(
    collected, processed, folded, scheduled, built_functions, runtime
):
    for name, ran in (
        ("CollectFunction", collected),
        ("ProcessFunction", processed[0]),
        ("FoldFunction", folded),
        ("ScheduleFunction", scheduled),
    ):
        artifact = str(built_functions[name]["artifact"])
        roots = (artifact, str(runtime), *ran["stdlib"])
        outside = {module: path for module, path in ran["modules"].items() if not path.startswith(roots)}
        assert outside == {}, name
        # Powertools came from the zip, not from the runtime (which does not have it)
        assert ran["modules"]["aws_lambda_powertools"].startswith(artifact)
        assert not {"moto", "yaml", "textual", "werkzeug", "pydantic"} & {m.split(".")[0] for m in ran["modules"]}


def iam_needs(call: dict[str, Any], world: dict[str, Any]) -> set[tuple[str, str]]:
    """The (action, resource) pairs an observed API call needs, resources named as in the template."""
    names = {TABLE: "Table", world["bus"]: "AudienceBus"}
    actions = [
        {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem", "ConditionCheck": "ConditionCheckItem"}[k]
        for k in call["transact"]
    ] or [call["operation"]]
    if call["service"] == "events":
        return {("events:PutEvents", names[bus]) for bus in call["buses"]}
    resources = {names[table] + (f"/index/{call['index']}" if call["index"] else "") for table in call["tables"]}
    return {(f"{call['service']}:{action}", resource) for action in actions for resource in resources}


def test_every_aws_call_a_handler_made_is_allowed_by_its_own_role(
    collected, processed, scheduled, built_functions, world
):
    for name in FUNCTIONS:
        calls = world["calls"][name]
        assert calls, name
        needed = set().union(*(iam_needs(call, world) for call in calls))
        assert needed - allowed(built_functions[name]["role"]) == set(), name
