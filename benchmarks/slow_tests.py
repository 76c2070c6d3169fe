"""The tests `make test` leaves to `make test-all` (marked slow) and why, read from tests/*.py (standard library only).

    python benchmarks/slow_tests.py    # print them, one per line

A slow test says why in its marker, so that the list on the test-suite goal's page is written from
the tests themselves (by make_results.py) and cannot drift from them:

    @pytest.mark.slow(reason="3 launches, ~30 s; make test keeps ...")             on the test, or
    pytest.param("gan", marks=pytest.mark.slow(reason=WHY))                         in its parametrize list

The reason is a string, or the name of a module-level string. Any other use of the slow mark (bare,
module-wide `pytestmark`, inside a comprehension) stops the script and names the line, rather than
being left out of the list.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"
FORMS = ("mark a test with @pytest.mark.slow(reason=...) or pytest.param(ID, marks=pytest.mark.slow(reason=...)); "
         "see benchmarks/slow_tests.py")


def slow_tests(tests: Path = TESTS) -> list[dict]:
    """[{"test": "tests/<file>::<test>[<id>]", "reason": ...}] in file order."""
    return [found for path in sorted(tests.glob("test_*.py")) for found in _in_file(path, tests.parent)]


def _is_slow(node: ast.AST) -> bool:
    """``<...>.mark.slow``: the mark itself, called or not."""
    return isinstance(node, ast.Attribute) and node.attr == "slow" and \
        isinstance(node.value, ast.Attribute) and node.value.attr == "mark"


def _in_file(path: Path, root: Path) -> list[dict]:
    tree = ast.parse(path.read_text(), filename=str(path))
    where = path.relative_to(root).as_posix()
    strings = {target.id: node.value.value for node in tree.body if isinstance(node, ast.Assign)
               and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
               for target in node.targets if isinstance(target, ast.Name)}
    read: set[int] = set()  # the slow marks accounted for, by node id

    def reason(mark: ast.AST) -> str:
        if not (isinstance(mark, ast.Call) and _is_slow(mark.func)):
            raise SystemExit(f"{where}:{mark.lineno}: a slow mark without its reason: {FORMS}")
        read.add(id(mark.func))
        given = next((k.value for k in mark.keywords if k.arg == "reason"), None)
        if isinstance(given, ast.Constant) and isinstance(given.value, str):
            return given.value
        if isinstance(given, ast.Name) and given.id in strings:
            return strings[given.id]
        raise SystemExit(f"{where}:{mark.lineno}: pytest.mark.slow needs reason=\"why it is slow\": {FORMS}")

    found = []
    for test in (node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name.startswith("test")):
        for decorator in test.decorator_list:
            if _is_slow(getattr(decorator, "func", decorator)):
                found.append({"test": f"{where}::{test.name}", "reason": reason(decorator)})
            elif isinstance(decorator, ast.Call) and getattr(decorator.func, "attr", "") == "parametrize":
                found += [{"test": f"{where}::{test.name}[{case}]", "reason": reason(mark)}
                          for case, mark in _slow_params(decorator, where)]
    stray = [node for node in ast.walk(tree) if _is_slow(node) and id(node) not in read]
    if stray:
        raise SystemExit(f"{where}:{stray[0].lineno}: a slow mark this script cannot place: {FORMS}")
    return found


def _slow_params(parametrize: ast.Call, where: str) -> list[tuple[str, ast.AST]]:
    """(pytest's id, the slow mark) of each ``pytest.param(..., marks=<slow mark>)`` in the values list."""
    values = parametrize.args[1] if len(parametrize.args) > 1 else None
    cases = []
    for value in getattr(values, "elts", []):
        if not (isinstance(value, ast.Call) and getattr(value.func, "attr", "") == "param"):
            continue
        marks = next((k.value for k in value.keywords if k.arg == "marks"), None)
        for mark in getattr(marks, "elts", [marks]):
            if mark is not None and _is_slow(getattr(mark, "func", mark)):
                cases.append((_case_id(value, where), mark))
    return cases


def _case_id(param: ast.Call, where: str) -> str:
    """The id pytest gives: ``id=`` if set, else the values joined by '-' (literal values only)."""
    given = next((k.value for k in param.keywords if k.arg == "id"), None)
    parts = [given] if given is not None else param.args
    if not all(isinstance(part, ast.Constant) for part in parts):
        raise SystemExit(f"{where}:{param.lineno}: a slow pytest.param needs literal values or id=: {FORMS}")
    return "-".join(str(part.value) for part in parts)


def table() -> dict:
    """The list as a table of benchmarks/make_results.py's goal schema."""
    rows = slow_tests()
    return {"title": f"Left to `make test-all`: the {len(rows)} tests marked slow, and why (from their markers "
                     "in tests/)",
            "columns": [{"key": "test", "label": "test", "code": True}, {"key": "reason", "label": "why it is slow"}],
            "rows": rows}


if __name__ == "__main__":
    for test in slow_tests():
        print(f"{test['test']}: {test['reason']}")
