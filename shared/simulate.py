"""Traffic simulator: shoppers arriving over days of simulated history, sent through the real HTTP collector.

Generation is pure and deterministic (`generate`, `live`). What each simulated person does (persona, channel,
pages, carts, orders, e-mails) and every message id follow from the seed alone; only timestamps depend on `now`
and `days`. So a second run with the same seed is answered `duplicate` by the collector, whenever it runs.

Sending (`CollectorClient`, `send`, `run`) speaks the collector's wire formats over keep-alive HTTP:
`POST /v1/batch` (up to 100 events, Basic auth with the write key), `GET /v1/pixel/track?data=<base64 JSON>`
for e-mail opens, and `GET /v1/r?…` on links signed with the source's link secret for e-mail clicks.

Who the simulated people are:
- personas: bouncers, browsers, cart abandoners, buyers and big spenders (who reach `heavy_spenders`);
- first visit through organic search or direct (no UTM), a paid ad (`context.campaign`, medium `cpc`), or an
  e-mail to a newsletter subscriber (pixel open, signed click, landing with `utm_medium=email`);
- anonymous browsing, `identify` at sign-up, checkout, login on a second device or landing from an e-mail link,
  so that identity stitching joins every device and the e-mail events into one customer per person;
- returning visits on later days (cart-reminder e-mails bring some abandoners back to buy their cart).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import heapq
import http.client
import itertools
import json
import queue
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from random import Random
from typing import Any
from urllib.parse import urlencode, urlsplit

from shared.domain import links
from shared.domain.events import format_timestamp

BATCH_SIZE = 100
MAX_BATCH_WAIT = 1.0
"""Seconds a paced event may wait for its batch to fill before the batch goes out anyway."""
DEFAULT_LIVE_RATE = 5.0
"""Live events per second when no rate is given."""
SHOP = "https://shop.example"
LIBRARY = {"name": "footfall-simulator", "version": "1.0"}
_IDS = uuid.UUID("8d0f3f4e-5a0c-4c8e-9a59-3b1f0f6c2a11")
"""Namespace of the simulator's uuid5 message and anonymous ids."""


class SimulatorError(Exception):
    """The simulator cannot go on (collector unreachable, write key refused, no link secret)."""


class Route(StrEnum):
    """How an event reaches the collector."""

    BATCH = "batch"
    """In a `POST /v1/batch` (website and server calls)."""
    PIXEL = "pixel"
    """`GET /v1/pixel/track?data=…` (an e-mail open)."""
    CLICK = "click"
    """`GET /v1/r?…` on a signed link (an e-mail click); the collector answers 302 to `target`."""


@dataclass(frozen=True, slots=True)
class SimEvent:
    """One simulated call, ready to send."""

    at: datetime
    route: Route
    payload: dict[str, Any]
    """The Segment call (`type` only on batch items); `timestamp` is `at`."""
    person: str
    """Which simulated person did it (one person should become one customer)."""
    target: str | None = None
    """Where a click's link goes."""


# --- the shop ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Product:
    """An item of the simulated shop's catalogue."""

    product_id: str
    name: str
    category: str
    price: float

    def properties(self) -> dict[str, Any]:
        """Segment e-commerce product properties."""
        return {
            "product_id": self.product_id,
            "sku": self.product_id.upper(),
            "name": self.name,
            "category": self.category,
            "price": self.price,
            "currency": "USD",
            "url": f"{SHOP}/products/{self.product_id}",
        }


CATALOGUE: tuple[Product, ...] = tuple(
    Product(f"p-{number}", name, category, price)
    for number, (name, category, price) in enumerate(
        [
            ("Trail Runner 2", "shoes", 89.0),
            ("Road Racer", "shoes", 129.0),
            ("Everyday Sneaker", "shoes", 64.5),
            ("Hiking Boot GTX", "shoes", 179.0),
            ("Merino Tee", "apparel", 39.0),
            ("Rain Shell", "apparel", 149.0),
            ("Down Jacket", "apparel", 229.0),
            ("Running Shorts", "apparel", 29.5),
            ("Fleece Hoodie", "apparel", 59.0),
            ("Daypack 22L", "outdoor", 79.0),
            ("Two-Person Tent", "outdoor", 349.0),
            ("Sleeping Bag -5C", "outdoor", 189.0),
            ("Trekking Poles", "outdoor", 69.0),
            ("Headlamp 400", "outdoor", 34.0),
            ("Water Bottle 1L", "accessories", 19.0),
            ("Sport Socks 3-pack", "accessories", 14.5),
            ("Sunglasses", "accessories", 89.0),
            ("GPS Watch", "accessories", 299.0),
            ("Camp Mug", "home", 12.0),
            ("Wool Blanket", "home", 99.0),
        ],
        start=101,
    )
)
CATEGORIES = tuple(sorted({product.category for product in CATALOGUE}))
PAID_CAMPAIGNS: tuple[dict[str, str], ...] = (
    {"name": "spring_sale", "source": "google", "medium": "cpc", "term": "running shoes"},
    {"name": "new_arrivals", "source": "facebook", "medium": "cpc", "content": "carousel"},
    {"name": "outdoor_week", "source": "instagram", "medium": "cpc", "content": "story"},
    {"name": "brand", "source": "bing", "medium": "cpc", "term": "shop example"},
)
AD_REFERRERS = {
    "google": "https://www.google.com/",
    "facebook": "https://l.facebook.com/",
    "instagram": "https://l.instagram.com/",
    "bing": "https://www.bing.com/",
}
EMAIL_CAMPAIGNS = {
    "weekly_picks": "Weekly picks for you",
    "spring_sale": "Spring sale: 20% off everything",
    "cart_reminder": "You left something in your cart",
    "win_back": "We miss you: 15% off your next order",
}
COUPONS = {"spring_sale": ("SPRING20", 0.20), "win_back": ("COMEBACK15", 0.15)}
PERSONAS = {"bouncer": 0.30, "browser": 0.24, "abandoner": 0.18, "buyer": 0.22, "big_spender": 0.06}
ACQUISITION = {"organic": 0.45, "paid": 0.32, "email": 0.23}
FIRST_NAMES = (
    "Ada", "Ben", "Chloe", "Dev", "Elena", "Felix", "Grace", "Hugo", "Iris", "Jonas", "Keiko", "Liam", "Maya",
    "Noah", "Olga", "Pablo", "Quinn", "Rosa", "Sami", "Tara", "Umar", "Vera", "Wei", "Ximena", "Yusuf", "Zoe",
    "Arjun", "Bea", "Carlos", "Dana", "Emil", "Fatima", "Gus", "Hana", "Ivan", "Jade", "Kofi", "Lena", "Marco",
    "Nina",
)  # fmt: skip
LAST_NAMES = (
    "Adams", "Brown", "Costa", "Dubois", "Evans", "Fischer", "Garcia", "Hansen", "Ito", "Jensen", "Kowalski",
    "Lopez", "Moreau", "Novak", "Okafor", "Patel", "Quist", "Rossi", "Schmidt", "Tanaka", "Ueda", "Varga", "Weber",
    "Xu", "Young", "Zhang", "Berg", "Cruz", "Dahl", "Eriksen",
)  # fmt: skip
USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
)


