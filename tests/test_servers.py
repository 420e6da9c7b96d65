"""The test servers themselves: every endpoint and failure mode, seen from plain httpx and the MCP client.

The assertions also record what each failure looks like to a client, for the fetch code to handle: the
httpx default transport and the aiohttp transport (``httpx_aiohttp``, what ``pullctl run`` uses) differ.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import pytest
from httpx_aiohttp import HttpxAiohttpClient

from tests.servers.mcp_server import DEFAULT_REGIONS, McpTestServer, mcp_server
from tests.servers.upstream import Upstream, http_date, make_records, upstream

__all__ = ["mcp_server", "upstream"]  # the fixtures, imported for pytest

FORECAST = "/v1/forecast"
BERLIN = {
    "latitude": "52.52",
    "longitude": "13.41",
    "hourly": "temperature_2m,relative_humidity_2m,precipitation,wind_speed_10m",
}
NAIROBI = {**BERLIN, "latitude": "-1.29", "longitude": "36.82"}


@pytest.fixture
def client(upstream: Upstream) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=upstream.url, timeout=5.0) as c:
        yield c


def walk(client: httpx.Client, url: str, params: dict[str, Any] | None = None) -> list[httpx.Response]:
    """Follow ``next`` URLs (body or Link header) as given until there is none."""
    pages = []
    response = client.get(url, params=params)
    while True:
        assert response.status_code == 200, response.text
        pages.append(response)
        body = response.json()
        follow = body.get("next") if isinstance(body, dict) else response.links.get("next", {}).get("url")
        if not follow:
            return pages
        response = client.get(follow)


# -- /v1/forecast --------------------------------------------------------------------------------------------


def test_forecast_has_the_open_meteo_shape(client: httpx.Client) -> None:
    response = client.get(FORECAST, params=BERLIN)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert 1500 < len(response.content) < 3000
    body = response.json()
    assert body["latitude"] == 52.52
    assert body["longitude"] == 13.41
    assert body["utc_offset_seconds"] == 0
    assert body["timezone"] == "GMT"
    assert isinstance(body["generationtime_ms"], float)
    assert body["hourly_units"] == {
        "time": "iso8601",
        "temperature_2m": "°C",
        "relative_humidity_2m": "%",
        "precipitation": "mm",
        "wind_speed_10m": "km/h",
    }
    hourly = body["hourly"]
    assert set(hourly) == {
        "time",
        "temperature_2m",
        "relative_humidity_2m",
        "precipitation",
        "wind_speed_10m",
    }
    assert hourly["time"][0] == "2026-01-01T00:00"
    assert hourly["time"][-1] == "2026-01-02T23:00"
    assert all(len(values) == 48 for values in hourly.values())


def test_forecast_is_deterministic_but_generationtime_ms(client: httpx.Client) -> None:
    first, second = client.get(FORECAST, params=BERLIN).json(), client.get(FORECAST, params=BERLIN).json()
    assert first["generationtime_ms"] != second["generationtime_ms"]
    first.pop("generationtime_ms"), second.pop("generationtime_ms")
    assert first == second
    other = client.get(FORECAST, params=NAIROBI).json()
    assert other["hourly"]["temperature_2m"] != first["hourly"]["temperature_2m"]


def test_forecast_respects_dates_and_timezone(client: httpx.Client) -> None:
    params = {**BERLIN, "start_date": "2026-03-01", "end_date": "2026-03-03", "timezone": "Europe/Berlin"}
    body = client.get(FORECAST, params=params).json()
    assert body["timezone"] == "Europe/Berlin"
    times = body["hourly"]["time"]
    assert (len(times), times[0], times[-1]) == (72, "2026-03-01T00:00", "2026-03-03T23:00")
    # a day has the same values whatever range it is part of
    one_day = client.get(FORECAST, params={**params, "start_date": "2026-03-02", "end_date": "2026-03-02"})
    assert one_day.json()["hourly"]["temperature_2m"] == body["hourly"]["temperature_2m"][24:48]


def test_forecast_without_hourly_has_no_hourly_section(client: httpx.Client) -> None:
    body = client.get(FORECAST, params={"latitude": "0", "longitude": "0"}).json()
    assert "hourly" not in body
    assert "hourly_units" not in body


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"longitude": "13.4"}, "Required parameter 'latitude' is missing"),
        ({"latitude": "52.5"}, "Required parameter 'longitude' is missing"),
        (
            {"latitude": "abc", "longitude": "13.4"},
            "Cannot initialize Float from invalid String value abc for key latitude",
        ),
        ({"latitude": "91", "longitude": "13.4"}, "Latitude must be in range of -90 to 90°. Given: 91."),
        ({"latitude": "nan", "longitude": "13.4"}, "Latitude must be in range of -90 to 90°. Given: nan."),
        (
            {"latitude": "1", "longitude": "2", "hourly": "snow_depth_99"},
            "Cannot initialize WeatherVariable from invalid String value snow_depth_99 for key hourly",
        ),
        (
            {"latitude": "1", "longitude": "2", "start_date": "2026-01-01"},
            "Parameter 'start_date' and 'end_date' must be set both or none",
        ),
        (
            {"latitude": "1", "longitude": "2", "start_date": "2026-01-02", "end_date": "2026-01-01"},
            "End-date 2026-01-01 must not be before start-date 2026-01-02",
        ),
        (
            {"latitude": "1", "longitude": "2", "start_date": "01/02/2026", "end_date": "2026-01-03"},
            "Invalid date format for 'start_date': 01/02/2026. Expected YYYY-MM-DD",
        ),
    ],
)
def test_forecast_rejects_bad_parameters(client: httpx.Client, params: dict[str, str], reason: str) -> None:
    response = client.get(FORECAST, params=params)
    assert response.status_code == 400
    assert response.json() == {"error": True, "reason": reason}


# -- auth ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "good", "bad", "scheme"),
    [
        (
            "/auth/api-key",
            {"headers": {"X-API-Key": "test-api-key"}},
            {"headers": {"X-API-Key": "nope"}},
            "api_key",
        ),
        (
            "/auth/api-key-query",
            {"params": {"api_key": "test-api-key", "q": "1"}},
            {"params": {"api_key": "nope"}},
            "api_key_query",
        ),
        (
            "/auth/bearer",
            {"headers": {"Authorization": "Bearer test-bearer-token"}},
            {"headers": {"Authorization": "Bearer nope"}},
            "bearer",
        ),
        ("/auth/basic", {"auth": ("test-user", "test-password")}, {"auth": ("test-user", "nope")}, "basic"),
    ],
)
def test_auth_endpoints(
    upstream: Upstream, path: str, good: dict[str, Any], bad: dict[str, Any], scheme: str
) -> None:
    for method in ("GET", "POST"):
        response = httpx.request(method, upstream.url + path, **good)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["authenticated"] is True
        assert body["scheme"] == scheme
        assert "test-" not in response.text  # no secret echoed
        assert httpx.request(method, upstream.url + path, **bad).status_code == 401
    missing = httpx.get(upstream.url + path)
    assert missing.status_code == 401
    assert missing.json()["error"] is True


def test_auth_query_echo_drops_the_key(client: httpx.Client) -> None:
    body = client.get("/auth/api-key-query", params={"api_key": "test-api-key", "q": "1"}).json()
    assert body["query"] == {"q": "1"}


def test_auth_secrets_and_header_are_configurable(upstream: Upstream, client: httpx.Client) -> None:
    upstream.api_key, upstream.api_key_header = "other", "X-Token"
    assert client.get("/auth/api-key", headers={"X-Token": "other"}).status_code == 200
    assert client.get("/auth/api-key", headers={"X-API-Key": "other"}).status_code == 401
    assert client.get("/auth/basic").headers["www-authenticate"] == 'Basic realm="upstream"'
    assert client.get("/auth/bearer").headers["www-authenticate"] == 'Bearer realm="upstream"'


# -- pagination ------------------------------------------------------------------------------------------------

ALL_IDS = list(range(1, 24))


def test_page_number(client: httpx.Client) -> None:
    ids, sizes = [], []
    for page in range(1, 5):
        body = client.get("/pages/page-number", params={"page": page, "per_page": 10}).json()
        assert body["page"] == page
        assert body["total"] == 23
        sizes.append(len(body["data"]))
        ids += [r["id"] for r in body["data"]]
    assert sizes == [10, 10, 3, 0]
    assert ids == ALL_IDS
    assert client.get("/pages/page-number").json()["data"][0] == {"id": 1, "name": "record-001", "value": 1.5}


def test_page_number_exact_multiple_ends_with_an_empty_page(upstream: Upstream, client: httpx.Client) -> None:
    upstream.records = upstream.records[:20]
    sizes = [len(client.get("/pages/page-number", params={"page": p}).json()["data"]) for p in (1, 2, 3)]
    assert sizes == [10, 10, 0]


def test_offset(client: httpx.Client) -> None:
    ids = []
    for offset in range(0, 30, 7):
        body = client.get("/pages/offset", params={"offset": offset, "limit": 7}).json()
        assert (body["offset"], body["limit"], body["total"]) == (offset, 7, 23)
        ids += [r["id"] for r in body["data"]]
    assert ids == ALL_IDS


def test_cursor(client: httpx.Client) -> None:
    ids, cursor, requests = [], "", 0
    while True:
        body = client.get("/pages/cursor", params={"cursor": cursor, "limit": 10}).json()
        requests += 1
        ids += [r["id"] for r in body["data"]]
        assert body["meta"]["next_cursor"] == body["next_cursor"]
        if body["next_cursor"] is None:
            break
        cursor = body["next_cursor"]
    assert (ids, requests) == (ALL_IDS, 3)
    bad = client.get("/pages/cursor", params={"cursor": "not-a-cursor"})
    assert bad.status_code == 400
    assert bad.json()["reason"] == "Invalid cursor: not-a-cursor"


def test_next_url_is_absolute_and_carries_the_query(upstream: Upstream, client: httpx.Client) -> None:
    pages = walk(client, "/pages/next-url", {"limit": 10, "region": "r1"})
    assert [r["id"] for p in pages for r in p.json()["results"]] == ALL_IDS
    first_next = pages[0].json()["next"]
    assert first_next.startswith(upstream.url + "/pages/next-url?")
    assert httpx.URL(first_next).params["region"] == "r1"
    assert pages[-1].json()["next"] is None


def test_next_url_must_be_followed_as_given(client: httpx.Client) -> None:
    following = client.get("/pages/next-url", params={"limit": 10}).json()["next"]
    readded = client.get(following + "&limit=10")  # a client that re-adds its parameters
    assert readded.status_code == 400
    assert readded.json()["reason"] == "Repeated query parameter(s): limit"
    unsigned = client.get("/pages/next-url", params={"after": 10, "limit": 10})
    assert unsigned.status_code == 400


def test_link_header(upstream: Upstream, client: httpx.Client) -> None:
    pages = walk(client, "/pages/link-header", {"per_page": 10, "region": "r1"})
    assert [r["id"] for p in pages for r in p.json()] == ALL_IDS
    first, middle, last = pages
    assert set(first.links) == {"next", "last"}
    assert set(middle.links) == {"next", "last", "first", "prev"}
    assert set(last.links) == {"last", "first", "prev"}
    assert first.links["next"]["url"] == f"{upstream.url}/pages/link-header?per_page=10&region=r1&page=2"
    assert first.headers["link"].startswith(
        f'<{upstream.url}/pages/link-header?per_page=10&region=r1&page=2>; rel="next"'
    )


def test_endless_always_has_a_next_page(client: httpx.Client) -> None:
    response = client.get("/pages/endless", params={"page": 41, "per_page": 5})
    body = response.json()
    assert [r["id"] for r in body["data"]] == [201, 202, 203, 204, 205]
    assert body["page"] == 41
    following = client.get(body["next"]).json()
    assert following["data"][0]["id"] == 206
    assert response.links["next"]["url"] == body["next"]
    by_cursor = client.get("/pages/endless", params={"cursor": body["next_cursor"], "limit": 5}).json()
    by_offset = client.get("/pages/endless", params={"offset": 205, "limit": 5}).json()
    assert by_cursor["data"] == by_offset["data"] == following["data"]


def test_empty_page(client: httpx.Client) -> None:
    response = client.get("/pages/empty")
    assert (response.status_code, response.json()) == (200, {"data": []})


def test_capped_offset_serves_at_most_max_rows(upstream: Upstream, client: httpx.Client) -> None:
    upstream.records = make_records(237)
    sizes, ids, offset = [], [], 0
    while True:
        data = client.get("/pages/capped-offset", params={"offset": offset, "limit": 100}).json()["data"]
        if not data:
            break
        sizes.append(len(data))
        ids += [r["id"] for r in data]
        offset += len(data)  # by what came, not by the limit asked for
    assert sizes == [20] * 11 + [17]
    assert ids == list(range(1, 238))
    assert client.get("/pages/capped-offset", params={"offset": 5, "limit": 3}).json() == {
        "data": make_records(8)[5:]
    }
    upstream.max_rows = 50
    assert len(client.get("/pages/capped-offset", params={"limit": 100}).json()["data"]) == 50


def test_capped_page_number_caps_the_page_size(upstream: Upstream, client: httpx.Client) -> None:
    upstream.records = make_records(237)
    pages = [
        client.get("/pages/capped-page-number", params={"page": p, "per_page": 100}).json()["data"]
        for p in range(1, 14)
    ]
    assert [len(d) for d in pages] == [20] * 11 + [17, 0]
    assert [r["id"] for d in pages for r in d] == list(range(1, 238))
    small = client.get("/pages/capped-page-number", params={"page": 2, "per_page": 5}).json()["data"]
    assert [r["id"] for r in small] == [6, 7, 8, 9, 10]


def test_bare_offset_is_a_bare_list(client: httpx.Client) -> None:
    pages = [
        client.get("/pages/bare-offset", params={"offset": o, "limit": 10}).json() for o in (0, 10, 20, 30)
    ]
    assert all(isinstance(p, list) for p in pages)
    assert [len(p) for p in pages] == [10, 10, 3, 0]
    assert [r["id"] for p in pages for r in p] == ALL_IDS


def test_repeat_last_repeats_the_last_page_past_the_end(upstream: Upstream, client: httpx.Client) -> None:
    def ids(page: int) -> list[int]:
        body = client.get("/pages/repeat-last", params={"page": page, "per_page": 10}).json()
        assert body["page"] == page
        return [r["id"] for r in body["data"]]

    assert [ids(p) for p in (1, 2)] == [list(range(1, 11)), list(range(11, 21))]
    assert ids(3) == ids(4) == ids(9) == [21, 22, 23]  # never empty
    upstream.records = make_records(30)
    assert ids(4) == ids(3) == list(range(21, 31))  # a full page, repeated


def test_stuck_cursor_always_hands_out_abc(client: httpx.Client) -> None:
    first = client.get("/pages/stuck-cursor").json()
    second = client.get("/pages/stuck-cursor", params={"cursor": first["next_cursor"]}).json()
    third = client.get("/pages/stuck-cursor", params={"cursor": second["next_cursor"]}).json()
    assert first["next_cursor"] == second["next_cursor"] == third["next_cursor"] == "abc"
    assert [r["id"] for r in first["data"]] == list(range(1, 11))
    assert [r["id"] for r in second["data"]] == [r["id"] for r in third["data"]] == list(range(11, 21))
    bad = client.get("/pages/stuck-cursor", params={"cursor": "xyz"})
    assert (bad.status_code, bad.json()["reason"]) == (400, "Invalid cursor: xyz")


def test_odata_next_link_has_a_dotted_key_and_a_literal_skiptoken(
    upstream: Upstream, client: httpx.Client
) -> None:
    pages = [client.get("/pages/odata", params={"region": "r1"}).json()]
    while "@odata.nextLink" in pages[-1]:
        link = pages[-1]["@odata.nextLink"]
        assert link.startswith(f"{upstream.url}/pages/odata?region=r1&$skiptoken=")
        pages.append(client.get(link).json())
    assert [len(p["value"]) for p in pages] == [10, 10, 3]
    assert [r["id"] for p in pages for r in p["value"]] == ALL_IDS
    assert pages[0]["@odata.context"].endswith("/$metadata#records")
    assert "@odata.nextLink" not in pages[-1]  # absent, not null
    bad = client.get("/pages/odata", params={"$skiptoken": "nope"})
    assert bad.status_code == 400


def test_stripe_pages_after_a_record_id(client: httpx.Client) -> None:
    pages, after = [], ""
    for _ in range(4):
        body = client.get("/pages/stripe", params={"starting_after": after, "limit": 10}).json()
        assert (body["object"], body["url"]) == ("list", "/pages/stripe")
        pages.append(body)
        if body["data"]:
            after = str(body["data"][-1]["id"])
    assert [(len(p["data"]), p["has_more"]) for p in pages] == [
        (10, True),
        (10, True),
        (3, False),
        (0, False),
    ]
    assert [r["id"] for p in pages for r in p["data"]] == ALL_IDS
    bad = client.get("/pages/stripe", params={"starting_after": "99"})
    assert (bad.status_code, bad.json()["reason"]) == (400, "No such object: '99'")


def test_ignores_page_always_serves_the_first_page(client: httpx.Client) -> None:
    bodies = [client.get("/pages/ignores-page", params={"page": p}).json() for p in (1, 2, 7)]
    assert bodies[0] == bodies[1] == bodies[2] == {"data": make_records(10)}


@pytest.mark.parametrize(
    "path",
    [
        "/pages/page-number",
        "/pages/offset",
        "/pages/cursor",
        "/pages/endless",
        "/pages/capped-offset",
        "/pages/capped-page-number",
        "/pages/bare-offset",
        "/pages/repeat-last",
        "/pages/stuck-cursor",
        "/pages/odata",
        "/pages/stripe",
        "/pages/ignores-page",
    ],
)
def test_pages_reject_repeated_parameters(client: httpx.Client, path: str) -> None:
    response = client.get(f"{path}?limit=1&limit=2&per_page=3&per_page=3")
    assert response.status_code == 400
    assert response.json()["reason"] == "Repeated query parameter(s): limit, per_page"


def test_pages_reject_non_integers(client: httpx.Client) -> None:
    response = client.get("/pages/page-number", params={"page": "two"})
    assert response.json() == {"error": True, "reason": "Parameter 'page' must be an integer. Given: two"}


# -- echo, recording -------------------------------------------------------------------------------------------


def test_echo(client: httpx.Client) -> None:
    response = client.post("/echo?x=1", json={"region": {"id": "r1"}}, headers={"X-Trace": "abc"})
    body = response.json()
    assert body["method"] == "POST"
    assert body["path"] == "/echo"
    assert body["query"] == {"x": "1"}
    assert body["json"] == {"region": {"id": "r1"}}
    assert json.loads(body["body"]) == {"region": {"id": "r1"}}
    assert body["headers"]["x-trace"] == "abc"
    assert body["headers"]["content-type"] == "application/json"
    assert client.post("/echo", content=b"not json").json()["json"] is None
    assert client.get("/echo").json()["json"] is None


def test_hits_requests_and_reset(upstream: Upstream, client: httpx.Client) -> None:
    client.get(FORECAST, params=BERLIN)
    client.get(FORECAST, params=BERLIN)
    client.get(FORECAST, params=NAIROBI)
    client.get("/pages/page-number", params={"page": 2})
    assert upstream.hits[FORECAST] == 3
    assert upstream.hits[FORECAST, "52.52"] == 2
    assert upstream.hits[FORECAST, "-1.29"] == 1
    assert upstream.count("/pages/page-number", page="2") == 1
    assert upstream.count(FORECAST, latitude="52.52", longitude="13.41") == 2
    assert upstream.requests[0].query["hourly"] == BERLIN["hourly"]
    assert upstream.requests[0].headers["host"] == upstream.url.removeprefix("http://")
    upstream.fail(FORECAST, status=500)
    upstream.reset()
    assert (upstream.hits, upstream.requests, upstream.rules) == ({}, [], [])
    assert client.get(FORECAST, params=BERLIN).status_code == 200


# -- failure injection -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 503, 500, 404])
def test_status_first_n_times_then_success(upstream: Upstream, client: httpx.Client, status: int) -> None:
    rule = upstream.fail(FORECAST, "status", status=status, times=2)
    statuses = [client.get(FORECAST, params=BERLIN).status_code for _ in range(3)]
    assert statuses == [status, status, 200]
    assert rule.applied == 2
    assert rule.exhausted
    failed = upstream.fail(FORECAST, status=status, times=1)
    assert client.get(FORECAST, params=BERLIN).json() == {"error": True, "reason": f"injected {status}"}
    assert failed.applied == 1


def test_status_forever_by_default(upstream: Upstream, client: httpx.Client) -> None:
    upstream.fail(FORECAST, status=503)
    assert {client.get(FORECAST, params=BERLIN).status_code for _ in range(4)} == {503}


@pytest.mark.parametrize(
    ("retry_after", "header"),
    [(2, "2"), (0, "0"), (1.6, "2"), ("Wed, 21 Oct 2015 07:28:00 GMT", "Wed, 21 Oct 2015 07:28:00 GMT")],
)
def test_retry_after_values(
    upstream: Upstream, client: httpx.Client, retry_after: float | str, header: str
) -> None:
    upstream.fail(FORECAST, status=429, retry_after=retry_after, times=1)
    response = client.get(FORECAST, params=BERLIN)
    assert response.status_code == 429
    assert response.headers["retry-after"] == header


def test_retry_after_as_http_date(upstream: Upstream, client: httpx.Client) -> None:
    upstream.fail(FORECAST, status=429, retry_after=http_date(120), times=1)
    upstream.fail(FORECAST, status=429, retry_after=datetime.now(UTC) - timedelta(minutes=5), times=1)
    future = parsedate_to_datetime(client.get(FORECAST, params=BERLIN).headers["retry-after"])
    past = parsedate_to_datetime(client.get(FORECAST, params=BERLIN).headers["retry-after"])
    now = datetime.now(UTC)
    assert timedelta(seconds=110) < future - now <= timedelta(seconds=121)
    assert past < now
    assert client.get(FORECAST, params=BERLIN).headers.get("retry-after") is None


def test_rules_match_a_query_parameter(upstream: Upstream, client: httpx.Client) -> None:
    upstream.fail(FORECAST, status=503, query={"latitude": "52.52"})
    assert client.get(FORECAST, params=BERLIN).status_code == 503
    assert client.get(FORECAST, params=NAIROBI).status_code == 200
    assert upstream.hits[FORECAST, "52.52"] == 1


def test_rules_apply_in_order_and_star_matches_any_path(upstream: Upstream, client: httpx.Client) -> None:
    upstream.fail(FORECAST, status=429, times=1)
    upstream.fail("*", status=500, times=2)
    assert client.get(FORECAST, params=BERLIN).status_code == 429
    assert client.get("/pages/empty").status_code == 500
    assert client.get(FORECAST, params=BERLIN).status_code == 500
    assert client.get(FORECAST, params=BERLIN).status_code == 200


def test_fraction_fails_a_seeded_share_and_passes_the_rest_on(
    upstream: Upstream, client: httpx.Client
) -> None:
    rule = upstream.fail(FORECAST, status=503, fraction=0.25, seed=7)
    upstream.fail(FORECAST, status=500, times=1)  # what the fraction passes over goes on to the next rule
    statuses = [client.get(FORECAST, params=BERLIN).status_code for _ in range(200)]
    assert statuses.count(500) == 1
    assert statuses.count(503) == rule.applied
    assert 25 <= rule.applied <= 75
    assert statuses.count(200) == 199 - rule.applied
    upstream.reset()
    again = upstream.fail(FORECAST, status=503, fraction=0.25, seed=7)
    upstream.fail(FORECAST, status=500, times=1)
    assert [client.get(FORECAST, params=BERLIN).status_code for _ in range(200)] == statuses
    assert again.applied == rule.applied


def test_delay_then_normal_response(upstream: Upstream, client: httpx.Client) -> None:
    upstream.fail("/pages/empty", "delay", delay=0.3, times=1)
    start = time.monotonic()
    assert client.get("/pages/empty").json() == {"data": []}
    assert time.monotonic() - start >= 0.3


def test_delay_past_the_timeout_is_a_read_timeout(upstream: Upstream, client: httpx.Client) -> None:
    upstream.fail("/pages/empty", "delay", delay=30, times=1)
    with pytest.raises(httpx.ReadTimeout):
        client.get("/pages/empty", timeout=0.3)


def test_delay_applies_to_any_kind(upstream: Upstream, client: httpx.Client) -> None:
    upstream.fail("/pages/empty", status=503, delay=0.2, times=1)
    start = time.monotonic()
    assert client.get("/pages/empty").status_code == 503
    assert time.monotonic() - start >= 0.2


def test_stop_ends_pending_delays(upstream: Upstream) -> None:
    upstream.fail("/pages/empty", "delay", delay=60)
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(upstream.url + "/pages/empty", timeout=0.2)
    start = time.monotonic()
    upstream.stop()
    assert time.monotonic() - start < 3


def test_trickle_is_not_caught_by_httpx_read_timeout(upstream: Upstream, client: httpx.Client) -> None:
    """httpx's timeouts bound each read, not the whole body: bounding an attempt is the caller's job."""
    normal = client.get("/pages/offset").content
    upstream.fail("/pages/offset", "trickle", chunk_size=100, interval=0.15, times=1)
    start = time.monotonic()
    chunks = []
    with client.stream("GET", "/pages/offset", timeout=0.5) as response:
        assert response.headers["content-length"] == str(len(normal))
        chunks = list(response.iter_raw())
    elapsed = time.monotonic() - start
    assert b"".join(chunks) == normal
    assert len(chunks) >= 4
    assert elapsed > (len(normal) // 100) * 0.15 > 0.5


def test_reset_mid_body_httpx(upstream: Upstream, client: httpx.Client) -> None:
    upstream.fail(FORECAST, "reset", after_bytes=50, times=1)
    with pytest.raises(httpx.RemoteProtocolError, match="peer closed connection without sending complete"):
        client.get(FORECAST, params=BERLIN)
    assert client.get(FORECAST, params=BERLIN).status_code == 200


def test_reset_mid_body_aiohttp_transport(upstream: Upstream) -> None:
    upstream.fail(FORECAST, "reset", after_bytes=50, times=1)

    async def fetch() -> None:
        async with HttpxAiohttpClient(base_url=upstream.url, timeout=5.0) as c:
            with pytest.raises(httpx.ReadError, match="Response payload is not completed"):
                await c.get(FORECAST, params=BERLIN)
            assert (await c.get(FORECAST, params=BERLIN)).status_code == 200

    asyncio.run(fetch())


def test_reset_never_sends_the_whole_body(upstream: Upstream, client: httpx.Client) -> None:
    upstream.fail("/pages/empty", "reset", after_bytes=10_000, times=1)
    with pytest.raises(httpx.RemoteProtocolError):
        client.get("/pages/empty")


def test_truncated_json(upstream: Upstream, client: httpx.Client) -> None:
    upstream.fail(FORECAST, "truncated_json", times=1)
    response = client.get(FORECAST, params=BERLIN)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert int(response.headers["content-length"]) == len(response.content) > 500
    with pytest.raises(json.JSONDecodeError):
        response.json()


def test_malformed_json(upstream: Upstream, client: httpx.Client) -> None:
    upstream.fail(FORECAST, "malformed_json", times=1)
    response = client.get(FORECAST, params=BERLIN)
    assert (response.status_code, response.headers["content-type"]) == (200, "application/json")
    with pytest.raises(json.JSONDecodeError):
        response.json()


@pytest.mark.parametrize("status", [None, 502])
def test_html(upstream: Upstream, client: httpx.Client, status: int | None) -> None:
    upstream.fail(FORECAST, "html", status=status, times=1)
    response = client.get(FORECAST, params=BERLIN)
    assert response.status_code == (status or 200)
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.text.startswith("<!DOCTYPE html>")


@pytest.mark.parametrize("chunked", [False, True])
def test_large(upstream: Upstream, client: httpx.Client, chunked: bool) -> None:
    size = 300_000
    upstream.fail(FORECAST, "large", size=size, chunked=chunked, times=1)
    with client.stream("GET", FORECAST, params=BERLIN) as response:
        if chunked:
            assert "content-length" not in response.headers
            assert response.headers["transfer-encoding"] == "chunked"
        else:
            assert response.headers["content-length"] == str(size)
        body = response.read()
    assert len(body) == size
    assert set(json.loads(body)["data"]) == {"x"}


def test_redirect_loop(upstream: Upstream, client: httpx.Client) -> None:
    upstream.fail(FORECAST, "redirect_loop")
    first = client.get(FORECAST, params=BERLIN)
    assert first.status_code == 302
    assert httpx.URL(first.headers["location"]).params["_hop"] == "1"
    assert httpx.URL(first.headers["location"]).params["latitude"] == "52.52"
    with pytest.raises(httpx.TooManyRedirects):
        client.get(FORECAST, params=BERLIN, follow_redirects=True)
    assert upstream.hits[FORECAST] == 1 + 21  # httpx's default max_redirects is 20


def test_empty_body(upstream: Upstream, client: httpx.Client) -> None:
    upstream.fail(FORECAST, "empty", times=1)
    response = client.get(FORECAST, params=BERLIN)
    assert (response.status_code, response.content, response.headers["content-length"]) == (200, b"", "0")
    with pytest.raises(json.JSONDecodeError):
        response.json()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "boom"}, "unknown fault kind 'boom'; expected one of status, delay, trickle"),
        ({"kind": "status"}, "needs status="),
        ({"kind": "delay"}, "needs delay="),
        ({"kind": "large", "size": 3}, "needs size="),
        ({"kind": "empty", "times": 0}, "times must be at least 1"),
        ({"kind": "empty", "fraction": 0}, r"fraction must be in \(0, 1\]"),
        ({"kind": "empty", "fraction": 1.5}, r"fraction must be in \(0, 1\]"),
    ],
)
def test_fail_validates_its_arguments(upstream: Upstream, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        upstream.fail(FORECAST, **kwargs)


def test_aiohttp_transport_maps_a_refused_connection_to_connect_timeout() -> None:
    """httpx_aiohttp maps every aiohttp.ClientConnectionError, refusal included, to httpx.ConnectTimeout."""

    async def fetch() -> None:
        async with HttpxAiohttpClient(timeout=2.0) as c:
            with pytest.raises(httpx.ConnectTimeout, match="Cannot connect to host"):
                await c.get("http://127.0.0.1:9/")

    asyncio.run(fetch())


def test_upstream_lifecycle() -> None:
    server = Upstream(records=3)
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.url
    with server:
        body = httpx.get(server.url + "/pages/page-number").json()
        assert [r["id"] for r in body["data"]] == [1, 2, 3]
        with pytest.raises(RuntimeError, match="already started"):
            server.start()
    server.stop()  # a second stop is harmless


# -- MCP -------------------------------------------------------------------------------------------------------


async def call(url: str, tool: str, arguments: dict[str, Any] | None = None, mode: str = "auto") -> Any:
    from mcp import Client

    async with Client(url, mode=mode) as c:
        return await c.call_tool(tool, arguments or {})


def texts(result: Any) -> list[str]:
    return [item.text for item in result.content]


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_mcp_list_active_regions(mcp_server: McpTestServer, mode: str) -> None:
    assert mcp_server.url.endswith("/mcp")
    result = asyncio.run(call(mcp_server.url, "list_active_regions", mode=mode))
    assert result.is_error is False
    assert result.structured_content == {"result": DEFAULT_REGIONS}
    assert [json.loads(t) for t in texts(result)] == DEFAULT_REGIONS  # one text item per region
    assert len(DEFAULT_REGIONS) == 5


def test_mcp_regions_are_settable_and_arguments_arrive(mcp_server: McpTestServer) -> None:
    mcp_server.regions = [{"region_id": "x", "name": "X", "latitude": 1.0, "longitude": 2.0}]
    result = asyncio.run(call(mcp_server.url, "list_active_regions"))
    assert result.structured_content == {"result": mcp_server.regions}
    mcp_server.regions = DEFAULT_REGIONS
    limited = asyncio.run(call(mcp_server.url, "list_active_regions", {"limit": 2}))
    assert limited.structured_content == {"result": DEFAULT_REGIONS[:2]}
    assert mcp_server.calls == [("list_active_regions", {}), ("list_active_regions", {"limit": 2})]


def test_mcp_tool_error(mcp_server: McpTestServer) -> None:
    result = asyncio.run(call(mcp_server.url, "list_regions_failing"))
    assert result.is_error is True
    assert result.structured_content is None
    assert texts(result) == ["Error executing tool list_regions_failing: region service unavailable"]


def test_mcp_wrapped_list(mcp_server: McpTestServer) -> None:
    result = asyncio.run(call(mcp_server.url, "list_regions_wrapped"))
    assert result.is_error is False
    assert result.structured_content == {"regions": DEFAULT_REGIONS, "total": 5}
    assert [json.loads(t) for t in texts(result)] == [{"regions": DEFAULT_REGIONS, "total": 5}]


def test_mcp_non_list_and_non_objects(mcp_server: McpTestServer) -> None:
    string = asyncio.run(call(mcp_server.url, "list_regions_string"))
    assert (string.is_error, string.structured_content) == (False, {"result": "r1,r2,r3,r4,r5"})
    assert texts(string) == ["r1,r2,r3,r4,r5"]
    ids = asyncio.run(call(mcp_server.url, "list_region_ids"))
    assert (ids.is_error, ids.structured_content) == (False, {"result": ["r1", "r2", "r3", "r4", "r5"]})
    assert texts(ids) == ["r1", "r2", "r3", "r4", "r5"]


def test_mcp_text_content(mcp_server: McpTestServer) -> None:
    one = asyncio.run(call(mcp_server.url, "list_regions_text"))
    assert (one.is_error, one.structured_content) == (False, None)
    assert [json.loads(t) for t in texts(one)] == [DEFAULT_REGIONS]  # one text item: the whole list
    per_item = asyncio.run(call(mcp_server.url, "list_regions_text_items"))
    assert (per_item.is_error, per_item.structured_content) == (False, None)
    assert [json.loads(t) for t in texts(per_item)] == DEFAULT_REGIONS  # one object per text item


def test_mcp_delay(mcp_server: McpTestServer) -> None:
    mcp_server.delay = 0.3
    start = time.monotonic()
    asyncio.run(call(mcp_server.url, "list_active_regions"))
    assert time.monotonic() - start >= 0.3


INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    },
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream"}


def test_mcp_accepts_any_host_by_default(mcp_server: McpTestServer) -> None:
    response = httpx.post(mcp_server.url, json=INITIALIZE, headers={**MCP_HEADERS, "Host": "plantation-mcp"})
    assert response.status_code == 200


def test_mcp_sdk_host_protection_rejects_foreign_hosts() -> None:
    with McpTestServer(dns_rebinding_protection=True) as server:
        for host in ("plantation-mcp", "localhost", "127.0.0.1:3500"):
            response = httpx.post(server.url, json=INITIALIZE, headers={**MCP_HEADERS, "Host": host})
            expected = 200 if host == "127.0.0.1:3500" else 421
            assert response.status_code == expected, host
        assert response.status_code == 200
        result = asyncio.run(call(server.url, "list_active_regions"))
        assert result.structured_content == {"result": DEFAULT_REGIONS}


def test_mcp_stateless_server() -> None:
    with McpTestServer(stateless_http=True) as server:
        for mode in ("auto", "legacy"):
            result = asyncio.run(call(server.url, "list_active_regions", mode=mode))
            assert result.structured_content == {"result": DEFAULT_REGIONS}
