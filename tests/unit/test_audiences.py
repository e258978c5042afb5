"""What customer items' records make, in stream order: an adoption and a later exit in one batch leave no member
item; an erased customer's adoption writes none."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from shared.domain.segments import Membership
from shared.ports import Adoption, HistoryEntry
from shared.services.audiences import MembershipChange, follow_customer_items

CUSTOMER = "u:ada"
ADOPTED = Membership("new_customers", CUSTOMER, "2026-11-01T10:00:00.000Z", 1, "")


class Writer:
    """An audience writer that keeps what it was asked to write, member items as the store keeps them."""

    def __init__(self, erased: set[str] | None = None) -> None:
        self.erased = erased or set()
        self.members: dict[tuple[str, str], Membership] = {}
        self.retired: list[tuple[str, tuple[str, ...]]] = []
        self.events: list[Any] = []

    def put_announcements(self, announced: Sequence[tuple[Any, HistoryEntry]]) -> list[bool]:
        kept = [not (event.user_id and f"u:{event.user_id}" in self.erased) for event, _ in announced]
        self.events += [event for (event, _), keep in zip(announced, kept, strict=True) if keep]
        return kept

    def follow_members(self, steps: Sequence[tuple[Membership, bool]]) -> None:
        for membership, entered in steps:  # (the store's rule: the last step of a segment and customer decides)
            key = (membership.segment_id, membership.customer_id)
            if entered:
                self.members[key] = membership
            else:
                self.members.pop(key, None)

    def retire_memberships(self, customer_id: str, segment_ids: Sequence[str]) -> None:
        self.retired.append((customer_id, tuple(segment_ids)))

    def forgotten_identities(self, identities: Sequence[str], *, clear_at: Mapping[str, int] | None = None) -> set[str]:
        return self.erased & set(identities)


def an_exit(segment: str) -> MembershipChange:
    return MembershipChange(
        segment, CUSTOMER, False, "2026-12-01T06:00:00.000Z", 1, "first seen 8 days ago", ("u", "ada")
    )


def test_an_adoption_then_an_exit_in_one_batch_leave_no_member_item():
    writer = Writer()
    adoption = Adoption(CUSTOMER, (ADOPTED,), ("new_customers",))
    follow_customer_items(writer, [((), adoption), ((an_exit("new_customers"),), None)])
    assert writer.members == {}
    assert writer.retired == [(CUSTOMER, ("new_customers",))]
    assert [e.event for e in writer.events] == ["Audience Exited"]  # the adoption announced nothing


def test_an_adoption_lists_what_it_still_holds():
    writer = Writer()
    follow_customer_items(writer, [((), Adoption(CUSTOMER, (ADOPTED,), ("browsers", "new_customers")))])
    assert writer.members == {("new_customers", CUSTOMER): ADOPTED}
    assert writer.retired == [(CUSTOMER, ("browsers", "new_customers"))] and writer.events == []


def test_an_erased_customer_s_adoption_writes_no_member_item():
    writer = Writer(erased={CUSTOMER})
    follow_customer_items(writer, [((), Adoption(CUSTOMER, (ADOPTED,), ("new_customers",)))])
    assert writer.members == {}
    assert writer.retired == [(CUSTOMER, ("new_customers",))]  # (a retirement of what is not there writes nothing)
