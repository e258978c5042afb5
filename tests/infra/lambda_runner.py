"""Runs one Lambda handler as the Lambda runtime would, from its built artifact (a script, not a test module).

tests/infra/test_packaging.py starts it as `python -I -S lambda_runner.py request.json answer.json`: no
site-packages, no PYTHONPATH, no current directory. The request names the artifact directory and a directory
holding only what the Lambda runtime provides (boto3 and its dependencies); nothing else is importable, so a
module missing from the zip fails here exactly as it would on AWS. Every AWS call the handler makes is recorded
(service, operation, tables, index, bus) for the IAM check.
"""

import importlib
import json
import sys
import sysconfig
from pathlib import Path


class Context:
    """The attributes of Lambda's context object that Powertools reads."""

    function_name = "footfall-test"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:footfall-test"
    aws_request_id = "packaging-test"
    log_group_name = "/aws/lambda/footfall-test"
    log_stream_name = "test"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 60_000


def describe(service, operation, params):
    """What an API call touches, for the IAM comparison."""
    call = {"service": service, "operation": operation, "tables": [], "index": params.get("IndexName")}
    if "TableName" in params:
        call["tables"].append(params["TableName"])
    call["tables"] += list(params.get("RequestItems", {}))
    kinds = []
    for item in params.get("TransactItems", []):
        for kind, body in item.items():
            kinds.append(kind)
            call["tables"].append(body["TableName"])
    call["transact"] = kinds
    requests = params.get("RequestItems", {}).values() if operation == "BatchGetItem" else []
    call["keys_read"] = sum(len(r.get("Keys", [])) for r in requests) + (1 if operation == "GetItem" else 0)
    call["consistent"] = all(r.get("ConsistentRead", False) for r in requests) and (
        operation != "GetItem" or params.get("ConsistentRead", False)
    )
    call["buses"] = sorted({entry.get("EventBusName", "default") for entry in params.get("Entries", [])})
    return call


def main():
    request = json.loads(Path(sys.argv[1]).read_text())
    sys.path[:0] = [request["artifact"], request["runtime"]]

    import botocore.client

    calls = []
    make_api_call = botocore.client.BaseClient._make_api_call

    def recording(client, operation, params):
        calls.append(describe(client.meta.service_model.service_name, operation, params))
        return make_api_call(client, operation, params)

    botocore.client.BaseClient._make_api_call = recording

    module_name, _, attribute = request["handler"].rpartition(".")
    handler = getattr(importlib.import_module(module_name), attribute)
    result = handler(request["event"], Context())

    stdlib = {sysconfig.get_paths()[name] for name in ("stdlib", "platstdlib")}
    modules = {
        name: module.__file__
        for name, module in list(sys.modules.items())
        if getattr(module, "__file__", None) and name not in ("__main__", "__mp_main__")
    }
    answer = {"result": result, "calls": calls, "modules": modules, "stdlib": sorted(stdlib)}
    Path(sys.argv[2]).write_text(json.dumps(answer))


if __name__ == "__main__":
    main()
