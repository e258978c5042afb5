"""botocore's client events on the embedded client, so what hooks a boto3 client (fault injection in tests, the
bench's meter) hooks this one too: `before-parameter-build`, `before-call` (a handler's answer replaces the
call, as in botocore) and `after-call`, with the request body as botocore would send it."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from botocore.awsrequest import AWSResponse
from botocore.compat import HTTPHeaders
from botocore.exceptions import ClientError
from botocore.hooks import HierarchicalEmitter

from shared.storage.sqlite.expressions import ExpressionError

OPERATIONS = {
    "batch_get_item": "BatchGetItem",
    "batch_write_item": "BatchWriteItem",
    "create_table": "CreateTable",
    "delete_item": "DeleteItem",
    "delete_table": "DeleteTable",
    "describe_table": "DescribeTable",
    "get_item": "GetItem",
    "put_item": "PutItem",
    "query": "Query",
    "scan": "Scan",
    "transact_get_items": "TransactGetItems",
    "transact_write_items": "TransactWriteItems",
    "update_item": "UpdateItem",
    "update_time_to_live": "UpdateTimeToLive",
    "describe_time_to_live": "DescribeTimeToLive",
}


class Events(HierarchicalEmitter):
    """An emitter that knows whether anything listens (no request body is built for nobody)."""

    listened = False

    def _register(self, *args: Any, **kwargs: Any) -> None:
        self.listened = True
        super()._register(*args, **kwargs)  # type: ignore[misc]  # the stubs leave out what every register* calls


@dataclass(frozen=True)
class OperationModel:
    """What handlers read of botocore's operation model: its name."""

    name: str


@dataclass
class Meta:
    """`client.meta`: the region and the event emitter."""

    region_name: str
    events: Events
    endpoint_url: str


def _wire(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, datetime):
        return value.timestamp()
    raise TypeError(type(value).__name__)


def hooked(
    events: Events,
    operation: str,
    method: Callable[..., dict[str, Any]],
    invalid: Callable[[str, str], ClientError],
) -> Callable[..., dict[str, Any]]:
    """`method` emitting botocore's events around each call; a refused request (`ExpressionError` left unanswered
    by the operation) is the ValidationException `invalid` makes."""

    def checked(**params: Any) -> dict[str, Any]:
        try:
            return method(**params)
        except ExpressionError as exc:
            raise invalid(str(exc), operation) from exc

    def call(**params: Any) -> dict[str, Any]:
        if not events.listened:
            return checked(**params)
        model = OperationModel(operation)
        events.emit(f"before-parameter-build.dynamodb.{operation}", params=params, model=model, context={})
        body = json.dumps(params, default=_wire).encode()
        request = {"body": body, "url": "https://dynamodb.local/", "method": "POST", "headers": {}, "context": {}}
        answered = events.emit_until_response(
            f"before-call.dynamodb.{operation}", model=model, params=request, request_signer=None, context={}
        )[1]
        failure: ClientError | None = None
        parsed: dict[str, Any]
        if answered is not None:
            http, parsed = answered
        else:
            try:
                parsed = checked(**params)
                http = AWSResponse("https://dynamodb.local/", 200, HTTPHeaders(), None)
                content = json.dumps(parsed, default=_wire).encode()
            except ClientError as exc:
                failure, parsed = exc, cast("dict[str, Any]", exc.response)
                http = AWSResponse("https://dynamodb.local/", 400, HTTPHeaders(), None)
                content = json.dumps(parsed.get("Error", {}), default=str).encode()
            http._content = content  # type: ignore[attr-defined]  # the body its `content` property returns
        events.emit(f"after-call.dynamodb.{operation}", http_response=http, parsed=parsed, model=model, context={})
        if http.status_code >= 300:
            # the operation's own error keeps its class (`client.exceptions.ResourceNotFoundException`…), as it
            # does when nothing listens; an answer a handler made up is a plain ClientError with its code
            raise failure if failure is not None else ClientError(cast(Any, parsed), operation)
        return parsed

    return call
