"""Issue 18: what a new user hits, each with its exact message and exit code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Cli
from tests.runkit import Runner, write_source
from tests.servers.upstream import Upstream

GOOD = """\
source_id: weather-api
ingestion:
  schedule: "0 6 * * *"
  request:
    base_url: https://api.example.com/v1/forecast
"""


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working folder with no configs and no store in it (and no PULLCTL_* variables)."""
    monkeypatch.chdir(tmp_path)
    for name in ("PULLCTL_CONFIG", "PULLCTL_STORE", "PULLCTL_LOG_FORMAT"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


# -- fix 1: a folder without configs is no green check ----------------------------------------------------


@pytest.mark.parametrize("command", ["validate", "list"])
def test_a_folder_without_yaml_is_a_usage_error(cli: Cli, here: Path, command: str) -> None:
    (here / "docs").mkdir()
    (here / "docs" / "notes.md").write_text("# not a config\n")
    args = [command, "docs"] if command == "validate" else [command, "--config", "docs"]
    result = cli(*args)
    assert result.exit_code == 2
    assert result.stderr == "error: no source configs in docs: 0 YAML files\n"
    assert result.stdout == ""


def test_validate_takes_config_like_the_other_commands(cli: Cli, here: Path) -> None:
    (here / "cfg").mkdir()
    (here / "cfg" / "weather-api.yaml").write_text(GOOD)
    result = cli("validate", "--config", "cfg")
    assert result.exit_code == 0
    assert result.stderr == "✓ 1 file: 1 source, 0 errors, 0 warnings\n"


# -- fix 2: `run SOURCE` shows the errors of SOURCE's own file ------------------------------------------


def test_run_of_a_source_whose_file_does_not_parse_shows_its_errors(cli: Cli, here: Path) -> None:
    (here / "cfg").mkdir()
    (here / "cfg" / "weather-api.yaml").write_text(GOOD.replace("forecast", "forecast\n  iteration: {"))
    result = cli("run", "weather-api", "--config", "cfg")
    assert result.exit_code == 2
    assert result.stderr == (
        "error: 1 config error:\n"
        "cfg/weather-api.yaml:7:1: YAML syntax error: while parsing a flow node did not find expected node"
        " content\n"
    )


def test_run_of_an_unknown_source_names_the_files_that_did_not_load(cli: Cli, here: Path) -> None:
    (here / "cfg").mkdir()
    (here / "cfg" / "weather.yaml").write_text("source_id: [\n")
    result = cli("run", "weather-api", "--config", "cfg")
    assert result.exit_code == 2
    assert result.stderr == (
        "error: no source 'weather-api' in the configs (known: none); it may be in a file that has errors:\n"
        "cfg/weather.yaml:2:1: YAML syntax error: while parsing a flow node did not find expected node"
        " content\n"
    )


# -- fix 7: template errors come with the schema's errors ------------------------------------------------


def test_template_errors_are_reported_with_schema_errors(cli: Cli, here: Path) -> None:
    (here / "cfg").mkdir()
    (here / "cfg" / "weather-api.yaml").write_text(
        GOOD.replace("/v1/forecast", "/v1/{regoin.id}")
        + "    methd: GET\n  iteration: {foreach: region, items: [{id: 1}], concurrency: 300}\n"
    )
    result = cli("validate", "cfg")
    assert result.exit_code == 2
    assert result.stdout == (
        "cfg/weather-api.yaml:5:15: ingestion.request.base_url: template '{regoin.id}' names unknown variable"
        " 'regoin' (known: region, run, secret, source, window); did you mean '{region.id}'?\n"
        "cfg/weather-api.yaml:6:5: ingestion.request.methd: unknown field 'methd'; did you mean 'method'?\n"
        "cfg/weather-api.yaml:7:63: ingestion.iteration.concurrency: must be less than or equal to 256"
        " (got 300)\n"
    )
    assert result.stderr == "✗ 1 file: 0 sources, 3 errors, 0 warnings\n"


def test_a_field_with_a_schema_error_gets_no_second_template_error(cli: Cli, here: Path) -> None:
    (here / "cfg").mkdir()
    (here / "cfg" / "weather-api.yaml").write_text(
        GOOD + "    parameters: {q: '{nope}'}\n    timeout_seconds: -1\n"
    )
    result = cli("validate", "cfg", "--format", "json")
    assert result.exit_code == 2
    paths = [e["path"] for e in json.loads(result.stdout)["errors"]]
    assert paths == ["ingestion.request.parameters", "ingestion.request.timeout_seconds"]


# -- fix 8: the default config folder, when it is not there ------------------------------------------------


@pytest.mark.parametrize("command", [["list"], ["validate"], ["run", "weather-api"]])
def test_a_missing_default_config_folder_says_where_it_looked(
    cli: Cli, here: Path, command: list[str]
) -> None:
    result = cli(*command)
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: config/source-configs: no such file or folder (looked for {here}/config/source-configs);"
        " point pullctl to the source configs with --config PATH or PULLCTL_CONFIG=PATH\n"
    )
    assert list(here.iterdir()) == []


