"""The `footfall` command: one module per command group, `main` parses and dispatches, `render` prints.

main.py       the parser (every group adds its commands) and the exit codes
options.py    the connection arguments, `--json`, `CliError` and argument helpers the groups share
render.py     the one renderer: each result as text, or its `--json` serialisation
stack.py      serve, demo, simulate, tui; migrate, export, import (the local stack and its table)
sources.py    sources add|list|rotate-secret|rotate-key|remove, links sign
failed.py     failed list|show|replay
customers.py  customers list|show, forget
segments.py   segments apply|plan|list|members|history|explain
analytics.py  funnels apply|list|show, retention, timing
deploy.py     deploy (shared/deploy.py owns it)
"""

from shared.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