def _pick(rng: Random, weights: Mapping[str, float]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _money(value: float) -> float:
    return round(value + 1e-9, 2)


# --- people and their visits (content: from the seed only) ---------------------------------------------------------


@dataclass
class _Cart:
    cart_id: str
    items: list[tuple[Product, int]] = field(default_factory=list)


@dataclass
class _Person:
    key: str
    persona: str
    acquisition: str
    user_id: str
    first_name: str
    last_name: str
    email: str
    favourite: str
    returns: int
    """Visits after the first one."""
    devices: list[str] = field(default_factory=list)
    """Anonymous ids, one per browser; the second appears when the person comes back on the phone."""
    identified: set[int] = field(default_factory=set)
    """Devices on which the website called `identify` (their events carry the userId too)."""
    known: bool = False
    """The shop knows the userId (signed up, checked out, or on the mailing list)."""
    subscribed: bool = False
    cart: _Cart | None = None
    orders: int = 0

    def device(self, number: int) -> str:
        while len(self.devices) <= number:
            self.devices.append(str(uuid.uuid5(_IDS, f"{self.key}/device/{len(self.devices)}")))
        return self.devices[number]


@dataclass(frozen=True, slots=True)
class _Step:
    pause: str
    """How long after the previous step it happens: now, read, email or redirect (see `PAUSES`)."""
    route: Route
    payload: dict[str, Any]
    target: str | None = None


class _Ids:
    """Message ids: uuid5 of the person (or live journey) and a counter, so they repeat for the same seed."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.count = 0

    def next(self) -> str:
        self.count += 1
        return str(uuid.uuid5(_IDS, f"{self.prefix}/{self.count}"))

    def token(self, kind: str) -> str:
        """A short id for a cart, an order or an e-mail (from the same counter)."""
        return f"{kind}_{self.next().replace('-', '')[:12]}"


def _new_person(key: str, rng: Random) -> _Person:
    persona = _pick(rng, PERSONAS)
    acquisition = _pick(rng, ACQUISITION)
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    tag = hashlib.sha256(key.encode()).hexdigest()
    returns = {
        "bouncer": 1 if rng.random() < 0.12 else 0,
        "browser": rng.choice((0, 1, 1, 2, 3)),
        "abandoner": rng.choice((1, 1, 2)),
        "buyer": rng.choice((0, 1, 1, 2, 3)),
        "big_spender": rng.randint(3, 6),
    }[persona]
    person = _Person(
        key=key,
        persona=persona,
        acquisition=acquisition,
        user_id=f"cus_{tag[:12]}",
        first_name=first,
        last_name=last,
        email=f"{first}.{last}.{tag[:4]}@example.com".lower(),
        favourite=rng.choice(CATEGORIES),
        returns=returns,
    )
    if acquisition == "email":  # a newsletter subscriber: the shop knows them before their first visit
        person.known = person.subscribed = True
    return person


class _Visit:
    """Builds the calls of one visit, keeping the person's identity state as analytics.js would."""

    def __init__(self, person: _Person, rng: Random, ids: _Ids, *, device: int, campaign: dict[str, str] | None):
        self.person, self.rng, self.ids, self.device = person, rng, ids, device
        self.campaign = campaign
        self.steps: list[_Step] = []
        self.page_context: dict[str, str] = {}

    def _who(self) -> dict[str, str]:
        who = {"anonymousId": self.person.device(self.device)}
        if self.device in self.person.identified:
            who["userId"] = self.person.user_id
        return who

    def _context(self) -> dict[str, Any]:
        context: dict[str, Any] = {"library": LIBRARY, "userAgent": USER_AGENTS[min(self.device, 1)]}
        if self.page_context:
            context["page"] = dict(self.page_context)
        if self.campaign:
            context["campaign"] = dict(self.campaign)
        return context

    def _add(self, pause: str, call: dict[str, Any]) -> None:
        payload = {**call, "messageId": self.ids.next(), "context": self._context()}
        self.steps.append(_Step(pause, Route.BATCH, payload))

    def page(self, name: str, path: str, *, title: str, referrer: str | None = None, query: str = "") -> None:
        if not query:
            self.campaign = None  # UTM tags are on the landing page's URL: only its events carry them
        url = f"{SHOP}{path}" + (f"?{query}" if query else "")
        previous = self.page_context.get("url", "")
        self.page_context = {"path": path, "url": url, "title": title, "referrer": previous}
        if referrer is not None:
            self.page_context["referrer"] = referrer
        pause = "redirect" if self.steps and self.steps[-1].route is Route.CLICK else "read"
        self._add(pause, {"type": "page", **self._who(), "name": name, "properties": dict(self.page_context)})

    def track(self, event: str, properties: dict[str, Any], *, pause: str = "now") -> None:
        self._add(pause, {"type": "track", **self._who(), "event": event, "properties": properties})

    def identify(self, *, reason: str) -> None:
        person = self.person
        self.person.identified.add(self.device)
        person.known = True
        traits = {
            "email": person.email,
            "name": f"{person.first_name} {person.last_name}",
            "first_name": person.first_name,
            "last_name": person.last_name,
        }
        if reason in ("sign-up", "checkout") and not person.subscribed:
            person.subscribed = self.rng.random() < 0.75  # opted in to the newsletter (and cart reminders)
            traits["newsletter"] = person.subscribed
        self._add("now", {"type": "identify", **self._who(), "traits": traits})

    def email(self, campaign: str, *, target: str | None) -> None:
        """An e-mail opened (pixel) and, with a target, a link in it clicked (signed redirect)."""
        email_id = self.ids.token("em")
        properties = {
            "campaign": campaign,
            "campaign_id": campaign,
            "campaign_name": EMAIL_CAMPAIGNS[campaign],
            "email_id": email_id,
            "email_subject": EMAIL_CAMPAIGNS[campaign],
        }
        opened = {"userId": self.person.user_id, "event": "Email Opened", "properties": properties}
        self.steps.append(_Step("now", Route.PIXEL, {**opened, "messageId": self.ids.next()}))
        if target is not None:
            clicked = {
                "userId": self.person.user_id,
                "event": "Email Link Clicked",
                "properties": {**properties, "link_id": "cta", "link_url": target},
            }
            self.steps.append(_Step("email", Route.CLICK, {**clicked, "messageId": self.ids.next()}, target))

    # --- shopping ---------------------------------------------------------------------------------------------

    def _choose(self, *, expensive: bool = False) -> Product:
        pool = [p for p in CATALOGUE if p.category == self.person.favourite]
        if expensive or self.rng.random() < 0.35:
            pool = list(CATALOGUE)
        if expensive:
            pool = sorted(pool, key=lambda p: p.price)[len(pool) // 2 :]
        return self.rng.choice(pool)

    def view_products(self, count: int, *, expensive: bool = False) -> list[Product]:
        viewed = []
        for number in range(count):
            product = self._choose(expensive=expensive)
            if number % 3 == 0:
                category = product.category
                self.page("Category", f"/collections/{category}", title=category.title())
            self.page("Product", f"/products/{product.product_id}", title=product.name)
            self.track("Product Viewed", product.properties())
            viewed.append(product)
        return viewed

    def add_to_cart(self, products: list[Product], *, big: bool = False) -> _Cart:
        cart = self.person.cart or _Cart(self.ids.token("cart"))
        self.person.cart = cart
        picks = self.rng.sample(products, k=min(len(products), self.rng.randint(1, 3)))
        for product in picks:
            quantity = self.rng.choice((1, 1, 2)) if big else self.rng.choice((1, 1, 1, 2))
            cart.items.append((product, quantity))
            self.track(
                "Product Added", {**product.properties(), "cart_id": cart.cart_id, "quantity": quantity}, pause="read"
            )
        return cart

    def _order_figures(self, cart: _Cart, coupon: tuple[str, float] | None) -> dict[str, Any]:
        subtotal = _money(sum(p.price * q for p, q in cart.items))
        discount = _money(subtotal * coupon[1]) if coupon else 0.0
        revenue = _money(subtotal - discount)
        shipping = 0.0 if revenue >= 75 else 6.95
        tax = _money(revenue * 0.08)
        figures: dict[str, Any] = {
            "cart_id": cart.cart_id,
            "value": subtotal,
            "revenue": revenue,
            "subtotal": subtotal,
            "discount": discount,
            "shipping": shipping,
            "tax": tax,
            "total": _money(revenue + shipping + tax),
            "currency": "USD",
            "products": [
                {**{k: v for k, v in p.properties().items() if k != "currency"}, "quantity": q} for p, q in cart.items
            ],
        }
        if coupon:
            figures["coupon"] = coupon[0]
        return figures

    def checkout(self, *, complete: bool, coupon: tuple[str, float] | None = None) -> None:
        cart = self.person.cart
        assert cart is not None and cart.items
        order_id = self.ids.token("ord")
        figures = self._order_figures(cart, coupon)
        self.page("Checkout", "/checkout", title="Checkout")
        self.track("Checkout Started", {"order_id": order_id, **figures})
        if self.device not in self.person.identified:
            self.identify(reason="checkout")
        if complete:
            self.page("Order Confirmation", "/checkout/thank-you", title="Thank you")
            self.track("Order Completed", {"order_id": order_id, "checkout_id": order_id, **figures})
            self.person.cart = None
            self.person.orders += 1


def _landing(visit: _Visit, channel: str, intent: str, email_campaign: str | None) -> None:
    """The first page of a visit, with the UTM tags of the ad or e-mail that brought the person."""
    rng = visit.rng
    if intent == "recover":
        path, name, title = "/cart", "Cart", "Your cart"
    elif channel == "paid" or rng.random() < 0.5:
        category = visit.person.favourite
        path, name, title = f"/collections/{category}", "Category", category.title()
    else:
        path, name, title = "/", "Home", "Shop Example"
    query = ""
    if visit.campaign:
        tags = {f"utm_{key if key != 'name' else 'campaign'}": value for key, value in visit.campaign.items()}
        query = urlencode(tags)
    referrer = ""
    if channel == "paid" and visit.campaign:
        referrer = AD_REFERRERS[visit.campaign["source"]]
    elif channel == "organic":
        referrer = rng.choice(("https://www.google.com/", "https://duckduckgo.com/", ""))
    if email_campaign is not None:
        target = f"{SHOP}{path}?{query}"
        visit.email(email_campaign, target=target)
    visit.page(name, path, title=title, referrer=referrer, query=query)


def _visit(person: _Person, rng: Random, ids: _Ids, *, channel: str, intent: str, device: int = 0) -> list[_Step]:
    """One visit's calls: arrive through `channel`, then browse, cart, abandon or buy (`intent`)."""
    campaign: dict[str, str] | None = None
    email_campaign = None
    if channel == "paid":
        campaign = dict(rng.choice(PAID_CAMPAIGNS))
    elif channel == "email":
        if intent == "recover":
            email_campaign = "cart_reminder"
        else:
            email_campaign = rng.choice(("weekly_picks", "spring_sale", "win_back" if person.orders else "spring_sale"))
        campaign = {"name": email_campaign, "source": "newsletter", "medium": "email", "content": "cta"}
    visit = _Visit(person, rng, ids, device=device, campaign=campaign)
    if email_campaign is not None and rng.random() < 0.25:
        visit.email(email_campaign, target=None)  # opened, not clicked: the visit ends in the inbox
        return visit.steps
    _landing(visit, channel, intent, email_campaign)
    if device not in person.identified and (channel == "email" or person.known):
        # Landing from a tracked e-mail link, or logging in on a new device: the site identifies the visitor.
        visit.identify(reason="login")
    coupon = COUPONS.get(email_campaign or "")
    _shop(visit, intent, coupon)
    return visit.steps


def _shop(visit: _Visit, intent: str, coupon: tuple[str, float] | None) -> None:
    rng, person = visit.rng, visit.person
    if intent == "bounce":
        if rng.random() < 0.5:
            visit.view_products(1)
    elif intent == "browse":
        visit.view_products(rng.randint(2, 7))
        if rng.random() < 0.15:
            visit.track("Products Searched", {"query": rng.choice(("rain jacket", "tent", "trail shoes"))})
        if not person.known and rng.random() < 0.3:
            visit.page("Sign up", "/account/register", title="Create account")
            visit.identify(reason="sign-up")
            visit.track("Signed Up", {"method": "email"})
    elif intent == "abandon":
        visit.add_to_cart(visit.view_products(rng.randint(1, 4)))
        if rng.random() < 0.6:
            visit.checkout(complete=False)  # gave their e-mail address at checkout, then left
    elif intent in ("buy", "big"):
        big = intent == "big"
        visit.add_to_cart(visit.view_products(rng.randint(1, 4), expensive=big), big=big)
        if big and rng.random() < 0.6:
            visit.add_to_cart(visit.view_products(rng.randint(1, 2), expensive=True), big=True)
        visit.checkout(complete=True, coupon=coupon)
    elif intent == "recover":
        cart = person.cart
        assert cart is not None
        visit.track("Cart Viewed", {"cart_id": cart.cart_id, "products": [p.properties() for p, _ in cart.items]})
        visit.checkout(complete=True, coupon=coupon)


def _first_intent(person: _Person, rng: Random) -> str:
    return {
        "bouncer": "bounce",
        "browser": "browse",
        "abandoner": "abandon",
        "buyer": "buy" if rng.random() < 0.55 else "browse",
        "big_spender": "big",
    }[person.persona]


def _return_intent(person: _Person, rng: Random) -> str:
    if person.cart is not None and rng.random() < (0.45 if person.subscribed else 0.2):
        return "recover"
    weights = {
        "bouncer": {"browse": 1.0},
        "browser": {"browse": 0.8, "abandon": 0.1, "buy": 0.1},
        "abandoner": {"browse": 0.5, "abandon": 0.2, "buy": 0.3},
        "buyer": {"buy": 0.45, "browse": 0.35, "abandon": 0.2},
        "big_spender": {"big": 0.75, "browse": 0.25},
    }[person.persona]
    return _pick(rng, weights)


def _return_visit(person: _Person, rng: Random, ids: _Ids) -> tuple[str, list[_Step]]:
    """A later visit: `("soon", …)` for a cart reminder (hours later), else `("later", …)` (days later)."""
    intent = _return_intent(person, rng)
    if intent == "recover" and person.subscribed:
        channel = "email" if rng.random() < 0.8 else "organic"  # most come back through the cart reminder
    elif person.subscribed:
        channel = _pick(rng, {"email": 0.5, "organic": 0.35, "paid": 0.15})
    else:
        channel = _pick(rng, {"organic": 0.7, "paid": 0.3})
    device = 1 if person.known and rng.random() < 0.2 else 0
    gap = "soon" if intent == "recover" and channel == "email" else "later"
    return gap, _visit(person, rng, ids, channel=channel, intent=intent, device=device)


def _person_visits(key: str) -> tuple[_Person, Iterator[tuple[str, list[_Step]]]]:
    """A person and, lazily, their visits: `(gap kind, steps)`, the first with gap kind `first`."""
    rng = Random(f"content/{key}")
    person = _new_person(key, rng)
    ids = _Ids(key)

    def visits() -> Iterator[tuple[str, list[_Step]]]:
        first = _first_intent(person, rng)
        yield "first", _visit(person, rng, ids, channel=person.acquisition, intent=first)
        for _ in range(person.returns):
            yield _return_visit(person, rng, ids)

    return person, visits()


# --- time (history: daily and weekly rhythm; everything before `now`) ------------------------------------------------

HOUR_WEIGHTS = (
    0.25, 0.15, 0.10, 0.08, 0.08, 0.12, 0.25, 0.45, 0.65, 0.80, 0.90, 0.95,
    1.00, 0.95, 0.90, 0.90, 0.95, 1.05, 1.20, 1.35, 1.40, 1.25, 0.90, 0.50,
)  # fmt: skip
WEEKDAY_WEIGHTS = (1.0, 0.95, 0.95, 1.0, 1.05, 1.25, 1.3)
"""Monday … Sunday."""
PAUSES = {"now": (0.4, 3.0), "read": (5.0, 90.0), "email": (60.0, 2400.0), "redirect": (0.3, 1.5)}
RESERVE = 3600.0
"""Seconds kept free before `now` for each visit still to come, so that every visit fits in the history."""


def _rhythm(ts: float) -> float:
    moment = datetime.fromtimestamp(ts, UTC)
    return HOUR_WEIGHTS[moment.hour] * WEEKDAY_WEIGHTS[moment.weekday()]


def _pick_time(rng: Random, low: float, high: float, weight: Callable[[float], float], peak: float) -> float:
    """A time in [low, high] drawn by thinning: busy hours and weekend days come out more often."""
    candidate = low
    for _ in range(64):
        candidate = rng.uniform(low, high)
        if rng.random() * peak <= weight(candidate):
            break
    return candidate


def _arrival(rng: Random, now: float, horizon: float) -> float:
    youngest = min(2 * 3600.0, horizon / 2)

    def growing(ts: float) -> float:  # the shop grows: recent days bring a few more new people
        return _rhythm(ts) * (0.7 + 0.3 * (1 - (now - ts) / horizon))

    return _pick_time(rng, now - horizon, now - youngest, growing, 1.82)


def _gap(rng: Random, kind: str) -> float:
    if kind == "soon":
        return rng.uniform(2 * 3600, 26 * 3600)
    return min(max(rng.lognormvariate(12.05, 0.9), 3 * 3600), 21 * 86400)  # median ≈ 2 days


def _history_person(seed: int, index: int, days: float, now: float) -> Iterator[SimEvent]:
    key = f"{seed}/{index}"
    timing = Random(f"time/{key}")
    horizon = days * 86400
    end = now - 1
    arrival = _arrival(timing, now, horizon)
    person, visits = _person_visits(key)
    last = arrival
    for number, (gap, steps) in enumerate(visits):
        pauses = [0.0] + [timing.uniform(*PAUSES[step.pause]) for step in steps[1:]]
        latest = end - sum(pauses) - (person.returns - number) * RESERVE
        start = arrival
        if number > 0:
            wanted = _gap(timing, gap)
            start = _pick_time(timing, last + 0.6 * wanted, last + 1.4 * wanted, _rhythm, 1.82)
            if start > latest:  # no room left for the wanted gap: somewhere between the last visit and `latest`
                start = _pick_time(timing, last + 1, max(latest, last + 1), _rhythm, 1.82)
            start = max(start, last + 1)
        moment = start
        for pause, step in zip(pauses, steps, strict=True):
            moment += pause
            last = max(last, min(moment, end))
            yield _stamped(step, last, person.key)


def _stamped(step: _Step, ts: float, person: str) -> SimEvent:
    at = datetime.fromtimestamp(round(ts, 3), UTC)
    return SimEvent(at, step.route, {**step.payload, "timestamp": format_timestamp(at)}, person, step.target)


def generate(customers: int, days: float, seed: int, now: datetime) -> Iterator[SimEvent]:
    """The history: `customers` people arriving over the `days` before `now`, their events in time order.

    Deterministic: the same arguments give the same events; the same seed gives the same people, calls and
    message ids whatever `now` and `days` are (only the timestamps move).
    """
    if customers < 0 or days <= 0:
        raise ValueError("customers must be >= 0 and days > 0")
    end = now.timestamp()
    horizon = days * 86400
    arrivals = sorted((_arrival(Random(f"time/{seed}/{i}"), end, horizon), i) for i in range(customers))
    heap: list[tuple[float, int, int, SimEvent, Iterator[SimEvent]]] = []
    order = itertools.count()
    position = 0
    while heap or position < len(arrivals):
        # People are started only when their first event is due, so memory stays bounded by who is active.
        while position < len(arrivals) and (not heap or arrivals[position][0] <= heap[0][0]):
            index = arrivals[position][1]
            position += 1
            events = _history_person(seed, index, days, end)
            first = next(events, None)
            if first is not None:
                heapq.heappush(heap, (first.at.timestamp(), index, next(order), first, events))
        _, index, _, event, events = heapq.heappop(heap)
        yield event
        following = next(events, None)
        if following is not None:
            heapq.heappush(heap, (following.at.timestamp(), index, next(order), following, events))


def live(
    seed: int,
    *,
    customers: int,
    clock: Callable[[], datetime],
    run: str,
    concurrent: int = 6,
) -> Iterator[SimEvent]:
    """Endless "now" traffic: several visits at once, each event stamped by `clock()` when it is taken.

    Most visits are new people; some are people of the history (`customers` of `seed`) or earlier live visitors
    coming back. Message ids are unique per `run` (pass something new per run, e.g. the start time), so a
    restarted demo keeps adding live events.
    """
    rng = Random(f"live/{seed}/{run}")
    active: list[tuple[str, Iterator[_Step]]] = []
    seen: list[_Person] = []
    journeys = itertools.count(1)
    while True:
        while len(active) < concurrent:
            number = next(journeys)
            ids = _Ids(f"live/{seed}/{run}/{number}")
            returning = rng.random() < 0.35 and bool(customers or seen)
            if returning:
                person = _returning_person(seed, customers, seen, rng)
                _, steps = _return_visit(person, rng, ids)
            else:
                person, visits = _person_visits(f"live/{seed}/{run}/{number}")
                _, steps = next(visits)
                seen.append(person)
                del seen[:-200]
            active.append((person.key, iter(steps)))
        slot = rng.randrange(len(active))
        key, steps = active[slot]
        step = next(steps, None)
        if step is None:
            del active[slot]
            continue
        yield _stamped(step, clock().timestamp(), key)


def _returning_person(seed: int, customers: int, seen: list[_Person], rng: Random) -> _Person:
    if seen and (not customers or rng.random() < 0.4):
        return rng.choice(seen)
    person, visits = _person_visits(f"{seed}/{rng.randrange(customers)}")
    for _ in visits:  # replay the history's visits to know where the person stands (identified, cart)
        pass
    return person


# --- sending ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """Where and as whom to send."""

    url: str
    """The collector's base URL."""
    write_key: str
    source_id: str
    link_secret: str
    """The source's newest link secret, to sign click links."""


def click_link(target: Target, payload: Mapping[str, Any], destination: str) -> str:
    """A signed `/v1/r` link for a click, made as `footfall links sign` makes it, plus the click's message id and
    time: the e-mail tool puts an id per recipient and link in it, so a second click is the same message."""
    params = links.click_params(
        source_id=target.source_id,
        target=destination,
        secret=target.link_secret,
        event=payload["event"],
        user_id=payload.get("userId"),
        anonymous_id=payload.get("anonymousId"),
        properties=payload.get("properties"),
        message_id=payload["messageId"],
        timestamp=payload["timestamp"],
    )
    return links.click_url(target.url, params)


def pixel_path(target: Target, payload: Mapping[str, Any]) -> str:
    """`/v1/pixel/track?writeKey=…&data=<base64url JSON>` for an e-mail open."""
    data = base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode().rstrip("=")
    return "/v1/pixel/track?" + urlencode({"writeKey": target.write_key, "data": data})


@dataclass
class Stats:
    """What the collector answered so far."""

    sent: int = 0
    accepted: int = 0
    duplicate: int = 0
    rejected: int = 0
    not_stored: int = 0
    """Answered suppressed or not_stored (never expected from simulated data)."""
    opens: int = 0
    """Pixel requests answered with the GIF (an open is recorded, or was already)."""
    clicks: int = 0
    """Click links answered 302 (recorded, or already)."""
    requests: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)
    _mark: tuple[float, int] = (0.0, 0)

    @property
    def rate(self) -> float:
        """Events sent per second since the start."""
        return self.sent / max(time.monotonic() - self.started, 1e-6)

    def line(self, *, recent: bool = False) -> str:
        """One progress line; `recent`: the rate since the previous recent line (else since the start)."""
        rate = self.rate
        if recent:
            now = time.monotonic()
            since, sent = self._mark if self._mark[0] else (self.started, 0)
            rate, self._mark = (self.sent - sent) / max(now - since, 1e-6), (now, self.sent)
        return (
            f"{self.sent:,} events sent ({rate:,.0f}/s): {self.accepted:,} accepted, "
            f"{self.duplicate:,} duplicate, {self.rejected:,} rejected; {self.opens:,} e-mail opens (pixel), "
            f"{self.clicks:,} clicks (302)"
        )

    def to_json(self) -> dict[str, Any]:
        """Machine-readable figures."""
        return {
            "sent": self.sent,
            "accepted": self.accepted,
            "duplicate": self.duplicate,
            "rejected": self.rejected,
            "not_stored": self.not_stored,
            "opens": self.opens,
            "clicks": self.clicks,
            "requests": self.requests,
            "seconds": round(time.monotonic() - self.started, 3),
            "events_per_second": round(self.rate, 1),
            "reasons": dict(self.reasons),
        }


class _Retry(Exception):
    def __init__(self, after: float) -> None:
        super().__init__(f"retry after {after} s")
        self.after = after


class CollectorClient:
    """One keep-alive HTTP connection to the collector (not thread-safe: one per sending thread)."""

    def __init__(self, target: Target, *, timeout: float = 30.0) -> None:
        self.target = target
        parts = urlsplit(target.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SimulatorError(f"collector URL must be http(s)://host[:port], not {target.url!r}")
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname, parts.port
        self._timeout = timeout
        self._connection: http.client.HTTPConnection | None = None
        self._auth = "Basic " + base64.b64encode(f"{target.write_key}:".encode()).decode()

    def close(self) -> None:
        """Close the connection (a new one is opened on the next request)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
        """One request; a connection the server closed meanwhile is reopened once.

        Raises:
            OSError, http.client.HTTPException: the collector cannot be reached.
        """
        headers = {"Authorization": self._auth}
        if body is not None:
            headers["Content-Type"] = "application/json"
        for attempt in (1, 2):
            if self._connection is None:
                kind = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
                self._connection = kind(self._host, self._port, timeout=self._timeout)
            try:
                self._connection.request(method, path, body=body, headers=headers)
                answer = self._connection.getresponse()
                data = answer.read()
            except (OSError, http.client.HTTPException):
                self.close()
                if attempt == 2:
                    raise
                continue
            if answer.will_close:
                self.close()
            return answer.status, {k.lower(): v for k, v in answer.getheaders()}, data
        raise AssertionError("unreachable")

    def batch(self, payloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """`POST /v1/batch`; the per-event results."""
        body = json.dumps({"batch": payloads}, separators=(",", ":")).encode()
        status, headers, data = self.request("POST", "/v1/batch", body)
        if status in (429, 503):
            raise _Retry(float(headers.get("retry-after", "1") or 1))
        if status == 401:
            raise SimulatorError("the collector refused the write key (401)")
        try:
            results = json.loads(data)["results"]
        except (ValueError, KeyError, TypeError):
            raise SimulatorError(f"the collector answered {status}: {data[:200]!r}") from None
        return list(results)

    def pixel(self, payload: Mapping[str, Any]) -> int:
        """`GET /v1/pixel/track`; the status (200 with the GIF)."""
        status, _headers, _data = self.request("GET", pixel_path(self.target, payload))
        if status == 503:
            raise _Retry(1.0)
        return status

    def click(self, payload: Mapping[str, Any], destination: str) -> tuple[int, str]:
        """`GET /v1/r?…` on a signed link; the status and the redirect target (or the refusal's reason)."""
        link = click_link(self.target, payload, destination)
        status, headers, data = self.request("GET", link[len(self.target.url.rstrip("/")) :])
        if status == 302:
            return status, headers.get("location", "")
        if status in (429, 503):
            raise _Retry(1.0)
        try:
            reason = str(json.loads(data).get("error"))
        except (ValueError, AttributeError):
            reason = data[:200].decode("utf-8", "replace")
        return status, reason


class _Sender:
    """Batches events and hands requests to a few connections, each in its own thread.

    Requests may complete out of order across connections, as they do from real browsers and e-mail clients;
    every event carries its own timestamp, and processing gives the same result in any order.
    """

    ATTEMPTS = 30

    def __init__(
        self,
        target: Target,
        stats: Stats,
        stop: threading.Event,
        on_rejection: Callable[[str], None] | None,
        connections: int,
    ) -> None:
        self.target, self.stats, self.stop, self.on_rejection = target, stats, stop, on_rejection
        self.pending: list[dict[str, Any]] = []
        self.pending_since = 0.0
        self.lock = threading.Lock()
        self.error: SimulatorError | None = None
        self.requests: queue.Queue[tuple[Route, Any, str | None] | None] = queue.Queue(maxsize=2 * connections)
        self.clients = [CollectorClient(target) for _ in range(max(1, connections))]
        self.threads = [
            threading.Thread(target=self._work, args=(client,), name=f"simulate-send-{n}", daemon=True)
            for n, client in enumerate(self.clients)
        ]
        for thread in self.threads:
            thread.start()

    # --- the sending loop's side --------------------------------------------------------------------------------

    def add(self, event: SimEvent) -> None:
        with self.lock:
            self.stats.sent += 1
        if event.route is Route.BATCH:
            if not self.pending:
                self.pending_since = time.monotonic()
            self.pending.append(event.payload)
            if len(self.pending) >= BATCH_SIZE:
                self.flush()
        else:
            self._put((event.route, event.payload, event.target))

    def flush(self) -> None:
        if self.pending:
            payloads, self.pending = self.pending, []
            self._put((Route.BATCH, payloads, None))

    def batch_age(self) -> float:
        return time.monotonic() - self.pending_since if self.pending else 0.0

    def _put(self, request: tuple[Route, Any, str | None]) -> None:
        while self.error is None:
            try:
                self.requests.put(request, timeout=0.2)
                return
            except queue.Full:
                continue
        raise self.error

    def close(self) -> None:
        """Send what is batched, wait for every request to be answered, close the connections."""
        try:
            self.flush()
        finally:
            for _ in self.threads:
                self.requests.put(None)
            for thread in self.threads:
                thread.join()
            for client in self.clients:
                client.close()
        if self.error is not None:
            raise self.error

    # --- the connections' side ----------------------------------------------------------------------------------

    def _work(self, client: CollectorClient) -> None:
        while (request := self.requests.get()) is not None:
            if self.error is not None:
                continue  # drain: the sending loop is about to stop
            try:
                self._handle(client, *request)
            except SimulatorError as exc:
                self.error = exc
            except Exception as exc:  # a bug must stop the run, not leave it waiting for a dead thread
                self.error = SimulatorError(f"sending failed: {exc!r}")

    def _handle(self, client: CollectorClient, route: Route, payload: Any, destination: str | None) -> None:
        if route is Route.BATCH:
            self._batch(client, payload)
        elif route is Route.PIXEL:
            status = self._call(lambda: client.pixel(payload))
            if status == 200:
                self._count("opens")
            else:
                self._reject(f"pixel answered {status}")
        else:
            status, detail = self._call(lambda: client.click(payload, destination or ""))
            if status == 302 and detail == destination:
                self._count("clicks")
            else:
                self._reject(f"click answered {status}: {detail}")

    def _batch(self, client: CollectorClient, payloads: list[dict[str, Any]]) -> None:
        for result in self._call(lambda: client.batch(payloads)):
            status = result.get("status")
            if status in ("accepted", "duplicate"):
                self._count(str(status))
            elif status == "rejected":
                self._reject(str(result.get("reason")))
            else:
                self._count("not_stored")

    def _count(self, name: str) -> None:
        with self.lock:
            setattr(self.stats, name, getattr(self.stats, name) + 1)

    def _reject(self, reason: str) -> None:
        with self.lock:
            self.stats.rejected += 1
            first = self.stats.reasons[reason] == 0
            self.stats.reasons[reason] += 1
        if first and self.on_rejection is not None:
            self.on_rejection(reason)

    def _call(self, call: Callable[[], Any]) -> Any:
        # 503 means "not stored, send again" (what was stored is then answered duplicate); a refused connection
        # may be a collector worker restarting. Both are retried for a while; a stop request ends the waiting.
        error: BaseException | None = None
        for _ in range(self.ATTEMPTS):
            try:
                with self.lock:
                    self.stats.requests += 1
                return call()
            except _Retry as retry:
                error, pause = retry, retry.after
            except (OSError, http.client.HTTPException) as exc:
                error, pause = exc, 1.0
            if self.stop.wait(pause):
                break
        raise SimulatorError(f"the collector at {self.target.url} is not answering: {error}")


def send(
    events: Iterable[SimEvent],
    target: Target,
    *,
    rate: float = 0.0,
    connections: int = 2,
    stop: threading.Event | None = None,
    stats: Stats | None = None,
    on_progress: Callable[[Stats], None] | None = None,
    progress_every: float = 5.0,
    on_rejection: Callable[[str], None] | None = None,
) -> Stats:
    """Send `events`: batch calls in `/v1/batch` requests of up to 100, opens by pixel, clicks by signed link.

    Args:
        rate: events per second (0: as fast as the collector answers). Paced events wait at most
            `MAX_BATCH_WAIT` for their batch to fill. Events are taken from `events` only when they are due,
            so a live generator stamps them with the time they are sent.
        connections: keep-alive connections used at once (the local stack runs 2 collector workers).
        stop: set it to stop early (what is batched already is still sent).
        on_progress: called with the figures every `progress_every` seconds.
        on_rejection: called once per new rejection reason.

    Raises:
        SimulatorError: the collector refused the write key or stopped answering.
    """
    stop = stop or threading.Event()
    stats = stats or Stats()
    sender = _Sender(target, stats, stop, on_rejection, connections)
    started = time.monotonic()
    last_progress = started
    taken = 0
    source = iter(events)
    try:
        while not stop.is_set():
            if rate > 0 and _wait_for_slot(sender, started + taken / rate, stop):
                break
            event = next(source, None)
            if event is None:
                break
            taken += 1
            sender.add(event)
            if on_progress is not None and time.monotonic() - last_progress >= progress_every:
                last_progress = time.monotonic()
                on_progress(stats)
    finally:
        sender.close()
    return stats


def _wait_for_slot(sender: _Sender, due: float, stop: threading.Event) -> bool:
    """Sleep until `due`, sending a batch that has waited long enough meanwhile; True when asked to stop."""
    while True:
        if sender.pending and sender.batch_age() >= MAX_BATCH_WAIT:
            sender.flush()
        wait = due - time.monotonic()
        if wait <= 0:
            return False
        if sender.pending:
            wait = min(wait, MAX_BATCH_WAIT - sender.batch_age())
        if stop.wait(max(wait, 0.0)):
            return True


def run(
    target: Target,
    *,
    customers: int,
    days: float,
    seed: int,
    rate: float = 0.0,
    live_rate: float | None = None,
    connections: int = 2,
    stop: threading.Event | None = None,
    out: Callable[[str], None] = print,
    progress_every: float = 5.0,
) -> Stats:
    """The history (`customers` over `days`, sent at `rate`), then, with `live_rate`, live traffic until `stop`.

    Progress and each new rejection reason go to `out`.
    """
    stop = stop or threading.Event()
    stats = Stats()
    common: dict[str, Any] = {
        "connections": connections,
        "stop": stop,
        "stats": stats,
        "on_progress": lambda s: out(f"simulate: {s.line(recent=True)}"),
        "progress_every": progress_every,
        "on_rejection": lambda reason: out(f"simulate: rejected: {reason}"),
    }
    out(f"simulate: history of {customers} customers over {days:g} days (seed {seed}) to {target.url}")
    send(generate(customers, days, seed, datetime.now(UTC)), target, rate=rate, **common)
    out(f"simulate: history done: {stats.line()}")
    if live_rate is not None and not stop.is_set():
        out(f"simulate: live traffic at {live_rate:g} events/s (Ctrl-C to stop)")
        events = live(seed, customers=customers, clock=lambda: datetime.now(UTC), run=str(int(time.time())))
        send(events, target, rate=live_rate, **common)
    return stats


def local_target(
    data_dir: Path,
    *,
    find_source: Callable[[str], Any] | None = None,
    url: str | None = None,
    write_key: str | None = None,
    source_id: str | None = None,
    link_secret: str | None = None,
) -> Target:
    """The target of the local stack in `data_dir` (`serve.json`, `default-source.json`); arguments override.

    Args:
        find_source: reads a source by id from the table, for its link secret (unless `link_secret` is given).

    Raises:
        SimulatorError: something needed is neither given nor found.
    """
    from shared.local.stack import DEFAULT_SOURCE_FILE, read_info

    info = read_info(data_dir)
    saved: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        saved = json.loads((data_dir / DEFAULT_SOURCE_FILE).read_text())
    url = url or (info.collector_url if info else None)
    write_key = write_key or (info.write_key if info else None) or saved.get("write_key")
    source_id = source_id or saved.get("source_id") or "default"
    if not url:
        raise SimulatorError(f"no local stack found in {data_dir} (start one with `footfall serve`), or pass --url")
    if not write_key:
        raise SimulatorError("no write key: pass --write-key (or run against a local stack that made one)")
    if link_secret is None and find_source is not None:
        source = find_source(source_id)
        if source is None:
            raise SimulatorError(f"no source {source_id!r} in the table (pass --source)")
        link_secret = source.link_secrets[0]
    if not link_secret:
        raise SimulatorError("clicks need the source's link secret: pass --link-secret")
    return Target(url=url.rstrip("/"), write_key=write_key, source_id=source_id, link_secret=link_secret)
