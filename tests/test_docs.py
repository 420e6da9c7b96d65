"""Documentation that stays true: every command has help with an example and a README entry; the config
reference is the models' own output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.main import get_command

from pullctl.cli.main import app
from pullctl.config.reference import render_reference
from tests.conftest import ROOT, Cli
from tests.servers.upstream import Upstream


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


# -- the commands in the README and the operations walk, run as written ---------------------------------------

OFFLINE = ("validate", "list", "schema", "runs", "status", "render", "--show-completion", "-V")


def _readme_commands() -> list[tuple[str, list[str], int]]:
    """(line, argv, expected exit) of each README ```sh line that runs pullctl offline on a fresh clone: no
    environment prefix, nothing that needs a server. A pipe or a redirect is cut off; ``# exit N`` in the
    comment says which exit code the line promises (0 otherwise)."""
    import re
    import shlex

    out = []
    text = (ROOT / "README.md").read_text()
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for line in block.splitlines():
            command, _, comment = line.partition("  #")
            words = shlex.split(command.split("|")[0].split(">")[0])
            if len(words) < 2 or words[0] != "pullctl" or words[1] not in OFFLINE:
                continue
            expected = re.search(r"exit (\d)", comment)
            out.append((line, words[1:], int(expected.group(1)) if expected else 0))
    return out


def test_readme_commands_work_on_a_fresh_clone(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From the repository's root, with no store yet and the default config folder."""
    monkeypatch.chdir(ROOT)
    commands = _readme_commands()
    assert len(commands) >= 10
    env = {"PULLCTL_STORE": f"sqlite:///{tmp_path / 'fresh' / 'pullctl.db'}", "PULLCTL_CONFIG": ""}
    for line, argv, expected in commands:
        result = cli(*argv, env=env)
        assert result.exit_code == expected, f"{line}\n{result.stderr}"
    assert not (tmp_path / "fresh").exists()  # reading commands created no store


def test_the_operations_walk_runs_as_written(cli: Cli, tmp_path: Path, upstream: Upstream) -> None:
    """docs/operations.md's walk, in bash, against a source whose last run left one item failed."""
    import re
    import subprocess
    import sys

    from tests.runkit import Runner, write_source

    runner = Runner(cli, tmp_path)
    regions = [{"id": f"r{n}", "lat": n, "lon": n} for n in range(1, 4)]
    write_source(
        runner.config,
        request={
            "base_url": f"{upstream.url}/v1/forecast",
            "parameters": {"latitude": "{region.lat}", "longitude": "{region.lon}"},
        },
        iteration={"foreach": "region", "items": regions, "key": "id"},
        retry={"max_attempts": 1},
    )
    upstream.fail("/v1/forecast", "status", status=500, query={"latitude": "2"})
    code, [partial], _ = runner.run_json("weather-api")
    assert (code, partial["status"], partial["failed_items"]) == (3, "partial", ["r2"])
    upstream.reset()

    [walk] = [
        b
        for b in re.findall(r"```sh\n(.*?)```", (ROOT / "docs" / "operations.md").read_text(), re.S)
        if "--replay" in b
    ]
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "PULLCTL_CONFIG": str(runner.config),
        "PULLCTL_STORE": f"sqlite:///{runner.db}",
        "PULLCTL_LOG_FORMAT": "json",
        "COLUMNS": "200",
    }
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", walk],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert partial["run_id"] in done.stdout  # runs showed it, and its record
    assert '"failed_items": [\n    "r2"\n  ]' in done.stdout
    assert "weather-api: stale: never succeeded" in done.stderr  # the first --fail-on, before the replay
    listed = json.loads(runner("runs", "--output", "json").stdout)
    assert [(r["status"], r["counts"]["fetched"]) for r in listed] == [("succeeded", 1), ("partial", 2)]
