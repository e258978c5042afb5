"""Realistic request bodies for the benchmark (`bench.py`): analytics.js and analytics-python events of a shop,
as `/v1/batch` templates whose message ids are made fresh per request."""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.domain.events import format_timestamp

EVENTS_PER_REQUEST = 100

# Every messageId of a request body template carries this placeholder; each request replaces it with a fresh
# uuid4 hex (same length), which makes the ids unique at the cost of one bytes.replace per request.
TAG = "~" * 32
TAG_BYTES = TAG.encode()


# --- realistic events -------------------------------------------------------------------------------------------

SHOP = "https://shop.example.com"
CDN = "https://cdn.shop.example.com"
FIRST_NAMES = ["Ana", "Ben", "Chloé", "David", "Emma", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kemi", "Liam"]
LAST_NAMES = ["Martin", "Nguyen", "Okafor", "Petrov", "Quinn", "Rossi", "Schmidt", "Tanaka", "Urbina", "Vega"]
PLANS = ["free", "starter", "pro", "business"]
CATALOG = [
    ("Footwear", "Trail Runner 2 Running Shoe", 129.99),
    ("Footwear", "Everyday Leather Sneaker", 89.00),
    ("Footwear", "Merino Wool Hiking Sock (3-pack)", 24.50),
    ("Apparel", "Organic Cotton Crew T-Shirt", 29.00),
    ("Apparel", "Packable Down Jacket", 199.00),
    ("Apparel", "Stretch Chino Trousers", 69.95),
    ("Accessories", "Recycled Nylon Daypack 22L", 79.00),
    ("Accessories", "Insulated Steel Water Bottle 750ml", 34.99),
    ("Home", "Stoneware Pour-Over Coffee Set", 59.00),
    ("Home", "Linen Duvet Cover, Queen", 149.00),
    ("Electronics", "Noise-Cancelling Wireless Headphones", 249.99),
    ("Electronics", "USB-C Fast Charger 65W", 39.99),
]
USER_AGENTS = [
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36",
        "Windows",
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36",
        "macOS",
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.4.1 Safari/605.1.15",
        None,
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.4.1 Mobile/15E148 Safari/604.1",
        None,
    ),
    (
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.6367.82 Mobile Safari/537.36",
        "Android",
    ),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0", None),
]
LOCALES = ["en-US", "en-GB", "de-DE", "fr-FR", "es-ES", "ja-JP"]
TIMEZONES = ["America/New_York", "Europe/London", "Europe/Berlin", "Europe/Paris", "Europe/Madrid", "Asia/Tokyo"]
CAMPAIGNS = [
    {"name": "spring_sale", "source": "google", "medium": "cpc", "term": "running shoes", "content": "ad-variant-b"},
    {"name": "newsletter_2026_11", "source": "newsletter", "medium": "email", "content": "hero-banner"},
    {"name": "black_friday", "source": "facebook", "medium": "paid_social", "content": "carousel-3"},
]
REFERRERS = ["", "https://www.google.com/", "https://www.bing.com/", "https://l.facebook.com/", SHOP + "/"]


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-").replace("--", "-")


def _product(index: int) -> dict[str, Any]:
    category, name, price = CATALOG[index % len(CATALOG)]
    slug = _slug(name)
    return {
        "product_id": f"{507000 + index * 37}",
        "sku": f"{category[:3].upper()}-{1000 + index * 7}-{'BLK' if index % 2 else 'NVY'}",
        "category": category,
        "name": name,
        "price": price,
        "url": f"{SHOP}/products/{slug}",
        "image_url": f"{CDN}/images/products/{slug}-800x800.jpg",
    }


@dataclass
class Visitor:
    """One browser (anonymousId), maybe logged in (userId), with its device and acquisition campaign."""

    anonymous_id: str
    user_id: str | None
    first: str
    last: str
    plan: str
    user_agent: str
    platform: str | None
    locale: str
    timezone: str
    ip: str
    campaign: dict[str, str] | None
    referrer: str


