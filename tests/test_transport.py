"""The run's pool sends a GET without an ``httpx.Request`` only for URLs httpx would send as they are."""

from __future__ import annotations

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st

from pullctl.run.transport import plain_url

_hosts = st.from_regex(r"[a-zA-Z0-9][a-zA-Z0-9.-]{0,12}", fullmatch=True)
_tails = st.text(alphabet="abcXYZ019-._~!$&'()*+,;=:@/%?# é", max_size=30)


@settings(max_examples=3000, deadline=None)
@given(st.sampled_from(["http", "https", "HTTP", "ftp"]), _hosts, st.none() | st.integers(0, 70000), _tails)
def test_a_plain_url_is_the_url_httpx_sends(scheme: str, host: str, port: int | None, tail: str) -> None:
    url = (
        f"{scheme}://{host}" + (f":{port}" if port is not None else "") + ("/" + tail if tail or port else "")
    )
    if plain_url(url):
        assert str(httpx.URL(url)) == url


def test_what_httpx_would_rewrite_is_not_plain() -> None:
    assert plain_url("http://127.0.0.1:8080/v1/forecast?region=r00001&x=a%2Fb")
    assert plain_url("https://api.example.com/v1/items?page=2&fields=a,b")
    for url in (
        "http://API.example.com/x",  # host case
        "http://h:80/x",  # the default port
        "https://h:443/x",
        "http://h:08080/x",
        "http://h/a/../b",  # dot segments
        "http://h/a/./b",
        "http://h/a b",  # a space
        "http://h/ü",
        "http://h/x#frag",  # kept as they are, but not worth a rule
        "ftp://h/x",
    ):
        assert not plain_url(url), url  # these take httpx's parse: it sends them as it writes them
