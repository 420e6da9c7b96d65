"""One config entry point: ``ConfigSource`` over a files reader or the MongoDB reader, as the commands use it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pymongo import MongoClient

from pullctl.config.loader import ConfigEntry
from pullctl.config.source import ConfigSource
from pullctl.errors import ConfigError, UsageError
from pullctl.pipeline.config_store import MongoConfigReader, open_config_source
from tests.config_cases import BASE
from tests.conftest import Cli

EVERY_FOR_K8S = (
    "ingestion.schedule: '@every 15m' is understood only by DAPR Jobs; use a 5-field cron for Kubernetes"
    " CronJobs, or validate with --target dapr and deploy with 'pullctl jobs sync'"
)


def config(source_id: str, **ingestion: Any) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(BASE.replace("weather-api", source_id))
    doc["ingestion"].update(ingestion)
    return doc


@pytest.fixture
def put(mongo_uri: str, mongo_database: str) -> Iterator[Any]:
    """Writes configs straight into ``source_configs`` (as a hand edit or an older pullctl would)."""
    client: MongoClient[dict[str, Any]] = MongoClient(mongo_uri)

    def put(*docs: dict[str, Any]) -> None:
        coll = client[mongo_database]["source_configs"]
        for doc in docs:
            coll.replace_one({"_id": doc["source_id"]}, {"_id": doc["source_id"], "config": doc}, upsert=True)

    yield put
    client.close()


@pytest.fixture
def env(mongo_uri: str, mongo_database: str) -> dict[str, str]:
    return {"PULLCTL_CONFIG": mongo_uri, "PULLCTL_MONGODB_DATABASE": mongo_database}


# -- MongoDB configs are validated in the command's dialect -------------------------------------------------------


@pytest.mark.mongo
@pytest.mark.parametrize("command", ["render", "sync"])
def test_render_and_sync_from_mongodb_refuse_a_dapr_only_schedule(
    cli: Cli, put: Any, env: dict[str, str], command: str
) -> None:
    put(config("ticker", schedule="@every 15m"))
    result = cli(command, env=env)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == f"error: 1 config error:\nmongodb:source_configs/ticker:3:13: {EVERY_FOR_K8S}\n"


# -- pullctl validate reads the config store ----------------------------------------------------------------------


@pytest.mark.mongo
def test_validate_reads_pullctl_config_mongodb(cli: Cli, put: Any, env: dict[str, str]) -> None:
    put(config("weather-api"), config("ticker", schedule="@every 15m"), config("bad", retry={"backoff": "x"}))
    expected = [
        "mongodb:source_configs/bad:7:14: ingestion.retry.backoff: must be 'exponential' or 'fixed' (got 'x')",
        f"mongodb:source_configs/ticker:3:13: {EVERY_FOR_K8S}",
    ]
    result = cli("validate", env=env)
    assert result.exit_code == 2
    assert result.stdout.splitlines() == expected
    assert result.stderr == "✗ 3 files: 1 source, 2 errors, 0 warnings\n"

    dapr = cli("validate", "--target", "dapr", env=env)
    assert dapr.exit_code == 2
    assert dapr.stdout.splitlines() == expected[:1]


@pytest.mark.mongo
def test_validate_takes_a_mongodb_url_as_its_path(
    cli: Cli, put: Any, mongo_uri: str, mongo_database: str
) -> None:
    put(config("weather-api"))
    result = cli("validate", mongo_uri, env={"PULLCTL_MONGODB_DATABASE": mongo_database})
    assert result.exit_code == 0
    assert result.stdout == ""
    assert result.stderr == "✓ 1 file: 1 source, 0 errors, 0 warnings\n"


@pytest.mark.mongo
def test_validate_mongodb_in_every_format(cli: Cli, put: Any, env: dict[str, str]) -> None:
    put(config("bad", retry={"backoff": "x"}))
    github = cli("validate", "--format", "github", env=env)
    assert github.exit_code == 2
    assert github.stdout == (
        "::error file=mongodb:source_configs/bad,line=7,col=14,title=ingestion.retry.backoff::"
        "must be 'exponential' or 'fixed' (got 'x')\n"
    )
    as_json = cli("validate", "--format", "json", env=env)
    assert as_json.exit_code == 2
    data = json.loads(as_json.stdout)
    assert data["valid"] is False and data["files"] == 1 and data["sources"] == []
    assert [(e["file"], e["line"], e["column"], e["path"]) for e in data["errors"]] == [
        ("mongodb:source_configs/bad", 7, 14, "ingestion.retry.backoff")
    ]


@pytest.mark.mongo
def test_strict_applies_to_mongodb_configs(cli: Cli, put: Any, env: dict[str, str]) -> None:
    put({**config("weather-api"), "storage": {"bucket": "b"}})
    message = (
        "mongodb:source_configs/weather-api:6:1: storage: section 'storage' is not pullctl's: it is passed"
        " through to the downstream pipeline, not validated"
    )
    lenient = cli("validate", env=env)
    assert (lenient.exit_code, lenient.stdout) == (0, f"{message} (warning)\n")
    strict = cli("validate", "--strict", env=env)
    assert (strict.exit_code, strict.stdout) == (2, f"{message}\n")


# -- the API ------------------------------------------------------------------------------------------------------


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def test_one_is_not_blocked_by_other_files_but_by_its_own(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", BASE)
    write(tmp_path, "b.yaml", BASE.replace("weather-api", "broken").replace("0 6 * * *", "0 6 * *"))
    both = "sources:\n- " + BASE.replace("\n", "\n  ").replace("weather-api", "pair-ok").rstrip() + "\n"
    write(tmp_path, "c.yaml", both + "- {source_id: pair-bad}\n")
    configs = ConfigSource(tmp_path)
    assert configs.one("weather-api").file == str(tmp_path / "a.yaml")
    with pytest.raises(ConfigError) as caught:
        configs.one("pair-ok")
    assert [i.file for i in caught.value.issues] == [str(tmp_path / "c.yaml")]  # only its own file's
    with pytest.raises(ConfigError) as caught:
        configs.one("broken")  # invalid: its own located errors, not "no source 'broken'"
    assert [str(i) for i in caught.value.issues] == [
        f"{tmp_path / 'b.yaml'}:3:13: ingestion.schedule: {caught.value.issues[0].message}"
    ]
    with pytest.raises(
        ConfigError, match="no source 'weather-apj' in the configs; did you mean 'weather-api'"
    ):
        configs.one("weather-apj")


def test_one_takes_the_target(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", BASE.replace('"0 6 * * *"', '"@every 10m"'))
    assert ConfigSource(tmp_path).one("weather-api", target="dapr").config.ingestion.schedule == "@every 10m"
    assert ConfigSource(tmp_path).all("k8s").sources == []


def test_scheduled_sorts_and_refuses_any_error(tmp_path: Path) -> None:
    write(tmp_path, "z.yaml", BASE.replace("weather-api", "alpha"))
    write(tmp_path, "a.yaml", BASE)
    assert [s.source_id for s in ConfigSource(tmp_path).scheduled()] == ["alpha", "weather-api"]
    assert [s.source_id for s in ConfigSource(tmp_path).scheduled(only=["weather-api"])] == ["weather-api"]
    write(tmp_path, "m.yaml", "source_id: x\n")
    with pytest.raises(ConfigError, match=r"m\.yaml:1:1: ingestion: 'ingestion' is required"):
        ConfigSource(tmp_path).scheduled()


def test_a_reader_is_any_object_with_entries() -> None:
    class Listed:
        def entries(self) -> list[ConfigEntry]:
            return [
                ConfigEntry("mem:a", BASE),
                ConfigEntry("mem:b", None, "gone"),
                ConfigEntry("mem:c", BASE),
            ]

    result = ConfigSource("mem", Listed()).all()
    assert [s.source_id for s in result.sources] == ["weather-api"]
    assert [str(i) for i in result.issues] == [
        "mem:b:1:1: gone",
        "mem:c:1:1: source_id: duplicate source_id 'weather-api' (also defined at mem:a:1)",
    ]


def test_mongodb_is_read_through_open_config_source_only(tmp_path: Path, mongo_uri: str) -> None:
    with pytest.raises(UsageError, match="is a MongoDB config store, not a file"):
        ConfigSource(mongo_uri)
    with pytest.raises(UsageError, match="read one MongoDB config store, or files and folders; not both"):
        open_config_source([mongo_uri, str(tmp_path)])
    assert isinstance(open_config_source([mongo_uri], "db").reader, MongoConfigReader)
    assert not isinstance(open_config_source(str(tmp_path)).reader, MongoConfigReader)
