"""`DynamoTrackingStore`: the tracking store on DynamoDB (AWS, moto, or any DynamoDB-compatible endpoint)."""

from __future__ import annotations

import base64
import json
import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError

from shared.domain.events import TrackingEvent
from shared.domain.failures import FailedEvent
from shared.domain.identity import named_identities, split_identity
from shared.domain.results import Outcome
from shared.domain.sources import Source, hash_write_key
from shared.ports import CorruptItemError, Link, Page, StoredProfile
from shared.storage import items, keys
from shared.storage.analytics import AnalyticsStorage
from shared.storage.erasure import FAILED_LOOKBACK_DAYS, ErasureStorage, SuppressionCache, failed_index_rows
from shared.storage.errors import ConditionFailedError, StorageError, ThrottledError, translate
from shared.storage.schema import TTL_ATTRIBUTE
from shared.storage.segments import SegmentStorage

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

logger = logging.getLogger(__name__)

BATCH_WRITE_LIMIT = 25
PARALLEL_PUTS = 16
"""Event puts in flight at once per request (each its own conditional PutItem)."""
BATCH_GET_LIMIT = 100
FAILED_DAYS_PK = "FAILEDDAYS"

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def serialize(item: dict[str, Any]) -> dict[str, Any]:
    """Plain Python item → DynamoDB JSON."""
    return {name: _serializer.serialize(value) for name, value in item.items()}


def deserialize(image: dict[str, Any]) -> dict[str, Any]:
    """DynamoDB JSON → plain Python item (binary values as `bytes`)."""
    return {name: _plain(value) for name, value in image.items()}


def _plain(value: dict[str, Any]) -> Any:
    # Strings and binaries (most attributes of most items) without the general deserializer's dispatch, which was
    # a quarter of the CPU of reading a customer's events from the embedded database.
    if "S" in value:
        return value["S"]
    if "B" in value:
        return value["B"]
    return _deserializer.deserialize(value)


def deserialize_wire(image: dict[str, Any]) -> dict[str, Any]:
    """DynamoDB JSON as Lambda stream events carry it (binary values as base64 text) → plain Python item."""
    return deserialize({name: _bytes_from_wire(value) for name, value in image.items()})


