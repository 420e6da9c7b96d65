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


def _yaml_blocks() -> list[tuple[str, str]]:
    """(where, text) of every fenced ```yaml block in README.md and docs/."""
    import re

    blocks: list[tuple[str, str]] = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for n, m in enumerate(re.finditer(r"```yaml\n(.*?)```", path.read_text(), re.S)):
            blocks.append((f"{path.name}#{n + 1}", m.group(1)))
    return blocks


def test_every_source_config_example_in_the_docs_validates() -> None:
    """A block with ``source_id`` is a whole config; one that starts indented (``  pagination:``) is a part of
    an ``ingestion`` block, checked inside a minimal source. Kubernetes manifests and the like are skipped."""
    from pullctl.config.loader import load_text
    from pullctl.config.models import Ingestion

    base = "source_id: example\ningestion:\n  schedule: '0 6 * * *'\n  request: {base_url: 'https://api.example.com/v1'}\n"
    checked = 0
    for where, text in _yaml_blocks():
        if "source_id:" in text:
            doc = text
        elif text.startswith("  ") and text.split(":", 1)[0].strip() in Ingestion.model_fields:
            doc = base + text
        else:
            continue
        result = load_text(doc, where, target="dapr")
        assert not result.errors, "\n".join(str(e) for e in result.errors)
        checked += 1
    assert checked >= 3
