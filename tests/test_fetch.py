"""Single HTTP behaviours of the fetcher on its transport seam (``httpx.MockTransport``): retries,
Retry-After, auth, bodies, redirects. The shipped transport is covered against loopback servers
(tests/test_transport_errors.py, tests/test_run.py and the reliability suite)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from pullctl.config.models import Retry, SourceConfig
from pullctl.errors import FetchError
from pullctl.redact import Redactor
from pullctl.retry import backoff_delay, retry_after_seconds
from pullctl.run.fetch import USER_AGENT, Fetcher, RateLimiter, with_query
from pullctl.run.plan import FetchTask

URL = "https://api.example.com/v1/data"
Answer = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


def config(**request: Any) -> SourceConfig:
    retry = request.pop("retry", {})
    pagination = request.pop("pagination", {"type": "none"})
    return SourceConfig.model_validate(
        {
            "source_id": "s",
            "ingestion": {
                "schedule": "@daily",
                "request": {"base_url": URL, **request},
                "retry": {"initial_delay_seconds": 1, "max_delay_seconds": 30, **retry},
                "pagination": pagination,
            },
        }
    )


def json_response(data: Any, status: int = 200, **headers: str) -> httpx.Response:
    return httpx.Response(status, json=data, headers=headers)


class Harness:
    """A fetcher over ``httpx.MockTransport``: each request takes the next of ``answers`` (a response, an
    exception to raise, or a function of the request), and is kept in ``sent``."""

    def __init__(
        self, cfg: SourceConfig, secret: str | None = None, answers: list[Answer] | None = None
    ) -> None:
        self.sleeps: list[float] = []
        self.counts = {"requests": 0, "retries": 0}
        self.redact = Redactor([secret] if secret else [])
        self.answers: list[Answer] = list(answers or [])
        self.sent: list[httpx.Request] = []

        async def sleep(seconds: float) -> None:
            self.sleeps.append(seconds)

        self.cfg, self.secret, self.sleep = cfg, secret, sleep

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        assert self.answers, f"no answer left for {request.method} {request.url}"
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer(request) if callable(answer) else answer

    async def pages(self, task: FetchTask | None = None) -> list[Any]:
        transport = httpx.MockTransport(self.handle)
        fetcher = Fetcher(
            self.cfg, transport, self.secret, self.redact, self.counts, sleep=self.sleep, rng=lambda: 0.5
        )
        return [p async for p in fetcher.pages(task or FetchTask("k", URL, {}, {}, None, {}))]


@pytest.mark.anyio
async def test_retry_after_seconds_is_obeyed() -> None:
    h = Harness(config(), answers=[json_response({}, 429, **{"Retry-After": "7"}), json_response({"ok": 1})])
    [page] = await h.pages()
    assert page.data == {"ok": 1}
    assert h.sleeps == [7.0] and h.counts == {"requests": 2, "retries": 1}


@pytest.mark.anyio
async def test_retry_after_http_date_is_obeyed_and_capped() -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    h = Harness(config(), answers=[json_response({}, 503, **{"Retry-After": when}), json_response([1])])
    await h.pages()
    assert h.sleeps == [30.0]  # capped at max_delay_seconds


@pytest.mark.anyio
async def test_retry_after_zero_is_no_hint() -> None:
    h = Harness(config(), answers=[*[json_response({}, 429, **{"Retry-After": "0"})] * 2, json_response({})])
    await h.pages()
    assert h.sleeps == [0.75, 1.5]  # exponential with equal jitter (rng 0.5), not zero


@pytest.mark.anyio
async def test_retry_after_above_the_cap_fails_at_once() -> None:
    h = Harness(config(), answers=[json_response({}, 429, **{"Retry-After": "3600"})])
    with pytest.raises(FetchError) as exc:
        await h.pages()
    assert exc.value.message == "rate limited for 3600 s (Retry-After above max_retry_after_seconds=300)"
    assert exc.value.attempts == 1 and h.sleeps == []


@pytest.mark.anyio
async def test_other_4xx_is_not_retried() -> None:
    h = Harness(config(), answers=[httpx.Response(404, text="no such region")])
    with pytest.raises(FetchError) as exc:
        await h.pages()
    assert exc.value.message == f"HTTP 404 Not Found from {URL}: no such region"
    assert h.counts["requests"] == 1


@pytest.mark.anyio
async def test_gives_up_after_max_attempts_with_fixed_backoff() -> None:
    h = Harness(
        config(retry={"max_attempts": 4, "backoff": "fixed", "initial_delay_seconds": 2}),
        answers=[httpx.Response(502)] * 4,
    )
    with pytest.raises(FetchError) as exc:
        await h.pages()
    assert exc.value.message == f"HTTP 502 Bad Gateway from {URL} (gave up after 4 attempts)"
    assert h.sleeps == [2, 2, 2]


@pytest.mark.anyio
async def test_connect_errors_are_retried() -> None:
    h = Harness(config(), answers=[httpx.ConnectError("[Errno 111] Connection refused"), json_response({})])
    await h.pages()
    assert h.counts == {"requests": 2, "retries": 1}


@pytest.mark.anyio
async def test_transport_errors_give_up_with_their_own_reason() -> None:
    h = Harness(config(retry={"max_attempts": 2}), answers=[httpx.RemoteProtocolError("peer closed")] * 2)
    with pytest.raises(FetchError) as exc:
        await h.pages()
    assert exc.value.message == (
        "api.example.com:443 closed the connection before a complete answer: peer closed (gave up after 2 attempts)"
    )
    assert exc.value.attempts == 2


@pytest.mark.parametrize(
    ("request_cfg", "secret", "header", "query"),
    [
        ({"auth_type": "api_key"}, "k3y-value", ("X-API-Key", "k3y-value"), None),
        ({"auth_type": "api_key", "auth_header": "X-Token"}, "k3y-value", ("X-Token", "k3y-value"), None),
        (
            {"auth_type": "api_key", "auth_query_param": "access_key"},
            "k3y-value",
            None,
            ("access_key", "k3y-value"),
        ),
        ({"auth_type": "bearer"}, "t0ken", ("Authorization", "Bearer t0ken"), None),
        (
            {"auth_type": "basic"},
            "user:pa55",
            ("Authorization", "Basic " + base64.b64encode(b"user:pa55").decode()),
            None,
        ),
    ],
)
@pytest.mark.anyio
async def test_auth(request_cfg: dict[str, str], secret: str, header: Any, query: Any) -> None:
    h = Harness(config(secret_store="store", secret_key="key", **request_cfg), secret, [json_response({})])
    [page] = await h.pages()
    sent = h.sent[0]
    if header:
        assert sent.headers[header[0]] == header[1]
    if query:
        assert sent.url.params[query[0]] == query[1]
        assert page.url == f"{URL}?access_key=***"


@pytest.mark.anyio
async def test_basic_secret_without_colon_is_the_user_name_with_an_empty_password() -> None:
    h = Harness(
        config(auth_type="basic", secret_store="s", secret_key="key"), "sk_live_k3y", [json_response({})]
    )
    await h.pages()
    header = "Basic " + base64.b64encode(b"sk_live_k3y:").decode()
    assert h.sent[0].headers["Authorization"] == header
    assert h.redact(f"Authorization: {header}") == "Authorization: Basic ***"  # the form it travels in


@pytest.mark.anyio
async def test_error_messages_never_carry_the_secret() -> None:
    h = Harness(
        config(auth_type="api_key", auth_query_param="key", secret_store="s", secret_key="k"),
        "s3cr3t-value",
        [httpx.Response(400, text="bad key s3cr3t-value")],
    )
    with pytest.raises(FetchError) as exc:
        await h.pages()
    assert "s3cr3t" not in exc.value.message
    assert exc.value.message == f"HTTP 400 Bad Request from {URL}?key=***: bad key ***"


@pytest.mark.anyio
async def test_oversized_and_non_json_bodies() -> None:
    big = httpx.Response(200, content=b"x" * 5000, headers={"Content-Type": "application/json"})
    h = Harness(config(max_response_bytes=1024), answers=[big])
    with pytest.raises(FetchError, match=r"^response of 5000 bytes is larger than max_response_bytes=1024$"):
        await h.pages()
    html = httpx.Response(200, text="<html>maintenance</html>", headers={"Content-Type": "text/html"})
    with pytest.raises(FetchError) as exc:
        await Harness(config(), answers=[html]).pages()
    assert exc.value.message == (
        f"response from {URL} is not JSON (text/html): Expecting value: line 1 column 1 (char 0);"
        " starts '<html>maintenance</html>'"
    )


@pytest.mark.anyio
async def test_redirect_to_another_origin_keeps_credentials() -> None:
    away = httpx.Response(302, headers={"Location": "https://evil.example/steal"})
    h = Harness(config(auth_type="bearer", secret_store="s", secret_key="k"), "t0ken", [away])
    with pytest.raises(FetchError) as exc:
        await h.pages()
    assert exc.value.message == "redirected to another origin (evil.example); credentials not sent"
    assert len(h.sent) == 1


@pytest.mark.anyio
async def test_same_origin_redirect_is_followed() -> None:
    moved = httpx.Response(301, headers={"Location": "/v2/data"})
    h = Harness(config(), answers=[moved, json_response({"moved": True})])
    [page] = await h.pages()
    assert page.data == {"moved": True} and page.url == "https://api.example.com/v2/data"
    assert [str(r.url) for r in h.sent] == [URL, "https://api.example.com/v2/data"]


@pytest.mark.anyio
async def test_next_page_on_another_origin_is_refused_with_credentials() -> None:
    h = Harness(
        config(
            auth_type="bearer",
            secret_store="s",
            secret_key="k",
            pagination={"type": "next_url", "next_url_path": "next"},
        ),
        "t0ken",
        [json_response({"results": [1], "next": "https://evil.example/p2"})],
    )
    with pytest.raises(
        FetchError,
        match=r"the next page is on another origin \(evil.example\); pullctl sends credentials only to api.example.com",
    ):
        await h.pages()


@pytest.mark.parametrize("where", ["headers", "parameters", "body"])
@pytest.mark.anyio
async def test_a_request_carrying_a_named_secret_goes_to_no_other_origin(where: str) -> None:
    """No auth_type, but a {secret.NAME} in a header, a query parameter or the body: next pages and
    redirects to another host are refused as they are for the auth secret."""
    carrier: dict[str, Any] = {where: {"token": "{secret.token}"}}
    if where == "body":
        carrier["method"] = "POST"
    cfg = SourceConfig.model_validate(
        {
            "source_id": "s",
            "ingestion": {
                "schedule": "@daily",
                "secrets": {"token": {"secret_store": "vault", "secret_key": "token"}},
                "request": {"base_url": URL, **carrier},
                "pagination": {"type": "next_url", "next_url_path": "next"},
            },
        }
    )
    page = json_response({"results": [1], "next": "https://evil.example/p2"})
    with pytest.raises(FetchError) as exc:
        await Harness(cfg, answers=[page]).pages()
    assert exc.value.message == (
        "the next page is on another origin (evil.example); pullctl sends credentials only to api.example.com"
    )
    away = httpx.Response(302, headers={"Location": "https://evil.example/steal"})
    h = Harness(cfg, answers=[away])
    with pytest.raises(FetchError) as exc:
        await h.pages()
    assert exc.value.message == "redirected to another origin (evil.example); credentials not sent"
    assert len(h.sent) == 1


def test_retry_after_parsing() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert retry_after_seconds("12", now) == 12
    assert retry_after_seconds("0", now) is None
    assert retry_after_seconds("Thu, 01 Jan 2026 00:01:00 GMT", now) == 60
    assert retry_after_seconds("Wed, 31 Dec 2025 00:00:00 GMT", now) is None
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds(None, now) is None


def test_backoff() -> None:
    policy = Retry(initial_delay_seconds=1, max_delay_seconds=10)
    assert [backoff_delay(policy, n, rng=lambda: 1.0) for n in (1, 2, 3, 4, 5)] == [1, 2, 4, 8, 10]
    assert [backoff_delay(policy, n, rng=lambda: 0.0) for n in (1, 2)] == [0.5, 1]
    assert backoff_delay(policy, 1, retry_after=99) == 10


@pytest.mark.anyio
async def test_rate_limiter_spaces_requests() -> None:
    clock = [0.0]
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)

    limiter = RateLimiter(4, clock=lambda: clock[0], sleep=sleep)
    for _ in range(3):
        await limiter.acquire()
    assert slept == [0.25, 0.5]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_every_request_carries_the_default_headers_params_and_auth() -> None:
    h = Harness(
        config(auth_type="api_key", auth_header="X-Key", secret_store="s", secret_key="k"),
        "t0ken",
        [json_response({})],
    )
    configured = {"X-Trace": "t1", "x-key": "x", "accept": "application/vnd.api+json"}
    task = FetchTask("k", f"{URL}?fixed=1", {"q": "a b/c&d", "n": "2"}, configured, None, {})
    await h.pages(task)
    sent = h.sent[0]
    assert sent.headers["User-Agent"] == USER_AGENT
    assert sent.headers.get_list("Accept") == ["application/vnd.api+json"]  # replaced, whatever its case
    assert sent.headers["X-Trace"] == "t1"
    assert sent.headers.get_list("X-Key") == ["t0ken"]  # the credential wins over a configured header
    assert str(sent.url) == f"{URL}?fixed=1&q=a+b%2Fc%26d&n=2"  # encoded as httpx encodes params=


@pytest.mark.parametrize(
    ("url", "params", "expected"),
    [
        ("https://a.example/x", {"q": "a b/c&d"}, "https://a.example/x?q=a+b%2Fc%26d"),
        ("https://a.example/x", {}, "https://a.example/x"),
        ("https://a.example/x?page=2&key=old", {"key": "k"}, "https://a.example/x?page=2&key=k"),
        ("https://a.example/x#frag", {"q": "1"}, "https://a.example/x?q=1#frag"),
    ],
)
def test_with_query_merges_as_httpx_params_does(url: str, params: dict[str, str], expected: str) -> None:
    assert with_query(url, params) == expected
    assert with_query(url, params) == str(httpx.URL(url).copy_merge_params(params))


@pytest.mark.anyio
async def test_without_configured_headers_json_is_preferred_and_anything_accepted() -> None:
    h = Harness(config(), answers=[json_response({})])
    await h.pages()
    sent = h.sent[0]
    assert sent.headers["Accept"] == "application/json, */*;q=0.5"
    assert sent.headers["Accept-Encoding"] == "gzip, deflate"


def test_the_redactor_masks_every_form_a_secret_travels_in() -> None:
    secret = "s3cr3t/Value+with=odd&chars"
    redact = Redactor([secret])
    forms = [
        secret,
        "s3cr3t%2FValue%2Bwith%3Dodd%26chars",  # quote / quote_plus
        "s3cr3t/Value%2Bwith%3Dodd%26chars",  # the query value as aiohttp (yarl) sends it, as a server echoes it
        base64.b64encode(secret.encode()).decode(),
    ]
    assert [redact(f"got {form}.") for form in forms] == ["got ***."] * len(forms)


@pytest.mark.anyio
async def test_a_retried_429_waits_for_the_later_of_retry_after_and_the_reset() -> None:
    import time

    reset = f"{time.time() + 20:.3f}"
    limited = json_response(
        {}, 429, **{"Retry-After": "2", "X-RateLimit-Reset": reset, "X-RateLimit-Remaining": "5"}
    )
    cfg = config(retry={"max_delay_seconds": 60})
    cfg = cfg.model_copy(
        update={
            "ingestion": cfg.ingestion.model_copy(
                update={
                    "rate_limit": cfg.ingestion.rate_limit.model_copy(
                        update={"reset_header": "X-RateLimit-Reset"}
                    )
                }
            )
        }
    )
    h = Harness(cfg, answers=[limited, json_response({"ok": 1})])
    await h.pages()
    assert len(h.sleeps) == 1 and 19 <= h.sleeps[0] <= 21  # the reset, not Retry-After's 2 s


@pytest.mark.anyio
async def test_split_records_need_a_list_of_records() -> None:
    cfg = SourceConfig.model_validate(
        {
            "source_id": "s",
            "ingestion": {"schedule": "@daily", "request": {"base_url": URL}, "records": {"split": True}},
        }
    )
    with pytest.raises(FetchError) as exc:
        await Harness(cfg, answers=[json_response({"a": 1})]).pages()
    assert exc.value.message == (
        f"records.split stores each record, but page 1 from {URL} is an object with keys a, not a list: set"
        " records.path to where its records are"
    )
