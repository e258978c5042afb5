"""Every silenced type error says why: `# type: ignore[code]  # reason` (mypy checks the code is still needed:
strict mode warns about unused ignores; this checks the reason is there)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TYPED = ("shared", "functions")
IGNORE = re.compile(r"#\s*type:\s*ignore(?P<codes>\[[a-z, -]+\])?(?P<rest>.*)$")


def unexplained_ignores() -> list[str]:
    found = []
    for folder in TYPED:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for number, line in enumerate(path.read_text().splitlines(), start=1):
                match = IGNORE.search(line)
                if match is None:
                    continue
                reason = match["rest"].strip().lstrip("#").strip()
                if not match["codes"] or len(reason.split()) < 3:
                    found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    return found


def test_every_type_ignore_names_its_error_code_and_says_why():
    assert unexplained_ignores() == []


def test_the_check_finds_an_unexplained_ignore(tmp_path, monkeypatch):
    # Given a module with a bare ignore and one with a code but no reason, beside an explained one
    module = tmp_path / "shared" / "m.py"
    module.parent.mkdir()
    module.write_text(
        "a = f()  # type: ignore\n"
        "b = g()  # type: ignore[attr-defined]\n"
        "c = h()  # type: ignore[no-any-return]  # boto3's answers are untyped dicts\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    # Then the first two are reported, the third is not
    assert [entry.split(":")[1] for entry in unexplained_ignores()] == ["1", "2"]
