"""Asynchronous report jobs (SOURCES.md §8): create one per item, poll it until done, download every URL.

The decisions are pure and small: ``job_id`` (the create answer's id), ``job_state`` (done, failed or
pending, with the API's own status), ``download_urls`` (a string or a list, joined to the poll URL) and
``poll_url`` (``{job.id}`` filled in). ``job_pages`` is the I/O: it drives them through the fetcher's
attempts, so create, poll and download get the retry policy, the rate limit, auth, redirects and redaction
of every other request.

    create ─▶ id ─▶ (status in the create answer, if any) ─▶ wait every_seconds ─▶ poll ─▶ ... ─▶ done
      done ─▶ download URL 1 (page 1), URL 2 (page 2), ... in response.format
      failed ─▶ the item fails with the API's status (and message_path)
      still pending at timeout_seconds ─▶ the item fails with the last status

Downloads with ``credentials: false`` (presigned URLs, usually on another origin) carry no auth and no
configured headers; their query string is their credential, so it is masked wherever the URL is shown or
stored. With ``credentials: true`` a download must be on the create call's origin.

Waits go through the run's ``sleep`` (tests pass a fast one); the deadline counts the larger of the time
that passed and the time waited, so an injected sleep that returns at once still reaches it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urljoin, urlsplit

from pullctl.config import templates
from pullctl.config.models import JOB_VARIABLE, Job, ResponseFormat
from pullctl.config.paths import describe, parse_path
from pullctl.errors import FetchError, ItemSkippedError
from pullctl.run.pages import PageRequest, PageView
from pullctl.run.pagination import PaginationError, paginator
from pullctl.run.plan import FetchTask
from pullctl.run.reader import Call, Page
from pullctl.transport_errors import host_of

logger = logging.getLogger("pullctl")

if TYPE_CHECKING:
    from pullctl.run.fetch import Fetcher


class JobError(Exception):
    """What a job's answer says that ends the item; the message names it."""


@dataclass(frozen=True)
class JobState:
    phase: Literal["done", "failed", "pending"]
    status: Any  # the API's own value (MISSING-free: None when the answer has none yet)
    message: str | None = None  # message_path, for a failed job


def job_id(job: Job, created: Any) -> str:
    found = parse_path(job.id_path).find(created)
    value = found.value
    if found.missing or value is None or isinstance(value, dict | list | bool) or value == "":
        got = describe(created) if found.missing else f"{value!r}"
        raise JobError(f"the create answer has no job id at id_path '{job.id_path}' (got {got})")
    return str(value)


def job_state(job: Job, answer: Any, *, required: bool = True) -> JobState:
    """Done, failed or pending, by ``status_path``. ``required`` False: an answer without a status (a
    create answer that only says the id) is pending."""
    found = parse_path(job.status_path).find(answer)
    if found.missing:
        if not required:
            return JobState("pending", None)
        raise JobError(f"status_path '{job.status_path}' is not in the poll answer ({describe(answer)})")
    status = found.value
    if _is_in(status, job.done):
        return JobState("done", status)
    if _is_in(status, job.failed):
        message = parse_path(job.message_path).get(answer) if job.message_path else None
        return JobState("failed", status, None if message is None else str(message))
    return JobState("pending", status)


def _is_in(value: Any, statuses: list[Any]) -> bool:
    """JSON equality: ``true`` is not 1, "1" is not 1."""
    return any(value == s and type(value) is type(s) for s in statuses)


def download_urls(job: Job, answer: Any, base: str) -> list[str]:
    """The finished job's download URLs (``url_path`` holds one or a list), absolute."""
    path = job.download.url_path
    found = parse_path(path).find(answer)
    if found.missing or found.value is None:
        raise JobError(
            f"the finished job's answer has no download URL at url_path '{path}' ({describe(answer)})"
        )
    value = found.value
    urls = value if isinstance(value, list) else [value]
    out: list[str] = []
    for n, url in enumerate(urls):
        if not isinstance(url, str) or not url:
            where = f"url_path '{path}'" + (f" item {n}" if isinstance(value, list) else "")
            raise JobError(f"{where} holds {describe(url)}, not a URL")
        absolute = urljoin(base, url)
        if urlsplit(absolute).scheme not in ("http", "https"):
            raise JobError(f"download URL {n + 1} is not http(s): {absolute[:80]!r}")
        out.append(absolute)
    return out


