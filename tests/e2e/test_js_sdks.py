"""The tracking code websites already run, from npm, unchanged but for its host settings, against `footfall serve`.

In headless Chromium: analytics.js 2.0 (`@segment/analytics-next`), RudderStack JS v3 (`@rudderstack/analytics-js`)
and Snowplow's browser tracker; in Node: `@segment/analytics-node` and `@rudderstack/rudder-sdk-node`. The versions
are pinned in tests/e2e/sdk/package-lock.json (`make test` runs `npm ci`). The pages and the SDK bundles are served
from their own origin, so every call to the collector is cross-origin, as on a real site. The settings used here are
the README's "Track your website" settings.
"""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.services.customers import find_customer
from tests.builders import random_ref
from tests.e2e.conftest import LocalStack, free_port
from tests.e2e.test_browser import _browser, _eventually  # skips (or fails in CI) without chromium

pytestmark = pytest.mark.e2e

SDK_DIR = Path(__file__).parent / "sdk"
WAIT = 60.0
"""Generous overall bound for an event to be stored and processed on a loaded 2-core machine."""


@pytest.fixture(scope="module")
def node_modules() -> Path:
    """The pinned SDKs (`npm ci`, once; `make test` has usually done it already)."""
    modules = SDK_DIR / "node_modules"
    lock = SDK_DIR / "package-lock.json"
    stamp = modules / ".package-lock.json"
    if not stamp.exists() or stamp.stat().st_mtime < lock.stat().st_mtime:
        npm = shutil.which("npm")
        assert npm, "npm is required (apt-get install nodejs npm)"
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=SDK_DIR, check=True, timeout=600)
    return modules


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """One `footfall serve` for the whole module (each test uses its own identities)."""
    stack = LocalStack(data_dir=tmp_path_factory.mktemp("sdk-stack") / "data", port=free_port())
    stack.start()
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, node_modules: Path) -> Iterator[tuple[str, Path]]:
    """A web server on another origin serving the test pages and `/sdk/…` = tests/e2e/sdk/node_modules."""
    root = tmp_path_factory.mktemp("site")
    (root / "sdk").symlink_to(node_modules)
    (root / "away.html").write_text("<!doctype html><title>Away</title><p>no tracker here</p>")
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", root
    server.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def _page(root: Path, name: str, head: str, body: str = "") -> str:
    (root / name).write_text(
        f"<!doctype html><html><head><title>Shoe shop</title>{head}</head><body><h1>Shoes</h1>{body}"
        '<a id="away" href="/away.html">away</a></body></html>'
    )
    return name


