"""API Gateway HTTP API (payload v2) events from plain HTTP requests, and HTTP answers from Lambda results."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote


def http_api_event(
    method: str,
    path: str,
    *,
    headers: Iterable[tuple[str, str]] = (),
    query: str = "",
    body: bytes = b"",
    source_ip: str = "127.0.0.1",
) -> dict[str, Any]:
    """The event API Gateway would hand the collect Lambda for this request.

    Like API Gateway: header names lower-cased, repeated headers joined with commas, a body that is not
    plain UTF-8 text (or is compressed) sent base64-encoded.
    """
    merged: dict[str, str] = {}
    for name, value in headers:
        key = name.lower()
        merged[key] = f"{merged[key]},{value}" if key in merged else value
    textual = "content-encoding" not in merged
    text: str | None = None
    if textual:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            textual = False
    now = time.time()
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": merged,
        "queryStringParameters": _query_parameters(query) or None,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "domainName": merged.get("host", "localhost"),
            "http": {
                "method": method.upper(),
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": merged.get("user-agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "body": (text if textual else base64.b64encode(body).decode("ascii")) if body else None,
        "isBase64Encoded": bool(body) and not textual,
    }


def _query_parameters(query: str) -> dict[str, str]:
    # API Gateway joins repeated parameters with commas.
    params: dict[str, str] = {}
    for pair in query.split("&") if query else ():
        name, _, value = pair.partition("=")
        key, decoded = unquote(name.replace("+", " ")), unquote(value.replace("+", " "))
        params[key] = f"{params[key]},{decoded}" if key in params else decoded
    return params


def http_answer(result: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
    """Status, headers and body bytes from a Lambda proxy result (v2 format)."""
    body = result.get("body") or ""
    data = base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode("utf-8")
    headers = [(name, str(value)) for name, value in (result.get("headers") or {}).items()]
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers.extend((name, str(value)) for value in values)
    headers.extend(("Set-Cookie", cookie) for cookie in result.get("cookies") or ())
    return int(result.get("statusCode", 200)), headers, data