# -- fix 3: a run with nothing to fetch ----------------------------------------------------------------------


def _static(upstream_url: str, items: list[dict[str, object]], **extra: object) -> dict[str, object]:
    return {
        "request": {
            "base_url": f"{upstream_url}/v1/forecast",
            "parameters": {"latitude": "{region.lat}", "longitude": "{region.lon}"},
        },
        "iteration": {"foreach": "region", "items": items, "key": "id", **extra},
    }


REGIONS = [{"id": f"r{n}", "lat": n, "lon": n} for n in range(1, 8)]


def _last_line(stderr: str) -> dict[str, object]:
    line: dict[str, object] = json.loads(stderr.splitlines()[-1])
    return line


@pytest.mark.parametrize(
    ("only", "message"),
    [
        (
            ["id=r9"],
            "--only id=r9 matches none of the 7 items; id has: r1, r2, r3, r4, r5, … (7 values)",
        ),
        (["regoin=r1"], "--only regoin=…: no item has the field 'regoin' (fields: id, lat, lon)"),
        (["id=r1", "lat=2"], "--only id=r1 --only lat=2: no item matches all of them (7 items)"),
    ],
)
def test_only_that_matches_no_item_is_a_usage_error(
    cli: Cli, tmp_path: Path, upstream: Upstream, only: list[str], message: str
) -> None:
    runner = Runner(cli, tmp_path)
    write_source(runner.config, **_static(upstream.url, REGIONS))
    args = [a for o in only for a in ("--only", o)]
    code, records, stderr = runner.run_json("weather-api", *args)
    assert code == 2 and records == []
    assert _last_line(stderr)["message"] == message
    [stored] = json.loads(runner("runs", "--output", "json").stdout)
    assert stored["status"] == "failed" and stored["message"] == message


def test_a_run_with_no_items_fails_and_says_why(cli: Cli, tmp_path: Path, upstream: Upstream) -> None:
    runner = Runner(cli, tmp_path)
    write_source(runner.config, **_static(upstream.url, [{"id": "r1", "lat": 1, "lon": 1}], shards=4))
    results = [runner.run_json("weather-api", "--shard", f"{i}/4") for i in range(4)]
    empty = [(code, records[0]) for code, records, _ in results if records[0]["counts"]["fetched"] == 0]
    assert len(empty) == 3
    for code, record in empty:
        assert code == 1 and record["status"] == "failed"
        assert record["message"] == f"nothing to fetch: shard {record['shard']} got none of the 1 items"


# -- fix 5: malformed input anywhere is one line, never a traceback ------------------------------------------

KUBECONFIGS = {
    "yaml": "a: [\n",
    "empty": "",
    "list": "[1, 2]\n",
    "no-current-context": "apiVersion: v1\n",
    "contexts-not-a-list": "current-context: x\ncontexts: 7\n",
    "cluster-not-a-mapping": (
        "current-context: x\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n"
        "clusters: [{name: c, cluster: 5}]\nusers: [{name: u, user: {}}]\n"
    ),
}


