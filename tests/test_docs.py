"""The README and docs/ stay short and true: links, generated configuration, API errors."""

import ast
import importlib.util
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
ROW = re.compile(r"^\|\s*(\d{3})\s*\|([^|]*)\|")


def _config_docs():
    spec = importlib.util.spec_from_file_location("config_docs", ROOT / "scripts/config_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _openapi() -> dict:
    """The token API's OpenAPI document, wherever it lives under tokens/."""
    found = sorted(ROOT.glob("tokens/**/openapi.json"))
    assert len(found) == 1, f"expected one openapi.json under tokens/, found {found}"
    return json.loads(found[0].read_text())


def _anchors(path: Path) -> set[str]:
    """GitHub's anchors for the headings of a Markdown file."""
    anchors, in_code = set(), False
    for line in path.read_text().splitlines():
        in_code ^= line.startswith("```")
        if line.startswith("#") and not in_code:
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


def _api_error_table() -> dict[str, set[int]]:
    """Error code -> statuses, from the table under "## Errors" in docs/api.md."""
    text = (ROOT / "docs/api.md").read_text().split("## Errors", 1)[1].split("\n## ", 1)[0]
    table: dict[str, set[int]] = {}
    for line in text.splitlines():
        if match := ROW.match(line):
            for code in re.findall(r"`([a-z_]+)`", match.group(2)):
                table.setdefault(code, set()).add(int(match.group(1)))
    return table


def _api_errors_in_code() -> dict[str, set[int]]:
    """Error code -> statuses of every `ApiError(<status>, "<code>", ...)` in tokens/."""
    found: dict[str, set[int]] = {}
    for path in ROOT.glob("tokens/**/*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            func = getattr(node, "func", None)
            name = getattr(func, "id", None) or getattr(func, "attr", None)
            if isinstance(node, ast.Call) and name == "ApiError" and len(node.args) >= 2:
                status, code = (ast.literal_eval(arg) for arg in node.args[:2])
                found.setdefault(code, set()).add(status)
    return found


def test_readme_fits_on_a_screen_and_keeps_the_two_commands():
    text = README.read_text()
    assert len(text) < 8000, f"README.md is {len(text)} characters; move detail to docs/"
    assert "make run" in text
    assert "make test" in text


def test_every_relative_link_points_to_a_file_in_the_repository():
    broken = []
    for page in [README, *DOCS]:
        for target in LINK.findall(page.read_text()):
            if re.match(r"[a-z]+:", target):
                continue  # https:, mailto:
            path_part, _, anchor = target.partition("#")
            path = (page.parent / path_part).resolve() if path_part else page
            where = f"{page.relative_to(ROOT)}: {target}"
            if not path.is_relative_to(ROOT) or not path.exists():
                broken.append(where)
            elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
                broken.append(f"{where} (no such heading)")
    assert broken == []


def test_configuration_docs_are_generated_from_the_code():
    config_docs = _config_docs()
    current = (ROOT / "docs/configuration.md").read_text()
    assert current == config_docs.render(), (
        f"docs/configuration.md is out of date: run {config_docs.COMMAND}"
    )


def test_every_environment_variable_is_described():
    config_docs = _config_docs()
    settings_source = config_docs.SETTINGS.read_text()
    names = [name for name, _ in config_docs.environment_variables(settings_source)]
    missing = [name for name in names if name not in config_docs.ENVIRONMENT]
    stale = [name for name in config_docs.ENVIRONMENT if name not in names]
    assert (missing, stale) == ([], []), (
        "Keep ENVIRONMENT in scripts/config_docs.py in step with settings.py, then run "
        f"{config_docs.COMMAND}"
    )


def test_api_error_table_lists_exactly_the_openapi_error_codes():
    enum = _openapi()["components"]["schemas"]["Error"]["properties"]["error"]["enum"]
    assert sorted(_api_error_table()) == sorted(enum)


def test_api_error_table_gives_each_code_the_status_the_api_answers_with():
    table = _api_error_table()
    in_code = _api_errors_in_code()
    assert {code: in_code.get(code) for code in table} == table
    documented = {
        int(status)
        for path in _openapi()["paths"].values()
        for operation in path.values()
        for status in operation["responses"]
    }
    assert set().union(*table.values()) <= documented
