"""Computed traits and identity rules, table-driven."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from shared.domain.events import CallType, TrackingEvent, format_timestamp
from shared.domain.identity import Customer, LinkAction, plan_link
from shared.domain.profiles import (
    CustomerProfile,
    apply_events,
    channel_of,
    hour_of_week,
    merge_profiles,
    open_cart,
    order_revenue,
    rolling,
)

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)  # a Monday


def an_event(name: str = "Product Viewed", *, at: datetime = NOW, n: int = 0, **fields: Any) -> TrackingEvent:
    kind = fields.pop("type", CallType.TRACK)
    return TrackingEvent(
        source_id="web",
        message_id=fields.pop("message_id", f"m{n}-{at.isoformat()}"),
        type=kind,
        timestamp=at,
        received_at=at,
        user_id=fields.pop("user_id", "u1"),
        event=name if kind is CallType.TRACK else None,
        **fields,
    )


def fold(*events: TrackingEvent) -> CustomerProfile:
    return apply_events(CustomerProfile(customer_id="c"), events)


@pytest.mark.parametrize(
    ("properties", "expected"),
    [
        ({"revenue": 12.5}, Decimal("12.5")),
        ({"total": "30"}, Decimal(30)),
        ({"revenue": 5, "total": 9}, Decimal(5)),
        ({"revenue": "n/a", "total": 4}, Decimal(4)),
        ({"revenue": True}, Decimal(0)),
        ({}, Decimal(0)),
        ({"revenue": "NaN"}, Decimal(0)),
    ],
)
def test_order_revenue_takes_revenue_then_total(properties, expected):
    assert order_revenue(properties) == expected


def test_orders_revenue_and_average_order_value():
    profile = fold(
        an_event("Order Completed", properties={"revenue": 10.1}, n=1),
        an_event("Order Completed", properties={"total": "20.2"}, n=2),
        an_event("Order Completed", properties={"revenue": 0.1}, n=3),
    )
    assert (profile.orders, profile.revenue, profile.average_order_value) == (3, Decimal("30.4"), Decimal("10.13"))


@pytest.mark.parametrize(
    ("age", "in_7d", "in_30d", "in_90d"),
    [
        (timedelta(days=6, hours=12), 1, 1, 1),  # 6 calendar days back: inside "today and the 6 days before"
        (timedelta(days=6, hours=13), 0, 1, 1),  # 7 calendar days back: out
        (timedelta(days=29, hours=12), 0, 1, 1),
        (timedelta(days=29, hours=13), 0, 0, 1),
        (timedelta(days=89, hours=12), 0, 0, 1),
        (timedelta(days=89, hours=13), 0, 0, 0),
    ],
)
def test_rolling_windows_are_the_last_n_calendar_days_including_today(age, in_7d, in_30d, in_90d):
    windows = rolling(fold(an_event(at=NOW - age)), NOW)
    assert [windows[w].get("Product Viewed", 0) for w in ("7d", "30d", "90d")] == [in_7d, in_30d, in_90d]


def test_traits_keep_the_latest_value_by_event_time_whatever_the_arrival_order():
    old = an_event(type=CallType.IDENTIFY, at=NOW - timedelta(hours=1), traits={"plan": "free", "name": "A"}, n=1)
    new = an_event(type=CallType.IDENTIFY, at=NOW, traits={"plan": "pro"}, n=2)
    assert fold(old, new).traits == fold(new, old).traits == {"plan": "pro", "name": "A"}


def test_open_cart_lists_products_added_and_not_removed_or_ordered_since():
    t = [NOW + timedelta(minutes=m) for m in range(6)]
    profile = fold(
        an_event("Product Added", at=t[0], properties={"product_id": "shoe", "cart_id": "c1", "price": 50}),
        an_event("Product Added", at=t[1], properties={"product_id": "sock", "cart_id": "c1"}),
        an_event("Product Removed", at=t[2], properties={"product_id": "sock", "cart_id": "c1"}),
        an_event("Product Added", at=t[3], properties={"product_id": "hat", "cart_id": "c2"}),
        an_event("Order Completed", at=t[4], properties={"cart_id": "c2", "revenue": 20}),
        an_event("Product Added", at=t[5], properties={"product_id": "scarf"}),  # no cart id: the default cart
    )
    assert [(i["cart_id"], i["product_id"]) for i in open_cart(profile)] == [("-", "scarf"), ("c1", "shoe")]
    assert open_cart(profile)[1]["price"] == 50


def test_an_order_without_cart_id_closes_every_cart_added_to_before_it():
    profile = fold(
        an_event("Product Added", at=NOW, properties={"product_id": "a", "cart_id": "c1"}),
        an_event("Order Completed", at=NOW + timedelta(minutes=1), properties={"revenue": 1}),
        an_event("Product Added", at=NOW + timedelta(minutes=2), properties={"product_id": "b"}),
    )
    assert [i["product_id"] for i in open_cart(profile)] == ["b"]


def _cart(event: str, minute: int, product: str = "shoe", **properties: Any) -> TrackingEvent:
    return an_event(
        event, at=NOW + timedelta(minutes=minute), n=minute, properties={"product_id": product, **properties}
    )


def _fold_one_at_a_time(*events: TrackingEvent) -> CustomerProfile:
    profile = CustomerProfile(customer_id="c")
    for event in events:
        profile = apply_events(profile, [event])
    return profile


def test_an_ordered_cart_keeps_its_order_stamp_and_drops_the_products_it_closed():
    profile = fold(
        _cart("Product Added", 0, "shoe", cart_id="c1", price=50),
        _cart("Product Added", 1, "sock", cart_id="c1"),
        _cart("Order Completed", 2, cart_id="c1", revenue=50),
        _cart("Product Added", 3, "hat", cart_id="c2"),
        _cart("Product Added", 4, "cap", cart_id="c3"),
        _cart("Order Completed", 5),  # no cart id: closes every cart
    )
    assert profile.carts == {
        "c1": {"ordered": stamp(2), "products": {}},
        "*": {"ordered": stamp(5), "products": {}},
    }
    assert open_cart(profile) == []


def test_a_removed_product_keeps_its_stamps_but_not_its_details():
    profile = fold(
        _cart("Product Added", 0, "shoe", price=50, name="Shoe"),
        _cart("Product Removed", 1, "shoe"),
        _cart("Product Added", 2, "sock", price=5),
    )
    assert profile.carts["-"]["products"] == {
        "shoe": {"added": stamp(0), "removed": stamp(1)},
        "sock": {"added": stamp(2), "removed": None, "item": {"price": 5}},
    }
    assert [(i["product_id"], i.get("price")) for i in open_cart(profile)] == [("sock", 5)]


@pytest.mark.parametrize(
    ("late", "open_products"),
    [
        # an add older than the order that closed its cart stays closed
        ([_cart("Product Added", 1, "shoe", cart_id="c1")], []),
        # a removal older than the order; an add after the order and its older removal: only that add is open
        (
            [
                _cart("Product Removed", 3, "shoe", cart_id="c1"),
                _cart("Product Added", 9, "sock", cart_id="c1", price=5),
                _cart("Product Removed", 8, "sock", cart_id="c1"),
            ],
            ["sock"],
        ),
        # an add after the order but before a removal already seen: stays closed by that removal
        ([_cart("Product Added", 6, "hat", cart_id="c1")], []),
        # an order without cart id older than the cart's own order changes nothing; a newer add reopens the cart
        ([_cart("Order Completed", 0), _cart("Product Added", 8, "shoe", cart_id="c1")], ["shoe"]),
        # an add after the removal already seen reopens the product
        ([_cart("Product Added", 8, "hat", cart_id="c1", price=9)], ["hat"]),
    ],
)
def test_late_older_adds_and_removals_after_an_order_give_the_same_cart_in_any_order(late, open_products):
    on_time = [
        _cart("Product Added", 0, "shoe", cart_id="c1", price=50),
        _cart("Product Added", 2, "hat", cart_id="c1"),
        _cart("Order Completed", 5, cart_id="c1", revenue=50),
        _cart("Product Removed", 7, "hat", cart_id="c1"),
    ]
    at_once = fold(*on_time, *late)
    for arrival in (on_time + late, late + on_time, list(reversed(on_time + late))):
        assert _fold_one_at_a_time(*arrival).carts == at_once.carts
        assert fold(*arrival).carts == at_once.carts
    assert [i["product_id"] for i in open_cart(at_once)] == open_products
    assert open_cart(at_once) == open_cart(_uncompacted(*on_time, *late))


def _uncompacted(*events: TrackingEvent) -> CustomerProfile:
    """The profile with every cart entry kept, as folded before closed entries were compacted (open_cart's
    reference)."""
    carts: dict[str, dict[str, Any]] = {}
    for event in sorted(events, key=lambda e: e.timestamp):
        at = stamp_of(event)
        cart_id = str(event.properties.get("cart_id") or ("-" if event.event != "Order Completed" else "*"))
        cart = carts.setdefault(cart_id, {"ordered": None, "products": {}})
        if event.event == "Order Completed":
            cart["ordered"] = at
            continue
        product = cart["products"].setdefault(event.properties["product_id"], {"added": "", "removed": None})
        if event.event == "Product Added":
            product["added"] = at
            product["item"] = {k: v for k, v in event.properties.items() if k in ("name", "price")}
        else:
            product["removed"] = at
    return CustomerProfile(customer_id="c", carts=carts)


def stamp(minute: int) -> str:
    return stamp_of(_cart("Product Viewed", minute))


def stamp_of(event: TrackingEvent) -> str:
    return format_timestamp(event.timestamp)


@pytest.mark.parametrize(
    ("event", "context", "channel"),
    [
        ("Email Opened", {}, "email"),
        ("Product Viewed", {"campaign": {"medium": "email"}}, "email"),
        ("Product Viewed", {"campaign": {"medium": "cpc", "source": "google"}}, "ads"),
        ("Push Opened", {}, "push"),
        ("Product Viewed", {"campaign": {"medium": "social"}}, "social"),
        ("Product Viewed", {"app": {"name": "shop"}}, "app"),
        ("Product Viewed", {}, "web"),
    ],
)
def test_channel_of_an_event(event, context, channel):
    assert channel_of(an_event(event, context=context)) == channel


@pytest.mark.parametrize(
    ("zone", "hour"), [(None, 12), ("Europe/Paris", 14), ("America/New_York", 8), ("Not/AZone", 12), ("Asia/Tokyo", 21)]
)
def test_hour_of_week_uses_the_clients_time_zone_when_valid(zone, hour):
    context = {"timezone": zone} if zone else {}
    assert hour_of_week(an_event(context=context)) == hour  # Monday: hour of week == hour of day


def test_first_touch_is_the_earliest_event_and_last_touch_the_latest_campaign():
    first = an_event(at=NOW - timedelta(days=3), n=1)
    paid = an_event(at=NOW - timedelta(days=2), context={"campaign": {"medium": "cpc", "name": "spring"}}, n=2)
    mail = an_event(at=NOW - timedelta(days=1), context={"campaign": {"medium": "email", "name": "nov"}}, n=3)
    direct = an_event(at=NOW, n=4)
    profile = fold(direct, mail, first, paid)
    assert (profile.first_touch.channel, profile.first_touch.campaign) == ("web", {})
    assert (profile.last_touch.channel, profile.last_touch.campaign["name"]) == ("email", "nov")


def test_merging_two_profiles_equals_folding_all_their_events():
    a = [an_event("Order Completed", at=NOW - timedelta(days=d), properties={"revenue": d}, n=d) for d in range(3)]
    b = [
        an_event("Product Added", at=NOW - timedelta(hours=h), properties={"product_id": "x"}, n=10 + h)
        for h in range(2)
    ]
    merged = merge_profiles(fold(*a), fold(*b), link={"merged": "c2"})
    together = fold(*a, *b)
    assert (merged.event_counts, merged.revenue, merged.carts, merged.daily) == (
        together.event_counts,
        together.revenue,
        together.carts,
        together.daily,
    )
    assert merged.links[-1] == {"merged": "c2"}


@pytest.mark.parametrize(
    ("target", "other", "explicit", "trusted", "action"),
    [
        (Customer("u:ann", "ann"), None, False, False, LinkAction.ATTACH),
        (Customer("u:ann", "ann"), Customer("u:ann", "ann"), False, False, LinkAction.NONE),
        (Customer("u:ann", "ann"), Customer("a:x", None), False, False, LinkAction.MERGE),
        (Customer("u:ann", "ann"), Customer("a:x", None), True, False, LinkAction.MERGE),  # sign-up alias from a page
        (Customer("u:ann", "ann"), Customer("u:bob", "bob"), False, False, LinkAction.CONFLICT),  # shared device
        (Customer("u:ann", "ann"), Customer("u:bob", "bob"), False, True, LinkAction.CONFLICT),
        (Customer("u:ann", "ann"), Customer("u:bob", "bob"), True, False, LinkAction.CONFLICT),  # public key: refused
        (Customer("u:ann", "ann"), Customer("u:bob", "bob"), True, True, LinkAction.MERGE),  # server alias on purpose
        (Customer("u:ann", "ann"), Customer("a:y", "ann"), False, False, LinkAction.MERGE),
    ],
)
def test_plan_link(target, other, explicit, trusted, action):
    assert plan_link(target=target, other=other, explicit=explicit, trusted=trusted) is action
