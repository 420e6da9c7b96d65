"""`pullctl validate`, `list` and `schema` as a user drives them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pullctl.config.loader import load_paths
from tests.config_cases import BASE
from tests.conftest import EXAMPLES, ROOT, Cli


def test_examples_are_valid(cli: Cli) -> None:
    result = cli("validate", str(EXAMPLES))
    assert result.exit_code == 0
    assert result.stdout == (
        f"{EXAMPLES}/exchange-rates.yaml:27:1: storage: section 'storage' is not pullctl's: it is passed through"
        " to the downstream pipeline, not validated (warning)\n"
    )
    assert result.stderr == "✓ 3 files: 3 sources, 0 errors, 1 warning\n"


def test_strict_turns_pass_through_sections_into_errors(cli: Cli) -> None:
    result = cli("validate", str(EXAMPLES), "--strict")
    assert result.exit_code == 2
    assert result.stderr == "✗ 3 files: 2 sources, 1 error, 0 warnings\n"


def test_every_file_every_error_in_one_pass(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("cfg").mkdir()
    Path("cfg/a.yaml").write_text(BASE.replace("0 6 * * *", "0 6 * *"))
    Path("cfg/b.yml").write_text(BASE + "  retry: {max_attempts: 99}\n")
    Path("cfg/c.yaml").write_text(BASE.replace("weather-api", "other"))
    Path("cfg/ignored.txt").write_text("not yaml")
    result = cli("validate", "cfg")
    assert result.exit_code == 2
    assert result.stdout.splitlines() == [
        "cfg/a.yaml:3:13: ingestion.schedule: '0 6 * *' has 4 fields; a cron schedule has 5 (minute hour"
        " day-of-month month day-of-week), e.g. '0 6 * * *'",
        "cfg/b.yml:6:25: ingestion.retry.max_attempts: must be less than or equal to 10 (got 99)",
    ]
    assert result.stderr == "✗ 3 files: 1 source, 2 errors, 0 warnings\n"


def test_duplicate_source_id_names_both_files(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("a.yaml").write_text(BASE)
    Path("b.yaml").write_text("# same id\n" + BASE)
    result = cli("validate", "a.yaml", "b.yaml")
    assert result.exit_code == 2
    assert (
        result.stdout
        == "b.yaml:2:1: source_id: duplicate source_id 'weather-api' (also defined at a.yaml:1)\n"
    )


def test_github_and_json_formats(cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("a.yaml").write_text(BASE + "  retry: {backoff: linear}\n")
    result = cli("validate", "a.yaml", "--format", "github")
    assert result.stdout == (
        "::error file=a.yaml,line=6,col=20,title=ingestion.retry.backoff::"
        "must be 'exponential' or 'fixed' (got 'linear')\n"
    )
    result = cli("validate", "a.yaml", "--format", "json")
    data = json.loads(result.stdout)
    assert data["valid"] is False and data["sources"] == []
    assert data["errors"] == [
        {
            "file": "a.yaml",
            "line": 6,
            "column": 20,
            "path": "ingestion.retry.backoff",
            "message": "must be 'exponential' or 'fixed' (got 'linear')",
            "severity": "error",
        }
    ]


def test_target_dapr_accepts_every(cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("a.yaml").write_text(BASE.replace('"0 6 * * *"', '"@every 10m"'))
    assert cli("validate", "a.yaml").exit_code == 2
    assert cli("validate", "a.yaml", "--target", "dapr").exit_code == 0


def test_missing_path(cli: Cli) -> None:
    result = cli("validate", "does/not/exist")
    assert result.exit_code == 2
    assert result.stderr == "error: does/not/exist: no such file or folder\n"


def test_list_json(cli: Cli) -> None:
    result = cli("list", "--config", str(EXAMPLES), "--output", "json")
    assert result.exit_code == 0
    rows = json.loads(result.stdout)
    assert [r["source_id"] for r in rows] == ["exchange-rates", "github-issues", "weather-api"]
    weather = rows[2]
    assert weather["iteration"] == "region from plantation-mcp list_active_regions"
    assert weather["auth_type"] == "none" and weather["enabled"] is True
    assert len(weather["next_runs"]) == 3 and all(t.endswith("T06:00:00+00:00") for t in weather["next_runs"])


def test_list_table(cli: Cli) -> None:
    result = cli("list", "--config", str(EXAMPLES))
    header, *rows = result.stdout.splitlines()
    assert header.split() == [
        "SOURCE",
        "MODE",
        "SCHEDULE",
        "TZ",
        "NEXT",
        "RUN",
        "(UTC)",
        "ITERATION",
        "AUTH",
        "ENABLED",
        "STATE",
    ]
    assert rows[1].split()[:2] == ["github-issues", "pull"]


def test_list_with_invalid_config_fails(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("source_id: A\n")
    result = cli("list", "--config", str(tmp_path))
    assert result.exit_code == 2
    assert result.stderr.startswith("error: 2 config errors:\n")


def test_schema_file_is_current(cli: Cli) -> None:
    result = cli("schema")
    shipped = (ROOT / "config" / "source-config.schema.json").read_text()
    assert json.loads(result.stdout) == json.loads(shipped), (
        "run: pullctl schema > config/source-config.schema.json"
    )
    assert json.loads(result.stdout)["properties"]["source_id"]["maxLength"] == 40


def test_examples_point_editors_at_the_schema() -> None:
    for path in EXAMPLES.glob("*.yaml"):
        assert path.read_text().startswith(
            "# yaml-language-server: $schema=../source-config.schema.json\n"
        ), path


def test_version(cli: Cli) -> None:
    assert cli("--version").stdout == "pullctl 0.1.0\n"


def test_hidden_folders_of_a_mounted_configmap_are_skipped(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "..2026_01_01_00_00_00.123").mkdir()
    (tmp_path / "..2026_01_01_00_00_00.123" / "a.yaml").write_text(BASE)
    (tmp_path / "a.yaml").write_text(BASE)
    result = cli("validate", str(tmp_path))
    assert result.exit_code == 0
    assert result.stderr == "✓ 1 file: 1 source, 0 errors, 0 warnings\n"


def test_anchors_and_merge_keys_share_a_base_and_explicit_keys_win(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "pulls.yaml").write_text(
        "sources:\n"
        "  - &base\n"
        "    source_id: rates-eur\n"
        "    ingestion:\n"
        "      schedule: '0 * * * *'\n"
        "      request: &request {base_url: 'https://api.example.com/rates', parameters: {base: EUR}}\n"
        "  - <<: *base\n"
        "    source_id: rates-usd\n"
        "  - source_id: rates-gbp\n"
        "    ingestion:\n"
        "      schedule: '30 * * * *'\n"
        "      request:\n"
        "        <<: *request\n"
        "        parameters: {base: GBP}\n"
    )
    result = cli("list", "-c", str(tmp_path), "--output", "json")
    assert result.exit_code == 0, result.stderr
    listed = {s["source_id"]: s for s in json.loads(result.stdout)}
    assert sorted(listed) == ["rates-eur", "rates-gbp", "rates-usd"]
    assert listed["rates-usd"]["schedule"] == "0 * * * *"
    assert listed["rates-gbp"]["schedule"] == "30 * * * *"
    loaded = {s.source_id: s for s in load_paths([tmp_path]).sources}
    assert [loaded[s].line for s in ("rates-eur", "rates-usd", "rates-gbp")] == [3, 8, 9]
    assert loaded["rates-usd"].config.ingestion == loaded["rates-eur"].config.ingestion
    gbp = loaded["rates-gbp"].config.ingestion.request
    assert gbp is not None and gbp.base_url == "https://api.example.com/rates"
    assert gbp.parameters == {"base": "GBP"}
