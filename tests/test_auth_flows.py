"""The auth flows' pure halves (pullctl/run/auth.py): what request gets the token, what an answer says, where
the token goes. No server: a table of cases per flow."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from pullctl.config.models import Request
from pullctl.run.auth import (
    JWT_BEARER_GRANT,
    ClientCredentials,
    Grant,
    JwtBearer,
    RefreshToken,
    SessionLogin,
    Token,
    TokenAnswerError,
    flow_for,
    margin,
)

SECRETS = {"cid": "my-client", "cs": "s3cret", "rt": "rt-0", "key": "-----BEGIN PRIVATE KEY-----\\nabc"}


def _request(auth: dict[str, Any]) -> Request:
    return Request.model_validate({"base_url": "https://api.example.com/v1", **auth})


def _oauth2(**fields: Any) -> dict[str, Any]:
    block = {
        "grant": "client_credentials",
        "token_url": "https://login.example.com/token",
        "client_id": "{secret.cid}",
        "client_secret": "{secret.cs}",
        **fields,
    }
    return {"auth_type": "oauth2", "oauth2": block}


def _flow(auth: dict[str, Any]) -> Any:
    flow = flow_for(_request(auth), SECRETS)
    assert flow is not None
    return flow


def test_static_auth_has_no_flow() -> None:
    assert flow_for(_request({}), SECRETS) is None
    bearer = {"auth_type": "bearer", "secret_store": "vault", "secret_key": "k"}
    assert flow_for(_request(bearer), SECRETS) is None


@pytest.mark.parametrize(
    ("auth", "kind", "form", "headers"),
    [
        (
            _oauth2(),
            ClientCredentials,
            {"grant_type": "client_credentials", "client_id": "my-client", "client_secret": "s3cret"},
            {},
        ),
        (
            _oauth2(client_auth="basic", scopes=["a", "b"], extra_params={"resource": "r"}),
            ClientCredentials,
            {"grant_type": "client_credentials", "scope": "a b", "resource": "r"},
            {"Authorization": "Basic " + base64.b64encode(b"my-client:s3cret").decode()},
        ),
        (
            _oauth2(grant="refresh_token", refresh_token="{secret.rt}", client_secret=None),
            RefreshToken,
            {"grant_type": "refresh_token", "refresh_token": "rt-0", "client_id": "my-client"},
            {},
        ),
    ],
    ids=["client-credentials-body", "client-credentials-basic", "refresh-token"],
)
def test_the_token_request_of_each_grant(
    auth: dict[str, Any], kind: type, form: dict[str, str], headers: dict[str, str]
) -> None:
    flow = _flow(auth)
    assert isinstance(flow, kind)
    request = flow.request(1000.0)
    assert (request.method, request.url) == ("POST", "https://login.example.com/token")
    assert dict(request.form) == form and dict(request.headers) == headers
    built = request.build()
    assert built.headers["content-type"] == "application/x-www-form-urlencoded"


def test_a_jwt_bearer_request_carries_the_signed_assertion() -> None:
    flow = _flow(
        _oauth2(grant="jwt_bearer", client_id=None, client_secret=None, jwt={"private_key": "{secret.key}"})
    )
    assert isinstance(flow, JwtBearer)
    assert flow.private_key == "-----BEGIN PRIVATE KEY-----\nabc"  # a JSON key file's \n escapes undone
    signed = JwtBearer(**{**flow.__dict__, "private_key": _rsa_pem(), "jti": lambda: "fixed"})
    form = signed.request(1000.0).form
    assert form is not None and form["grant_type"] == JWT_BEARER_GRANT
    header, claims, _ = form["assertion"].split(".")
    decoded = json.loads(base64.urlsafe_b64decode(claims + "=="))
    assert decoded == {"iat": 1000, "exp": 4600, "jti": "fixed"}
    assert json.loads(base64.urlsafe_b64decode(header + "=="))["alg"] == "RS256"


def _rsa_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


OK = "application/json"


@pytest.mark.parametrize(
    ("fields", "answer", "expected"),
    [
        ({}, {"access_token": "t", "expires_in": 3600}, Token("t", 3600.0)),
        ({}, {"access_token": "t", "expires_in": "3599"}, Token("t", 3599.0)),
        ({}, {"access_token": "t"}, Token("t", None)),
        ({}, {"access_token": "t", "expires_in": "soon"}, Token("t", None)),
        (
            {"token_path": "data.token", "expires_in_path": "/data/ttl"},
            {"data": {"token": "t", "ttl": 60}},
            Token("t", 60.0),
        ),
        ({"expires_in_path": None}, {"access_token": "t", "expires_in": 60}, Token("t", None)),
    ],
    ids=[
        "expires-in",
        "expires-in-text",
        "no-lifetime",
        "lifetime-not-a-number",
        "paths",
        "lifetime-ignored",
    ],
)
def test_reading_a_token_answer(fields: dict[str, Any], answer: Any, expected: Token) -> None:
    assert _flow(_oauth2(**fields)).read(200, OK, json.dumps(answer).encode()) == expected


@pytest.mark.parametrize(
    ("status", "content_type", "body", "message"),
    [
        (400, OK, '{"error": "invalid_grant"}', "answered HTTP 400: invalid_grant"),
        (
            401,
            OK,
            '{"error": "invalid_client", "error_description": "bad"}',
            "answered HTTP 401: invalid_client (bad)",
        ),
        (500, "text/html", "<h1>oops</h1>", "answered HTTP 500 with an HTML page"),
        (403, "text/plain", "denied", "answered HTTP 403"),
        (
            200,
            "text/html",
            "<html></html>",
            "answered an HTML page, not a JSON token: is the URL the right endpoint?",
        ),
        (
            200,
            "text/plain",
            "token=abc",
            "answered a body that is not JSON (text/plain), not a JSON token: is the URL the right endpoint?",
        ),
        (
            200,
            OK,
            "",
            "answered a body that is not JSON (application/json), not a JSON token: is the URL the right endpoint?",
        ),
        (
            200,
            OK,
            '{"access_token": ""}',
            "answered without a token at oauth2.token_path 'access_token' (an empty string there; the answer is an"
            " object with keys access_token): set oauth2.token_path to where the token is",
        ),
        (
            200,
            OK,
            '{"access_token": {"value": "x"}}',
            "answered without a token at oauth2.token_path 'access_token' (an object with keys value there; the"
            " answer is an object with keys access_token): set oauth2.token_path to where the token is",
        ),
        (
            200,
            OK,
            '[{"access_token": "x"}]',
            "answered without a token at oauth2.token_path 'access_token' (nothing there; the answer is a list of 1"
            " item): set oauth2.token_path to where the token is",
        ),
    ],
)
def test_an_answer_without_a_usable_token_names_what_came_back(
    status: int, content_type: str, body: str, message: str
) -> None:
    with pytest.raises(TokenAnswerError) as caught:
        _flow(_oauth2()).read(status, content_type, body.encode())
    assert str(caught.value) == message


def test_a_refresh_token_answer_reports_rotation_only_for_a_new_token() -> None:
    flow = _flow(_oauth2(grant="refresh_token", refresh_token="{secret.rt}"))
    same = flow.read(200, OK, b'{"access_token": "a", "refresh_token": "rt-0"}')
    new = flow.read(200, OK, b'{"access_token": "a", "refresh_token": "rt-1"}')
    assert (same.refresh_token, new.refresh_token) == (None, "rt-1")
    assert flow.using("rt-1").request(0).form["refresh_token"] == "rt-1"


@pytest.mark.parametrize(
    ("where", "carried"),
    [
        ({"header": "X-Session-Token"}, ({"X-Session-Token": "tok"}, {})),
        ({"header": "Authorization", "prefix": "Bearer "}, ({"Authorization": "Bearer tok"}, {})),
        ({"param": "session"}, ({}, {"session": "tok"})),
    ],
)
def test_a_session_token_goes_where_the_config_says(where: dict[str, str], carried: Any) -> None:
    session = {
        "login": {"url": "https://bi.example.com/api/session", "body": {"password": "{secret.cs}"}},
        "token_path": "id",
        "ttl_seconds": 600,
        **where,
    }
    flow = _flow({"auth_type": "session", "session": session})
    assert isinstance(flow, SessionLogin)
    request = flow.request(0)
    assert (request.method, request.url, request.json) == (
        "POST",
        "https://bi.example.com/api/session",
        {"password": "s3cret"},
    )
    token = flow.read(200, OK, b'{"id": "tok"}')
    assert token == Token("tok", 600.0)
    assert flow.carry(token.value) == carried


def test_oauth2_tokens_go_as_bearer() -> None:
    assert _flow(_oauth2()).carry("tok") == ({"Authorization": "Bearer tok"}, {})


@pytest.mark.parametrize(("lifetime", "expected"), [(3600, 60.0), (300, 30.0), (10, 1.0), (601, 60.0)])
def test_the_renewal_margin_is_a_tenth_of_the_lifetime_at_most_a_minute(
    lifetime: float, expected: float
) -> None:
    assert margin(lifetime) == expected


def test_a_grant_is_stale_from_its_renewal_time_and_never_without_a_lifetime() -> None:
    grant = Grant(1, {}, {}, renew_at=100.0)
    assert (grant.stale(99.9), grant.stale(100.0)) == (False, True)
    assert not Grant(1, {}, {}, renew_at=None).stale(1e12)
