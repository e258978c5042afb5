"""Request bodies and credentials as they arrive over HTTP."""

from __future__ import annotations

import base64
import gzip
import tracemalloc
import zlib

import pytest

from shared.domain.errors import InvalidEventError, PayloadTooLargeError
from shared.domain.events import MAX_BATCH_BYTES
from shared.domain.wire import basic_auth_user, decode_body

JSON = b'{"batch": [{"type": "track", "userId": "u-1", "event": "Caf\xc3\xa9 Visited"}]}'


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@pytest.mark.parametrize(
    ("body", "is_base64", "encoding"),
    [
        pytest.param(JSON.decode(), False, None, id="text"),
        pytest.param(JSON.decode(), False, "identity", id="text-identity"),
        pytest.param(b64(JSON), True, None, id="base64"),
        pytest.param(b64(gzip.compress(JSON)), True, "gzip", id="gzip"),
        pytest.param(b64(gzip.compress(JSON)), True, " GZip ", id="gzip-odd-case"),
        pytest.param(b64(zlib.compress(JSON)), True, "deflate", id="deflate"),
    ],
)
def test_body_is_decoded_to_the_bytes_the_client_sent(body, is_base64, encoding):
    assert decode_body(body, is_base64=is_base64, content_encoding=encoding) == JSON


@pytest.mark.parametrize("body", [None, ""])
def test_missing_body_is_empty(body):
    assert decode_body(body, is_base64=False) == b""


def test_text_body_with_a_lone_surrogate_is_kept_byte_for_byte_rather_than_crashing():
    assert decode_body('{"a":"\ud800"}', is_base64=False) == b'{"a":"\xed\xa0\x80"}'


@pytest.mark.parametrize("body", ["not base64!", "QUJ", "QQ", "QUJD\n"])
def test_body_flagged_base64_that_is_not_is_refused(body):
    with pytest.raises(InvalidEventError) as refused:
        decode_body(body, is_base64=True)
    assert refused.value.reason == "body is not valid base64"


@pytest.mark.parametrize(
    ("data", "encoding"),
    [(JSON, "gzip"), (b"\x1f\x8b\x08garbage", "gzip"), (gzip.compress(JSON), "deflate"), (JSON, "deflate")],
    ids=["plain-as-gzip", "corrupt-gzip", "gzip-as-deflate", "plain-as-deflate"],
)
def test_body_that_does_not_match_its_content_encoding_is_refused(data, encoding):
    with pytest.raises(InvalidEventError) as refused:
        decode_body(b64(data), is_base64=True, content_encoding=encoding)
    assert refused.value.reason == "body is not valid gzip/deflate data"
    assert not isinstance(refused.value, PayloadTooLargeError)


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        (gzip.compress(JSON)[:-8], "gzip"),
        (gzip.compress(JSON)[:20], "gzip"),
        (zlib.compress(JSON)[:-4], "deflate"),
        (zlib.compress(JSON)[:10], "deflate"),
    ],
    ids=["gzip-without-trailer", "gzip-cut-in-the-middle", "deflate-without-checksum", "deflate-cut-in-the-middle"],
)
def test_compressed_body_cut_short_is_refused_rather_than_half_read(data, encoding):
    with pytest.raises(InvalidEventError) as refused:
        decode_body(b64(data), is_base64=True, content_encoding=encoding)
    assert refused.value.reason == "body is not valid gzip/deflate data"


@pytest.mark.parametrize("encoding", ["br", "compress", "gzip, br", "zstd"])
def test_unsupported_content_encoding_is_refused_naming_it(encoding):
    with pytest.raises(InvalidEventError) as refused:
        decode_body(b64(JSON), is_base64=True, content_encoding=encoding)
    assert refused.value.reason == f"unsupported Content-Encoding {encoding!r}: use gzip or none"


def in_wire_form(data: bytes, form: str) -> tuple[str, bool, str | None]:
    """(body, is_base64, Content-Encoding) of `data` sent as text, base64, gzip or deflate."""
    return {
        "text": (data.decode(), False, None),
        "base64": (b64(data), True, None),
        "gzip": (b64(gzip.compress(data)), True, "gzip"),
        "deflate": (b64(zlib.compress(data)), True, "deflate"),
    }[form]


WIRE_FORMS = ["text", "base64", "gzip", "deflate"]


@pytest.mark.parametrize("form", WIRE_FORMS)
def test_body_of_exactly_the_limit_is_accepted_in_every_wire_form(form):
    body, is_base64, encoding = in_wire_form(b"x" * 1000, form)
    assert decode_body(body, is_base64=is_base64, content_encoding=encoding, limit=1000) == b"x" * 1000


