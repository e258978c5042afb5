"""Who the simulated people are and what they do in a visit: content from the seed only, no time, no I/O.

A person (persona, acquisition channel, names, devices) and their visits (landing, browsing, carts, checkout,
e-mails) are drawn from `Random(f"content/{key}")`, and their message ids are uuid5 of the person and a counter,
so the same key always gives the same calls. `rhythm` stamps them with times.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from random import Random
from typing import Any
from urllib.parse import urlencode

from shared.simulate.calls import Route
from shared.simulate.catalogue import (
    ACQUISITION,
    AD_REFERRERS,
    CATALOGUE,
    CATEGORIES,
    COUPONS,
    EMAIL_CAMPAIGNS,
    FIRST_NAMES,
    LAST_NAMES,
    LIBRARY,
    PAID_CAMPAIGNS,
    PERSONAS,
    SHOP,
    USER_AGENTS,
    Product,
)

_IDS = uuid.UUID("8d0f3f4e-5a0c-4c8e-9a59-3b1f0f6c2a11")
"""Namespace of the simulator's uuid5 message and anonymous ids."""


def _pick(rng: Random, weights: Mapping[str, float]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _money(value: float) -> float:
    return round(value + 1e-9, 2)


@dataclass
class _Cart:
    cart_id: str
    items: list[tuple[Product, int]] = field(default_factory=list)


@dataclass
class Person:
    """A simulated person, and where they stand (devices, identified, cart, orders) as their visits go on."""

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
class Step:
    """One call of a visit, not yet stamped with a time."""

    pause: str
    """How long after the previous step it happens: now, read, email or redirect (see `PAUSES`)."""
    route: Route
    payload: dict[str, Any]
    target: str | None = None


class Ids:
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


def _new_person(key: str, rng: Random) -> Person:
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
    person = Person(
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

    def __init__(self, person: Person, rng: Random, ids: Ids, *, device: int, campaign: dict[str, str] | None):
        self.person, self.rng, self.ids, self.device = person, rng, ids, device
        self.campaign = campaign
        self.steps: list[Step] = []
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
        self.steps.append(Step(pause, Route.BATCH, payload))

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
        traits: dict[str, Any] = {
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
        self.steps.append(Step("now", Route.PIXEL, {**opened, "messageId": self.ids.next()}))
        if target is not None:
            clicked = {
                "userId": self.person.user_id,
                "event": "Email Link Clicked",
                "properties": {**properties, "link_id": "cta", "link_url": target},
            }
            self.steps.append(Step("email", Route.CLICK, {**clicked, "messageId": self.ids.next()}, target))

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


def _visit(person: Person, rng: Random, ids: Ids, *, channel: str, intent: str, device: int = 0) -> list[Step]:
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
    shop = _SHOPPING.get(intent)
    if shop is not None:
        shop(visit, intent, coupon)


def _bounce(visit: _Visit, intent: str, coupon: tuple[str, float] | None) -> None:
    if visit.rng.random() < 0.5:
        visit.view_products(1)


def _browse(visit: _Visit, intent: str, coupon: tuple[str, float] | None) -> None:
    rng = visit.rng
    visit.view_products(rng.randint(2, 7))
    if rng.random() < 0.15:
        visit.track("Products Searched", {"query": rng.choice(("rain jacket", "tent", "trail shoes"))})
    if not visit.person.known and rng.random() < 0.3:
        visit.page("Sign up", "/account/register", title="Create account")
        visit.identify(reason="sign-up")
        visit.track("Signed Up", {"method": "email"})


def _abandon(visit: _Visit, intent: str, coupon: tuple[str, float] | None) -> None:
    visit.add_to_cart(visit.view_products(visit.rng.randint(1, 4)))
    if visit.rng.random() < 0.6:
        visit.checkout(complete=False)  # gave their e-mail address at checkout, then left


def _buy(visit: _Visit, intent: str, coupon: tuple[str, float] | None) -> None:
    rng, big = visit.rng, intent == "big"
    visit.add_to_cart(visit.view_products(rng.randint(1, 4), expensive=big), big=big)
    if big and rng.random() < 0.6:
        visit.add_to_cart(visit.view_products(rng.randint(1, 2), expensive=True), big=True)
    visit.checkout(complete=True, coupon=coupon)


def _recover(visit: _Visit, intent: str, coupon: tuple[str, float] | None) -> None:
    cart = visit.person.cart
    assert cart is not None
    visit.track("Cart Viewed", {"cart_id": cart.cart_id, "products": [p.properties() for p, _ in cart.items]})
    visit.checkout(complete=True, coupon=coupon)


_SHOPPING: dict[str, Callable[[_Visit, str, tuple[str, float] | None], None]] = {
    "bounce": _bounce,
    "browse": _browse,
    "abandon": _abandon,
    "buy": _buy,
    "big": _buy,
    "recover": _recover,
}
"""What a visit does on the site, by its intent."""


def _first_intent(person: Person, rng: Random) -> str:
    return {
        "bouncer": "bounce",
        "browser": "browse",
        "abandoner": "abandon",
        "buyer": "buy" if rng.random() < 0.55 else "browse",
        "big_spender": "big",
    }[person.persona]


def _return_intent(person: Person, rng: Random) -> str:
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


def return_visit(person: Person, rng: Random, ids: Ids) -> tuple[str, list[Step]]:
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


def person_visits(key: str) -> tuple[Person, Iterator[tuple[str, list[Step]]]]:
    """A person and, lazily, their visits: `(gap kind, steps)`, the first with gap kind `first`."""
    rng = Random(f"content/{key}")
    person = _new_person(key, rng)
    ids = Ids(key)

    def visits() -> Iterator[tuple[str, list[Step]]]:
        first = _first_intent(person, rng)
        yield "first", _visit(person, rng, ids, channel=person.acquisition, intent=first)
        for _ in range(person.returns):
            yield return_visit(person, rng, ids)

    return person, visits()
