"""Settings from the environment: read once at cold start and passed down. The only reader of `os.environ`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from shared.domain.errors import ConfigurationError

PREFIX = "FOOTFALL_"


@dataclass(frozen=True)
class Settings:
    """Runtime configuration shared by the Lambdas and the local stack."""

    table_name: str
    """DynamoDB table holding everything (`FOOTFALL_TABLE_NAME`)."""
    dynamodb_endpoint: str | None = None
    """Endpoint of a DynamoDB-compatible server (local stack); unset on AWS (`FOOTFALL_DYNAMODB_ENDPOINT`)."""
    event_retention_days: int = 400
    """Days raw events are kept (TTL). It is also the de-duplication window, which must be at least 30 days
    (`FOOTFALL_EVENT_RETENTION_DAYS`)."""
    failed_retention_days: int = 30
    """Days failed-event records are kept (`FOOTFALL_FAILED_RETENTION_DAYS`)."""
    source_cache_seconds: float = 30.0
    """How long a warm collector trusts a cached source or write key (`FOOTFALL_SOURCE_CACHE_SECONDS`)."""
    cors_origins: tuple[str, ...] = ("*",)
    """Origins allowed to call the API from browsers, comma-separated (`FOOTFALL_CORS_ORIGINS`)."""
    outbox_path: str | None = None
    """Local mode: a JSON-lines file receiving `Audience Entered/Exited` events (`FOOTFALL_OUTBOX_PATH`)."""
    outbox_webhook_url: str | None = None
    """Optional: also POST audience events there, signed with `FOOTFALL_OUTBOX_WEBHOOK_SECRET`
    (`FOOTFALL_OUTBOX_WEBHOOK_URL`)."""
    outbox_webhook_secret: str | None = None
    """The HMAC secret of the audience webhook (`FOOTFALL_OUTBOX_WEBHOOK_SECRET`)."""
    event_bus: str | None = None
    """AWS: the EventBridge bus receiving `Audience Entered/Exited` events (`FOOTFALL_EVENT_BUS`)."""

    @property
    def event_retention(self) -> timedelta:
        """Event retention as a duration."""
        return timedelta(days=self.event_retention_days)

    @property
    def failed_retention(self) -> timedelta:
        """Failed-event retention as a duration."""
        return timedelta(days=self.failed_retention_days)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        """Read settings, reporting every missing or invalid variable in one error.

        Raises:
            ConfigurationError: listing all problems.
        """
        problems: list[str] = []

        def number(name: str, default: float, minimum: float, kind: type = int) -> float:
            raw = env.get(PREFIX + name)
            if raw is None or raw == "":
                return default
            try:
                value: float = kind(raw)  # int or float
            except ValueError:
                problems.append(f"{PREFIX}{name} must be a number, not {raw!r}")
                return default
            if value < minimum:
                problems.append(f"{PREFIX}{name} must be at least {minimum}")
            return value

        table = env.get(PREFIX + "TABLE_NAME", "").strip()
        if not table:
            problems.append(f"{PREFIX}TABLE_NAME is required")
        settings = cls(
            table_name=table,
            dynamodb_endpoint=env.get(PREFIX + "DYNAMODB_ENDPOINT") or None,
            event_retention_days=int(number("EVENT_RETENTION_DAYS", 400, 30)),
            failed_retention_days=int(number("FAILED_RETENTION_DAYS", 30, 1)),
            source_cache_seconds=float(number("SOURCE_CACHE_SECONDS", 30.0, 0.0, float)),
            outbox_path=env.get(PREFIX + "OUTBOX_PATH") or None,
            event_bus=env.get(PREFIX + "EVENT_BUS") or None,
            outbox_webhook_url=env.get(PREFIX + "OUTBOX_WEBHOOK_URL") or None,
            outbox_webhook_secret=env.get(PREFIX + "OUTBOX_WEBHOOK_SECRET") or None,
            cors_origins=tuple(o.strip() for o in env.get(PREFIX + "CORS_ORIGINS", "*").split(",") if o.strip())
            or ("*",),
        )
        if settings.outbox_webhook_url and not settings.outbox_webhook_secret:
            problems.append(f"{PREFIX}OUTBOX_WEBHOOK_SECRET is required with {PREFIX}OUTBOX_WEBHOOK_URL")
        if problems:
            raise ConfigurationError("invalid settings: " + "; ".join(problems))
        return settings
