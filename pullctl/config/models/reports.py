"""Reports: non-JSON bodies (``response``) and asynchronous jobs (``job``), SOURCES.md §8."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator

from pullctl.config.models.base import PATH_HELP, FieldProblem, Strict, check_path, check_url

# -- reports: non-JSON bodies and asynchronous jobs (SOURCES.md §8) ----------------------------------

ResponseFormatName = Literal["json", "jsonl", "csv", "tsv", "xml"]
ROW_FORMATS = ("jsonl", "csv", "tsv")  # the body is a list of records, parsed (and streamed) row by row
# what the paginator reads of a body that has no JSON: the types and fields that work on rows
ROW_PAGINATION = ("none", "page_number", "offset", "link_header", "cursor")
JSON_PAGINATION_FIELDS = ("next_url_path", "has_more_path", "done_path", "total_path")


class CsvOptions(Strict):
    delimiter: Annotated[str, Field(min_length=1, max_length=1)] | None = Field(
        None, description="one character; default: , for csv, a tab for tsv"
    )
    header: bool = Field(
        True,
        description="the first line names the columns (rows become objects);"
        " false: each row is a list of strings",
    )
    quote: Annotated[str, Field(max_length=1)] | None = Field(
        None, description='the quote character; "" for none; default: " for csv, none for tsv (IANA TSV)'
    )


class ResponseFormat(Strict):
    format: ResponseFormatName = Field(
        "json", description="what the body is: json, jsonl (a JSON value per line), csv, tsv or xml"
    )
    compression: Literal["auto", "gzip", "none"] = Field(
        "auto",
        description="the body's own compression (Content-Encoding is always decoded): auto = gzip when the"
        " body starts with gzip's magic bytes",
    )
    csv: CsvOptions = Field(default_factory=CsvOptions, description="csv and tsv: how rows are written")


JobStatus = str | int
CallUrl = Annotated[str, Field(min_length=1), AfterValidator(check_url)]


class JobCreate(Strict):
    method: Literal["GET", "POST"] = "POST"
    url: CallUrl = Field(description="the call that creates the report; templates")
    body: Any = Field(None, description="POST JSON body; templates inside string values")

    @model_validator(mode="after")
    def _body(self) -> JobCreate:
        if self.method == "GET" and self.body is not None:
            raise FieldProblem("body", "a body needs method: POST")
        return self


class JobPoll(Strict):
    url: CallUrl = Field(description="GET until done; {job.id} and templates")
    every_seconds: Annotated[float, Field(gt=0, le=3600)] = Field(30.0, description="wait between polls")
    timeout_seconds: Annotated[float, Field(gt=0, le=7 * 86400)] = Field(
        3600.0, description="a job not done by then fails the item with its last status"
    )


class JobDownload(Strict):
    url_path: Annotated[str, Field(min_length=1), AfterValidator(check_path)] = Field(
        description=f"where the finished job's download URL (or list of URLs) is: {PATH_HELP}"
    )
    credentials: bool = Field(
        False,
        description="send request auth and headers with the downloads (same origin only); false: presigned"
        " URLs, fetched with no credentials",
    )
    timeout_seconds: Annotated[float, Field(gt=0, le=86400)] = Field(
        3600.0, description="bounds each download, connect to last byte"
    )


class Job(Strict):
    """An asynchronous report: create it, poll it until done, download every URL it hands out."""

    create: JobCreate
    id_path: Annotated[str, Field(min_length=1), AfterValidator(check_path)] = Field(
        description=f"where the created job's id is: {PATH_HELP}"
    )
    poll: JobPoll
    status_path: Annotated[str, Field(min_length=1), AfterValidator(check_path)] = Field(
        description=f"where the poll answer's status is: {PATH_HELP}"
    )
    done: Annotated[list[JobStatus], Field(min_length=1)] = Field(description="statuses that mean done")
    failed: list[JobStatus] = Field(default_factory=list, description="statuses that mean failed")
    message_path: Annotated[str, AfterValidator(check_path)] | None = Field(
        None, description="where a failed job's own message is, for the item's error"
    )
    download: JobDownload

    @model_validator(mode="after")
    def _statuses(self) -> Job:
        both = [s for s in self.done if s in self.failed]
        if both:
            raise FieldProblem("failed", f"{both[0]!r} is in done and in failed")
        return self