def _visitor(rng: random.Random) -> Visitor:
    ua, ua_platform = rng.choice(USER_AGENTS)
    locale_index = rng.randrange(len(LOCALES))
    return Visitor(
        anonymous_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        user_id=f"usr_{rng.getrandbits(48):012x}" if rng.random() < 0.45 else None,
        first=rng.choice(FIRST_NAMES),
        last=rng.choice(LAST_NAMES),
        plan=rng.choice(PLANS),
        user_agent=ua,
        platform=ua_platform,
        locale=LOCALES[locale_index],
        timezone=TIMEZONES[locale_index],
        ip=f"{rng.choice(['203.0.113', '198.51.100', '192.0.2'])}.{rng.randrange(1, 255)}",
        campaign=rng.choice(CAMPAIGNS) if rng.random() < 0.35 else None,
        referrer=rng.choice(REFERRERS),
    )


def _ms(moment: datetime) -> str:
    return format_timestamp(moment)


def _ajs_event(rng: random.Random, visitor: Visitor, index: int, when: datetime) -> dict[str, Any]:
    """An event as analytics.js (analytics-next) sends it from a browser."""
    roll = rng.random()
    product = _product(rng.randrange(len(CATALOG) * 3))
    if roll < 0.40:
        kind, path, title = "page", rng.choice(["/", "/collections/new", product["url"][len(SHOP) :]]), "Example Shop"
    else:
        kind, path, title = "track", product["url"][len(SHOP) :], f"{product['name']} | Example Shop"
    search = ""
    if visitor.campaign:
        utm = visitor.campaign
        search = f"?utm_source={utm['source']}&utm_medium={utm['medium']}&utm_campaign={utm['name']}"
    page = {"path": path, "referrer": visitor.referrer, "search": search, "title": title, "url": SHOP + path + search}
    context: dict[str, Any] = {
        "page": page,
        "userAgent": visitor.user_agent,
        "locale": visitor.locale,
        "library": {"name": "analytics.js", "version": "npm:next-1.70.0"},
        "timezone": visitor.timezone,
        "ip": visitor.ip,
    }
    if visitor.platform:
        context["userAgentData"] = {
            "brands": [
                {"brand": "Chromium", "version": "124"},
                {"brand": "Google Chrome", "version": "124"},
                {"brand": "Not-A.Brand", "version": "99"},
            ],
            "mobile": visitor.platform == "Android",
            "platform": visitor.platform,
        }
    if visitor.campaign:
        context["campaign"] = dict(visitor.campaign)
    event: dict[str, Any] = {
        "timestamp": _ms(when),
        "integrations": {},
        "type": kind,
        "messageId": f"ajs-next-{int(when.timestamp() * 1000)}-{TAG}-{index:03x}",
        "anonymousId": visitor.anonymous_id,
        "context": context,
        "writeKey": "wk_placeholder",
        "sentAt": _ms(when + timedelta(milliseconds=rng.randrange(20, 900))),
        "_metadata": {"bundled": ["Segment.io"], "unbundled": [], "bundledIds": []},
    }
    if visitor.user_id:
        event["userId"] = visitor.user_id
    if kind == "page":
        event["properties"] = dict(page)
        return event
    if roll < 0.72:
        event.update(event="Product Viewed", properties={**product, "currency": "USD"})
    elif roll < 0.84:
        cart = f"cart_{rng.getrandbits(40):010x}"
        event.update(event="Product Added", properties={**product, "cart_id": cart, "quantity": 1, "currency": "USD"})
    elif roll < 0.92:
        event.update(event="Order Completed", properties=_order(rng))
    else:
        event["type"] = "identify"
        event["traits"] = {
            "email": f"{visitor.first.lower()}.{visitor.last.lower()}@example.com",
            "name": f"{visitor.first} {visitor.last}",
            "plan": visitor.plan,
        }
        event["userId"] = visitor.user_id or f"usr_{rng.getrandbits(48):012x}"
    return event


