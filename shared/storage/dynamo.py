"""`DynamoTrackingStore`: the tracking store on DynamoDB (AWS, moto, or any DynamoDB-compatible endpoint)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from shared.domain.events import TrackingEvent
from shared.domain.identity import named_identities, split_identity
from shared.domain.results import Outcome
from shared.domain.sources import Source, hash_write_key
from shared.ports import CorruptItemError, HistoryEntry, Link, Page, StoredProfile
from shared.storage import items, keys
from shared.storage.analytics import AnalyticsStorage
from shared.storage.client import RetryPolicy, make_client
from shared.storage.codec import decode_token, deserialize, encode_token, serialize
from shared.storage.erasure import ErasureStorage
from shared.storage.errors import ConditionFailedError, StorageError, ThrottledError
from shared.storage.failed import FailedStorage
from shared.storage.fold import FoldStorage
from shared.storage.segments import SegmentStorage, history_row
from shared.storage.stream import STREAM_ITEMS
from shared.storage.suppression import SuppressionCache

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

__all__ = ["DynamoTrackingStore", "RetryPolicy", "deserialize", "make_client", "serialize"]
"""`RetryPolicy`, `make_client` and the codec are named here too: where the composition roots get them."""

logger = logging.getLogger(__name__)

PARALLEL_PUTS = 16
"""Event puts in flight at once per request (each its own conditional PutItem)."""


class DynamoTrackingStore(SegmentStorage, AnalyticsStorage, FoldStorage, ErasureStorage, FailedStorage):
    """The tracking store on one DynamoDB table (see `shared.storage.keys` for the access patterns)."""

    stream_items = STREAM_ITEMS
    """How the items of this table's change stream read (`shared.ports.StreamItems`), for replaying records."""

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

    def put_announcements(self, announced: Sequence[tuple[TrackingEvent, HistoryEntry]]) -> list[bool]:
        """Audience events, each with its segment history item, in batch writes; returns, per pair, whether it was
        written (False: an identity the event names was erased, so neither is).

        Both are keyed by the change they record (the event's message id is derived from it): a repeat (a record
        delivered again) puts the same items again, so no condition is needed, and the event item's second write
        is a MODIFY, which is not a new event (`items.decode_change`). One identity's events go in successive
        requests, in the order given: the stream brings them to the campaign tools in that order.

        Raises:
            ThrottledError: some could not be written (the record comes again and writes them all again).
            StorageError: any other DynamoDB failure.
        """
        forgotten = self.forgotten_identities([i for event, _ in announced for i in named_identities(event)])
        kept = [not forgotten.intersection(named_identities(event)) for event, _ in announced]
        rounds: list[list[dict[str, Any]]] = []
        per_identity: dict[str, int] = {}
        for (event, entry), keep in zip(announced, kept, strict=True):
            if not keep:
                continue
            row = items.event_to_item(
                event, retention=self.event_retention, clear_epoch=self.clear_epoch(named_identities(event))
            )
            position = per_identity[row["PK"]] = per_identity.get(row["PK"], -1) + 1
            if position == len(rounds):
                rounds.append([])
            rounds[position] += [row, history_row(entry)]
        for rows in rounds:
            if self._batch_write(rows):
                raise ThrottledError(f"{len(rows)} audience events and history items could not all be stored")
        return kept

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

    # --- customers ----------------------------------------------------------------------------------------------

    def get_links(self, identities: Sequence[str], *, consistent: bool = False) -> dict[str, Link]:
        """The customer links of identities (`u:…`/`a:…`); unknown identities are absent. One batch read of both
        places a link can be: the identity's link item, which a merge or an earlier version wrote and which comes
        first, else its slot (`CUSTOMER#<identity>`): its own customer item (the identity is that customer), or a
        pointer to the customer it was attached to (`pointer_item`), or a merge's tombstone."""
        wanted = list(dict.fromkeys(identities))
        found = self._batch_get(
            [{"PK": keys.identity_pk(*split_identity(i)), "SK": keys.LINK_SK} for i in wanted]
            + [{"PK": keys.customer_pk(i), "SK": keys.PROFILE_SK} for i in wanted],
            consistent=consistent,
        )
        links: dict[str, Link] = {}
        slots: dict[str, dict[str, Any]] = {}
        for item in found:
            if item.get("entity") == items.LINK_ENTITY:
                link = items.item_to_link(item)
                links[link.identity] = link
            else:
                slots[str(item.get("customer_id"))] = item
        for identity in wanted:
            if identity not in links and identity in slots:
                links[identity] = items.slot_link(identity, slots[identity])
        return links

    def link_identity(self, link: Link) -> Link:
        """Attach an identity to a customer unless it is linked already (a pointer in its slot, written only if the
        slot is free: nor a customer of its own, nor attached elsewhere); returns the link in force.

        An identity that is its own customer needs no write here: that customer item claims the slot."""
        try:
            self._call(
                self.client.put_item,
                TableName=self.table_name,
                Item=serialize(items.pointer_item(link)),
                ConditionExpression="attribute_not_exists(PK)",
            )
        except ConditionFailedError:
            existing = self.get_links([link.identity], consistent=True).get(link.identity)
            if existing is None:
                raise
            return existing
        return link

    def claim_customer(self, customer_id: str) -> StoredProfile:
        """A new customer's item, empty, written only if its slot is free (an identity is attached to it next).

        Raises:
            ConditionFailedError: the slot is taken (a customer of that id, or that identity attached elsewhere).
        """
        empty, item = items.claimed_item(customer_id)
        self._call(
            self.client.put_item,
            TableName=self.table_name,
            Item=serialize(item),
            ConditionExpression="attribute_not_exists(PK)",
        )
        return empty

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
        token = encode_token({"shard": shard, "key": start_key}) if more else None
        return Page(ordered, token)


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
    value = decode_token(token)
    if not isinstance(value.get("shard"), int):
        raise StorageError("invalid page token")
    return value
