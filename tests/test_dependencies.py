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


def _imported_modules() -> dict[str, set[str]]:
    """Every module a file of pullctl imports (absolute imports, at any depth, TYPE_CHECKING included),
    by the importing module's dotted name."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / "pullctl").rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        names = found.setdefault(module, set())
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module)
    return found


def _imports() -> dict[str, set[str]]:
    """Top-level third-party module -> the files of pullctl that import it."""
    found: dict[str, set[str]] = {}
    for module, names in _imported_modules().items():
        for name in names:
            top = name.partition(".")[0]
            if top != "pullctl" and top not in sys.stdlib_module_names:
                found.setdefault(top, set()).add(module)
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


# The layers, lowest first: a unit (a subpackage, or a module of pullctl's own) imports only from lower tiers;
# within a tier only the base modules import each other (and the demo its servers). So `run` and `schedulers`
# never import each other, and nothing below `cli` imports it.
TIERS = {
    "pullctl": 0,  # __version__
    "pullctl.errors": 0,
    "pullctl.settings": 0,
    "pullctl.logs": 0,
    "pullctl.redact": 0,
    "pullctl.canonical": 0,
    "pullctl.retry": 0,
    "pullctl.transport_errors": 0,
    "pullctl.dapr": 0,
    "pullctl.asgi": 0,
    "pullctl.config": 1,
    "pullctl.pipeline": 2,
    "pullctl.run": 3,
    "pullctl.schedulers": 3,
    "pullctl.server": 4,
    "pullctl.demo": 4,
    "pullctl.demo_servers": 4,
    "pullctl.cli": 5,
    "pullctl.__main__": 6,
}
SIDEWAYS = {("pullctl.demo", "pullctl.demo_servers")}


def _unit(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_imports_point_down_the_layers() -> None:
    edges = {
        (_unit(module), _unit(name))
        for module, names in _imported_modules().items()
        for name in names
        if name.partition(".")[0] == "pullctl" and _unit(name) != _unit(module)
    }
    unplaced = sorted({unit for edge in edges for unit in edge} - set(TIERS))
    assert unplaced == [], f"place these in TIERS: {unplaced}"
    wrong = sorted(
        (src, dst)
        for src, dst in edges
        if TIERS[dst] > TIERS[src] or (TIERS[dst] == TIERS[src] > 0 and (src, dst) not in SIDEWAYS)
    )
    assert wrong == [], f"imports that point up or sideways: {wrong}"
