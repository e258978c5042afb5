"""Traffic simulator: shoppers arriving over days of simulated history, sent through the real HTTP collector.

A developer's tool (`footfall simulate`, `footfall demo`, the benchmarks): it never ships in a Lambda zip
(infra/Makefile leaves it out; tests/infra/test_packaging.py checks).

Generation is pure and deterministic (`generate`, `live`). What each simulated person does (persona, channel,
pages, carts, orders, e-mails) and every message id follow from the seed alone; only timestamps depend on `now`
and `days`. So a second run with the same seed is answered `duplicate` by the collector, whenever it runs.

Who the simulated people are:
- personas: bouncers, browsers, cart abandoners, buyers and big spenders (who reach `heavy_spenders`);
- first visit through organic search or direct (no UTM), a paid ad (`context.campaign`, medium `cpc`), or an
  e-mail to a newsletter subscriber (pixel open, signed click, landing with `utm_medium=email`);
- anonymous browsing, `identify` at sign-up, checkout, login on a second device or landing from an e-mail link,
  so that identity stitching joins every device and the e-mail events into one customer per person;
- returning visits on later days (cart-reminder e-mails bring some abandoners back to buy their cart).

The modules, each importing only those above it:
- `calls`: `SimEvent` (one call, ready to send), its `Route`, `SimulatorError`;
- `catalogue`: the shop (products, campaigns, coupons, personas, names): plain data;
- `shoppers`: a person and their visits, from the seed alone (no time, no I/O);
- `rhythm`: when people act (daily and weekly rhythm), and the generators `generate` (history) and `live` (now);
- `sender`: the collector's HTTP routes (`CollectorClient`), batching, pacing and retries (`send`);
- `main`: a whole run (`run`: history, then live) and the local stack's target (`local_target`).

This package re-exports what the CLI and the benchmarks use; anything else is imported from its module.
"""

from shared.simulate.calls import Route, SimEvent, SimulatorError
from shared.simulate.main import DEFAULT_LIVE_RATE, local_target, run
from shared.simulate.rhythm import generate, live
from shared.simulate.sender import CollectorClient, Stats, Target, send

__all__ = [
    "DEFAULT_LIVE_RATE",
    "CollectorClient",
    "Route",
    "SimEvent",
    "SimulatorError",
    "Stats",
    "Target",
    "generate",
    "live",
    "local_target",
    "run",
    "send",
]
