"""`footfall`: run the local stack and manage sources, links and failed events.

Query commands take `--json`; errors go to stderr with a non-zero exit code. Commands find the local
stack through `--data-dir` (its `serve.json`), or take `--endpoint-url/--table/--region/--profile`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from shared.cli import analytics, customers, deploy, failed, segments, sources, stack
from shared.cli.options import CliError
from shared.ports import StorageError
from shared.storage.sqlite import DamagedDatabaseError


def build_parser() -> argparse.ArgumentParser:
    """Every command, in the order `footfall --help` lists them; each group adds its own."""
    parser = argparse.ArgumentParser(prog="footfall", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for add in (
        stack.add_stack,
        sources.add_sources,
        sources.add_links,
        failed.add_failed,
        customers.add_customers,
        segments.add_segments,
        analytics.add_funnels,
        analytics.add_reports,
        customers.add_forget,
        stack.add_table,
        deploy.add_deploy,
    ):
        add(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `footfall` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (CliError, DamagedDatabaseError) as exc:  # a damaged database file is the operator's to restore
        print(f"footfall: {exc}", file=sys.stderr)
        return 2
    except StorageError as exc:
        print(f"footfall: storage error: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`footfall customers list | head`): no traceback, and nothing more to write to it
        # (Python's own flush at exit would fail again).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