@pytest.mark.parametrize("form", WIRE_FORMS)
def test_body_one_byte_over_the_limit_is_refused_in_every_wire_form(form):
    body, is_base64, encoding = in_wire_form(b"x" * 1001, form)
    with pytest.raises(PayloadTooLargeError, match=r"^body is larger than 0 KB"):
        decode_body(body, is_base64=is_base64, content_encoding=encoding, limit=1000)


def test_default_limit_is_the_500_kb_batch_limit():
    assert len(decode_body("x" * MAX_BATCH_BYTES, is_base64=False)) == MAX_BATCH_BYTES
    with pytest.raises(PayloadTooLargeError) as refused:
        decode_body("x" * (MAX_BATCH_BYTES + 1), is_base64=False)
    assert refused.value.reason == "body is larger than 500 KB"


def test_oversize_base64_body_is_refused_before_it_is_decoded():
    # Given far more base64 than 500 KB could need, and not even valid base64
    body = "!" * (MAX_BATCH_BYTES * 2)
    # When / Then it is refused for its size, not its alphabet
    with pytest.raises(PayloadTooLargeError):
        decode_body(body, is_base64=True)


def test_gzip_bomb_is_refused_without_being_inflated():
    # Given 10 MB of zeros, gzipped to a few KB
    bomb = b64(gzip.compress(b"\x00" * (10 * 1024 * 1024)))
    assert len(bomb) < 20_000
    # When
    tracemalloc.start()
    try:
        with pytest.raises(PayloadTooLargeError) as refused:
            decode_body(bomb, is_base64=True, content_encoding="gzip")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Then it is refused as too large once decompressed, having inflated little more than the 500 KB limit
    assert refused.value.reason == "body is larger than 500 KB once decompressed"
    assert peak < 2 * 1024 * 1024


def write_key_header(credentials: bytes, scheme: str = "Basic") -> str:
    return f"{scheme} {base64.b64encode(credentials).decode()}"


@pytest.mark.parametrize(
    ("header", "user"),
    [
        (write_key_header(b"ffk_abc:"), "ffk_abc"),
        (write_key_header(b"ffk_abc:ignored-password"), "ffk_abc"),
        (write_key_header(b"ffk_abc"), "ffk_abc"),
        (write_key_header(b"ffk_abc:", scheme="basic"), "ffk_abc"),
        (write_key_header(b"ffk_abc:", scheme="BASIC"), "ffk_abc"),
        ("  " + write_key_header(b"ffk_abc:") + "  ", "ffk_abc"),
        ("Basic    " + base64.b64encode(b"ffk_abc:").decode(), "ffk_abc"),
        (write_key_header("clé:".encode()), "clé"),
        (None, None),
        ("", None),
        ("Basic", None),
        ("Basic ", None),
        ("Bearer ffk_abc", None),
        (write_key_header(b"ffk_abc:", scheme="Bearer"), None),
        ("Basic not*base64", None),
        (write_key_header(b":password-only"), None),
        (write_key_header(b""), None),
        (write_key_header(b"\xff\xfe:"), None),
    ],
)
def test_write_key_is_the_user_of_a_basic_authorization_header(header, user):
    assert basic_auth_user(header) == user


def test_a_gzip_body_of_several_members_is_read_whole():
    body = gzip.compress(b'{"batch":[') + gzip.compress(b"]}")
    assert decode_body(base64.b64encode(body).decode(), is_base64=True, content_encoding="gzip") == b'{"batch":[]}'


def test_identities_in_refused_input_are_found_whatever_the_encoding():
    import base64
    import gzip
    import json
    from urllib.parse import quote

    from shared.domain.failures import identities_in

    uid = "Erin Ü+1@Example.com"
    broken = json.dumps({"batch": [{"userId": uid, "anonymousId": "dev/1"}]})[:-3].encode()
    data = base64.urlsafe_b64encode(json.dumps({"previousId": uid}).encode()).decode().rstrip("=")
    cases = {
        "gzip body, base64 as API Gateway passes it": base64.b64encode(gzip.compress(broken)),
        "pixel data": f"data={data}&event=x".encode(),
        "percent-encoded pixel query": f"userId={quote(uid, safe='')}".encode(),
    }
    assert identities_in(cases["gzip body, base64 as API Gateway passes it"]) == {f"u:{uid}", "a:dev/1"}
    assert identities_in(cases["pixel data"]) == {f"u:{uid}", f"a:{uid}"}
    assert identities_in(cases["percent-encoded pixel query"]) == {f"u:{uid}"}
    assert identities_in(b"[" * 100_000) == set()