@pytest.mark.parametrize("name", sorted(KUBECONFIGS))
def test_a_malformed_kubeconfig_is_one_line_naming_the_file(cli: Cli, here: Path, name: str) -> None:
    (here / "kc").write_text(KUBECONFIGS[name])
    (here / "cfg").mkdir()
    (here / "cfg" / "weather-api.yaml").write_text(GOOD)
    result = cli("sync", "--config", "cfg", "--kubeconfig", "kc", "--dry-run")
    assert result.exit_code == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("error: cannot use the kubeconfig kc: ")
    if name == "yaml":
        assert line == (
            "error: cannot use the kubeconfig kc: YAML syntax error at line 2, column 1: expected the node"
            " content, but found '<stream end>'"
        )


MALFORMED: dict[str, tuple[list[str], dict[str, str]]] = {
    "validate a file that is no YAML": (["validate", "cfg/bad.yaml"], {}),
    "list bad configs": (["list", "--config", "cfg"], {}),
    "run bad configs": (["run", "weather-api", "--config", "cfg"], {}),
    "render bad configs": (["render", "--config", "cfg"], {}),
    "sync a bad kubeconfig": (["sync", "--config", "good", "--kubeconfig", "kc", "--dry-run"], {}),
    "sync bad configs": (["sync", "--config", "cfg", "--kubeconfig", "kc", "--dry-run"], {}),
    "jobs sync bad configs": (["jobs", "sync", "--config", "cfg", "--dry-run"], {}),
    "config push bad configs": (["config", "push", "cfg", "--to", "mongodb://127.0.0.1:1"], {}),
    "config get from a file store": (["config", "get", "weather-api", "--to", "cfg"], {}),
    "runs from an unknown store": (["runs", "--store", "postgres://db"], {}),
    "runs from a sqlite url without a path": (["runs", "--store", "sqlite://"], {}),
    "run into a folder as store": (
        ["run", "weather-api", "--config", "good", "--store", "sqlite:///good"],
        {},
    ),
    "status of bad configs": (["status", "--config", "cfg"], {}),
    "status from an unknown store": (["status", "--config", "good", "--store", "redis://x"], {}),
    "status with a bad --fail-on": (["status", "--config", "good", "--fail-on", "stale=x"], {}),
    "run with a bad log format": (["run", "weather-api", "--config", "cfg"], {"PULLCTL_LOG_FORMAT": "json"}),
    "jobs delete without a sidecar": (
        ["jobs", "delete", "weather-api", "--store", "sqlite:///s.db"],
        {"DAPR_HTTP_ENDPOINT": "http://127.0.0.1:1"},
    ),
    "run with a malformed --only": (["run", "--only", "x", "weather-api", "--config", "good"], {}),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_input_never_shows_a_traceback(cli: Cli, here: Path, case: str) -> None:
    (here / "kc").write_text(KUBECONFIGS["yaml"])
    for folder, text in (("cfg", "source_id: [\n"), ("good", GOOD)):
        (here / folder).mkdir()
        (here / folder / ("bad.yaml" if folder == "cfg" else "weather-api.yaml")).write_text(text)
    args, env = MALFORMED[case]
    result = cli(*args, env=env)  # an exception that is not a PullctlError propagates here and fails
    assert result.exit_code in (1, 2), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    first = result.stderr.splitlines()[0]
    if first.startswith("{"):  # PULLCTL_LOG_FORMAT=json
        assert json.loads(first)["level"] == "error"
    else:  # validate prints the issues on stdout and its verdict on stderr
        assert first.startswith(("error: ", "✗ ")), result.stderr


# -- fix 8: reading commands create nothing ------------------------------------------------------------------


def test_reading_commands_create_no_database_file_or_folder(cli: Cli, here: Path) -> None:
    (here / "cfg").mkdir()
    (here / "cfg" / "weather-api.yaml").write_text(GOOD)
    for args in (
        ["runs"],
        ["runs", "weather-api", "--output", "json"],
        ["list", "-c", "cfg"],
        ["status", "-c", "cfg"],
    ):
        result = cli(*args)
        assert result.exit_code == 0, (args, result.stderr)
    assert sorted(p.name for p in here.iterdir()) == ["cfg"]