def poll_url(job: Job, context: Mapping[str, Any], id_: str) -> str:
    """``job.poll.url`` rendered for the item, ``{job.id}`` percent-encoded like every URL value."""
    return templates.parse(job.poll.url).render({**context, JOB_VARIABLE: {"id": id_}}, quote_values=True)


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return (
        parts.scheme,
        (parts.hostname or "").lower(),
        parts.port or {"http": 80, "https": 443}.get(parts.scheme),
    )


# -- the I/O --------------------------------------------------------------------------------------------


async def job_pages(fetcher: Fetcher, job: Job, task: FetchTask) -> AsyncIterator[Page]:
    """The item's job, created, polled and downloaded: each download is a page (1, 2, ...)."""
    redact = fetcher.redact
    if not fetcher.create_jobs:
        said = redact(
            f"dry run: the report job was not created ({fetcher.request.method} {task.url}); creating a"
            " report can cost money or quota: add --allow-jobs to create it"
        )
        logger.warning(f"{task.key}: {said}", extra={"event": "job_not_created", "item": task.key})
        raise ItemSkippedError(said)
    try:
        created = await fetcher.call(
            PageRequest(task.url, task.params, 1, task.headers, task.body), task, Call()
        )
        id_ = job_id(job, created.data)
        answer, url = await _wait(fetcher, job, task, id_, created.data)
        urls = download_urls(job, answer, url)
    except JobError as exc:
        raise FetchError(redact(f"job: {exc}"), 1) from None
    home = _origin(task.url)
    call = Call(
        method="GET",
        credentials=job.download.credentials,
        response=fetcher.page_call.response or ResponseFormat(),
        stream=fetcher.page_call.stream,
        timeout=job.download.timeout_seconds,
    )
    for number, target in enumerate(urls, 1):
        if job.download.credentials and _origin(target) != home:
            raise FetchError(
                redact(
                    f"job: download URL {number} of {id_} is on another origin ({host_of(target)});"
                    f" credentials: true sends credentials only to {host_of(task.url)}: set"
                    " job.download.credentials: false for presigned URLs"
                ),
                1,
            )
        query = urlsplit(target).query
        if not job.download.credentials and query:
            redact.add(query)  # a presigned URL's signature: a credential until it expires
        page = await fetcher.call(PageRequest(target, None, number, {}), task, call)
        if page.stream is not None:
            async for part in fetcher.parts(page):
                yield part
            continue
        kept = _kept(fetcher, page)
        if kept is not None:
            yield kept


async def _wait(fetcher: Fetcher, job: Job, task: FetchTask, id_: str, created: Any) -> tuple[Any, str]:
    """Poll until the job is done: (the done answer, the poll URL); ``JobError`` when it failed or ran out
    of time."""
    url = poll_url(job, task.context, id_)
    every, timeout = job.poll.every_seconds, job.poll.timeout_seconds
    loop = asyncio.get_running_loop()
    started, waited = loop.time(), 0.0
    state, answer = job_state(job, created, required=False), created
    while state.phase == "pending":
        remaining = timeout - max(loop.time() - started, waited)
        if remaining <= 0:
            last = "none yet" if state.status is None else repr(state.status)
            raise JobError(
                f"{id_} did not finish within job.poll.timeout_seconds={timeout:g}"
                f" (last status: {last} from {fetcher.redact(url)})"
            )
        pause = min(every, remaining)
        await fetcher.sleep(pause)
        waited += pause
        answer = (await fetcher.call(PageRequest(url, None, 1, task.headers), task, Call(method="GET"))).data
        state = job_state(job, answer)
    if state.phase == "failed":
        said = f": {state.message}" if state.message else ""
        raise JobError(f"{id_} failed: {job.status_path} is {state.status!r}{said}")
    return answer, url


def _kept(fetcher: Fetcher, page: Page) -> Page | None:
    """A held download's records (records.path for json and xml), as the paginator reads a page; an empty one
    is not kept."""
    pager = paginator(fetcher.pagination, fetcher.records_path)
    try:
        step = pager.advance(
            PageRequest(page.final_url, None, page.number), PageView(page.data, page.final_url)
        )
    except PaginationError as exc:
        raise FetchError(fetcher.redact(f"download {page.number} from {page.url}: {exc}"), 1) from None
    if fetcher.split and step.records is None:
        raise FetchError(
            fetcher.redact(
                f"records.split stores each record, but download {page.number} from {page.url} is"
                f" {describe(page.data)}, not a list: set records.path to where its records are"
            ),
            1,
        )
    page.records = step.records
    return page if step.keep else None
