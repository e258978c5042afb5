"""A raw scan of the table, decoded without product code (but the event body codec, see `body`).

Items are grouped by what they are; nothing is looked up by the keys the product would expect.
"""

from __future__ import annotations

import json
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer

AUDIENCE_SOURCE = "footfall"
"""Events Footfall writes itself (Audience Entered/Exited): announcements, not customer behaviour."""


def body(blob: bytes) -> Any:
    """An event's (or profile's) compressed JSON body.

    The codec (zlib with a preset dictionary whose text lives in the product's item codec) is the one piece read
    from product code: re-typing a 4 KB dictionary here would check nothing but a copy.
    """
    from shared.storage.items import decode_json  # the storage codec only; no domain rule is used

    return decode_json(blob, object_hook=lambda o: Decimal(o["$d"]) if o.keys() == {"$d"} else o)


def profile_body(item: dict[str, Any]) -> Any:
    """A profile's body. Written with `body_codec` 2, every object key starting with `$` carries one more `$`
    (so user JSON can never look like the `{"$d": …}` number tag): take it off again."""
    if item.get("body_codec") != 2:
        return body(bytes(item["body"]))
    from shared.storage.items import decode_json

    def hook(o: dict[str, Any]) -> Any:
        if o.keys() == {"$d"}:
            return Decimal(o["$d"])
        return {(k[1:] if k.startswith("$$") else k): v for k, v in o.items()}

    return decode_json(bytes(item["body"]), object_hook=hook)


@dataclass(frozen=True)
class Event:
    """A stored event as the oracle reads it."""

    pk: str
    sk: str
    source: str
    payload: dict[str, Any]

    @property
    def type(self) -> str:
        return str(self.payload["type"])

    @property
    def message_id(self) -> str:
        return str(self.payload["messageId"])

    @property
    def at(self) -> datetime:
        return parse_time(self.payload["timestamp"])

    @property
    def received(self) -> datetime:
        return parse_time(self.payload.get("receivedAt") or self.payload["timestamp"])

    @property
    def user_id(self) -> str | None:
        return self.payload.get("userId") or None

    @property
    def anonymous_id(self) -> str | None:
        return self.payload.get("anonymousId") or None

    @property
    def name(self) -> str:
        """README: a track call counts under its event name, any other call under `$<type>`."""
        return self.payload["event"] if self.type == "track" and self.payload.get("event") else f"${self.type}"

    @property
    def properties(self) -> dict[str, Any]:
        return self.payload.get("properties") or {}

    @property
    def context(self) -> dict[str, Any]:
        return self.payload.get("context") or {}

    def order_key(self) -> tuple[datetime, str]:
        return (self.at, self.message_id)


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass
class Table:
    """Every item of the table, by kind."""

    events: list[Event] = field(default_factory=list)
    undecodable: list[dict[str, Any]] = field(default_factory=list)
    links: dict[str, dict[str, Any]] = field(default_factory=dict)
    """`ID#<u|a>#<id>` → link item."""
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    """customer id → decoded profile body."""
    memberships: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    """customer id → segments it is in."""
    held: dict[str, set[str]] = field(default_factory=dict)
    """customer id → the segments its customer item holds (customers whose item is their authority)."""
    listed: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    """customer id → the segments whose member items list it."""
    indexed: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    """customer id → the segments whose membership items (older customers') list it in the members index."""
    counters: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)
    segments: list[dict[str, Any]] = field(default_factory=list)
    analytics: dict[str, Any] | None = None
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    failed_raw: list[bytes] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)


def scan(client: Any, table_name: str) -> Table:
    """Scan the whole table (strongly consistent) and sort its items."""
    table = Table()
    deserializer = TypeDeserializer()
    paginator = client.get_paginator("scan")
    for page in paginator.paginate(TableName=table_name, ConsistentRead=True):
        for raw in page["Items"]:
            _sort(table, {k: deserializer.deserialize(v) for k, v in raw.items()})
    return table


def _sort(table: Table, item: dict[str, Any]) -> None:  # noqa: C901 - one branch per item kind
    entity, pk, sk = item.get("entity"), item["PK"], item["SK"]
    if entity == "event":
        try:
            table.events.append(Event(pk, sk, item["src"], body(bytes(item["body"]))))
        except (zlib.error, ValueError, KeyError, UnicodeDecodeError):
            table.undecodable.append(item)
    elif entity == "link":
        table.links[pk] = item
    elif entity == "profile":
        customer_id = item.get("customer_id") or pk.split("#", 1)[1]
        table.profiles[customer_id] = profile_body(item)
        if isinstance(table.profiles[customer_id], dict) and "segments" in table.profiles[customer_id]:
            # README "Segments": a customer item that holds its segments is their authority
            table.held[customer_id] = set(table.profiles[customer_id]["segments"])
            table.memberships[customer_id] |= table.held[customer_id]
    elif entity == "member":  # a segment's listing of a customer whose item holds its segments
        table.listed[item["customer_id"]].add(item["segment"])
    elif entity == "membership":
        if item.get("state", "in") == "in":
            table.memberships[item["customer_id"]].add(item["segment"])
        if "GSI1PK" in item:
            table.indexed[item["customer_id"]].add(item["segment"])
    elif entity == "counter":
        # (`~…` attributes are the fold's per-shard marks, not counts: README, "Analytics")
        table.counters[(pk, sk)] = {
            k: int(v) for k, v in item.items() if k not in ("PK", "SK", "entity") and not k.startswith("~")
        }
    elif entity == "segment":
        table.segments.append(json.loads(item["definition"]))
    elif entity == "analytics_definitions":
        table.analytics = json.loads(item["document"])
    elif entity == "source":
        table.sources[item["id"]] = item
    elif entity == "failed":
        table.failed_raw.append(zlib.decompress(bytes(item["raw"])))
    elif entity == "segment_history":
        table.history.append(item)
