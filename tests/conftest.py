"""Shared fixtures. Servers and emulators live in tests/servers and tests/emulators; import their fixtures here."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from pullctl.cli.main import app

pytest_plugins = [
    "tests.servers.upstream",
    "tests.servers.mcp_server",
    "tests.servers.proxy",
    "tests.servers.oauth",
    "tests.emulators.dapr",
    "tests.emulators.kube",
    "tests.stores",
]

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "config" / "source-configs"


class Cli:
    """Runs `pullctl` in-process with separate stdout and stderr."""

    def __init__(self) -> None:
        self.runner = CliRunner()

    def __call__(self, *args: str, env: dict[str, str] | None = None, input: str | None = None):  # type: ignore[no-untyped-def]
        return self.runner.invoke(app, list(args), env=env, input=input, catch_exceptions=False)


@pytest.fixture
def cli() -> Cli:
    return Cli()
