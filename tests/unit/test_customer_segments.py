"""A customer item's record as segment steps, and the write that adopts an older customer's membership items."""

from __future__ import annotations

from dataclasses import replace

from shared.domain.profiles import CustomerProfile
from shared.domain.segments import Membership
from shared.ports import Adoption, StoredProfile
from shared.storage import customer_segments
from shared.storage.items import item_to_profile, profile_to_item

CUSTOMER = "u:ada"
SINCE = "2026-11-01T10:00:00.000000Z"
NOW = "2026-12-01T06:00:00.000000Z"


def _member(segment: str, since: str = SINCE) -> Membership:
    return Membership(segment, CUSTOMER, since, 1, "")


def _older_customer() -> StoredProfile:
    """A customer item as versions before it held segments wrote it (its membership items the authority)."""
    return StoredProfile(CustomerProfile(customer_id=CUSTOMER, identities=(CUSTOMER,)), version=3)


def test_an_older_customer_s_records_change_no_segment():
    old = profile_to_item(_older_customer())
    new = profile_to_item(replace(_older_customer(), version=4))
    assert customer_segments.steps(old=old, new=new) == []
    assert customer_segments.adoption(old=old, new=new) is None


def test_the_adopting_write_announces_nothing_and_retires_what_it_adopted():
    before = _older_customer()
    adopted = replace(before.adopting({"buyers": _member("buyers")}), version=4)
    old, new = profile_to_item(before), profile_to_item(adopted)
    assert customer_segments.steps(old=old, new=new) == []
    assert customer_segments.adoption(old=old, new=new) == Adoption(CUSTOMER, (_member("buyers"),), ("buyers",))


def test_entries_and_exits_decided_in_the_adopting_write_are_relative_to_what_it_adopted():
    before = _older_customer()
    adopted = before.adopting({"buyers": _member("buyers"), "browsers": _member("browsers")})
    decided = replace(
        adopted,
        version=4,
        segments={"buyers": _member("buyers"), "viewers": _member("viewers", NOW)},
        why={"viewers": "count of Product Viewed = 1", "browsers": "not (count of Order Completed = 1)"},
        segments_at=NOW,
    )
    old, new = profile_to_item(before), profile_to_item(decided)
    assert [(s.segment_id, s.entered, s.at, s.reason) for s in customer_segments.steps(old=old, new=new)] == [
        ("viewers", True, NOW, "count of Product Viewed = 1"),
        ("browsers", False, NOW, "not (count of Order Completed = 1)"),
    ]
    # member items for what it still holds of what it adopted; every adopted membership item retired
    assert customer_segments.adoption(old=old, new=new) == Adoption(
        CUSTOMER, (_member("buyers"),), ("browsers", "buyers")
    )


def test_the_next_write_does_not_say_adopted_again():
    adopted = replace(_older_customer().adopting({"buyers": _member("buyers")}), version=4)
    read = item_to_profile(profile_to_item(adopted))
    assert read.adopted is None and read.segments == {"buyers": _member("buyers")}
    later = replace(read, version=5, segments={}, why={"buyers": "gone"}, segments_at=NOW)
    old, new = profile_to_item(read), profile_to_item(later)
    assert customer_segments.adoption(old=old, new=new) is None
    assert [(s.segment_id, s.entered) for s in customer_segments.steps(old=old, new=new)] == [("buyers", False)]


def test_a_customer_item_that_holds_its_segments_is_not_adopted_again():
    holds = replace(_older_customer(), segments={"buyers": _member("buyers")})
    assert holds.adopting({"viewers": _member("viewers")}) is holds
