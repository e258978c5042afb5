"""Translation between domain objects and DynamoDB items (plain Python values, as a resource read returns them).

The stream consumer decodes images with these same functions: one codec for both paths.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from shared.domain.events import TrackingEvent, event_from_payload, format_timestamp, parse_timestamp
from shared.domain.failures import FailedEvent
from shared.domain.identity import split_identity
from shared.domain.profiles import CustomerProfile, Touch
from shared.domain.sources import CLIENT_TRUST, SERVER_TRUST, Source, WebhookMapping
from shared.ports import CorruptItemError, Derived, Link, StoredProfile
from shared.storage import customer_segments, keys
from shared.storage.analytics import decode_cells, encode_cells
from shared.storage.blobs import binary, decode_json, encode_json, encode_profile_json
from shared.storage.capacity import write_units
from shared.storage.derived import derived_in, derived_out
from shared.storage.due import DUE_KEPT
from shared.storage.schema import TTL_ATTRIBUTE

EVENT_ENTITY = "event"
SOURCE_ENTITY = "source"
WRITE_KEY_ENTITY = "write_key"
FAILED_ENTITY = "failed"
PROFILE_ENTITY = keys.PROFILE_ENTITY
SCHEDULED_KEPT = 50
"""A customer item keeps at most this many due moments (the latest): a deadline moved more often than that in two
days leaves its oldest entries to fire harmlessly (and to their TTL) without `forget` finding them by this list."""
LINK_ENTITY = "link"
SLOT_ATTRIBUTE = "slot"
"""On a customer item that is not (yet) a customer's: `pointer` (an attached identity's), `claimed` (empty)."""
CUSTOMER_INDEX_SHARDS = 16
CLEAR_EPOCH_ATTRIBUTE = "clear"
"""On an event item: the erasure epoch at which the collector found the event's identities not erased (optional)."""


def event_to_item(
    event: TrackingEvent, *, retention: timedelta | None = None, clear_epoch: int | None = None
) -> dict[str, Any]:
    """The item of one stored event; `clear_epoch`: see `CLEAR_EPOCH_ATTRIBUTE`."""
    kind, identifier = event.identity
    item: dict[str, Any] = {
        "PK": keys.identity_pk(kind, identifier),
        "SK": keys.event_sk(event.source_id, event.message_id),
        "entity": EVENT_ENTITY,
        "ts": format_timestamp(event.timestamp),
        "type": str(event.type),
        "src": event.source_id,
        "body": encode_json(event.to_payload()),
    }
    label = event.event or event.name
    if label:
        item["name"] = label
    if event.trusted:
        item["trust"] = SERVER_TRUST  # sent with a server source's key: processing may honour its merges
    if retention is not None:
        item[TTL_ATTRIBUTE] = int((event.received_at + retention).timestamp())
    if clear_epoch is not None:
        item[CLEAR_EPOCH_ATTRIBUTE] = clear_epoch
    return item


EVENT_ATTRIBUTES = "src, body, trust"
"""What `item_to_event` reads of an event item: the projection of a read of many events."""


def item_to_event(item: dict[str, Any]) -> TrackingEvent:
    """Inverse of `event_to_item` (reads only `EVENT_ATTRIBUTES`)."""
    return event_from_payload(
        decode_json(item["body"]), source_id=item["src"], trusted=item.get("trust") == SERVER_TRUST
    )


def event_key(event: TrackingEvent) -> dict[str, str]:
    """Primary key of an event's item (its de-duplication key)."""
    kind, identifier = event.identity
    return {"PK": keys.identity_pk(kind, identifier), "SK": keys.event_sk(event.source_id, event.message_id)}


