"""Issue 18: what a new user hits, each with its exact message and exit code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.config_cases import BASE
from tests.conftest import Cli
from tests.runkit import Runner, write_source
from tests.servers.upstream import Upstream
from tests.stores import mongo_database, mongo_uri

__all__ = ["mongo_database", "mongo_uri"]  # fixtures

GOOD = BASE  # a valid weather-api source


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
        (["id=r1", "lat=2"], "--only id=r1, lat=2: no item matches all of them (7 items)"),
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
    # the run record is the library's: it names the option's field, the CLI's error line its flag
    assert stored["status"] == "failed" and stored["message"] == message.replace("--only", "only")


def test_a_run_with_no_items_fails_and_says_why(cli: Cli, tmp_path: Path, upstream: Upstream) -> None:
    runner = Runner(cli, tmp_path)
    write_source(runner.config, **_static(upstream.url, [{"id": "r1", "lat": 1, "lon": 1}], shards=4))
    results = [runner.run_json("weather-api", "--shard", f"{i}/4") for i in range(4)]
    empty = [(code, records[0]) for code, records, _ in results if records[0]["counts"]["fetched"] == 0]
    assert len(empty) == 3
    for code, record in empty:
        assert code == 1 and record["status"] == "failed"
        assert record["message"] == f"nothing to fetch: shard {record['shard']} got none of the 1 items"
    validated = runner("validate", PULLCTL_LOG_FORMAT="text")  # validate says so before any run
    assert validated.exit_code == 0
    assert (
        "ingestion.iteration.shards: 4 shards over 1 static item: 3 shards get no item, and a run with nothing"
        " to fetch fails (warning)"
    ) in validated.stdout


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


# -- fix 10: one CLI -----------------------------------------------------------------------------------------


def test_output_is_one_option_and_the_old_spellings_still_work(cli: Cli, here: Path) -> None:
    (here / "cfg").mkdir()
    (here / "cfg" / "weather-api.yaml").write_text(GOOD)
    new = cli("validate", "cfg", "--output", "json")
    assert new.exit_code == 0 and json.loads(new.stdout)["sources"] == ["weather-api"]
    for old in (["--format", "json"], ["-f", "json"], ["-o", "json"]):
        assert cli("validate", "cfg", *old).stdout == new.stdout
    github = cli("validate", "cfg/weather-api.yaml", "--output", "github")
    assert github.exit_code == 0 and github.stdout == ""
    assert cli("schema", "--output", "markdown").stdout == cli("schema", "--format", "markdown").stdout
    assert cli("schema", "--format", "yaml").stderr == "error: --format 'yaml': use json or markdown\n"
    assert cli("schema", "--output", "yaml").stderr == "error: --output 'yaml': use json or markdown\n"
    # text and table are one value: every command takes both
    listed = cli("list", "-c", "cfg", "--output", "table").stdout
    assert cli("list", "-c", "cfg", "--output", "text").stdout == listed and "weather-api" in listed
    assert cli("runs", "--output", "text").exit_code == 0
    assert cli("status", "-c", "cfg", "-o", "table").exit_code == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run"], "error: Missing argument 'SOURCE' (see: pullctl run --help)\n"),
        (["bogus"], "error: No such command 'bogus' (see: pullctl --help)\n"),
        (["--bogus"], "error: No such option: --bogus (see: pullctl --help)\n"),
        (
            ["runs", "--limit", "0"],
            "error: Invalid value for '--limit': Input should be greater than or equal to 1"
            " (see: pullctl runs --help)\n",
        ),
        (
            ["--show-completion", "tcsh"],
            "error: --show-completion 'tcsh': use one of bash, zsh, fish, powershell, pwsh (see: pullctl --help)\n",
        ),
    ],
)
def test_usage_errors_are_one_error_line(cli: Cli, args: list[str], message: str) -> None:
    result = cli(*args)
    assert (result.exit_code, result.stderr, result.stdout) == (2, message, "")


def test_help_shows_no_python_types(cli: Cli) -> None:
    from tests.test_docs import _commands

    for name, _ in _commands():
        text = cli(*name.split(), "--help", env={"COLUMNS": "200"}).stdout
        for python in ("<str>", "<int", "<list", "<float", "<bool>", "<path>"):
            assert python not in text, f"pullctl {name} --help shows {python}"


def test_version_and_completion_scripts(cli: Cli) -> None:
    from pullctl import __version__

    assert cli("-V").stdout == cli("--version").stdout == f"pullctl {__version__}\n"
    zsh = cli("--show-completion", "zsh")
    assert zsh.exit_code == 0 and zsh.stdout.startswith("#compdef pullctl")
    assert cli("--show-completion", "bash").stdout.startswith("_pullctl_completion()")


def test_source_ids_complete_in_the_shell(here: Path) -> None:
    import subprocess
    import sys

    (here / "cfg").mkdir()
    (here / "cfg" / "weather-api.yaml").write_text(GOOD)
    (here / "cfg" / "soil.yaml").write_text(GOOD.replace("weather-api", "wind-api"))
    env = {
        "PATH": "/usr/bin:/bin",
        "PULLCTL_CONFIG": "cfg",
        "_PULLCTL_COMPLETE": "complete_bash",
        "COMP_WORDS": "pullctl run w",
        "COMP_CWORD": "2",
    }
    pullctl = Path(sys.executable).with_name("pullctl")
    done = subprocess.run([str(pullctl)], env=env, capture_output=True, text=True, cwd=here, timeout=60)
    assert sorted(done.stdout.split()) == ["weather-api", "wind-api"]


def test_a_backfill_ends_with_one_summary_and_a_dry_run_prints_its_record(
    cli: Cli, tmp_path: Path, upstream: Upstream
) -> None:
    runner = Runner(cli, tmp_path)
    write_source(runner.config, **_static(upstream.url, REGIONS[:2]))
    code, records, stderr = runner.run_json(
        "weather-api", "--from", "2026-01-01", "--to", "2026-01-04", "--step", "1d"
    )
    assert code == 0 and len(records) == 3
    summary = _last_line(stderr)
    assert summary["event"] == "backfill_finished"
    stored = sum(r["counts"]["stored"] for r in records)
    duplicates = sum(r["counts"]["duplicates"] for r in records)
    assert summary["message"] == (
        "backfill 2026-01-01T00:00:00+00:00 → 2026-01-04T00:00:00+00:00: 3 windows, 3 succeeded;"
        f" {stored} stored, {duplicates} duplicates"
    )
    dry = runner("run", "weather-api", "--dry-run", "--output", "json")
    *documents, record = [json.loads(line) for line in dry.stdout.splitlines()]
    assert len(documents) == 2 and all("content_hash" in d for d in documents)
    assert record["status"] == "succeeded" and record["counts"]["fetched"] == 2


def test_an_unreachable_mcp_server_through_dapr_names_the_direct_variable(
    cli: Cli, tmp_path: Path, upstream: Upstream
) -> None:
    from tests.runkit import weather

    runner = Runner(cli, tmp_path, {"DAPR_HTTP_ENDPOINT": "http://127.0.0.1:9"})
    write_source(runner.config, **weather(upstream.url))
    code, [record], _ = runner.run_json("weather-api")
    assert code == 1
    assert record["message"].endswith(
        "; check that the DAPR sidecar (http://127.0.0.1:9) runs and that 'plantation-mcp' is the server's"
        " app-id, or set PULLCTL_MCP_URL_PLANTATION_MCP to the server's URL"
    )


def test_config_push_warns_about_dapr_jobs_only_where_dapr_is_in_use(
    cli: Cli, here: Path, mongo_uri: str, mongo_database: str
) -> None:
    (here / "cfg").mkdir()
    (here / "cfg" / "weather-api.yaml").write_text(GOOD)
    env = {"PULLCTL_CONFIG": mongo_uri, "PULLCTL_MONGODB_DATABASE": mongo_database}
    pushed = cli("config", "push", "cfg", env=env)
    assert (pushed.exit_code, pushed.stdout, pushed.stderr) == (0, "created    weather-api\n", "")
    deleted = cli("config", "delete", "weather-api", env=env)
    assert (deleted.exit_code, deleted.stderr) == (0, "")
    assert list(here.iterdir()) == [here / "cfg"]  # no store was created to look for DAPR Jobs
    with_dapr = cli("config", "push", "cfg", env={**env, "DAPR_HTTP_ENDPOINT": "http://127.0.0.1:9"})
    assert with_dapr.exit_code == 0
    assert with_dapr.stderr.startswith("warning: the DAPR Jobs did not follow the config change (")