def _order(rng: random.Random) -> dict[str, Any]:
    lines = []
    for position in range(rng.randrange(2, 4)):
        product = _product(rng.randrange(len(CATALOG) * 3))
        lines.append({**product, "quantity": rng.randrange(1, 3), "position": position + 1})
    subtotal = round(sum(p["price"] * p["quantity"] for p in lines), 2)
    return {
        "order_id": f"ORD-{rng.randrange(10**7, 10**8)}",
        "affiliation": "Example Shop",
        "total": round(subtotal + 5.99, 2),
        "revenue": subtotal,
        "shipping": 5.99,
        "tax": round(subtotal * 0.08, 2),
        "currency": "USD",
        "products": lines,
    }


def _python_events(rng: random.Random, visitors: list[Visitor], count: int, when: datetime) -> list[dict[str, Any]]:
    """Server-side events as the official analytics-python SDK builds them (its own message code, not sent)."""
    from segment.analytics.client import Client

    sdk = Client("wk_placeholder", send=False, sync_mode=True)
    out: list[dict[str, Any]] = []
    for index in range(count):
        visitor = rng.choice(visitors)
        user_id = visitor.user_id or f"usr_{rng.getrandbits(48):012x}"
        message_id = f"{TAG}-{index:03x}"  # analytics-python sends uuid4 strings: 36 characters, like this
        moment = when + timedelta(milliseconds=index * 37)
        roll = rng.random()
        if roll < 0.40:
            traits = {
                "email": f"{visitor.first.lower()}.{visitor.last.lower()}@example.com",
                "name": f"{visitor.first} {visitor.last}",
                "plan": visitor.plan,
            }
            _, msg = sdk.identify(user_id, traits, timestamp=moment, message_id=message_id)
        elif roll < 0.75:
            _, msg = sdk.track(user_id, "Order Completed", _order(rng), timestamp=moment, message_id=message_id)
        else:
            product = _product(rng.randrange(len(CATALOG) * 3))
            properties = {**product, "cart_id": f"cart_{rng.getrandbits(40):010x}", "quantity": 1, "currency": "USD"}
            _, msg = sdk.track(user_id, "Product Added", properties, timestamp=moment, message_id=message_id)
        out.append(json.loads(json.dumps(msg, default=str)))
    return out


@dataclass
class Corpus:
    """Request body templates (100 events each, ids carrying `TAG`) and their decoded form."""

    bodies: list[bytes]
    decoded: list[dict[str, Any]]
    sdk: list[str]


def build_corpus(write_key: str, templates: int = 24, seed: int = 7) -> Corpus:
    """Three in four bodies from analytics.js (browsers), one in four from analytics-python (a backend)."""
    rng = random.Random(seed)
    visitors = [_visitor(rng) for _ in range(400)]
    start = datetime.now(UTC) - timedelta(minutes=5)
    bodies, decoded, sdks = [], [], []
    for number in range(templates):
        when = start + timedelta(seconds=number)
        if number % 4 == 3:
            events = _python_events(rng, visitors, EVENTS_PER_REQUEST, when)
            body: dict[str, Any] = {"batch": events, "sentAt": _ms(datetime.now(UTC)), "writeKey": write_key}
            sdks.append("analytics-python")
        else:
            events = []
            for index in range(EVENTS_PER_REQUEST):
                visitor = rng.choice(visitors)
                event = _ajs_event(rng, visitor, index, when + timedelta(milliseconds=index * 53))
                event["writeKey"] = write_key
                events.append(event)
            body = {"batch": events, "sentAt": _ms(datetime.now(UTC))}
            sdks.append("analytics.js")
        decoded.append(body)
        bodies.append(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode())
    return Corpus(bodies, decoded, sdks)


def fresh_body(template: bytes) -> bytes:
    return template.replace(TAG_BYTES, uuid.uuid4().hex.encode())
