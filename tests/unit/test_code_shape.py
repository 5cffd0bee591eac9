"""The code stays easy to read: small modules, short functions (or a comment saying why not).

STYLE.md rule 7: split by use case before a file grows past a few hundred lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "nesydet"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
# A longer function says why on the line right above its ``def`` (or its decorators).
WHY_LONG = "# Long:"


def _modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if "static" not in p.parts)


def test_the_modules_are_found() -> None:
    assert len(_modules()) > 50


def test_no_module_is_over_400_lines() -> None:
    long = {
        str(p.relative_to(SRC)): n
        for p in _modules()
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}, f"split these modules by use case: {long}"


def test_no_function_is_over_60_lines_without_saying_why() -> None:
    unexplained = []
    for path in _modules():
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            assert node.end_lineno is not None
            length = node.end_lineno - node.lineno + 1
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            above = lines[first - 2].strip() if first >= 2 else ""
            if length > MAX_FUNCTION_LINES and not above.startswith(WHY_LONG):
                unexplained.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name} ({length})")
    assert unexplained == [], "split these functions or say why they are long: " + ", ".join(
        unexplained
    )


def test_the_check_sees_a_long_function(tmp_path: Path) -> None:
    """The measure itself: a 61-line function is counted as 61 lines."""
    body = "\n".join(f"    x{i} = {i}" for i in range(60))
    tree = ast.parse(f"def f():\n{body}\n")
    [node] = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]
    assert node.end_lineno is not None
    assert node.end_lineno - node.lineno + 1 == 61