def source_to_item(source: Source) -> dict[str, Any]:
    """The item of a source (secrets included: the table is the secret store, guarded by IAM)."""
    return {
        "PK": keys.SOURCES_PK,
        "SK": keys.source_sk(source.id),
        "entity": SOURCE_ENTITY,
        "id": source.id,
        "name": source.name,
        "created_at": format_timestamp(source.created_at),
        "write_key_hashes": list(source.write_key_hashes),
        "write_key_prefix": source.write_key_prefix,
        "link_secrets": list(source.link_secrets),
        "webhook_secrets": list(source.webhook_secrets),
        "hash_emails": source.hash_emails,
        "trust": source.trust,
        "webhook_mapping": json.dumps(asdict(source.webhook_mapping)) if source.webhook_mapping else "",
        "write_key_expiry": [[known, format_timestamp(until)] for known, until in source.write_key_expiry],
    }


def item_to_source(item: dict[str, Any]) -> Source:
    """Inverse of `source_to_item`."""
    mapping = json.loads(item["webhook_mapping"]) if item.get("webhook_mapping") else None
    return Source(
        id=item["id"],
        name=item["name"],
        created_at=parse_timestamp(item["created_at"], "created_at"),
        write_key_hashes=tuple(item.get("write_key_hashes", ())),
        write_key_prefix=item.get("write_key_prefix", ""),
        link_secrets=tuple(item.get("link_secrets", ())),
        webhook_secrets=tuple(item.get("webhook_secrets", ())),
        hash_emails=bool(item.get("hash_emails", False)),
        trust=item.get("trust", CLIENT_TRUST),  # sources from before trust levels: public keys, like a browser's
        webhook_mapping=WebhookMapping(**mapping) if mapping else None,
        write_key_expiry=tuple(
            (str(known), parse_timestamp(until, "write_key_expiry"))
            for known, until in item.get("write_key_expiry", ())
        ),
    )


def write_key_item(write_key_hash: str, source_id: str) -> dict[str, Any]:
    """Lookup item from a write key's hash to its source."""
    return {
        "PK": keys.write_key_pk(write_key_hash),
        "SK": keys.WRITE_KEY_SK,
        "entity": WRITE_KEY_ENTITY,
        "source_id": source_id,
    }


def failed_to_item(failure: FailedEvent, *, retention: timedelta) -> dict[str, Any]:
    """The item of a failed event; it expires after `retention`."""
    pk, sk = keys.failed_key(failure.id)
    item: dict[str, Any] = {
        "PK": pk,
        "SK": sk,
        "entity": FAILED_ENTITY,
        "id": failure.id,
        "received_at": format_timestamp(failure.received_at),
        "route": failure.route,
        "reason": failure.reason,
        "status": failure.status,
        "raw": zlib.compress(failure.raw),
        "truncated": failure.truncated,
        TTL_ATTRIBUTE: int((failure.received_at + retention).timestamp()),
    }
    if failure.source_id:
        item["source_id"] = failure.source_id
    if failure.message_id:
        item["message_id"] = failure.message_id
    return item


def item_to_failed(item: dict[str, Any]) -> FailedEvent:
    """Inverse of `failed_to_item`."""
    return FailedEvent(
        id=item["id"],
        received_at=parse_timestamp(item["received_at"], "received_at"),
        route=item["route"],
        reason=item["reason"],
        status=int(item["status"]) if isinstance(item["status"], (int, Decimal)) else 0,
        raw=zlib.decompress(binary(item["raw"])),
        source_id=item.get("source_id"),
        message_id=item.get("message_id"),
        truncated=bool(item.get("truncated", False)),
    )


def day_of(moment: datetime) -> str:
    """`yyyy-mm-dd` (UTC) of a moment: the partition of that day's failed events."""
    return format_timestamp(moment)[:10]


def decode_change(*, old: dict[str, Any] | None, new: dict[str, Any] | None) -> TrackingEvent | None:
    """The event a stream record brings, or None for anything else.

    Only the first write of an event counts: a MODIFY of an event item is the second write of a racing
    duplicate delivery (same key, same event), and a REMOVE is its TTL expiry.
    """
    if old or not new or new.get("entity") != EVENT_ENTITY:
        return None
    return item_to_event(new)


