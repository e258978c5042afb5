"""The Lambda code stays lean: no local-stack or TUI dependencies are imported by a handler."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def test_collect_handler_imports_neither_moto_nor_textual_nor_werkzeug():
    env = {**os.environ, "FOOTFALL_TABLE_NAME": "t", "AWS_DEFAULT_REGION": "us-east-1"}
    code = (
        "import sys, json; import functions.collect.handler; "
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    loaded = set(json.loads(done.stdout))
    assert {"moto", "textual", "werkzeug", "flask", "pydantic"}.isdisjoint(loaded)
    assert "functions" in loaded


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
