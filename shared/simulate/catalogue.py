"""The simulated shop: its catalogue, campaigns, coupons, personas and the names and browsers of its shoppers.

Plain data: changing any of it changes what every seed generates (benchmarks compare runs of the same seed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SHOP = "https://shop.example"
LIBRARY = {"name": "footfall-simulator", "version": "1.0"}


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