def clear_epoch_of(new: dict[str, Any] | None) -> int | None:
    """The erasure epoch an event item's new image is stamped with (`CLEAR_EPOCH_ATTRIBUTE`), or None."""
    value = (new or {}).get(CLEAR_EPOCH_ATTRIBUTE)
    return int(value) if value is not None else None


def decode_membership_change(*, old: dict[str, Any] | None, new: dict[str, Any] | None) -> dict[str, Any] | None:
    """A membership item's change (`entered` True/False), or None when its state did not change."""
    if not new or new.get("entity") != "membership":
        return None
    was_in = old is not None and old.get("state") == "in"
    now_in = new.get("state") == "in"
    if was_in == now_in:
        return None
    return {
        "segment_id": new["segment"],
        "customer_id": new["customer_id"],
        "entered": now_in,
        "at": new["changed_at"],
        "rule_version": int(new["rule_version"]),
        "reason": new.get("reason", ""),
        "identity": (new["identity_kind"], new["identity"]),
    }


def link_item(link: Link) -> dict[str, Any]:
    """The item saying which customer an identity belongs to (in the identity's own partition)."""
    kind, value = split_identity(link.identity)
    return {
        "PK": keys.identity_pk(kind, value),
        "SK": keys.LINK_SK,
        "entity": LINK_ENTITY,
        "identity": link.identity,  # read back from here, never from the key
        "customer_id": link.customer_id,
        "via": link.via,
        "at": link.at,
    }


def pointer_item(link: Link) -> dict[str, Any]:
    """An identity's slot (`CUSTOMER#<identity>` / `PROFILE`, where its own customer item would be) holding a
    pointer to the customer it was attached to: a customer item that is not a customer (`merged_into`, like a
    merge's tombstone: no index entry, no cells), written only if the slot is free. Creating a customer and
    attaching its identity elsewhere claim the same key, so the one that comes second fails."""
    pointer = CustomerProfile(customer_id=link.identity, merged_into=link.customer_id)
    item = profile_to_item(StoredProfile(pointer, version=1, segments={}))
    item.update({"via": link.via, "at": link.at, SLOT_ATTRIBUTE: "pointer"})
    return item


def claimed_item(customer_id: str) -> tuple[StoredProfile, dict[str, Any]]:
    """A new customer's item, empty, written so that an identity can be attached to it before processing folds
    its events (`SLOT_ATTRIBUTE` says so until that write replaces it)."""
    empty = StoredProfile(CustomerProfile(customer_id=customer_id, identities=(customer_id,)), version=1, segments={})
    item = profile_to_item(empty)
    item[SLOT_ATTRIBUTE] = "claimed"
    return empty, item


def slot_link(identity: str, item: dict[str, Any]) -> Link:
    """The link an identity's slot item says: to the customer itself, or to where its pointer (or a merge's
    tombstone) points (read from the item's attributes and body, never from its key)."""
    try:
        target = item_to_profile(item).profile.merged_into or identity
    except CorruptItemError:  # a customer item that cannot be decoded is still its customer's (and quarantined)
        target = identity
    return Link(identity=identity, customer_id=target, via=str(item.get("via", "")), at=str(item.get("at", "")))


def item_to_link(item: dict[str, Any]) -> Link:
    """Inverse of `link_item`."""
    if "identity" in item:
        identity = str(item["identity"])
    else:  # links written before the attribute: the key's id part is everything after `ID#<kind>#`
        kind, value = keys.parse_identity_pk(item["PK"])
        identity = f"{kind}:{value}"
    return Link(identity=identity, customer_id=item["customer_id"], via=item.get("via", ""), at=item.get("at", ""))


def _touch_json(touch: Touch | None) -> dict[str, Any] | None:
    return (
        None
        if touch is None
        else {
            "channel": touch.channel,
            "at": touch.at,
            "message_id": touch.message_id,
            "campaign": dict(touch.campaign),
        }
    )


def _touch(data: dict[str, Any] | None) -> Touch | None:
    return None if data is None else Touch(**data)


