"""Items from another source (SOURCES.md §1, §3): parent/child chains, records, one document per record.

The chain is Microsoft Graph's teams -> channels -> messages on the loopback upstream, each level paged in
another style: the Link header, a next URL at ``/@odata.nextLink`` (a JSON Pointer: the key holds a dot),
and a cursor.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import Cli
from tests.runkit import Runner
from tests.servers.upstream import GraphShape, Upstream


@pytest.fixture
def runner(cli: Cli, tmp_path: Path) -> Runner:
    return Runner(cli, tmp_path)


def graph_sources(url: str, **overrides: dict[str, Any]) -> list[dict[str, Any]]:
    """The README's example, against the test upstream: teams (a parent only) -> channels -> messages."""
    retry = {"max_attempts": 2, "initial_delay_seconds": 0.01}
    sources = {
        "teams": {
            "request": {"base_url": f"{url}/graph/teams"},
            "pagination": {"type": "link_header"},
            "retry": retry,
        },
        "teams-channels": {
            "request": {"base_url": f"{url}/graph/teams/{{team.id}}/channels"},
            "iteration": {"foreach": "team", "from_source": "teams", "key": "id", "concurrency": 4},
            "records": {"path": "value"},
            "pagination": {"type": "next_url", "next_url_path": "/@odata.nextLink"},
            "retry": retry,
        },
        "channel-messages": {
            "schedule": "0 * * * *",
            "request": {"base_url": f"{url}/graph/teams/{{team.id}}/channels/{{channel.id}}/messages"},
            "iteration": {
                "foreach": "channel",
                "from_source": "teams-channels",
                "key": "id",
                "concurrency": 8,
            },
            "records": {"path": "data", "split": True},
            "pagination": {"type": "cursor", "cursor_path": "next_cursor"},
            "retry": retry,
        },
    }
    for name, changes in overrides.items():
        sources[name] = {**sources[name], **changes}
    return [{"source_id": sid, "ingestion": ing} for sid, ing in sources.items()]


def write(runner: Runner, sources: list[dict[str, Any]]) -> None:
    runner.config.mkdir(parents=True, exist_ok=True)
    (runner.config / "graph.yaml").write_text(yaml.safe_dump({"sources": sources}, sort_keys=False))


def test_three_level_chain_stores_every_message_once_with_its_parents_in_the_linkage(
    runner: Runner, upstream: Upstream
) -> None:
    upstream.graph = GraphShape(teams=3, channels=3, messages=12)
    write(runner, graph_sources(upstream.url))
    code, [record], _ = runner.run_json("channel-messages")
    assert code == 0, record["errors"]
    c = record["counts"]
    assert (record["status"], c["items"], c["fetched"], c["failed"]) == ("succeeded", 9, 9, 0)
    # teams: 2 pages (per_page 2 of 3); channels: 2 pages per team (2 + 1); messages: 2 pages per channel
    assert c["parent_requests"] == 2 + 3 * 2 and c["requests"] == 9 * 2 and c["pages"] == 9 * 2
    docs = runner.documents("channel-messages")
    assert sorted(d["content"]["id"] for d in docs) == sorted(
        f"t{t}-c{ch}-m{m}" for t in range(1, 4) for ch in range(1, 4) for m in range(1, 13)
    )
    assert (
        c["stored"] == 3 * 3 * 12 and not runner.documents("teams") and not runner.documents("teams-channels")
    )
    one = next(d for d in docs if d["content"]["id"] == "t2-c3-m11")
    assert one["linkage"] == {
        "id": "t2-c3",
        "displayName": "Channel t2-c3",
        "team": {"id": "t2", "displayName": "Team 2"},
        "page": 2,
    }
    assert one["request"]["url"].endswith("/graph/teams/t2/channels/t2-c3/messages?cursor=cG9zOjEw")


def test_split_records_a_changed_record_is_the_only_new_document(runner: Runner, upstream: Upstream) -> None:
    upstream.records = [{"id": i, "name": f"n{i}", "value": i} for i in range(1, 24)]
    source = {
        "source_id": "records",
        "ingestion": {
            "request": {"base_url": f"{upstream.url}/pages/page-number", "parameters": {"per_page": 10}},
            "records": {"path": "data", "split": True},
            "pagination": {"type": "page_number"},
        },
    }
    write(runner, [source])
    code, [first], _ = runner.run_json("records")
    assert code == 0 and first["counts"]["stored"] == 23 and first["counts"]["pages"] == 3
    upstream.records[16] = {**upstream.records[16], "value": 999}
    code, [second], _ = runner.run_json("records")
    assert code == 0 and (second["counts"]["stored"], second["counts"]["duplicates"]) == (1, 22)
    new = [d for d in runner.documents("records") if d["run_id"] == second["run_id"]]
    assert [d["content"] for d in new] == [{"id": 17, "name": "n17", "value": 999}]
    assert new[0]["linkage"] == {"page": 2} and new[0]["request"]["page"] == 2


