"""`footfall deploy`: the command group is `shared.deploy`'s, which owns its options and errors."""

from __future__ import annotations

from typing import Any


def add_deploy(commands: Any) -> None:
    """`footfall deploy [--stack NAME] …` (see shared/deploy.py)."""
    from shared.deploy import add_parser

    add_parser(commands)
