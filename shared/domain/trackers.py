"""What the official tracking SDKs fetch before they send, and the hint for a request on a route we do not know.

analytics.js 2.0 reads `{cdnURL}/v1/projects/{writeKey}/settings`; RudderStack's JS SDK v3 reads
`{configUrl}/sourceConfig/?writeKey=…`. Footfall answers both with settings that send every event to this
collector and nothing anywhere else: no destinations, no remote plugins, no middleware, no metrics.
"""

from __future__ import annotations

from typing import Any

SEGMENT_CALLS = ("track", "identify", "page", "screen", "group", "alias", "batch")
ABBREVIATED_CALLS = {call[0] if call != "batch" else "b": call for call in SEGMENT_CALLS}
"""analytics.js posts to `/v1/t`, `/v1/i`, `/v1/p`…; Segment's mobile SDKs post batches to `/v1/b`."""


def segment_settings(write_key: str, *, api_host: str, protocol: str) -> dict[str, Any]:
    """analytics.js 2.0's CDN settings: the Segment.io destination pointed at `protocol://api_host` only."""
    return {
        "integrations": {
            "Segment.io": {
                "apiKey": write_key,
                "apiHost": api_host,
                "protocol": protocol,
                "addBundledMetadata": True,
                "unbundledIntegrations": [],
                "maybeBundledConfigIds": {},
            }
        },
        "plan": {"track": {"__default": {"enabled": True, "integrations": {}}}},
        "edgeFunction": {},
        "analyticsNextEnabled": True,
        "middlewareSettings": {},
        "enabledMiddleware": {},
        "metrics": {"sampleRate": 0},
        "legacyVideoPluginsEnabled": False,
        "remotePlugins": [],
    }


def rudder_source_config(source_id: str, name: str) -> dict[str, Any]:
    """RudderStack JS SDK v3's `sourceConfig`: an enabled source with no destinations and no stats collection."""
    return {
        "isHosted": False,
        "source": {
            "id": source_id,
            "name": name,
            "enabled": True,
            "workspaceId": "footfall",
            "config": {"statsCollection": {"errors": {"enabled": False}, "metrics": {"enabled": False}}},
            "destinations": [],
        },
    }


def route_hint(method: str, path: str, collector_url: str) -> str:
    """What a client on an unknown route probably meant, and the SDK setting that fixes it.

    Business rule: a misconfigured SDK must be visible to the operator, so the hint names the setting.
    """
    lowered = path.lower().rstrip("/")
    last = lowered.rsplit("/", 1)[-1]
    if "sourceconfig" in lowered:
        return f"RudderStack's source config is {collector_url}/sourceConfig: set configUrl to {collector_url}"
    if "/projects/" in lowered and last == "settings":
        return f"analytics.js reads {collector_url}/v1/projects/<writeKey>/settings: set cdnURL to {collector_url}"
    if "snowplow" in lowered or last == "tp2":
        return f"Snowplow: set the tracker's collector URL to {collector_url}/snowplow/<writeKey>"
    call = ABBREVIATED_CALLS.get(last, last if last in SEGMENT_CALLS else None)
    if call is not None:
        return f"did you mean {method} /v1/{call}? set apiHost to {collector_url.split('://', 1)[-1]}/v1"
    return (
        "known routes: POST /v1/{track,identify,page,screen,group,alias,batch} (or /v1/t|i|p|s|g|a|b), "
        "GET /v1/pixel/{track,page}, /snowplow/<writeKey>/…; see the README's 'Track your website'"
    )
