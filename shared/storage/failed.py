"""Failed events: refused inputs and quarantined stream records, kept for `footfall failed` and replay.

| access pattern                            | key condition                                                  |
|-------------------------------------------|----------------------------------------------------------------|
| failed events of a day, newest first      | PK = `FAILED#<yyyy-mm-dd>`, SK begins_with `FAILED#`, desc.    |
| a failed event by id                      | PK = `FAILED#<day>`, SK = `FAILED#<time>#<rnd>`                |
| the days that have failed events          | PK = `FAILEDDAYS`, SK = `<yyyy-mm-dd>`                         |

Each record is indexed, before it is written, by every identity its raw input names (decoded whatever the encoding:
`IDH#<hash>` / `NAMED#FAILED#<id>`), so that `forget` finds it (`shared.storage.erasure`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from shared.domain.failures import FailedEvent, identities_in
from shared.domain.identity import named_identities
from shared.ports import Page
from shared.storage import items, keys
from shared.storage.codec import decode_token, deserialize, deserialize_wire, encode_token, serialize
from shared.storage.errors import StorageError, ThrottledError
from shared.storage.schema import TTL_ATTRIBUTE
from shared.storage.table import Table

FAILED_LOOKBACK_DAYS = 31
FAILED_DAYS_PK = "FAILEDDAYS"


def failed_index_rows(failure: FailedEvent, record: dict[str, Any]) -> list[dict[str, Any]]:
    """Index items of a failed record: one per identity its input names (decoded whatever the encoding)."""
    return [
        {
            "PK": keys.identity_hash_pk(identity),
            "SK": f"{keys.NAMED_SK_PREFIX}FAILED#{failure.id}",
            "entity": keys.NAMED_ENTITY,
            "kind": "failed",
            "target_pk": record["PK"],
            "target_sk": record["SK"],
            TTL_ATTRIBUTE: record[TTL_ATTRIBUTE],
        }
        for identity in sorted(identities_in(failure.raw, decode_more=stream_identities))
        if identity.partition(":")[2]
    ]


def stream_identities(parsed: Any) -> Iterator[str]:
    """Identities of the event inside a quarantined stream record (its image is a stored, compressed item)."""
    image = parsed.get("dynamodb", {}).get("NewImage") if isinstance(parsed, dict) else None
    if not isinstance(image, dict):
        return
    try:
        item = deserialize_wire(image)
        if item.get("entity") == items.EVENT_ENTITY:
            yield from named_identities(items.item_to_event(item))
    except Exception:
        return


class FailedStorage(Table):
    """Failed-event records; mixed into `DynamoTrackingStore`."""

    failed_retention: timedelta

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
        cursor = decode_token(next_token) if next_token else None
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
                return Page(tuple(found), encode_token({"day": day.isoformat(), "key": start_key}))
            day -= timedelta(days=1)
        token = encode_token({"day": day.isoformat()}) if (today - day).days <= FAILED_LOOKBACK_DAYS else None
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