# Profile bodies hold user-shaped JSON (traits, properties) beside our own Decimal values, which are tagged as
# {"$d": "12.50"}. So that no user JSON can ever look like a tag, every object key starting with "$" is written
# with one more "$" (escaped) and read back with one less: in an escaped body the only key with a single leading
# "$" is a tag. Bodies written before escaping (no `body_codec` attribute) are read the old way.
_DECIMAL_TAG = "$d"
_ESCAPED_BODY = 2


def _escape(value: Any) -> Any:
    if isinstance(value, dict):
        return {(f"${key}" if key.startswith("$") else key): _escape(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_escape(item) for item in value]
    return value


def _money_out(value: Any) -> Any:
    if isinstance(value, Decimal):
        return {_DECIMAL_TAG: str(value)}
    raise TypeError(f"not JSON: {type(value).__name__}")


def _decimal(text: Any) -> Decimal:
    try:
        amount = Decimal(text) if isinstance(text, str) else None
    except ArithmeticError:
        amount = None
    if amount is None or not amount.is_finite():
        raise CorruptItemError("a stored number is not a finite decimal")
    return amount


def _money_in_escaped(value: dict[str, Any]) -> Any:
    if value.keys() == {_DECIMAL_TAG}:
        return _decimal(value[_DECIMAL_TAG])
    if any(key.startswith("$") and not key.startswith("$$") for key in value):
        raise CorruptItemError("a stored object has an unescaped key")
    return {(key[1:] if key.startswith("$") else key): item for key, item in value.items()}


def _money_in_legacy(value: dict[str, Any]) -> Any:
    return _decimal(value[_DECIMAL_TAG]) if value.keys() == {_DECIMAL_TAG} else value


def profile_to_item(stored: StoredProfile) -> dict[str, Any]:
    """The item of a customer profile: compressed body, version for optimistic locking, list-index keys."""
    profile = stored.profile
    body = {
        "customer_id": profile.customer_id,
        "identities": list(profile.identities),
        "user_id": profile.user_id,
        "first_seen": profile.first_seen,
        "last_seen": profile.last_seen,
        "traits": profile.traits,
        "trait_stamps": profile.trait_stamps,
        "event_counts": profile.event_counts,
        "orders": profile.orders,
        "revenue": profile.revenue,
        "last_order_at": profile.last_order_at,
        "daily": profile.daily,
        "carts": profile.carts,
        "first_touch": _touch_json(profile.first_touch),
        "last_touch": _touch_json(profile.last_touch),
        "engagement": profile.engagement,
        "flags": profile.flags,
        "links": list(profile.links),
        "merged_into": profile.merged_into,
        "applied": dict(stored.applied),
        "scheduled": _scheduled_out(stored.scheduled),
        **_segments_out(stored),
    }
    item: dict[str, Any] = {
        "PK": keys.customer_pk(profile.customer_id),
        "SK": keys.PROFILE_SK,
        "entity": PROFILE_ENTITY,
        "customer_id": profile.customer_id,  # readable without decoding the body (a corrupt one is quarantined)
        "version": stored.version,
        "body_codec": _ESCAPED_BODY,
        "body": b"",
    }
    if profile.merged_into is None:  # tombstones leave the customer list, and hold no cells (the fold takes them back)
        item["GSI1PK"] = keys.customers_gsi_pk(keys.shard_of(profile.customer_id, CUSTOMER_INDEX_SHARDS))
        item["GSI1SK"] = profile.customer_id
        if stored.cells:
            item["cells"] = encode_cells(stored.cells)
            item["cells_at"] = stored.cells_at
    item["body"] = _body(item, body, stored.derived if profile.merged_into is None else None)
    return item


def _body(item: dict[str, Any], body: dict[str, Any], derived: Derived | None) -> bytes:
    """The encoded body, with the derived state unless it is `spare` and would make the item cost a write unit more
    than it does without (then the next batch reads the history instead)."""
    if derived is None:
        return encode_profile_json(_escape(body), default=_money_out)
    whole = encode_profile_json(_escape({**body, "derived": derived_out(derived)}), default=_money_out)
    if derived.spare:
        lean = encode_profile_json(_escape(body), default=_money_out)
        if write_units({**item, "body": whole}) > write_units({**item, "body": lean}):
            return lean
    return whole


REASON_KEPT = 200
"""Characters of a transition's reason the customer item keeps (the announcement's reason)."""


def _segments_out(stored: StoredProfile) -> dict[str, Any]:
    """The body fields of the segments a customer item holds (none for a customer whose membership items are the
    authority). A tombstone is in no segment: its merge is the reason it leaves them."""
    if stored.segments is None:
        return {}
    segments, why, at = dict(stored.segments), dict(stored.why), stored.segments_at
    if stored.profile.merged_into and segments:  # the merge is when it leaves them
        why = dict.fromkeys(segments, f"merged into {stored.profile.merged_into}")
        segments, at = {}, format_timestamp(datetime.now(UTC))
    held = {
        "segments": {s: [m.since, m.rule_version] for s, m in sorted(segments.items())},
        "segments_at": at,
        "why": {s: reason[:REASON_KEPT] for s, reason in sorted(why.items())},
    }
    if stored.adopted is not None:  # the write that adopts its membership items (`customer_segments.adoption`)
        held["adopted"] = {s: [m.since, m.rule_version] for s, m in sorted(stored.adopted.items())}
    return held


def _scheduled_out(moments: tuple[datetime, ...]) -> list[int]:
    """The due moments worth keeping (their entries still exist: TTL removes them `DUE_KEPT` after), as epoch
    seconds, the latest `SCHEDULED_KEPT`."""
    horizon = datetime.now(UTC) - DUE_KEPT
    return sorted({int(moment.timestamp()) for moment in moments if moment > horizon})[-SCHEDULED_KEPT:]


def item_cells(item: dict[str, Any]) -> tuple[Any, str]:
    """A customer item's cells and when they were computed ({} and "" when it holds none)."""
    if "cells" not in item:
        return {}, ""
    return decode_cells(binary(item["cells"])), str(item.get("cells_at") or "")


def item_to_profile(item: dict[str, Any]) -> StoredProfile:
    """Inverse of `profile_to_item`.

    Raises:
        CorruptItemError: the item cannot be decoded (never another exception, whatever the item holds).
    """
    customer_id = item.get("customer_id")
    hook = _money_in_escaped if item.get("body_codec") == _ESCAPED_BODY else _money_in_legacy
    try:
        body = decode_json(item["body"], object_hook=hook)
        applied = body.pop("applied", {})
        scheduled = tuple(datetime.fromtimestamp(int(at), UTC) for at in body.pop("scheduled", ()))
        held = body.pop("segments", None)
        segments = None if held is None else customer_segments.memberships(held, str(body.get("customer_id")))
        why, segments_at = body.pop("why", {}), str(body.pop("segments_at", ""))
        body.pop("adopted", None)  # what the adopting write's record says; the next write does not repeat it
        derived = derived_in(body.pop("derived", None))
        body["identities"] = tuple(body.get("identities", ()))
        body["links"] = tuple(body.get("links", ()))
        body["first_touch"] = _touch(body.get("first_touch"))
        body["last_touch"] = _touch(body.get("last_touch"))
        body["revenue"] = body["revenue"] if isinstance(body["revenue"], Decimal) else _decimal(str(body["revenue"]))
        profile = CustomerProfile(**body)
        customer_id = profile.customer_id
        cells, cells_at = item_cells(item)
        return StoredProfile(
            profile,
            int(item["version"]),
            applied,
            cells,
            cells_at,
            scheduled,
            segments,
            dict(why),
            segments_at,
            derived,
        )
    except CorruptItemError as exc:
        raise CorruptItemError(str(exc), customer_id=customer_id) from exc
    except (ValueError, TypeError, KeyError, AttributeError, zlib.error, RecursionError) as exc:
        raise CorruptItemError(f"profile cannot be decoded: {type(exc).__name__}", customer_id=customer_id) from exc
