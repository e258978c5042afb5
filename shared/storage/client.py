"""How the store talks to DynamoDB: `make_client` (AWS, a local endpoint, or the embedded database) and the
`RetryPolicy` for throttled and unprocessed requests."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff with full jitter, for throttling and unprocessed batch items."""

    attempts: int = 8
    base_delay: float = 0.025
    max_delay: float = 1.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    rand: Callable[[], float] = field(default=random.random, repr=False)

    def pause(self, attempt: int) -> None:
        """Sleep before retry number `attempt` (1-based)."""
        self.sleep(self.rand() * min(self.max_delay, self.base_delay * 2**attempt))


def make_client(
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
    profile: str | None = None,
    validate: bool = True,
    credentials: Mapping[str, str] | None = None,
    component: str | None = None,
) -> DynamoDBClient:
    """A DynamoDB client; with `endpoint_url` it talks to moto, DynamoDB Local, LocalStack or Alternator.

    Args:
        validate: botocore's client-side parameter validation; the Lambdas turn it off (about a tenth of the
            collector's CPU), since their requests are built by this module, whose tests run with it on.
        credentials: `aws_access_key_id` and `aws_secret_access_key` to use instead of the session's.
        component: which function makes the requests (`collect`, `process`…), named in their User-Agent as
            `footfall/<component>` (what the cost bench counts round trips by; CloudTrail shows it too).

    An `endpoint_url` of `sqlite:///path` opens the embedded database there (`shared.storage.sqlite`) instead.
    """
    from shared.storage.sqlite import is_sqlite, sqlite_path, sqlite_synchronous

    if is_sqlite(endpoint_url):
        from shared.storage.sqlite.engine import SqliteClient

        endpoint = str(endpoint_url)
        return SqliteClient(  # type: ignore[return-value]  # the part of the client API the store uses, not all
            sqlite_path(endpoint), region=region or "local", synchronous=sqlite_synchronous(endpoint)
        )
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(profile_name=profile, region_name=region)
    options: dict[str, Any] = {
        "retries": {"mode": "standard", "max_attempts": 3},
        "tcp_keepalive": True,
        "max_pool_connections": 32,
        "parameter_validation": validate,
    }
    if component:
        options["user_agent_extra"] = f"footfall/{component}"
    # Account-id endpoints (botocore >= 1.44) are AWS-only hosts: other endpoints must not get them. On AWS
    # botocore's default is kept, so an older botocore (a Lambda runtime's) that lacks the option still works.
    if endpoint_url and "account_id_endpoint_mode" in Config.OPTION_DEFAULTS:
        options["account_id_endpoint_mode"] = "disabled"
    config = Config(**options)
    keys = dict(credentials or {})
    if endpoint_url and not keys and session.get_credentials() is None:
        # Local endpoints (moto, DynamoDB Local) accept any credentials, but botocore insists on having some.
        keys = {"aws_access_key_id": "footfall", "aws_secret_access_key": "footfall"}
    return session.client(
        "dynamodb",
        endpoint_url=endpoint_url,
        config=config,
        aws_access_key_id=keys.get("aws_access_key_id"),
        aws_secret_access_key=keys.get("aws_secret_access_key"),
    )