def test_a_parent_page_that_fails_fails_the_run_naming_the_page(runner: Runner, upstream: Upstream) -> None:
    upstream.graph = GraphShape(teams=3, channels=3, messages=3)
    write(runner, graph_sources(upstream.url))
    upstream.fail("/graph/teams", "status", status=500, query={"page": "2"})
    code, [record], _ = runner.run_json("teams-channels")
    assert code == 1 and record["status"] == "failed"
    assert record["message"].startswith(
        "parent source 'teams' (item teams): HTTP 500 Internal Server Error from "
    )
    assert (
        "/graph/teams?page=2&per_page=2" in record["message"]
        and "(gave up after 2 attempts)" in record["message"]
    )


def test_a_child_that_404s_for_one_item_fails_that_item_only(runner: Runner, upstream: Upstream) -> None:
    upstream.graph = GraphShape(teams=2, channels=1, messages=3)
    write(runner, graph_sources(upstream.url))
    upstream.fail("/graph/teams/t2/channels/t2-c1/messages", "status", status=404)
    code, [record], _ = runner.run_json("channel-messages")
    assert code == 3 and record["status"] == "partial"
    assert record["failed_items"] == ["t2-c1"] and record["counts"]["stored"] == 3
    code, [again], _ = runner.run_json("channel-messages", "--replay", record["run_id"])
    assert again["counts"]["items"] == 2 and again["counts"]["fetched"] + again["counts"]["failed"] == 1


def test_only_limit_and_shard_pick_child_items(runner: Runner, upstream: Upstream) -> None:
    upstream.graph = GraphShape(teams=3, channels=2, messages=1)
    write(runner, graph_sources(upstream.url))
    _, [only], _ = runner.run_json("channel-messages", "--only", "id=t3-c2")
    assert (only["counts"]["fetched"], only["counts"]["stored"]) == (1, 1)
    _, [limited], _ = runner.run_json("channel-messages", "--limit", "2")
    assert limited["counts"]["fetched"] == 2
    fetched = [runner.run_json("channel-messages", "--shard", f"{i}/3")[1][0] for i in range(3)]
    assert sum(r["counts"]["fetched"] for r in fetched) == 6


def test_a_source_without_schedule_runs_by_hand_and_is_not_rendered(
    runner: Runner, upstream: Upstream
) -> None:
    write(runner, graph_sources(upstream.url))
    code, [record], _ = runner.run_json("teams")
    assert code == 0 and record["counts"]["stored"] == 2  # two Link-header pages
    listed = json.loads(runner("list", "--output", "json").stdout)
    assert {s["source_id"]: s["schedule"] for s in listed} == {
        "teams": None,
        "teams-channels": None,
        "channel-messages": "0 * * * *",
    }
    rendered = runner("render", "--image", "pullctl:test")
    assert rendered.exit_code == 0
    assert "name: pull-channel-messages" in rendered.stdout and "pull-teams" not in rendered.stdout
    assert "skipped teams, teams-channels: no schedule (they run by hand or as a parent)" in rendered.stderr
    named = runner("render", "teams", "--image", "pullctl:test", PULLCTL_LOG_FORMAT="text")
    assert named.exit_code == 2 and named.stderr.strip() == (
        "error: source 'teams' has no schedule: it runs by hand (pullctl run teams) or as a parent, and becomes"
        " no CronJob"
    )
    sharded = graph_sources(upstream.url)
    sharded[2]["ingestion"]["iteration"]["shards"] = 3
    write(runner, sharded)
    notes = runner("render", "--image", "pullctl:test").stderr
    assert "channel-messages: each of its 3 shards pages the parent teams-channels" in notes


def test_batch_sends_up_to_size_items_per_request(runner: Runner, upstream: Upstream) -> None:
    source = {
        "source_id": "users",
        "ingestion": {
            "request": {"base_url": f"{upstream.url}/graph/users", "parameters": {"ids": "{user.id}"}},
            "iteration": {
                "foreach": "user",
                "items": [{"id": f"u{n}", "team": "a"} for n in range(1, 6)],
                "batch": {"size": 2, "join": ","},
            },
            "records": {"path": "value", "split": True},
        },
    }
    write(runner, [source])
    code, [record], _ = runner.run_json("users")
    assert code == 0 and record["counts"]["requests"] == 3 and record["counts"]["stored"] == 5
    asked = [r.query["ids"] for r in upstream.requests if r.path == "/graph/users"]
    assert asked == ["u1,u2", "u3,u4", "u5"]
    linkage = {d["content"]["id"]: d["linkage"] for d in runner.documents("users")}
    assert linkage["u3"] == {"id": ["u3", "u4"], "team": ["a", "a"], "page": 1}


