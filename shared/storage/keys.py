"""Key builders for Footfall's single table. The only place that knows key formats.

| access pattern                            | key condition (all on the table itself)                      |
|-------------------------------------------|--------------------------------------------------------------|
| store an event, de-duplicated exactly     | PK = `ID#<u|a>#<id>`, SK = `EVT#<source>#<messageId>`         |
| events of one identity (user/anonymous)   | PK = `ID#<u|a>#<id>`, SK begins_with `EVT#`                   |
| a source by id / all sources              | PK = `SOURCES`, SK = `SOURCE#<id>` / begins_with `SOURCE#`    |
| a source by write key                     | PK = `WRITEKEY#<sha256>`, SK = `WRITEKEY`                     |
| failed events of a day, newest first      | PK = `FAILED#<yyyy-mm-dd>`, SK begins_with `FAILED#`, desc.   |
| a failed event by id `<day>.<time>.<rnd>` | PK = `FAILED#<day>`, SK = `FAILED#<time>#<rnd>`               |
| the days that have failed events          | PK = `FAILEDDAYS`, SK = `<yyyy-mm-dd>`                        |
| the customer an identity belongs to       | PK = `ID#<u|a>#<id>`, SK = `CUSTOMER`                         |
| an erased identity (no more events)       | PK = `IDH#<identity hash>`, SK = `FORGOTTEN` (before: `ID#…`) |
| the erasure epoch (bumped by each forget) | PK = `ERASURE`, SK = `EPOCH` (`storage.suppression`)          |
| the table's schema version (`migrate`)    | PK = `META`, SK = `SCHEMA` (`storage.migrate`)                |
| items elsewhere that name an identity      | PK = `IDH#<identity hash>`, SK = `NAMED#…` (`storage.erasure`)|
| a customer's profile                      | PK = `CUSTOMER#<customer id>`, SK = `PROFILE`                 |
| all customers (paged, 16 shards)          | GSI1: GSI1PK = `CUSTOMERS#<shard>`, GSI1SK = `<customer id>`  |

Why events are keyed by message id and not by time: the de-duplication key must be derived from the
message alone (a retried request has a different `receivedAt`, hence a different corrected time), and a
conditional put on that key de-duplicates with the one write that stores the event. Identity partitions
are immutable: identity stitching links partitions, it never rewrites events.

GSI1 (`GSI1PK`, `GSI1SK`, keys only) lists customers and, later, segment members; events never carry its
attributes, so storing an event writes no index.
"""

from __future__ import annotations

import hashlib
import zlib
from datetime import datetime

SEPARATOR = "#"
SOURCES_PK = "SOURCES"
WRITE_KEY_SK = "WRITEKEY"


def identity_pk(kind: str, identifier: str) -> str:
    """Partition of one identity: `kind` is `u` (userId) or `a` (anonymousId)."""
    if kind not in ("u", "a"):
        raise ValueError(f"identity kind must be 'u' or 'a', not {kind!r}")
    return f"ID#{kind}#{identifier}"


def parse_identity_pk(pk: str) -> tuple[str, str]:
    """Inverse of `identity_pk`."""
    prefix, kind, identifier = pk.split(SEPARATOR, 2)
    if prefix != "ID":
        raise ValueError(f"not an identity key: {pk!r}")
    return kind, identifier


def event_sk(source_id: str, message_id: str) -> str:
    """Sort key of an event: with the identity partition, the de-duplication key (identity, source, messageId)."""
    return f"EVT#{source_id}#{message_id}"


def parse_event_sk(sk: str) -> tuple[str, str]:
    """Inverse of `event_sk`: `(source_id, message_id)` (message ids may contain `#`)."""
    prefix, source_id, message_id = sk.split(SEPARATOR, 2)
    if prefix != "EVT":
        raise ValueError(f"not an event key: {sk!r}")
    return source_id, message_id


EVENT_SK_PREFIX = "EVT#"


def source_sk(source_id: str) -> str:
    """Sort key of a source under the `SOURCES` partition."""
    return f"SOURCE#{source_id}"


SOURCE_SK_PREFIX = "SOURCE#"


def write_key_pk(write_key_hash: str) -> str:
    """Partition of a write-key lookup item."""
    return f"WRITEKEY#{write_key_hash}"


SECRET_PARTITIONS = (SOURCES_PK, write_key_pk("*"))
"""Partition keys (IAM `dynamodb:LeadingKeys` patterns) of the items holding source secrets: write-key hashes,
link and webhook secrets. Only the collect role (and operators) may read them; infra/template.yaml denies them
to the process and schedule roles, and tests/infra/test_iam.py checks that the two lists agree."""


def failed_key(failure_id: str) -> tuple[str, str]:
    """`(PK, SK)` of a failed event from its id (`shared.domain.failures.new_failure_id`).

    Raises:
        ValueError: when the id is not one `failed_id` makes.
    """
    day, moment, suffix = failure_id.split(".", 2)
    datetime.strptime(day, "%Y-%m-%d")
    if not (moment.isdigit() and len(moment) == 12 and suffix):
        raise ValueError(f"not a failed-event id: {failure_id!r}")
    return failed_pk(day), f"FAILED#{moment}#{suffix}"


def failed_pk(day: str) -> str:
    """Partition of one day's failed events."""
    return f"FAILED#{day}"


FAILED_SK_PREFIX = "FAILED#"


LINK_SK = "CUSTOMER"
FORGOTTEN_SK = "FORGOTTEN"
"""In an identity's partition: the identity was erased on request; events for it are not stored again."""
PROFILE_SK = "PROFILE"
PROFILE_ENTITY = "profile"
"""The customer item (`CUSTOMER#<cid>` / `PROFILE`): profile, analytics cells, due moments, in one item."""
ERASURE_PK = "ERASURE"
EPOCH_SK = "EPOCH"
"""One item: a counter every forget raises after writing its suppression marks (`storage.suppression`)."""
META_PK = "META"
SCHEMA_SK = "SCHEMA"
"""One item: the schema version of the table's items (`storage.migrate`)."""


IDENTITY_HASH_SALT = b"footfall/identity/v1\x00"
NAMED_SK_PREFIX = "NAMED#"
NAMED_ENTITY = "named"
"""The `entity` of the index items in an identity's partition that point at items naming it elsewhere."""


def identity_hash(identity: str) -> str:
    """SHA-256 of an identity key (`u:…`/`a:…`), salted with a constant: what is kept of an erased identity."""
    return hashlib.sha256(IDENTITY_HASH_SALT + identity.encode("utf-8", "surrogatepass")).hexdigest()


def identity_hash_pk(identity: str) -> str:
    """Partition of an identity known by its hash only: its suppression mark and the index of items naming it
    (any length of id fits: the key is the hash)."""
    return f"IDH#{identity_hash(identity)}"


def customer_pk(customer_id: str) -> str:
    """Partition of a customer (its profile)."""
    return f"CUSTOMER#{customer_id}"


def customers_gsi_pk(shard: int) -> str:
    """GSI1 partition listing one shard of the customers."""
    return f"CUSTOMERS#{shard:02d}"


def shard_of(value: str, shards: int) -> int:
    """A stable shard number for a string (CRC-32, the same in every process)."""
    return zlib.crc32(value.encode("utf-8", "surrogatepass")) % shards