def _bytes_from_wire(value: Any) -> Any:
    if isinstance(value, dict):
        if isinstance(value.get("B"), str):
            return {"B": base64.b64decode(value["B"])}
        if "M" in value:
            return {"M": {k: _bytes_from_wire(v) for k, v in value["M"].items()}}
        if "L" in value:
            return {"L": [_bytes_from_wire(v) for v in value["L"]]}
    return value


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff with full jitter, for throttling and unprocessed batch items."""

    attempts: int = 8
    base_delay: float = 0.025
    max_delay: float = 1.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    rand: Callable[[], float] = field(default=random.random, repr=False)

    def pause(self, attempt: int) -> None:
        """Sleep before retry number `attempt` (1-based)."""
        self.sleep(self.rand() * min(self.max_delay, self.base_delay * 2**attempt))


def make_client(
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
    profile: str | None = None,
    validate: bool = True,
    credentials: Mapping[str, str] | None = None,
    component: str | None = None,
) -> DynamoDBClient:
    """A DynamoDB client; with `endpoint_url` it talks to moto, DynamoDB Local, LocalStack or Alternator.

    Args:
        validate: botocore's client-side parameter validation; the Lambdas turn it off (about a tenth of the
            collector's CPU), since their requests are built by this module, whose tests run with it on.
        credentials: `aws_access_key_id` and `aws_secret_access_key` to use instead of the session's.
        component: which function makes the requests (`collect`, `process`…), named in their User-Agent as
            `footfall/<component>` (what the cost bench counts round trips by; CloudTrail shows it too).

    An `endpoint_url` of `sqlite:///path` opens the embedded database there (`shared.storage.sqlite`) instead.
    """
    from shared.storage.sqlite import is_sqlite, sqlite_path, sqlite_synchronous

    if is_sqlite(endpoint_url):
        from shared.storage.sqlite.engine import SqliteClient

        endpoint = str(endpoint_url)
        return SqliteClient(  # type: ignore[return-value]
            sqlite_path(endpoint), region=region or "local", synchronous=sqlite_synchronous(endpoint)
        )
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(profile_name=profile, region_name=region)
    options: dict[str, Any] = {
        "retries": {"mode": "standard", "max_attempts": 3},
        "tcp_keepalive": True,
        "max_pool_connections": 32,
        "parameter_validation": validate,
    }
    if component:
        options["user_agent_extra"] = f"footfall/{component}"
    # Account-id endpoints (botocore >= 1.44) are AWS-only hosts: other endpoints must not get them. On AWS
    # botocore's default is kept, so an older botocore (a Lambda runtime's) that lacks the option still works.
    if endpoint_url and "account_id_endpoint_mode" in Config.OPTION_DEFAULTS:
        options["account_id_endpoint_mode"] = "disabled"
    config = Config(**options)
    keys = dict(credentials or {})
    if endpoint_url and not keys and session.get_credentials() is None:
        # Local endpoints (moto, DynamoDB Local) accept any credentials, but botocore insists on having some.
        keys = {"aws_access_key_id": "footfall", "aws_secret_access_key": "footfall"}
    return session.client("dynamodb", endpoint_url=endpoint_url, config=config, **keys)


class DynamoTrackingStore(SegmentStorage, AnalyticsStorage, ErasureStorage):
    """The tracking store on one DynamoDB table (see `shared.storage.keys` for the access patterns)."""

    def __init__(
        self,
        table_name: str,
        *,
        client: DynamoDBClient | None = None,
        retry: RetryPolicy | None = None,
        event_retention: timedelta | None = None,
        failed_retention: timedelta = timedelta(days=30),
    ) -> None:
        self.table_name = table_name
        self._client = client
        self.retry = retry or RetryPolicy()
        self.event_retention = event_retention
        self.failed_retention = failed_retention
        self.suppression = SuppressionCache()
        """Identities known not erased, kept while this store lives (a warm container's): see `SuppressionCache`."""
        self._putters = ThreadPoolExecutor(max_workers=PARALLEL_PUTS, thread_name_prefix="event-put")
        """Threads for event puts, started on first use and kept while this store lives (not one pool a request)."""

    @property
    def client(self) -> DynamoDBClient:
        """The DynamoDB client, built on first use (never at import: tests start moto first)."""
        if self._client is None:
            self._client = make_client()
        return self._client

    # --- events -------------------------------------------------------------------------------------------------

    def put_events(self, events: Sequence[TrackingEvent]) -> list[Outcome]:
        """Store events exactly once per (identity, source, messageId), within one call too.

        Each new event is one put conditional on its key being free (`PARALLEL_PUTS` partitions at a time): a
        failed condition means it was stored before (DUPLICATE), so de-duplication costs no read and holds even for
        two deliveries racing each other. One strongly consistent batch read finds the erasure epoch and the
        suppression marks of the identities this store does not already know to be clear at that epoch (see
        `SuppressionCache`: a second read only when the epoch changed). Throttled puts are retried with bounded,
        jittered pauses.

        Returns:
            One outcome per event: ACCEPTED, DUPLICATE, SUPPRESSED (a forgotten identity), or NOT_STORED
            (throttled past the retries).

        Raises:
            ThrottledError: the suppression read could not complete (nothing was written).
            StorageError: any other DynamoDB failure.
        """
        outcomes = [Outcome.ACCEPTED] * len(events)
        first_index: dict[tuple[str, str], int] = {}
        for index, event in enumerate(events):
            key = tuple(items.event_key(event).values())
            if key in first_index:
                outcomes[index] = Outcome.DUPLICATE
            else:
                first_index[(key[0], key[1])] = index
        # Forgotten identities (erased on request): their events are not stored again, and an alias naming one as
        # its previousId is not stored either (it would link the erased id again).
        forgotten = self.forgotten_identities([i for e in events for i in named_identities(e)])
        for index, event in enumerate(events):
            if forgotten.intersection(named_identities(event)):
                outcomes[index] = Outcome.SUPPRESSED
        new = [index for index in first_index.values() if outcomes[index] is Outcome.ACCEPTED]
        put = [
            items.event_to_item(
                events[index],
                retention=self.event_retention,
                clear_epoch=self.clear_epoch(named_identities(events[index])),
            )
            for index in new
        ]
        for index, outcome in zip(new, self._put_new(put), strict=True):
            outcomes[index] = outcome
        return outcomes

    def _put_new(self, rows: list[dict[str, Any]]) -> list[Outcome]:
        """Put each item unless its key exists: ACCEPTED, DUPLICATE (it did), or NOT_STORED (throttled throughout).

        Partitions are written in parallel, the items of one partition (one identity's events) one after the
        other in the request's order: the stream brings an identity's events to processing in the order they were
        sent (an identify before the purchase after it, not a second customer merged later).
        """
        partitions: dict[str, list[int]] = {}
        for position, row in enumerate(rows):
            partitions.setdefault(row["PK"], []).append(position)
        outcomes: list[Outcome] = [Outcome.NOT_STORED] * len(rows)

        def put_in_order(positions: list[int]) -> None:
            for position in positions:
                outcomes[position] = self._put_if_new(rows[position])

        if len(partitions) <= 1:
            for positions in partitions.values():
                put_in_order(positions)
        else:
            list(self._putters.map(put_in_order, partitions.values()))
        return outcomes

    def _put_if_new(self, row: dict[str, Any]) -> Outcome:
        item = serialize(row)
        for attempt in range(1, self.retry.attempts + 1):
            try:
                self._call(
                    self.client.put_item,
                    TableName=self.table_name,
                    Item=item,
                    ConditionExpression="attribute_not_exists(PK)",
                )
                return Outcome.ACCEPTED
            except ConditionFailedError:
                return Outcome.DUPLICATE
            except ThrottledError:
                if attempt < self.retry.attempts:
                    self.retry.pause(attempt)
        logger.error("event put gave up", extra={"attempts": self.retry.attempts})
        return Outcome.NOT_STORED

    def list_identity_events(self, kind: str, identifier: str) -> list[TrackingEvent]:
        """Every stored event of one identity (`u`/`a`), oldest first."""
        found = [
            items.item_to_event(item)
            for item in self._query(
                KeyConditionExpression="PK = :pk AND begins_with(SK, :sk)",
                ExpressionAttributeValues={
                    ":pk": {"S": keys.identity_pk(kind, identifier)},
                    ":sk": {"S": keys.EVENT_SK_PREFIX},
                },
                # Only what `item_to_event` reads: less to send and to decode (the read units are the same).
                ProjectionExpression=items.EVENT_ATTRIBUTES,
            )
        ]
        return sorted(found, key=lambda event: (event.timestamp, event.message_id))

    # --- sources ------------------------------------------------------------------------------------------------

    def put_source(self, source: Source, *, write_keys: Sequence[str] = ()) -> None:
        """Create or replace a source, with lookup items for its (new) write keys."""
        lookups = [items.write_key_item(hash_write_key(key), source.id) for key in write_keys]
        not_stored = self._batch_write([items.source_to_item(source), *lookups])
        if not_stored:
            raise ThrottledError("source could not be stored")

    def remove_source(self, source: Source) -> None:
        """Delete a source and the lookup items of its write keys (its events and failed records stay)."""
        for key in [
            {"PK": keys.SOURCES_PK, "SK": keys.source_sk(source.id)},
            *({"PK": keys.write_key_pk(known), "SK": keys.WRITE_KEY_SK} for known in source.write_key_hashes),
        ]:
            self._call(self.client.delete_item, TableName=self.table_name, Key=serialize(key))

    def get_source(self, source_id: str) -> Source | None:
        """A source by id."""
        item = self._get({"PK": keys.SOURCES_PK, "SK": keys.source_sk(source_id)})
        return items.item_to_source(item) if item else None

    def find_source_by_write_key(self, write_key: str) -> Source | None:
        """The source a write key belongs to, if the key is still one of its keys."""
        lookup = self._get({"PK": keys.write_key_pk(hash_write_key(write_key)), "SK": keys.WRITE_KEY_SK})
        if lookup is None:
            return None
        source = self.get_source(lookup["source_id"])
        if source is None or hash_write_key(write_key) not in source.write_key_hashes:
            return None
        return source

    def list_sources(self) -> list[Source]:
        """All sources, by id."""
        return [
            items.item_to_source(item)
            for item in self._query(
                KeyConditionExpression="PK = :pk AND begins_with(SK, :sk)",
                ExpressionAttributeValues={":pk": {"S": keys.SOURCES_PK}, ":sk": {"S": keys.SOURCE_SK_PREFIX}},
            )
        ]

    # --- failed events ------------------------------------------------------------------------------------------

    def put_failed(self, failures: Sequence[FailedEvent]) -> None:
        """Record refused inputs.

        Raises:
            ThrottledError: some could not be stored after the retries.
        """
        rows = [items.failed_to_item(f, retention=self.failed_retention) | {"indexed": True} for f in failures]
        # Indexed by the identities the input names (decoded: gzip, base64, %-escapes), so forget finds them.
        index = [
            row for failure, record in zip(failures, rows, strict=True) for row in failed_index_rows(failure, record)
        ]
        days = {row["PK"]: row for row in rows}  # one marker per day with failures: listing skips the empty days
        rows += [
            {"PK": FAILED_DAYS_PK, "SK": pk.split("#", 1)[1], "entity": "failed_day", TTL_ATTRIBUTE: row[TTL_ATTRIBUTE]}
            for pk, row in days.items()
        ]
        if self._batch_write(index):  # before the records: a record is never kept unindexed
            raise ThrottledError("failed-event records could not be indexed")
        not_stored = [i for i in self._batch_write(rows) if i < len(failures)]
        if not_stored:
            raise ThrottledError(f"{len(not_stored)} failed-event records could not be stored")

    def delete_failed(self, failure_id: str) -> None:
        """Forget a failed event (after a successful replay)."""
        pk, sk = keys.failed_key(failure_id)
        self._call(self.client.delete_item, TableName=self.table_name, Key=serialize({"PK": pk, "SK": sk}))

    def get_failed(self, failure_id: str) -> FailedEvent | None:
        """A failed event by id (`None` for an unknown or malformed id)."""
        try:
            pk, sk = keys.failed_key(failure_id)
        except ValueError:
            return None
        item = self._get({"PK": pk, "SK": sk})
        return items.item_to_failed(item) if item else None

    def list_failed(
        self, *, limit: int = 50, next_token: str | None = None, now: datetime | None = None
    ) -> Page[FailedEvent]:
        """Failed events, newest first, one day partition at a time, back as far as they are kept."""
        cursor = _decode_token(next_token) if next_token else None
        today = (now or datetime.now(UTC)).date()
        try:
            day = datetime.fromisoformat(cursor["day"]).date() if cursor else today
        except (KeyError, TypeError, ValueError) as exc:
            raise StorageError("invalid page token") from exc
        start_key = cursor.get("key") if cursor else None
        found: list[FailedEvent] = []
        marked = self._failed_days(today)
        while len(found) < limit and (today - day).days <= FAILED_LOOKBACK_DAYS:
            if marked is not None and day.isoformat() not in marked:
                day -= timedelta(days=1)  # no failure that day: no query
                continue
            kwargs: dict[str, Any] = {
                "TableName": self.table_name,
                "KeyConditionExpression": "PK = :pk AND begins_with(SK, :sk)",
                "ExpressionAttributeValues": {
                    ":pk": {"S": keys.failed_pk(day.isoformat())},
                    ":sk": {"S": keys.FAILED_SK_PREFIX},
                },
                "ScanIndexForward": False,
                "Limit": limit - len(found),
            }
            if start_key:
                kwargs["ExclusiveStartKey"] = start_key
            response = self._call(self.client.query, **kwargs)
            found.extend(items.item_to_failed(deserialize(raw)) for raw in response.get("Items", []))
            start_key = response.get("LastEvaluatedKey")
            if start_key:
                return Page(tuple(found), _encode_token({"day": day.isoformat(), "key": start_key}))
            day -= timedelta(days=1)
        token = _encode_token({"day": day.isoformat()}) if (today - day).days <= FAILED_LOOKBACK_DAYS else None
        return Page(tuple(found), token if len(found) >= limit else None)

    def _failed_days(self, today: date) -> set[str] | None:
        """Days with failed events (one query), or None for a table written before days were marked."""
        oldest = (today - timedelta(days=FAILED_LOOKBACK_DAYS)).isoformat()
        days = {
            item["SK"]
            for item in self._query(
                KeyConditionExpression="PK = :pk AND SK >= :oldest",
                ExpressionAttributeValues={":pk": {"S": FAILED_DAYS_PK}, ":oldest": {"S": oldest}},
                ProjectionExpression="SK",
            )
        }
        return days or None

    def count_failed(self, day: str) -> int:
        """How many failed events a day has (a count query: no item is returned)."""
        count, start_key = 0, None
        while True:
            kwargs: dict[str, Any] = {
                "TableName": self.table_name,
                "KeyConditionExpression": "PK = :pk",
                "ExpressionAttributeValues": {":pk": {"S": keys.failed_pk(day)}},
                "Select": "COUNT",
            }
            if start_key:
                kwargs["ExclusiveStartKey"] = start_key
            response = self._call(self.client.query, **kwargs)
            count += int(response.get("Count", 0))
            start_key = response.get("LastEvaluatedKey")
            if not start_key:
                return count

    # --- customers ----------------------------------------------------------------------------------------------

    def get_links(self, identities: Sequence[str]) -> dict[str, Link]:
        """The customer links of identities (`u:…`/`a:…`); unknown identities are absent."""
        wanted = [
            {"PK": keys.identity_pk(*split_identity(identity)), "SK": keys.LINK_SK}
            for identity in dict.fromkeys(identities)
        ]
        return {link.identity: link for link in map(items.item_to_link, self._batch_get(wanted))}

    def link_identity(self, link: Link) -> Link:
        """Link an identity to a customer unless it is linked already; returns the link in force."""
        item = items.link_item(link)
        try:
            self._call(
                self.client.put_item,
                TableName=self.table_name,
                Item=serialize(item),
                ConditionExpression="attribute_not_exists(PK)",
            )
        except ConditionFailedError:
            existing = self._get({"PK": item["PK"], "SK": item["SK"]}, consistent=True)
            if existing is None:
                raise
            return items.item_to_link(existing)
        return link

    def get_profiles(self, customer_ids: Sequence[str]) -> dict[str, StoredProfile]:
        """Stored profiles by customer id (strongly consistent: they are read to be updated)."""
        wanted = [{"PK": keys.customer_pk(cid), "SK": keys.PROFILE_SK} for cid in dict.fromkeys(customer_ids)]
        found = (items.item_to_profile(item) for item in self._batch_get(wanted, consistent=True))
        return {stored.profile.customer_id: stored for stored in found}

    def save_profile(self, stored: StoredProfile) -> StoredProfile:
        """Write a profile if nobody else did since it was read (`stored.version`); returns the new version.

        Raises:
            ConditionFailedError: it changed in between (re-read and re-apply).
        """
        saved = replace(stored, version=stored.version + 1)
        condition, values = _version_condition(stored.version)
        self._call(
            self.client.put_item,
            TableName=self.table_name,
            Item=serialize(items.profile_to_item(saved)),
            ConditionExpression=condition,
            **values,
        )
        return saved

    def merge_customers(self, *, into: StoredProfile, away: StoredProfile, links: Sequence[Link]) -> StoredProfile:
        """Atomically: the merged profile, the tombstone of the one merged away, and (up to 98) moved links.

        Raises:
            ConditionFailedError: either profile changed since it was read.
        """
        saved_into = replace(into, version=into.version + 1)
        saved_away = replace(away, version=away.version + 1)
        operations: list[dict[str, Any]] = []
        for stored, previous in ((saved_into, into.version), (saved_away, away.version)):
            condition, values = _version_condition(previous)
            operations.append(
                {
                    "Put": {
                        "TableName": self.table_name,
                        "Item": serialize(items.profile_to_item(stored)),
                        "ConditionExpression": condition,
                        **values,
                    }
                }
            )
        operations += [
            {"Put": {"TableName": self.table_name, "Item": serialize(items.link_item(link))}} for link in links[:98]
        ]
        self._call(self.client.transact_write_items, TransactItems=operations)
        if links[98:]:
            self._batch_write([items.link_item(link) for link in links[98:]])
        return saved_into

    def list_customers(self, *, limit: int = 50, next_token: str | None = None) -> Page[StoredProfile]:
        """Customers, a page at a time (by index shard, then customer id)."""
        cursor = _decode_cursor(next_token) if next_token else {"shard": 0}
        found: list[dict[str, str]] = []
        ids: list[str] = []
        shard, start_key = int(cursor["shard"]), cursor.get("key")
        while len(found) < limit and shard < items.CUSTOMER_INDEX_SHARDS:
            kwargs: dict[str, Any] = {
                "TableName": self.table_name,
                "IndexName": "GSI1",
                "Limit": limit - len(found),
                "KeyConditionExpression": "GSI1PK = :pk",
                "ExpressionAttributeValues": {":pk": {"S": keys.customers_gsi_pk(shard)}},
            }
            if start_key:
                kwargs["ExclusiveStartKey"] = start_key
            response = self._call(self.client.query, **kwargs)
            found += [{"PK": raw["PK"]["S"], "SK": raw["SK"]["S"]} for raw in response.get("Items", [])]
            ids += [raw["GSI1SK"]["S"] for raw in response.get("Items", [])]
            start_key = response.get("LastEvaluatedKey")
            if not start_key:
                shard += 1
        profiles = {s.profile.customer_id: s for s in _decodable_profiles(self._batch_get(found))}
        ordered = tuple(profiles[customer_id] for customer_id in ids if customer_id in profiles)
        more = shard < items.CUSTOMER_INDEX_SHARDS
        token = _encode_token({"shard": shard, "key": start_key}) if more else None
        return Page(ordered, token)

    # --- plumbing -----------------------------------------------------------------------------------------------

    def _batch_get(
        self,
        wanted: list[dict[str, str]],
        *,
        consistent: bool = False,
        projection: str | None = None,
        names: dict[str, str] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Items by key, 100 per request, retrying unprocessed keys (raises ThrottledError past the retries).

        Args:
            names: expression attribute names used by `projection` (`#x` → attribute).
        """
        for start in range(0, len(wanted), BATCH_GET_LIMIT):
            keys_and_options: dict[str, Any] = {
                "Keys": [serialize(key) for key in wanted[start : start + BATCH_GET_LIMIT]],
                "ConsistentRead": consistent,
            }
            if projection:
                keys_and_options["ProjectionExpression"] = projection
            if names:
                keys_and_options["ExpressionAttributeNames"] = names
            request: dict[str, Any] = {self.table_name: keys_and_options}
            attempt = 0
            while request:
                try:
                    response = self._call(self.client.batch_get_item, RequestItems=request)
                except ThrottledError:
                    response = {"UnprocessedKeys": request}
                yield from (deserialize(raw) for raw in response.get("Responses", {}).get(self.table_name, []))
                request = response.get("UnprocessedKeys") or {}
                if request:
                    attempt += 1
                    if attempt >= self.retry.attempts:
                        raise ThrottledError("batch read throttled past the retries")
                    self.retry.pause(attempt)

    def _call(self, method: Callable[..., Any], **kwargs: Any) -> Any:
        try:
            return method(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc) from exc

    def _get(self, key: dict[str, str], *, consistent: bool = False) -> dict[str, Any] | None:
        response = self._call(
            self.client.get_item, TableName=self.table_name, Key=serialize(key), ConsistentRead=consistent
        )
        return deserialize(response["Item"]) if "Item" in response else None

    def _query(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        start_key = None
        while True:
            if start_key:
                kwargs["ExclusiveStartKey"] = start_key
            response = self._call(self.client.query, TableName=self.table_name, **kwargs)
            yield from (deserialize(raw) for raw in response.get("Items", []))
            start_key = response.get("LastEvaluatedKey")
            if not start_key:
                return

    def _batch_write(self, to_put: list[dict[str, Any]], *, delete: bool = False) -> list[int]:
        """Put items (or, with `delete`, delete the items of these keys) in batches of 25; returns the positions
        that could not be written after the retries."""
        not_stored: list[int] = []
        for start in range(0, len(to_put), BATCH_WRITE_LIMIT):
            pending = {
                (item["PK"], item["SK"]): (start + offset, _write_request(item, delete=delete))
                for offset, item in enumerate(to_put[start : start + BATCH_WRITE_LIMIT])
            }
            attempt = 0
            while pending:
                requests = [request for _, request in pending.values()]
                try:
                    response = self._call(self.client.batch_write_item, RequestItems={self.table_name: requests})
                    unprocessed = response.get("UnprocessedItems", {}).get(self.table_name, [])
                    left = {_request_key(request) for request in unprocessed}
                except ThrottledError:
                    left = set(pending)
                pending = {key: value for key, value in pending.items() if key in left}
                if pending:
                    attempt += 1
                    if attempt >= self.retry.attempts:
                        logger.error("batch write gave up", extra={"items": len(pending), "attempts": attempt})
                        not_stored.extend(position for position, _ in pending.values())
                        break
                    self.retry.pause(attempt)
        return sorted(not_stored)


def _version_condition(version: int) -> tuple[str, dict[str, Any]]:
    if version == 0:
        return "attribute_not_exists(PK)", {}
    return "version = :v", {"ExpressionAttributeValues": {":v": {"N": str(version)}}}


def _decodable_profiles(found: Iterable[dict[str, Any]]) -> Iterator[StoredProfile]:
    # A listing shows what it can read: a corrupt profile is quarantined by processing, not a reason to fail a page.
    for item in found:
        try:
            yield items.item_to_profile(item)
        except CorruptItemError:
            logger.warning("a stored profile cannot be decoded; left out of the listing")


def _decode_cursor(token: str) -> dict[str, Any]:
    value = _decode_token(token)
    if not isinstance(value.get("shard"), int):
        raise StorageError("invalid page token")
    return value


def _write_request(item: dict[str, Any], *, delete: bool) -> dict[str, Any]:
    if delete:
        return {"DeleteRequest": {"Key": serialize({"PK": item["PK"], "SK": item["SK"]})}}
    return {"PutRequest": {"Item": serialize(item)}}


def _request_key(request: dict[str, Any]) -> tuple[str, str]:
    item = request["PutRequest"]["Item"] if "PutRequest" in request else request["DeleteRequest"]["Key"]
    return item["PK"]["S"], item["SK"]["S"]


def _encode_token(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value, separators=(",", ":")).encode()).decode()


def _decode_token(token: str) -> dict[str, Any]:
    try:
        value = json.loads(base64.urlsafe_b64decode(token.encode()))
    except ValueError as exc:
        raise StorageError("invalid page token") from exc
    if not isinstance(value, dict):
        raise StorageError("invalid page token")
    return value
