"""Egress proxies: ``HTTP(S)_PROXY`` / ``ALL_PROXY`` / ``NO_PROXY`` as curl, requests and httpx read them,
against a real forward proxy on loopback (tests/servers/proxy.py)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from pullctl.run.transport import env_proxy, proxy_userinfo
from tests.conftest import Cli
from tests.runkit import Runner, write_source
from tests.servers.proxy import ForwardProxy
from tests.servers.upstream import Upstream

ITEMS = [{"id": f"s{n}", "lat": n, "lon": 10} for n in range(3)]


@pytest.mark.parametrize(
    ("url", "env", "expected"),
    [
        ("https://api.example.com/x", {"HTTPS_PROXY": "http://proxy:3128"}, "http://proxy:3128"),
        ("https://api.example.com/x", {"https_proxy": "proxy:3128"}, "http://proxy:3128"),
        ("http://api.example.com/x", {"HTTPS_PROXY": "http://proxy:3128"}, None),
        ("http://api.example.com/x", {"HTTP_PROXY": "http://proxy:3128"}, "http://proxy:3128"),
        ("http://api.example.com/x", {"ALL_PROXY": "http://all:3128"}, "http://all:3128"),
        (
            "https://api.example.com/x",
            {"HTTPS_PROXY": "http://p:1", "ALL_PROXY": "http://all:1"},
            "http://p:1",
        ),
        ("https://api.example.com/x", {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "example.com"}, None),
        ("https://api.example.com/x", {"HTTPS_PROXY": "http://p:1", "NO_PROXY": ".example.com"}, None),
        ("https://api.example.com/x", {"HTTPS_PROXY": "http://p:1", "no_proxy": "*.example.com"}, None),
        ("https://api.example.com/x", {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "ample.com"}, "http://p:1"),
        ("https://api.example.com/x", {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "*"}, None),
        ("https://api.example.com/x", {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "api.example.com:443"}, None),
        (
            "https://api.example.com/x",
            {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "api.example.com:8443"},
            "http://p:1",
        ),
        ("http://10.1.2.3:8080/x", {"HTTP_PROXY": "http://p:1", "NO_PROXY": "10.0.0.0/8"}, None),
        ("http://[::1]:8080/x", {"HTTP_PROXY": "http://p:1", "NO_PROXY": "::1"}, None),
        ("http://127.0.0.1/x", {"HTTP_PROXY": "http://p:1", "NO_PROXY": "localhost, 127.0.0.1"}, None),
        ("http://127.0.0.1/x", {"HTTP_PROXY": ""}, None),
    ],
)
def test_env_proxy_follows_the_usual_conventions(url: str, env: dict[str, str], expected: str | None) -> None:
    proxy = env_proxy(url, env)
    assert (str(proxy.url).rstrip("/") if proxy else None) == expected


def test_proxy_credentials_are_split_off_the_url() -> None:
    proxy = env_proxy("https://api.example.com/", {"HTTPS_PROXY": "http://user:pa%2055@proxy:3128"})
    assert proxy is not None and proxy.url == httpx.URL("http://proxy:3128")
    assert proxy_userinfo(proxy) == "user:pa 55"


def _source(runner: Runner, upstream: Upstream) -> None:
    write_source(
        runner.config,
        "proxied",
        request={
            "base_url": f"{upstream.url}/v1/forecast",
            "parameters": {"latitude": "{spot.lat}", "longitude": "{spot.lon}"},
        },
        iteration={"foreach": "spot", "items": ITEMS, "key": "id"},
        retry={"max_attempts": 1},
    )


def test_run_goes_through_http_proxy(
    cli: Cli, tmp_path: Path, upstream: Upstream, forward_proxy: ForwardProxy
) -> None:
    runner = Runner(cli, tmp_path, {"HTTP_PROXY": forward_proxy.url})
    _source(runner, upstream)
    code, [record], stderr = runner.run_json("proxied")
    assert code == 0, stderr
    assert record["counts"]["stored"] == 3
    assert sorted(forward_proxy.requests) == sorted(
        f"{upstream.url}/v1/forecast?latitude={n}&longitude=10" for n in range(3)
    )


def test_no_proxy_sends_direct(
    cli: Cli, tmp_path: Path, upstream: Upstream, forward_proxy: ForwardProxy
) -> None:
    runner = Runner(cli, tmp_path, {"HTTP_PROXY": forward_proxy.url, "NO_PROXY": "127.0.0.1"})
    _source(runner, upstream)
    code, [record], stderr = runner.run_json("proxied")
    assert code == 0, stderr
    assert record["counts"]["stored"] == 3
    assert forward_proxy.requests == []


def test_proxy_credentials_are_sent_and_never_shown(
    cli: Cli, tmp_path: Path, upstream: Upstream, forward_proxy: ForwardProxy
) -> None:
    forward_proxy.credentials = "ops:pr0xy-pa55"
    host = forward_proxy.url.removeprefix("http://")
    runner = Runner(cli, tmp_path, {"HTTP_PROXY": f"http://ops:pr0xy-pa55@{host}"})
    _source(runner, upstream)
    code, [record], stderr = runner.run_json("proxied")
    assert code == 0, stderr
    assert record["counts"]["stored"] == 3

    runner.env["HTTP_PROXY"] = f"http://ops:wr0ng-pa55@{host}"
    result = runner("run", "proxied", "--output", "json")
    assert result.exit_code == 1
    assert "HTTP 407 Proxy Authentication Required from" in result.stdout
    for text in (result.stdout, result.stderr, runner("runs", "--output", "json").stdout):
        assert "wr0ng-pa55" not in text and "pr0xy-pa55" not in text
