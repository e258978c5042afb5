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
