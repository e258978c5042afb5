"""Nothing secret or personal reaches the logs, even when requests fail."""

from __future__ import annotations

import io
import json
import logging

import pytest
from botocore.awsrequest import AWSResponse

from tests.builders import a_track

pytestmark = pytest.mark.integration


def _sink_every_log_handler(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """Powertools' handlers hold the stdout of when they were made (maybe before capsys): read them directly."""
    sink = io.StringIO()
    for logger in [logging.getLogger(), *(logging.getLogger(n) for n in list(logging.root.manager.loggerDict))]:
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                monkeypatch.setattr(handler, "stream", sink)
    return sink


def test_logs_never_contain_write_keys_or_email_addresses(http, source, ddb, capsys, caplog, monkeypatch):
    # Given requests carrying a write key and an e-mail address: good, bad, refused, and one hitting a storage fault
    caplog.set_level(logging.DEBUG)
    sink = _sink_every_log_handler(monkeypatch)
    _, write_key = source
    email = "secret.person@example.com"
    identify = {"type": "identify", "userId": "u-log", "traits": {"email": email}}
    http("POST", "/v1/batch", body=json.dumps({"batch": [identify]}), write_key=write_key)
    http("POST", "/v1/track", body=json.dumps({"userId": "u", "traits": {"email": email}}), write_key=write_key)
    http("POST", "/v1/track", body=json.dumps(a_track(properties={"email": email})), write_key=write_key + "x")
    ddb.meta.events.register(
        "before-call.dynamodb.PutItem",
        lambda **_: (
            AWSResponse("https://dynamodb", 400, {}, None),
            {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow"}},
        ),
    )
    answer = http("POST", "/v1/identify", body=json.dumps(identify | {"messageId": "m-2"}), write_key=write_key)
    # When we read everything that was logged
    captured = capsys.readouterr()
    logged = captured.out + captured.err + caplog.text + sink.getvalue()
    # Then
    assert answer.status == 503  # the storage fault really happened (and was logged)
    assert "storage" in logged.lower() or "event put gave up" in logged
    assert write_key not in logged
    assert email not in logged and "secret.person" not in logged


def test_failed_records_never_hold_a_write_key(http, source, ddb, store):
    # Given refused requests carrying the write key every way a client can send it
    import base64
    from urllib.parse import quote, unquote

    _, write_key = source
    invalid = {"event": "No One"}  # neither userId nor anonymousId: refused and recorded
    data = quote(base64.b64encode(json.dumps(invalid | {"writeKey": write_key}).encode()).decode())
    http("GET", "/v1/pixel/track", query=f"writeKey={write_key}&event=x")
    http("GET", "/v1/pixel/track", query=f"data={data}")
    http("GET", "/v1/pixel/track", query=f"write%4Bey={write_key}&event=x")
    http("POST", "/v1/track", body=json.dumps(invalid | {"writeKey": write_key}))
    http("POST", "/v1/batch", body=json.dumps({"writeKey": write_key, "batch": [invalid | {"writeKey": write_key}]}))
    http("POST", "/v1/track", body=json.dumps(invalid), write_key=write_key)
    http("POST", "/v1/track", body=json.dumps(invalid | {"writeKey": write_key + "x"}))  # a wrong key: 401
    http("POST", "/v1/track", body='{"writeKey": "' + write_key + '", "userId": ')  # not even JSON
    # When we read every failed record and every stored byte
    failures = store.list_failed(limit=100).items
    stored = repr(ddb.scan(TableName=store.table_name)["Items"])
    # Then each request was recorded, and the key is nowhere
    assert len(failures) >= 8
    for failure in failures:
        assert write_key.encode() not in failure.raw, failure
        assert write_key not in failure.raw.decode("utf-8", "replace")
        if failure.raw.startswith(b"data="):  # the pixel's base64 JSON, decoded
            assert write_key.encode() not in base64.b64decode(unquote(failure.raw.decode()[5:]))
    assert write_key not in stored
