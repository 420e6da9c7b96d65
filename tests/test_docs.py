"""Documentation that stays true: every command has help with an example and a README entry; the config
reference is the models' own output."""

from __future__ import annotations

from typer.main import get_command

from pullctl.cli.main import app
from pullctl.config.reference import render_reference
from tests.conftest import ROOT, Cli


def _commands() -> list[tuple[str, str]]:
    """(full command name, help text) of every leaf command."""
    out: list[tuple[str, str]] = []

    def walk(cmd: object, prefix: str) -> None:
        sub = getattr(cmd, "commands", None)
        if sub:
            for name, child in sub.items():
                walk(child, f"{prefix} {name}".strip())
        else:
            out.append((prefix, getattr(cmd, "help", "") or ""))

    walk(get_command(app), "")
    return out


def test_every_command_has_help_with_an_example_and_a_readme_entry() -> None:
    readme = (ROOT / "README.md").read_text() + "".join(p.read_text() for p in (ROOT / "docs").glob("*.md"))
    commands = _commands()
    assert len(commands) >= 15
    for name, help_text in commands:
        assert "Example: " in help_text and "pullctl " in help_text.split("Example: ")[1], (
            f"`pullctl {name}` has no example"
        )
        assert f"pullctl {name}" in readme, f"`pullctl {name}` is not in README.md or docs/"


def test_every_command_answers_help(cli: Cli) -> None:
    for name, _ in _commands():
        result = cli(*name.split(), "--help")
        assert result.exit_code == 0 and "Example:" in result.stdout, name


def test_config_reference_is_current() -> None:
    shipped = (ROOT / "docs" / "config-reference.md").read_text()
    assert shipped == render_reference(), "run: pullctl schema --format markdown > docs/config-reference.md"


def test_schema_format_is_checked(cli: Cli) -> None:
    assert cli("schema", "--format", "yaml").stderr == "error: --format 'yaml': use json or markdown\n"
