"""Reports (SOURCES.md §8) against the loopback upstream: asynchronous export jobs whose presigned downloads
live on another origin (``Downloads``, which refuses any Authorization), and non-JSON bodies read straight
from an endpoint: CSV, TSV, JSONL, XML, gzip, a gzip bomb."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pullctl.config.models import Job
from pullctl.run.jobs import JobError, JobState, download_urls, job_id, job_state, poll_url
from tests.conftest import Cli
from tests.runkit import Runner, write_source
from tests.servers.upstream import Downloads, Upstream, make_records

TOKEN_ENV = "PULLCTL_SECRET_KUBERNETES_REPORTS_TOKEN"
ACCOUNTS = [{"id": "acme"}, {"id": "globex"}]


@pytest.fixture
def runner(cli: Cli, tmp_path: Path, upstream: Upstream) -> Runner:
    return Runner(cli, tmp_path, {TOKEN_ENV: upstream.bearer_token})


def job_source(
    runner: Runner, upstream: Upstream, *, spec: dict[str, Any] | None = None, **extra: Any
) -> None:
    job: dict[str, Any] = {
        "create": {"url": f"{upstream.url}/reports/jobs", "body": {"report": "{acct.id}", **(spec or {})}},
        "id_path": "id",
        "poll": {
            "url": f"{upstream.url}/reports/jobs/{{job.id}}",
            "every_seconds": 0.02,
            "timeout_seconds": 5,
        },
        "status_path": "status",
        "done": ["ready"],
        "failed": ["failed"],
        "message_path": "error",
        "download": {"url_path": "urls", "credentials": False},
        **extra.pop("job", {}),
    }
    ingestion: dict[str, Any] = {
        "request": {"auth_type": "bearer", "secret_store": "kubernetes", "secret_key": "reports-token"},
        "iteration": {"foreach": "acct", "items": ACCOUNTS, "key": "id"},
        "job": job,
        "response": {"format": "csv"},
        "records": {"split": True},
        "retry": {"initial_delay_seconds": 0.01, "max_delay_seconds": 0.02},
        **extra,
    }
    write_source(runner.config, "exports", **ingestion)


def test_a_gzip_csv_export_job_is_created_polled_and_downloaded_from_another_origin_without_credentials(
    runner: Runner, upstream: Upstream, downloads: Downloads
) -> None:
    job_source(runner, upstream, spec={"files": 2, "polls": 2})
    code, [record], stderr = runner.run_json("exports", PULLCTL_EVENTS=f"{upstream.url}/echo")
    assert code == 0, (record["errors"], stderr)
    assert record["status"] == "succeeded"
    counts = record["counts"]
    assert (counts["items"], counts["fetched"], counts["failed"]) == (2, 2, 0)
    assert counts["stored"] == 2 * len(upstream.records) == record["events"]["sent"]
    # one job per item, created with the item's body; three polls each (two processing, then ready)
    assert [j["spec"] for j in upstream.reports.jobs.values()] == [
        {"report": "acme", "files": 2, "polls": 2},
        {"report": "globex", "files": 2, "polls": 2},
    ]
    assert [j["polls"] for j in upstream.reports.jobs.values()] == [3, 3]
    assert counts["pages"] == 4  # two files per job
    assert counts["requests"] == 2 * (1 + 3 + 2)
    # the downloads carried no credential, and the presigned signature is masked where the URL is kept
    assert len(downloads.requests) == 4
    assert not any("authorization" in r.headers for r in downloads.requests)
    docs = runner.documents("exports")
    assert sorted(int(d["content"]["id"]) for d in docs) == sorted([r["id"] for r in upstream.records] * 2)
    first = next(d for d in docs if d["content"]["id"] == "1" and d["linkage"]["id"] == "acme")
    assert first["content"] == {"id": "1", "name": "record-001", "value": "1.5", "report": "acme"}
    assert first["linkage"] == {"id": "acme", "page": 1}
    assert first["request"]["format"] == "csv" and first["request"]["status"] == 200
    assert first["request"]["url"].startswith(f"{downloads.url}/files/job-1-1.csv.gz?")
    assert first["request"]["url"].endswith("?***")
    # dedup: the same export again stores nothing new and sends no event
    code, [again], _ = runner.run_json("exports", PULLCTL_EVENTS=f"{upstream.url}/echo")
    assert code == 0 and again["counts"]["stored"] == 0
    assert again["counts"]["duplicates"] == 2 * len(upstream.records) and again["events"]["sent"] == 0


def test_a_job_that_reports_failed_fails_the_item_with_the_apis_own_status(
    runner: Runner, upstream: Upstream, downloads: Downloads
) -> None:
    job_source(
        runner,
        upstream,
        spec={"outcome": "failed", "polls": 0},
        iteration={"foreach": "acct", "items": ACCOUNTS[:1], "key": "id"},
    )
    code, [record], _ = runner.run_json("exports")
    assert code == 1 and record["status"] == "failed"
    assert [(e["item"], e["message"]) for e in record["errors"]] == [
        ("acme", "job: job-1 failed: status is 'failed': export quota exceeded")
    ]
    assert downloads.requests == []


def test_a_job_that_never_finishes_fails_the_item_at_the_poll_timeout(
    runner: Runner, upstream: Upstream, downloads: Downloads
) -> None:
    job_source(
        runner,
        upstream,
        spec={"outcome": "never"},
        iteration={"foreach": "acct", "items": ACCOUNTS[:1], "key": "id"},
        job={
            "poll": {
                "url": f"{upstream.url}/reports/jobs/{{job.id}}",
                "every_seconds": 0.05,
                "timeout_seconds": 0.3,
            }
        },
    )
    code, [record], _ = runner.run_json("exports")
    assert code == 1
    assert record["errors"][0]["message"] == (
        "job: job-1 did not finish within job.poll.timeout_seconds=0.3 (last status: 'processing' from"
        f" {upstream.url}/reports/jobs/job-1)"
    )
    assert 2 <= upstream.reports.jobs["job-1"]["polls"] <= 7  # every 0.05 s for 0.3 s, never past it


def test_credentials_true_refuses_a_download_on_another_origin(
    runner: Runner, upstream: Upstream, downloads: Downloads
) -> None:
    job_source(
        runner,
        upstream,
        iteration={"foreach": "acct", "items": ACCOUNTS[:1], "key": "id"},
        job={"download": {"url_path": "urls", "credentials": True}},
    )
    code, [record], _ = runner.run_json("exports")
    assert code == 1
    there, home = downloads.url.removeprefix("http://"), upstream.url.removeprefix("http://")
    assert record["errors"][0]["message"] == (
        f"job: download URL 1 of job-1 is on another origin ({there}); credentials: true sends credentials only to"
        f" {home}: set job.download.credentials: false for presigned URLs"
    )
    assert downloads.requests == []


def test_a_dry_run_creates_no_job_unless_allowed(
    runner: Runner, upstream: Upstream, downloads: Downloads
) -> None:
    job_source(
        runner, upstream, spec={"polls": 0}, iteration={"foreach": "acct", "items": ACCOUNTS[:1], "key": "id"}
    )
    result = runner("run", "exports", "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert upstream.reports.jobs == {} and result.stdout == ""
    assert (
        f"acme: dry run: the report job was not created (POST {upstream.url}/reports/jobs); creating a report"
        " can cost money or quota: add --allow-jobs to create it"
    ) in result.stderr
    allowed = runner("run", "exports", "--dry-run", "--allow-jobs")
    assert allowed.exit_code == 0, allowed.stderr
    printed = [json.loads(line) for line in allowed.stdout.splitlines()]
    assert len(printed) == len(upstream.records) and len(upstream.reports.jobs) == 1
    assert printed[0]["request"]["format"] == "csv"
    refused = runner("run", "exports", "--allow-jobs", PULLCTL_LOG_FORMAT="text")
    assert refused.exit_code == 2
    assert (
        refused.stderr == "error: --allow-jobs goes with --dry-run (a run creates its report jobs anyway)\n"
    )


def test_a_child_s_dry_run_creates_no_job_of_its_parent_unless_allowed(
    runner: Runner, upstream: Upstream, downloads: Downloads
) -> None:
    """A report source as a parent: a child's dry run would create the parent's (costly) job too."""
    job_source(
        runner, upstream, spec={"polls": 0}, iteration={"foreach": "acct", "items": ACCOUNTS[:1], "key": "id"}
    )
    child = {
        "request": {
            "base_url": f"{upstream.url}/v1/forecast",
            "parameters": {"latitude": "{row.id}", "longitude": "0"},
        },
        "iteration": {"foreach": "row", "from_source": "exports", "key": "id"},
    }
    write_source(runner.config, "rows", **child)
    code, records, stderr = runner.run_json("rows", "--dry-run")
    assert upstream.reports.jobs == {}  # nothing created, nothing paid for
    assert code == 1 and records[-1]["counts"]["skipped"] == 1
    assert records[-1]["errors"][0] == {
        "item": "exports:acme",
        "message": f"skipped: parent item skipped: dry run: the report job was not created (POST"
        f" {upstream.url}/reports/jobs); creating a report can cost money or quota: add --allow-jobs to create it",
        "attempts": 0,
    }
    assert records[-1]["message"] == "nothing to fetch: exports gave no records to iterate over"
    code, records, stderr = runner.run_json("rows", "--dry-run", "--allow-jobs")
    assert code == 0, stderr
    assert len(upstream.reports.jobs) == 1 and records[-1]["counts"]["fetched"] == len(upstream.records)


# -- non-JSON bodies straight from an endpoint --------------------------------------------------------------


def body_source(runner: Runner, upstream: Upstream, path: str, **ingestion: Any) -> dict[str, Any]:
    write_source(runner.config, "bodies", **{"request": {"base_url": f"{upstream.url}{path}"}, **ingestion})
    code, [record], _ = runner.run_json("bodies")
    record["exit_code"] = code
    return record


def test_jsonl_with_a_broken_line_fails_the_item_naming_the_line(runner: Runner, upstream: Upstream) -> None:
    record = body_source(
        runner,
        upstream,
        "/reports/bodies/broken.jsonl",
        response={"format": "jsonl"},
        records={"split": True},
    )
    assert record["exit_code"] == 1
    assert record["errors"][0]["message"] == (
        f"jsonl body from {upstream.url}/reports/bodies/broken.jsonl: line 3 is not JSON (Expecting value);"
        ' it starts \'{"id": 3, "name":\''
    )


def test_csv_with_quoted_newlines_and_a_bom_becomes_one_document_of_rows(
    runner: Runner, upstream: Upstream
) -> None:
    record = body_source(runner, upstream, "/reports/bodies/quoted.csv", response={"format": "csv"})
    assert record["exit_code"] == 0 and record["counts"]["stored"] == 1
    [doc] = runner.documents("bodies")
    assert doc["content"] == [
        {"id": "1", "note": 'two\r\nlines, a comma and a "quote"'},
        {"id": "2", "note": "plain"},
    ]
    assert doc["content_type"] == "application/json" and doc["request"]["format"] == "csv"


def test_an_incremental_cursor_reads_the_rows_of_a_streamed_csv(runner: Runner, upstream: Upstream) -> None:
    record = body_source(
        runner,
        upstream,
        "/reports/bodies/quoted.csv",
        response={"format": "csv"},
        records={"split": True},
        incremental={"cursor_path": "id"},
    )
    assert record["exit_code"] == 0 and record["counts"]["stored"] == 2
    state = runner("state", "get", "bodies", "--output", "json")
    assert state.exit_code == 0, state.stderr
    assert json.loads(state.stdout)["value"] == "2"  # the highest id of the streamed rows


def test_tsv_with_a_header_only_is_zero_records_not_an_error(runner: Runner, upstream: Upstream) -> None:
    record = body_source(
        runner,
        upstream,
        "/reports/bodies/header-only.tsv",
        response={"format": "tsv"},
        records={"split": True},
    )
    assert record["exit_code"] == 0 and record["status"] == "succeeded"
    assert (record["counts"]["fetched"], record["counts"]["stored"], record["errors"]) == (1, 0, [])


def test_xml_with_a_billion_laughs_is_refused(runner: Runner, upstream: Upstream) -> None:
    record = body_source(runner, upstream, "/reports/bodies/laughs.xml", response={"format": "xml"})
    assert record["exit_code"] == 1
    assert record["errors"][0]["message"] == (
        f"xml body from {upstream.url}/reports/bodies/laughs.xml: XML entity declarations are refused (entity"
        " 'lol'): expanding entities (a 'billion laughs' payload) could exhaust memory"
    )


def test_xml_records_split_at_their_path(runner: Runner, upstream: Upstream) -> None:
    record = body_source(
        runner,
        upstream,
        "/reports/bodies/orders.xml",
        response={"format": "xml"},
        records={"path": "orders.order", "split": True},
    )
    assert record["exit_code"] == 0 and record["counts"]["stored"] == 2
    assert [d["content"] for d in runner.documents("bodies")] == [
        {"@id": "1", "total": "9.5"},
        {"@id": "2", "total": "3"},
    ]


def test_a_gzip_bomb_fails_the_item_at_max_response_bytes_decompressed(
    runner: Runner, upstream: Upstream
) -> None:
    record = body_source(
        runner,
        upstream,
        "/reports/bomb?mb=100",
        response={"format": "csv", "compression": "gzip"},
        records={"split": True},
    )
    assert record["exit_code"] == 1 and record["counts"]["stored"] == 0
    assert record["errors"][0]["message"] == (
        f"csv body from {upstream.url}/reports/bomb?mb=100: the body is larger than max_response_bytes=10485760"
        " once decompressed; raise request.max_response_bytes if that is expected"
    )


def test_csv_pages_follow_page_number_pagination_until_a_header_only_page(
    runner: Runner, upstream: Upstream
) -> None:
    upstream.records = make_records(20)  # two full pages, then a header line only
    record = body_source(
        runner,
        upstream,
        "/reports/pages.csv",
        response={"format": "csv"},
        records={"split": True},
        pagination={"type": "page_number", "page_size_param": "per_page", "page_size": 10},
    )
    assert record["exit_code"] == 0, record["errors"]
    assert (record["counts"]["stored"], record["counts"]["pages"], record["counts"]["requests"]) == (20, 2, 3)
    docs = runner.documents("bodies")
    assert {d["linkage"]["page"] for d in docs} == {1, 2}
    assert docs[0]["content"] == {"id": "1", "name": "record-001", "value": "1.5"}


def test_jsonl_downloads_without_split_are_one_document_per_file(
    runner: Runner, upstream: Upstream, downloads: Downloads
) -> None:
    job_source(
        runner,
        upstream,
        spec={"files": 2, "polls": 0, "kind": "jsonl"},
        iteration={"foreach": "acct", "items": ACCOUNTS[:1], "key": "id"},
        response={"format": "jsonl"},
        records={"split": False},
    )
    code, [record], _ = runner.run_json("exports")
    assert code == 0, record["errors"]
    docs = runner.documents("exports")
    assert [(d["request"]["page"], len(d["content"])) for d in docs] == [(1, 12), (2, 11)]
    assert docs[0]["content"][0] == {"id": 1, "name": "record-001", "value": 1.5, "report": "acme"}
    assert all(d["request"]["format"] == "jsonl" for d in docs)


def test_a_streamed_body_cut_short_fails_the_item_naming_the_wire(runner: Runner, upstream: Upstream) -> None:
    upstream.fail("/reports/pages.csv", "reset", after_bytes=40)
    record = body_source(
        runner, upstream, "/reports/pages.csv", response={"format": "csv"}, records={"split": True}
    )
    assert record["exit_code"] == 1
    host = upstream.url.removeprefix("http://")
    assert record["errors"][0]["message"] == (
        f"reading {upstream.url}/reports/pages.csv: the connection to {host} broke in the middle of the body:"
        " Response payload is not completed: <ContentLengthError: 400, message='Not enough data to satisfy"
        " content length header (received 40 of 189 bytes).'>"
    )


def test_a_streamed_body_that_trickles_past_the_timeout_fails_the_item(
    runner: Runner, upstream: Upstream
) -> None:
    upstream.fail("/reports/pages.csv", "trickle", chunk_size=20, interval=0.2)
    record = body_source(
        runner,
        upstream,
        "/reports/pages.csv",
        request={"base_url": f"{upstream.url}/reports/pages.csv", "timeout_seconds": 0.5},
        response={"format": "csv"},
        records={"split": True},
    )
    assert record["exit_code"] == 1
    host = upstream.url.removeprefix("http://")
    assert record["errors"][0]["message"].startswith(
        f"reading {upstream.url}/reports/pages.csv: timed out after 0.5 s"
    )
    assert host in record["errors"][0]["message"]


# -- the pure decisions of pullctl/run/jobs.py ---------------------------------------------------------------

JOB = Job.model_validate(
    {
        "create": {"url": "https://api.example.com/exports"},
        "id_path": "data.id",
        "poll": {"url": "https://api.example.com/exports/{job.id}?team={team.id}"},
        "status_path": "state",
        "done": ["ready", 1],
        "failed": ["failed"],
        "message_path": "error.message",
        "download": {"url_path": "files"},
    }
)


@pytest.mark.parametrize(
    ("answer", "phase", "status", "message"),
    [
        ({"state": "ready"}, "done", "ready", None),
        ({"state": 1}, "done", 1, None),
        ({"state": True}, "pending", True, None),  # true is not 1
        ({"state": "1"}, "pending", "1", None),  # "1" is not 1
        ({"state": "failed", "error": {"message": "quota"}}, "failed", "failed", "quota"),
        ({"state": "running"}, "pending", "running", None),
    ],
)
def test_a_poll_answer_says_done_failed_or_pending(
    answer: Any, phase: str, status: Any, message: str | None
) -> None:
    assert job_state(JOB, answer) == JobState(phase, status, message)  # type: ignore[arg-type]


def test_the_answers_that_end_an_item_name_what_came_back() -> None:
    with pytest.raises(JobError) as caught:
        job_state(JOB, {"status": "ready"})
    assert str(caught.value) == "status_path 'state' is not in the poll answer (an object with keys status)"
    assert job_state(JOB, {"data": {"id": 7}}, required=False) == JobState("pending", None)
    for created, got in (({"data": {}}, "an object with keys data"), ({"data": {"id": None}}, "None")):
        with pytest.raises(JobError) as caught:
            job_id(JOB, created)
        assert str(caught.value) == f"the create answer has no job id at id_path 'data.id' (got {got})"
    assert job_id(JOB, {"data": {"id": 7}}) == "7"
    with pytest.raises(JobError) as caught:
        download_urls(JOB, {"state": "ready"}, "https://api.example.com/exports/7")
    assert str(caught.value) == (
        "the finished job's answer has no download URL at url_path 'files' (an object with keys state)"
    )
    with pytest.raises(JobError) as caught:
        download_urls(JOB, {"files": ["https://a.example/1", 3]}, "https://api.example.com/")
    assert str(caught.value) == "url_path 'files' item 1 holds 3, not a URL"
    with pytest.raises(JobError) as caught:
        download_urls(JOB, {"files": "ftp://a.example/1"}, "https://api.example.com/")
    assert str(caught.value) == "download URL 1 is not http(s): 'ftp://a.example/1'"


def test_download_urls_are_one_or_a_list_joined_to_the_poll_url_and_the_id_is_percent_encoded() -> None:
    base = "https://api.example.com/exports/7"
    assert download_urls(JOB, {"files": "/f/1.csv"}, base) == ["https://api.example.com/f/1.csv"]
    assert download_urls(JOB, {"files": ["https://s3.example/a?sig=x", "b"]}, base) == [
        "https://s3.example/a?sig=x",
        "https://api.example.com/exports/b",
    ]
    context = {"team": {"id": "t 1"}}
    assert poll_url(JOB, context, "a/b?c") == "https://api.example.com/exports/a%2Fb%3Fc?team=t%201"