def _run_in_browser(
    tmp_path: Path, url: str, script: str, *, leave: bool = False, until: Callable[[Any], Any] | None = None
) -> Any:
    """Open `url`, run an async `script` (its result is returned), leave the page or stay `until(result)` holds.

    Staying matters: an SDK still sending when the browser quits would lose events no site visitor would lose.
    """
    browser = _browser(tmp_path)
    try:
        browser.set_script_timeout(30)
        browser.get(url)
        result = browser.execute_async_script(script)
        if leave:
            browser.execute_script("document.getElementById('away').click()")
            _eventually(lambda: browser.title == "Away")
        if until is not None and isinstance(result, dict) and "error" not in result:
            _eventually(lambda: until(result), timeout=WAIT)
        console = [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
        return result, console
    finally:
        browser.quit()


def _stored(stack: LocalStack, kind: str, identifier: str, expected: set[str]) -> dict[str, Any]:
    """The events stored for one identity, by name, once all `expected` names are there (polls)."""

    def found() -> dict[str, Any]:
        events = {e.event or str(e.type): e for e in stack.events(kind, identifier)}
        return events if expected <= set(events) else {}

    return _eventually(found, timeout=WAIT) or {e.event or str(e.type): e for e in stack.events(kind, identifier)}


def _stored_count(stack: LocalStack, user_id: str) -> int:
    return len(stack.events("u", user_id))


def _one_customer(stack: LocalStack, user_id: str, identities: set[str], events: int) -> Any:
    """The customer profile of `user_id` once processing has merged `identities` and counted `events`."""

    def customer() -> Any:
        found = find_customer(stack.store(), user_id)
        if found and identities <= set(found.profile.identities) and sum(found.profile.event_counts.values()) >= events:
            return found
        return None

    merged = _eventually(customer, timeout=WAIT)
    assert merged is not None, f"{user_id}: {find_customer(stack.store(), user_id)}"
    return merged.profile


# --- analytics.js 2.0 ----------------------------------------------------------------------------------------------

SEGMENT_LOAD = (
    '<script src="/sdk/@segment/analytics-next/dist/umd/index.js"></script>'
    "<script>window.analytics = AnalyticsNext.AnalyticsBrowser.load("
    '{{writeKey: "{key}", cdnURL: "{collector}"}}{options});</script>'
)
SEGMENT_BATCHING = (
    ', {integrations: {"Segment.io": {deliveryStrategy: {strategy: "batching", config: {size: 50, timeout: 600000}}}}}'
)


def test_analytics_js_page_identify_track_are_stored_under_one_customer(stack, site, tmp_path):
    # Given a page with analytics.js 2.0 whose only Footfall setting is cdnURL (apiHost comes from the settings)
    base, root = site
    user = random_ref("ajs-user")
    head = SEGMENT_LOAD.format(key=stack.write_key, collector=stack.info.collector_url, options="")
    page = _page(root, "segment.html", head)
    # When the page is viewed, the visitor browses, then signs in and orders
    script = f"""
        const done = arguments[arguments.length - 1];
        (async () => {{
          await analytics.page();
          await analytics.track("Product Viewed", {{product_id: "shoe-1", price: 59.5}});
          await analytics.identify("{user}", {{plan: "pro"}});
          const ctx = await analytics.track("Order Completed", {{order_id: "o-1", revenue: 59.5}});
          const [instance] = await analytics;
          done({{anonymousId: instance.user().anonymousId(), failed: ctx.failedDelivery() || null}});
        }})().catch((e) => done({{error: String(e)}}));
    """
    result, console = _run_in_browser(tmp_path, f"{base}/{page}", script)
    # Then the SDK saw every call delivered, and each is stored with the right identities
    assert result.get("failed") is None and "error" not in result, (result, console)
    anonymous_id = result["anonymousId"]
    by_name = _stored(stack, "a", anonymous_id, {"page", "Product Viewed"}) | _stored(
        stack, "u", user, {"identify", "Order Completed"}
    )
    assert set(by_name) == {"page", "Product Viewed", "identify", "Order Completed"}
    assert {e.anonymous_id for e in by_name.values()} == {anonymous_id}
    assert by_name["identify"].traits == {"plan": "pro"} and by_name["Order Completed"].user_id == user
    assert by_name["page"].context["page"]["path"] == "/segment.html"
    assert by_name["page"].context["library"]["name"] == "analytics.js"
    profile = _one_customer(stack, user, {f"a:{anonymous_id}", f"u:{user}"}, 4)
    assert profile.traits == {"plan": "pro"}


def test_analytics_js_batches_and_delivers_them_when_the_page_unloads(stack, site, tmp_path):
    # Given analytics.js batching (a batch is sent only when 50 events are queued, or the page goes away)
    base, root = site
    options = SEGMENT_BATCHING
    head = SEGMENT_LOAD.format(key=stack.write_key, collector=stack.info.collector_url, options=options)
    page = _page(root, "segment-batch.html", head)
    script = """
        const done = arguments[arguments.length - 1];
        (async () => {
          const [instance] = await analytics;
          analytics.track("Product Added", {product_id: "shoe-1", cart_id: "c-1"});
          analytics.track("Checkout Started", {cart_id: "c-1"});
          done({anonymousId: instance.user().anonymousId()});
        })().catch((e) => done({error: String(e)}));
    """
    # When the visitor adds to cart and leaves at once (the batch goes out with keepalive on pagehide)
    result, console = _run_in_browser(tmp_path, f"{base}/{page}", script, leave=True)
    # Then both events arrived, in one /v1/b batch
    assert "error" not in result, (result, console)
    by_name = _stored(stack, "a", result["anonymousId"], {"Product Added", "Checkout Started"})
    assert set(by_name) >= {"Product Added", "Checkout Started"}
    assert by_name["Product Added"].properties["cart_id"] == "c-1"


# --- RudderStack JS v3 ---------------------------------------------------------------------------------------------

RUDDER_LOAD = (
    '<script src="/sdk/@rudderstack/analytics-js/dist/npm/modern/bundled/umd/index.js"></script>'
    "<script>window.rs = new rudderanalytics.RudderAnalytics();"
    'rs.load("{key}", "{collector}", {{configUrl: "{collector}"{options}}});</script>'
)


@pytest.mark.parametrize("beacon", [False, True], ids=["xhr", "beacon-on-unload"])
def test_rudderstack_js_v3_events_are_stored_under_one_customer(stack, site, tmp_path, beacon):
    # Given RudderStack's JS SDK (the bundled build: no plugin is fetched from its CDN) with configUrl = the collector
    base, root = site
    user = random_ref("rs-user")
    options = ", useBeacon: true" if beacon else ""
    head = RUDDER_LOAD.format(key=stack.write_key, collector=stack.info.collector_url, options=options)
    page = _page(root, f"rudder-{beacon}.html", head)
    script = f"""
        const done = arguments[arguments.length - 1];
        rs.ready(() => {{
          rs.page("Shop", "Shoes");
          rs.track("Product Viewed", {{product_id: "shoe-1"}});
          rs.identify("{user}", {{plan: "pro"}});
          rs.track("Order Completed", {{order_id: "o-2", revenue: 20}});
          done({{anonymousId: rs.getAnonymousId()}});
        }});
    """

    # When the visitor browses, signs in, orders (and, with the beacon, leaves the page at once)
    def delivered(result: dict[str, Any]) -> bool:
        return len(stack.events("a", result["anonymousId"])) + len(stack.events("u", user)) >= 4

    result, console = _run_in_browser(tmp_path, f"{base}/{page}", script, leave=beacon, until=delivered)
    # Then every event is stored with the right identities, and they make one customer
    anonymous_id = result["anonymousId"]
    by_name = _stored(stack, "a", anonymous_id, {"page", "Product Viewed"}) | _stored(
        stack, "u", user, {"identify", "Order Completed"}
    )
    assert set(by_name) == {"page", "Product Viewed", "identify", "Order Completed"}, console
    assert {e.anonymous_id for e in by_name.values()} == {anonymous_id}
    assert by_name["identify"].traits == {"plan": "pro"} and by_name["Order Completed"].user_id == user
    assert by_name["page"].context["library"]["name"] == "RudderLabs JavaScript SDK"
    _one_customer(stack, user, {f"a:{anonymous_id}", f"u:{user}"}, 4)


# --- Snowplow ------------------------------------------------------------------------------------------------------

SNOWPLOW_LOAD = (
    '<script src="/sdk/@snowplow/browser-tracker/dist/index.umd.min.js"></script>'
    "<script>snowplowBrowserTracking.newTracker('sp', '{collector}/snowplow/{key}', "
    "{{appId: 'shop', credentials: 'omit'}});</script>"
)


def test_snowplow_browser_tracker_events_are_stored_under_one_customer(stack, site, tmp_path):
    # Given Snowplow's browser tracker whose collector URL is the collector + /snowplow/<write key>
    base, root = site
    user = random_ref("sp-user")
    head = SNOWPLOW_LOAD.format(key=stack.write_key, collector=stack.info.collector_url)
    page = _page(root, "snowplow.html", head)
    script = f"""
        const done = arguments[arguments.length - 1];
        const sp = snowplowBrowserTracking;
        sp.trackPageView();
        sp.setUserId("{user}");
        sp.trackStructEvent({{category: "shop", action: "Add To Cart", label: "shoe-1", value: 59.5}});
        sp.trackSelfDescribingEvent({{event: {{schema: "iglu:com.acme/checkout_step/jsonschema/1-0-0",
                                              data: {{step: 2}}}}}});
        sp.flushBuffer();
        done({{}});
    """
    _, console = _run_in_browser(tmp_path, f"{base}/{page}", script, until=lambda _: _stored_count(stack, user) >= 2)
    # Then the page view is the browser's, the later events the signed-in person's, all one customer
    by_name = _stored(stack, "u", user, {"Add To Cart", "com.acme/checkout_step"})
    assert set(by_name) == {"Add To Cart", "com.acme/checkout_step"}, console
    anonymous_id = by_name["Add To Cart"].anonymous_id
    assert anonymous_id and {e.anonymous_id for e in by_name.values()} == {anonymous_id}
    assert by_name["Add To Cart"].properties == {
        "category": "shop",
        "action": "Add To Cart",
        "label": "shoe-1",
        "value": 59.5,
    }
    assert by_name["com.acme/checkout_step"].properties == {"step": 2}
    pages = _stored(stack, "a", anonymous_id, {"page"})
    assert pages["page"].context["page"]["path"] == "/snowplow.html" and pages["page"].name == "Shoe shop"
    _one_customer(stack, user, {f"a:{anonymous_id}", f"u:{user}"}, 3)


# --- Node SDKs -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sdk", ["segment", "rudder"])
def test_node_sdks_events_are_stored_under_one_customer(stack, node_modules, sdk):
    # Given @segment/analytics-node or @rudderstack/rudder-sdk-node with host/dataPlaneUrl = the collector
    run = random_ref("run")
    node = shutil.which("node")
    assert node, "node is required"
    # When a script pages, tracks, identifies and orders, then flushes
    done = subprocess.run(
        [node, str(SDK_DIR / "node_sdks.cjs"), sdk, stack.info.collector_url, stack.write_key, run],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    sent = json.loads(done.stdout.strip().splitlines()[-1])
    # Then each call is stored once under its message id, and they are one customer
    by_name = _stored(stack, "a", sent["anonymousId"], {"page", "Product Viewed"}) | _stored(
        stack, "u", sent["userId"], {"identify", "Order Completed"}
    )
    assert sorted(e.message_id for e in by_name.values()) == sorted(sent["sent"])
    assert by_name["Order Completed"].properties["revenue"] == 42.5
    _one_customer(stack, sent["userId"], {f"a:{sent['anonymousId']}", f"u:{sent['userId']}"}, 4)
