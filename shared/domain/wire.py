"""Request bodies and credentials as they arrive over HTTP: encodings, size limits, Basic auth."""

from __future__ import annotations

import base64
import binascii
import zlib

from shared.domain.errors import InvalidEventError, PayloadTooLargeError
from shared.domain.events import MAX_BATCH_BYTES


def decode_body(
    body: str | None, *, is_base64: bool, content_encoding: str | None = None, limit: int = MAX_BATCH_BYTES
) -> bytes:
    """The request body as bytes, un-base64'd and un-gzipped, refusing anything over `limit` bytes.

    A gzip body is inflated only up to `limit` + 1 bytes, so a compression bomb costs nothing.

    Raises:
        PayloadTooLargeError: over the limit (before or after decompression).
        InvalidEventError: undecodable base64 or gzip, or an unsupported Content-Encoding.
    """
    if body is None:
        return b""
    if is_base64:
        if len(body) > (limit * 4) // 3 + 4:  # the base64 length of `limit` bytes, padding included
            raise PayloadTooLargeError(f"body is larger than {limit // 1024} KB")
        try:
            data = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidEventError("body is not valid base64") from None
    else:
        data = body.encode("utf-8", "surrogatepass")
    encoding = (content_encoding or "identity").strip().lower()
    if encoding in ("gzip", "deflate"):
        data = _inflate(data, limit, gzip=encoding == "gzip")
    elif encoding != "identity":
        raise InvalidEventError(f"unsupported Content-Encoding {encoding!r}: use gzip or none")
    if len(data) > limit:
        raise PayloadTooLargeError(f"body is larger than {limit // 1024} KB")
    return data


def _inflate(data: bytes, limit: int, *, gzip: bool) -> bytes:
    inflated = b""
    while True:  # a gzip stream may hold several members (RFC 1952): read them all
        inflater = zlib.decompressobj(wbits=31 if gzip else 15)
        try:
            inflated += inflater.decompress(data, limit + 1 - len(inflated))
        except zlib.error:
            raise InvalidEventError("body is not valid gzip/deflate data") from None
        if len(inflated) > limit or inflater.unconsumed_tail:
            raise PayloadTooLargeError(f"body is larger than {limit // 1024} KB once decompressed")
        if not inflater.eof:  # cut short: part of the body, and its checksum, never arrived
            raise InvalidEventError("body is not valid gzip/deflate data")
        data = inflater.unused_data
        if not gzip or not data:
            return inflated


def basic_auth_user(header: str | None) -> str | None:
    """The user part of a Basic `Authorization` header (Segment's write key, password empty)."""
    if not header:
        return None
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() != "basic" or not credentials:
        return None
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    user, _, _ = decoded.partition(":")
    return user or None
