"""The error tree drawn in errors.py's docstring is the classes' tree, and every class in it is used."""

from __future__ import annotations

import ast
import re

import pullctl.errors as errors
from pullctl.errors import PullctlError
from tests.conftest import ROOT


def _drawn() -> dict[str, str]:
    """Class -> parent, read from the docstring's box drawing (depth from the column of each name)."""
    assert errors.__doc__
    parents: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    for line in errors.__doc__.splitlines():
        match = re.match(r"^(\s*[│├└─\s]*)(\w+Error)\b", line)
        if not match:
            continue
        depth, name = len(match.group(1)), match.group(2)
        while stack and stack[-1][0] >= depth:
            stack.pop()
        if stack:
            parents[name] = stack[-1][1]
        stack.append((depth, name))
    return parents


def _classes() -> dict[str, str]:
    found: dict[str, str] = {}

    def walk(cls: type[PullctlError]) -> None:
        for sub in cls.__subclasses__():
            if sub.__module__ == errors.__name__:
                found[sub.__name__] = cls.__name__
                walk(sub)

    walk(PullctlError)
    return found


def test_the_docstring_draws_the_class_tree() -> None:
    assert _drawn() == _classes()


def test_every_error_class_is_raised_or_caught_somewhere() -> None:
    """A class nobody raises and nobody catches by name is a promise the code does not keep."""
    used: set[str] = set()
    for path in (ROOT / "pullctl").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Raise) and node.exc is not None:
                target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
                used |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
            elif isinstance(node, ast.ExceptHandler) and node.type is not None:
                used |= {n.id for n in ast.walk(node.type) if isinstance(n, ast.Name)}
    unused = sorted(set(_classes()) - used)
    assert unused == [], f"never raised nor caught: {unused}"