def test_a_failed_batch_names_and_replays_every_item_in_it(runner: Runner, upstream: Upstream) -> None:
    items = [{"id": f"u{n}"} for n in range(1, 6)]
    source = {
        "source_id": "users",
        "ingestion": {
            "request": {"base_url": f"{upstream.url}/graph/users", "parameters": {"ids": "{user.id}"}},
            "iteration": {"foreach": "user", "items": items, "batch": {"size": 2}},
            "retry": {"max_attempts": 1},
        },
    }
    write(runner, [source])
    upstream.fail("/graph/users", "status", status=404, query={"ids": "u3,u4"}, times=1)
    code, [record], _ = runner.run_json("users")
    assert code == 3 and record["failed_items"] == ["u3", "u4"]
    assert record["errors"][0]["item"] == "u3..u4 (2 items)"
    code, [again], _ = runner.run_json("users", "--replay", record["run_id"])
    assert code == 0 and again["counts"]["requests"] == 1
    assert [r.query["ids"] for r in upstream.requests][-1] == "u3,u4"


def child(
    source_id: str, parent: str, foreach: str = "x", url: str = "https://api.example.com/{x.id}"
) -> str:
    return (
        f"source_id: {source_id}\n"
        "ingestion:\n"
        f"  request: {{base_url: '{url}'}}\n"
        f"  iteration: {{foreach: {foreach}, from_source: {parent}}}\n"
    )


