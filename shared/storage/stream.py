"""How the items of the change stream read: the one decoder of stream images (`shared.ports.StreamItems`).

The process Lambda, the local stream runner and `footfall failed replay` hand it to the services, which never
decode a stored item themselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.domain.events import TrackingEvent
from shared.domain.identity import split_identity
from shared.ports import Adoption, CounterRecord
from shared.storage import customer_segments, items
from shared.storage.analytics import CELLS_ENTITY, decode_counter_record
from shared.storage.codec import deserialize_wire


class StreamItemCodec:
    """`shared.ports.StreamItems` for this table's items."""

    def from_wire(self, image: Mapping[str, Any]) -> dict[str, Any]:
        """A wire-format image (binary values as base64 text) → plain values."""
        return deserialize_wire(dict(image))

    def new_event(
        self, *, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None
    ) -> tuple[TrackingEvent, int | None] | None:
        """The event a record brings and the erasure epoch it was stamped with (`items.decode_change`)."""
        before, after = _plain(old), _plain(new)
        event = items.decode_change(old=before, new=after)
        return None if event is None else (event, items.clear_epoch_of(after))

    def membership_change(
        self, *, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None
    ) -> dict[str, Any] | None:
        """A segment entry or exit (`items.decode_membership_change`)."""
        return items.decode_membership_change(old=_plain(old), new=_plain(new))

    def customer_steps(self, *, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> list[dict[str, Any]]:
        """The segment entries and exits a customer item's record carries, as `membership_change` gives one (none
        for a REMOVE: an erased customer is not announced)."""
        if not new:
            return []
        return [
            {
                "segment_id": step.segment_id,
                "customer_id": step.customer_id,
                "entered": step.entered,
                "at": step.at,
                "rule_version": step.rule_version,
                "reason": step.reason,
                "identity": split_identity(step.customer_id),
            }
            for step in customer_segments.steps(old=_plain(old), new=_plain(new))
        ]

    def adoption(self, *, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> Adoption | None:
        """The memberships a customer item's write adopted (`customer_segments.adoption`)."""
        return customer_segments.adoption(old=_plain(old), new=_plain(new))

    def is_cells(self, image: Mapping[str, Any] | None) -> bool:
        """Whether an image is a customer's analytics cells item."""
        return image is not None and image.get("entity") == CELLS_ENTITY

    def counter_record(self, *, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> CounterRecord | None:
        """What a record moves in the counters (`analytics.decode_counter_record`)."""
        return decode_counter_record(old=_plain(old), new=_plain(new))


STREAM_ITEMS = StreamItemCodec()


def _plain(image: Mapping[str, Any] | None) -> dict[str, Any] | None:
    # The pipeline hands dicts (made once per record); any other mapping is copied into one.
    if not image:
        return None
    return image if isinstance(image, dict) else dict(image)
