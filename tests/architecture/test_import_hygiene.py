"""The Lambda code stays lean: no handler imports the local stack, the TUI, the CLI, the simulator or their
dependencies (import-linter checks our own imports statically; this checks what a cold start really loads)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HANDLERS = sorted(
    ".".join(path.relative_to(ROOT).with_suffix("").parts) for path in (ROOT / "functions").glob("*/handler.py")
)
# Third-party packages of the local stack, the TUI and the tests: none is in a Lambda zip.
FOREIGN_PACKAGES = {"moto", "textual", "werkzeug", "flask", "pydantic", "tui"}
# Our own operator tools (infra/Makefile leaves them out of the zips): importing one would fail in a Lambda.
OPERATOR_MODULES = ("shared.cli", "shared.compose", "shared.deploy", "shared.local", "shared.simulate")


def test_every_lambda_function_of_the_repository_is_checked():
    assert HANDLERS == [
        "functions.collect.handler",
        "functions.fold.handler",
        "functions.process.handler",
        "functions.schedule.handler",
    ]


@pytest.mark.parametrize("handler", HANDLERS)
def test_a_handler_imports_no_local_stack_tui_cli_simulator_or_test_dependency(handler: str):
    # Given a clean interpreter with only what the template gives every function
    env = {**os.environ, "FOOTFALL_TABLE_NAME": "t", "AWS_DEFAULT_REGION": "us-east-1"}
    code = f"import sys, json; import {handler}; print(json.dumps(sorted(sys.modules)))"
    # When it imports the handler
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True, cwd=ROOT)
    loaded = set(json.loads(done.stdout))
    # Then the handler is loaded, and nothing of the operator's tools nor of their dependencies
    assert handler in loaded
    assert FOREIGN_PACKAGES.isdisjoint({name.split(".")[0] for name in loaded})
    assert not {name for name in loaded if name.startswith(OPERATOR_MODULES)}


def test_the_oracle_imports_no_product_rule():
    # The audit's oracle must not reuse what it audits: only the event body codec may come from the product.
    import ast
    from pathlib import Path

    oracle = Path(__file__).resolve().parents[1] / "oracle"
    imported: dict[str, set[str]] = {}
    for path in sorted(oracle.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.setdefault(node.module, set()).update(alias.name for alias in node.names)
            elif isinstance(node, ast.Import):
                imported.update({alias.name: set() for alias in node.names})
    product = {module: names for module, names in imported.items() if module.split(".")[0] in ("shared", "functions")}
    assert product == {"shared.storage.items": {"decode_json"}}
