"""`footfall customers list|show` and `footfall forget`: customer profiles, and their erasure."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from shared.cli import render
from shared.cli.options import CliError, add_data_options
from shared.compose import open_store


def cmd_customers_list(args: argparse.Namespace) -> int:
    from shared.services.customers import customer_summary

    store, _ = open_store(args)
    page = store.list_customers(limit=args.limit, next_token=args.next)
    rows = [customer_summary(stored.profile) for stored in page.items]
    render.emit(args, {"customers": rows, "next": page.next_token}, render.customers)
    return 0


def cmd_customers_show(args: argparse.Namespace) -> int:
    from shared.services.customers import customer_detail, find_customer

    store, _ = open_store(args)
    stored = find_customer(store, args.id)
    if stored is None:
        raise CliError(f"no customer {args.id!r}")
    render.emit(args, customer_detail(store, stored, now=datetime.now(UTC), recent=args.events), render.customer)
    return 0


def cmd_forget(args: argparse.Namespace) -> int:
    from shared.services.customers import forget_customer

    if not args.yes:
        raise CliError(
            f"this erases every event, identity and profile of {args.id!r} and refuses its future "
            "events; run again with --yes"
        )
    store, _ = open_store(args)
    render.emit(args, forget_customer(store, args.id, now=datetime.now(UTC)), render.forgotten(args.id))
    return 0


def add_customers(commands: Any) -> None:
    """`footfall customers list|show`."""
    customers = commands.add_parser("customers", help="customer profiles")
    customer_commands = customers.add_subparsers(dest="customers_command", required=True)
    customers_list = customer_commands.add_parser("list", help="a page of customers")
    customers_list.add_argument("--limit", type=int, default=50)
    customers_list.add_argument("--next", help="page token from the previous page")
    customers_list.set_defaults(func=cmd_customers_list)
    customers_show = customer_commands.add_parser("show", help="one customer: profile, traits, events")
    customers_show.add_argument("id", help="customer id, userId, anonymousId, or u:/a: identity")
    customers_show.add_argument("--events", type=int, default=20, help="recent events to show")
    customers_show.set_defaults(func=cmd_customers_show)
    for sub in (customers_list, customers_show):
        add_data_options(sub)


def add_forget(commands: Any) -> None:
    """`footfall forget ID --yes`."""
    forget = commands.add_parser("forget", help="erase a customer (GDPR) and refuse their future events")
    forget.add_argument("id", help="customer id, userId, anonymousId, or u:/a: identity")
    forget.add_argument("--yes", action="store_true", help="really erase")
    forget.set_defaults(func=cmd_forget)
    add_data_options(forget)
