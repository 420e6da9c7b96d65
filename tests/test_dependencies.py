"""Every third-party module pullctl imports comes from a distribution pyproject.toml declares.

A module that only arrives with another package (httpx2 with mcp) works until that package stops
requiring it; declaring what we import keeps the install honest.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib

from tests.conftest import ROOT

# Imported, deliberately not declared, and why.
UNDECLARED = {
    "pydantic_core": "pydantic's own core: pydantic pins it exactly (pydantic-core==x); a second pin could only disagree",
}


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _imports() -> dict[str, set[str]]:
    """Top-level third-party module -> the files of pullctl that import it."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / "pullctl").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.partition(".")[0]
                if top != "pullctl" and top not in sys.stdlib_module_names:
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_imported_distribution_is_declared() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = {_name(r) for r in project["dependencies"]}
    declared |= {_name(r) for r in project["optional-dependencies"]["otel"]}
    providers = importlib.metadata.packages_distributions()
    missing = {}
    for module, files in _imports().items():
        if module in UNDECLARED:
            continue
        dists = {_name(d) for d in providers.get(module, [module])}
        if not dists & declared:
            missing[module] = sorted(files)
    assert missing == {}, f"imported but not declared in pyproject.toml: {missing}"


def test_every_package_data_pattern_matches_a_file() -> None:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    empty = [
        f"{package}: {pattern}"
        for package, patterns in setuptools.get("package-data", {}).items()
        for pattern in patterns
        if not any((ROOT / package.replace(".", "/")).glob(pattern))
    ]
    assert empty == [], f"package-data patterns that match nothing: {empty}"