ROOT = "source_id: root\ningestion:\n  request: {base_url: 'https://api.example.com/root'}\n"


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            {"a.yaml": child("a", "rooot"), "root.yaml": ROOT},
            [
                "a.yaml:4:40: ingestion.iteration.from_source: no source 'rooot' in the configs; did you mean 'root'?"
            ],
        ),
        (
            {"a.yaml": child("a", "b"), "b.yaml": child("b", "a", "y", "https://api.example.com/{y.id}")},
            [
                "a.yaml:4:40: ingestion.iteration.from_source: the sources form a cycle: a -> b -> a",
                "b.yaml:4:40: ingestion.iteration.from_source: the sources form a cycle: b -> a -> b",
            ],
        ),
        (
            {
                "root.yaml": ROOT,
                "c1.yaml": child("c1", "root", "a", "https://api.example.com/{a.id}"),
                "c2.yaml": child("c2", "c1", "b", "https://api.example.com/{b.id}"),
                "c3.yaml": child("c3", "c2", "c", "https://api.example.com/{c.id}"),
                "c4.yaml": child("c4", "c3", "d", "https://api.example.com/{d.id}"),
            },
            [
                "c4.yaml:4:40: ingestion.iteration.from_source: the chain c4 -> c3 -> c2 -> c1 -> root is deeper"
                " than 4 sources"
            ],
        ),
        (
            {
                "root.yaml": ROOT.replace("ingestion:\n", "ingestion:\n  mode: blob_trigger\n"),
                "a.yaml": child("a", "root"),
            },
            [
                "a.yaml:4:40: ingestion.iteration.from_source: source 'root' has mode blob_trigger: it fetches nothing"
            ],
        ),
        (
            {
                "root.yaml": ROOT,
                "c1.yaml": child("c1", "root", "team", "https://api.example.com/{team.id}"),
                "c2.yaml": child("c2", "c1", "channel", "https://api.example.com/{teem.id}/{channel.id}"),
            },
            [
                "c2.yaml:3:23: ingestion.request.base_url: template '{teem.id}' names unknown variable 'teem'"
                " (known: channel, run, secret, source, team, window); did you mean '{team.id}'?"
            ],
        ),
        (
            {
                "root.yaml": ROOT,
                "c1.yaml": child("c1", "root", "team", "https://api.example.com/{team.id}"),
                "c2.yaml": child("c2", "c1", "team", "https://api.example.com/{team.id}"),
            },
            [
                "c2.yaml:4:24: ingestion.iteration.foreach: 'team' is also an ancestor's foreach name; pick another name"
            ],
        ),
        (
            {"root.yaml": ROOT.replace("base_url: '", "base_url: 'ftp:"), "a.yaml": child("a", "root")},
            [
                "a.yaml:4:40: ingestion.iteration.from_source: source 'root' is invalid (see its errors in root.yaml)",
                "root.yaml:3:23: ingestion.request.base_url: must be an absolute http(s) URL with a literal host, e.g."
                " https://api.example.com/v1 (got 'ftp:https://api.example.com/root')",
            ],
        ),
    ],
    ids=[
        "unknown",
        "cycle",
        "too-deep",
        "parent-mode",
        "ancestor-template",
        "ancestor-foreach",
        "invalid-parent",
    ],
)
def test_parent_child_validation_errors_are_located(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: dict[str, str], expected: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    for name, text in files.items():
        Path(name).write_text(text)
    result = cli("validate", *sorted(files))
    assert result.exit_code == 2
    assert [line for line in result.stdout.splitlines() if ": ingestion." in line] == expected


def test_stop_when_empty_path_still_works_and_validate_names_records_path(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("a.yaml").write_text(ROOT + "  pagination: {type: page_number, stop_when_empty_path: data}\n")
    for flags in ((), ("--strict",)):  # an alias, not a pass-through section: --strict keeps it valid
        result = cli("validate", "a.yaml", *flags)
        assert result.exit_code == 0
        assert (
            "a.yaml:4:57: ingestion.pagination.stop_when_empty_path: an alias of records.path: write records:"
            " {path: data} instead (warning)" in result.stdout
        )


def test_a_parent_over_static_items_and_a_parent_page_without_records(
    runner: Runner, upstream: Upstream
) -> None:
    upstream.graph = GraphShape(teams=2, channels=2, messages=1)
    static_teams = {"foreach": "team", "items": [{"id": "t1"}, {"id": "t2"}], "key": "id"}
    write(runner, graph_sources(upstream.url, **{"teams-channels": {"iteration": static_teams}}))
    code, [record], _ = runner.run_json("channel-messages")
    assert code == 0 and record["counts"]["items"] == 4 and record["counts"]["parent_requests"] == 2
    unpaged = {
        "records": None,
        "pagination": {"type": "none"},
    }  # a channels page is an object: no records list
    write(runner, graph_sources(upstream.url, **{"teams-channels": {**unpaged, "iteration": static_teams}}))
    code, [record], _ = runner.run_json("channel-messages")
    assert code == 1 and record["message"].startswith(
        "parent source 'teams-channels' (item t1): page 1 from "
    )
    assert record["message"].endswith(
        "has no records list (an object with keys @odata.context, value): set records.path"
    )


def test_a_parent_item_a_skip_rule_matches_is_counted_as_skipped_and_the_rest_go_on(
    runner: Runner, upstream: Upstream
) -> None:
    """response_actions skip on a parent: that parent item is a skipped item of the child's run (said, with
    the reason), not a failure; its siblings' records are all fetched. Without the rule the run fails."""
    upstream.graph = GraphShape(teams=2, channels=2, messages=1)
    teams = {"foreach": "team", "items": [{"id": "t1"}, {"id": "t9"}, {"id": "t2"}], "key": "id"}
    skip = {"iteration": teams, "response_actions": [{"status": [404], "action": "skip"}]}
    write(runner, graph_sources(upstream.url, **{"teams-channels": skip}))
    code, [record], _ = runner.run_json("channel-messages")
    assert code == 0, record["errors"]
    c = record["counts"]
    assert (c["items"], c["fetched"], c["stored"], c["skipped"], c["failed"]) == (4, 4, 4, 1, 0)
    [error] = record["errors"]
    assert error["item"] == "teams-channels:t9"
    assert error["message"].startswith("skipped: parent item skipped: ")
    assert error["message"].endswith("(response_actions[0]: skip)")
    write(runner, graph_sources(upstream.url, **{"teams-channels": {"iteration": teams}}))
    code, [record], _ = runner.run_json("channel-messages")
    assert code == 1 and record["message"].startswith("parent source 'teams-channels' (item t9): ")


def test_a_parent_sends_its_own_named_secret(runner: Runner, upstream: Upstream) -> None:
    upstream.graph = GraphShape(teams=2, channels=1, messages=1)
    secrets = {"secrets": {"graph": {"secret_store": "kubernetes", "secret_key": "graph-token"}}}
    teams = {
        **secrets,
        "request": {"base_url": f"{upstream.url}/graph/teams", "headers": {"X-Token": "{secret.graph}"}},
    }
    write(runner, graph_sources(upstream.url, teams=teams))
    code, [record], log = runner.run_json(
        "teams-channels", PULLCTL_SECRET_KUBERNETES_GRAPH_TOKEN="g-s3cr3t-token"
    )
    assert code == 0 and record["counts"]["fetched"] == 2
    assert [r.headers.get("x-token") for r in upstream.requests if r.path == "/graph/teams"] == [
        "g-s3cr3t-token"
    ]
    assert "g-s3cr3t-token" not in log


def test_a_parent_record_that_is_no_object_fails_the_run(runner: Runner, upstream: Upstream) -> None:
    write(runner, graph_sources(upstream.url))
    upstream.fail("/graph/teams", "json", body=[1, 2])  # a list of numbers: no team to fill {team.id}
    code, [record], _ = runner.run_json("teams-channels")
    assert code == 1 and record["message"].startswith(
        "parent source 'teams' (item teams): record 0 of page 1 from "
    )
    assert record["message"].endswith("is 1, not an object: a child's items are objects")
