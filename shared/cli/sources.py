"""`footfall sources …` and `footfall links sign`: write keys, link and webhook secrets, signed click links."""

from __future__ import annotations

import argparse
import json
import re
import secrets
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared.cli import render
from shared.cli.options import CliError, add_data_options, duration, existing_source, pair
from shared.compose import open_store
from shared.domain import links
from shared.domain.errors import TrackingError
from shared.domain.events import format_timestamp
from shared.domain.sources import (
    CLIENT_TRUST,
    DEFAULT_KEY_GRACE,
    TRUST_LEVELS,
    WRITE_KEY_PREFIX,
    Source,
    new_source,
    rotate_secret,
    rotate_write_key,
)
from shared.domain.webhooks import mapping_from_dict

_SOURCE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def source_json(source: Source, *, with_secrets: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": source.id,
        "name": source.name,
        "created_at": format_timestamp(source.created_at),
        "write_key_prefix": source.write_key_prefix,
        "hash_emails": source.hash_emails,
        "trust": source.trust,
        "webhook_mapping": source.webhook_mapping is not None,
    }
    if with_secrets:
        data.update(link_secret=source.link_secrets[0], webhook_secret=source.webhook_secrets[0])
    return data


def cmd_sources_add(args: argparse.Namespace) -> int:
    source_id = args.id or _slug(args.name)
    if not _SOURCE_ID.match(source_id):
        raise CliError("source id must be 1-63 of a-z, 0-9, '_' and '-' (use --id)")
    try:  # the domain refuses reserved ids before anything is read or written
        source, write_key = new_source(
            source_id=source_id, name=args.name, created_at=datetime.now(UTC), token=secrets.token_urlsafe
        )
    except TrackingError as exc:
        raise CliError(str(exc)) from exc
    store, _ = open_store(args)
    if store.get_source(source_id) is not None:
        raise CliError(f"source {source_id!r} exists already")
    mapping = _webhook_mapping(args.webhook_mapping) if args.webhook_mapping else None
    source = replace(source, hash_emails=args.hash_emails, webhook_mapping=mapping, trust=args.trust)
    store.put_source(source, write_keys=[write_key])
    render.emit(args, {**source_json(source, with_secrets=True), "write_key": write_key}, render.new_source)
    return 0


def _webhook_mapping(path: str) -> Any:
    try:
        return mapping_from_dict(json.loads(Path(path).read_text()))
    except (OSError, ValueError, TypeError, TrackingError) as exc:
        raise CliError(f"{path}: {exc}") from exc


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9_-]+", "-", name.lower()).strip("-")[:63]


def cmd_sources_list(args: argparse.Namespace) -> int:
    store, _ = open_store(args)
    render.emit(args, [source_json(source) for source in store.list_sources()], render.sources)
    return 0


def cmd_sources_rotate(args: argparse.Namespace) -> int:
    store, _ = open_store(args)
    source = existing_source(store, args.source)
    rotated = rotate_secret(source, args.kind, "ffs_" + secrets.token_urlsafe(32))
    store.put_source(rotated)
    data = {
        "id": rotated.id,
        "kind": args.kind,
        "secret": getattr(rotated, f"{args.kind}_secrets")[0],
        "still_valid": len(getattr(rotated, f"{args.kind}_secrets")) - 1,
    }
    render.emit(args, data, render.rotated_secret)
    return 0


def cmd_sources_rotate_key(args: argparse.Namespace) -> int:
    store, _ = open_store(args)
    source = existing_source(store, args.source)
    grace = duration(args.grace)
    write_key = WRITE_KEY_PREFIX + secrets.token_urlsafe(24)
    now = datetime.now(UTC)
    try:
        rotated = rotate_write_key(source, write_key, now=now, grace=grace)
    except TrackingError as exc:
        raise CliError(str(exc)) from exc
    store.put_source(rotated, write_keys=[write_key])
    data = {"id": rotated.id, "write_key": write_key, "previous_keys_valid_until": format_timestamp(now + grace)}
    render.emit(args, data, render.rotated_key)
    return 0


