"""The shape of the code base: what production code may import."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_production_code_never_imports_the_tests():
    offenders = []
    for package in ("tokens", "tokenconsole"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                names = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    names = [node.module]
                offenders += [
                    f"{path.relative_to(ROOT)}: {name}"
                    for name in names
                    if name == "tests" or name.startswith("tests.")
                ]
    assert offenders == []
