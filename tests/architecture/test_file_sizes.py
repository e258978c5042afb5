"""No Python file of the product is over 500 lines (#17): a module that long mixes concerns; split it along its
seams (as benchmarks/meter.py was into benchmarks/dynamo_meter/)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("shared", "functions", "tui", "benchmarks", "infra")
MAX_LINES = 500


def product_files(root: Path) -> Iterator[Path]:
    """Every .py file under the product's folders of `root`; hidden folders (build output such as `.aws-sam`,
    `benchmarks/.work`) and node_modules hold nothing of ours."""
    for folder in PRODUCT:
        for path in sorted((root / folder).rglob("*.py")):
            parts = path.relative_to(root).parts
            if not any(part.startswith(".") or part == "node_modules" for part in parts):
                yield path


def oversized(root: Path, limit: int = MAX_LINES) -> dict[str, int]:
    """The product's files over `limit` lines: path relative to `root` → its line count."""
    found = {}
    for path in product_files(root):
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > limit:
            found[path.relative_to(root).as_posix()] = lines
    return found


def test_no_product_python_file_is_over_500_lines():
    # The check sees the product (a wrong root or folder name would pass vacuously)
    seen = {path.relative_to(ROOT).as_posix() for path in product_files(ROOT)}
    assert {"shared/services/segments.py", "functions/collect/handler.py", "tui/app.py", "benchmarks/meter.py"} <= seen
    offenders = oversized(ROOT)
    assert not offenders, f"over {MAX_LINES} lines, split them along their seams: " + ", ".join(
        f"{path} ({lines})" for path, lines in sorted(offenders.items())
    )


def test_the_size_check_names_a_501_line_file_and_nothing_else(tmp_path: Path):
    # Given a 501-line module and a 500-line one in the product, and long files where the product is not
    def write(relative: str, lines: int) -> None:
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"x{n} = {n}\n" for n in range(lines)), encoding="utf-8")

    write("shared/storage/long.py", 501)
    write("tui/at_the_limit.py", 500)
    write("tests/long_test.py", 900)
    write("infra/.aws-sam/build/generated.py", 900)
    write("benchmarks/notes.txt", 900)
    # When the check runs on it, Then it names the 501-line module alone, with its length
    assert oversized(tmp_path) == {"shared/storage/long.py": 501}