def cmd_sources_remove(args: argparse.Namespace) -> int:
    store, _ = open_store(args)
    source = existing_source(store, args.source)
    if not args.yes:
        raise CliError(f"removing {source.id!r} revokes its write key and secrets: pass --yes")
    store.remove_source(source)
    render.emit(args, {"id": source.id, "removed": True}, render.removed_source)
    return 0


def cmd_links_sign(args: argparse.Namespace) -> int:
    store, extra = open_store(args)
    source = existing_source(store, args.source)
    if not (args.user_id or args.anonymous_id):
        raise CliError("a click must be attributable: pass --user-id or --anonymous-id")
    properties = dict(pair(p) for p in args.property)
    expires = datetime.now(UTC) + duration(args.expires_in) if args.expires_in else None
    base = args.base_url or (extra["info"].collector_url if extra["info"] else None)
    if not base:
        raise CliError("pass --base-url (the collector's public URL)")
    try:
        params = links.click_params(
            source_id=source.id,
            target=args.url,
            secret=source.link_secrets[0],
            event=args.event,
            user_id=args.user_id,
            anonymous_id=args.anonymous_id,
            properties=properties,
            expires_at=expires,
        )
    except TrackingError as exc:
        raise CliError(str(exc)) from exc
    render.emit(args, {"url": links.click_url(base, params)}, render.link)
    return 0


def add_sources(commands: Any) -> None:
    """`footfall sources add|list|rotate-secret|rotate-key|remove`."""
    sources = commands.add_parser("sources", help="manage sources (write keys, link and webhook secrets)")
    source_commands = sources.add_subparsers(dest="sources_command", required=True)
    add = source_commands.add_parser("add", help="create a source and print its write key once")
    add.add_argument("name")
    add.add_argument("--id", help="source id (default: from the name)")
    add.add_argument("--hash-emails", action="store_true", help="store e-mail addresses only as SHA-256")
    add.add_argument("--webhook-mapping", help="JSON file mapping this source's webhook payloads to events")
    add.add_argument(
        "--trust",
        choices=TRUST_LEVELS,
        default=CLIENT_TRUST,
        help="client (default: the key is public, in web pages and apps) or server (the key stays on your servers; "
        "only a server source may merge two known users with alias)",
    )
    add.set_defaults(func=cmd_sources_add)
    listing = source_commands.add_parser("list", help="list sources")
    listing.set_defaults(func=cmd_sources_list)
    rotate = source_commands.add_parser("rotate-secret", help="new link or webhook secret; the previous stays valid")
    rotate.add_argument("source")
    rotate.add_argument("--kind", choices=("link", "webhook"), required=True)
    rotate.set_defaults(func=cmd_sources_rotate)
    rotate_key = source_commands.add_parser(
        "rotate-key", help="new write key; the previous ones keep working for the grace period, then never"
    )
    rotate_key.add_argument("source")
    rotate_key.add_argument(
        "--grace", default=f"{int(DEFAULT_KEY_GRACE.total_seconds() // 3600)}h", help="e.g. 0s, 30m, 24h, 7d"
    )
    rotate_key.set_defaults(func=cmd_sources_rotate_key)
    remove = source_commands.add_parser("remove", help="delete a source: its key and secrets stop working")
    remove.add_argument("source")
    remove.add_argument("--yes", action="store_true", help="really remove it")
    remove.set_defaults(func=cmd_sources_remove)
    for sub in (add, listing, rotate, rotate_key, remove):
        add_data_options(sub)


def add_links(commands: Any) -> None:
    """`footfall links sign`."""
    link_parser = commands.add_parser("links", help="signed click-redirect links")
    link_commands = link_parser.add_subparsers(dest="links_command", required=True)
    sign = link_commands.add_parser("sign", help="make a signed /v1/r link")
    sign.add_argument("--source", required=True)
    sign.add_argument("--url", required=True, help="where the click goes")
    sign.add_argument("--event", default=links.DEFAULT_CLICK_EVENT)
    sign.add_argument("--user-id")
    sign.add_argument("--anonymous-id")
    sign.add_argument("--property", action="append", default=[], metavar="KEY=VALUE")
    sign.add_argument("--expires-in", metavar="DURATION", help="e.g. 30d")
    sign.add_argument("--base-url", help="collector URL (default: the local stack's)")
    sign.set_defaults(func=cmd_links_sign)
    add_data_options(sign)
