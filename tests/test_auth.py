"""auth_type oauth2 (client_credentials, refresh_token with rotation, jwt_bearer) and session, against the
loopback token server and API of tests/servers/oauth.py (two origins, real HTTP under uvicorn)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from pullctl.errors import StoreError
from pullctl.pipeline.state_key import new_key
from tests.conftest import Cli
from tests.runkit import Runner, write_source
from tests.servers.oauth import OAuthServer

RETRY = {"max_attempts": 2, "initial_delay_seconds": 0.01, "max_delay_seconds": 0.02}
SECRETS = {
    "client_id": {"secret_store": "vault", "secret_key": "client-id"},
    "client_secret": {"secret_store": "vault", "secret_key": "client-secret"},
    "refresh_token": {"secret_store": "vault", "secret_key": "refresh-token"},
    "sa_key": {"secret_store": "vault", "secret_key": "sa-key"},
    "user": {"secret_store": "vault", "secret_key": "user"},
    "password": {"secret_store": "vault", "secret_key": "password"},
}


def env_for(oauth: OAuthServer, **more: str) -> dict[str, str]:
    return {
        "PULLCTL_SECRET_VAULT_CLIENT_ID": oauth.client_id,
        "PULLCTL_SECRET_VAULT_CLIENT_SECRET": oauth.client_secret,
        "PULLCTL_SECRET_VAULT_REFRESH_TOKEN": "rt-0",
        "PULLCTL_SECRET_VAULT_USER": "alice",
        "PULLCTL_SECRET_VAULT_PASSWORD": oauth.users["alice"],
        "PULLCTL_SECRET_VAULT_SA_KEY": "no key here",
        **more,
    }


def oauth2(oauth: OAuthServer, grant: str, **fields: Any) -> dict[str, Any]:
    block: dict[str, Any] = {"grant": grant, "token_url": f"{oauth.auth_url}/token"}
    if grant in ("client_credentials", "refresh_token"):
        block.update(client_id="{secret.client_id}", client_secret="{secret.client_secret}")
    if grant == "refresh_token":
        block["refresh_token"] = "{secret.refresh_token}"
    return {**block, **fields}


def _auth(oauth: OAuthServer, grant: str, **fields: Any) -> dict[str, Any]:
    """``request`` fields for ``auth_type: oauth2`` with ``grant`` against the test token server."""
    return {"auth_type": "oauth2", "oauth2": oauth2(oauth, grant, **fields)}


def _spent(oauth: OAuthServer) -> list[str]:
    """The refresh token of every token request, in order."""
    return [dict(parse_qsl(c.body))["refresh_token"] for c in oauth.calls if c.path == "/token"]


def write_api(
    runner: Runner,
    oauth: OAuthServer,
    auth: dict[str, Any],
    *,
    items: int = 3,
    concurrency: int = 3,
    path: str = "/api/items",
    **ingestion: Any,
) -> None:
    request = {"base_url": f"{oauth.api_url}{path}", "parameters": {"item": "{thing.id}"}, **auth}
    iteration = {
        "foreach": "thing",
        "items": [{"id": f"i{n}"} for n in range(items)],
        "key": "id",
        "concurrency": concurrency,
    }
    write_source(
        runner.config,
        "graph",
        secrets=SECRETS,
        request=request,
        iteration=iteration,
        retry=RETRY,
        **ingestion,
    )


@pytest.fixture
def runner(cli: Cli, tmp_path: Path, oauth: OAuthServer) -> Runner:
    return Runner(cli, tmp_path, env_for(oauth, PULLCTL_STATE_KEY=new_key()))


def _error(stderr: str) -> str:
    return [json.loads(line) for line in stderr.splitlines() if '"run_finished"' in line][-1]["message"]


# -- each grant ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("client_auth", ["body", "basic"])
def test_client_credentials_gets_one_token_for_the_whole_run(
    runner: Runner, oauth: OAuthServer, client_auth: str
) -> None:
    auth = _auth(
        oauth,
        "client_credentials",
        client_auth=client_auth,
        scopes=["a.read", "b.read"],
        extra_params={"resource": "https://graph.test"},
    )
    write_api(runner, oauth, auth, items=6)
    code, [record], log = runner.run_json("graph")
    assert code == 0 and record["counts"]["fetched"] == 6, log
    assert oauth.token_calls == 1 and oauth.token_numbers() == [1] * 6
    [token_call] = [c for c in oauth.calls if c.path == "/token"]
    form = dict(parse_qsl(token_call.body))
    assert form["grant_type"] == "client_credentials"
    assert form["scope"] == "a.read b.read" and form["resource"] == "https://graph.test"
    if client_auth == "basic":
        assert "client_secret" not in form and token_call.headers["authorization"].startswith("Basic ")
    else:
        assert form["client_secret"] == oauth.client_secret and "authorization" not in token_call.headers


def test_refresh_token_grant_without_rotation(runner: Runner, oauth: OAuthServer) -> None:
    write_api(runner, oauth, _auth(oauth, "refresh_token", rotation=False))
    code, [record], log = runner.run_json("graph", PULLCTL_STATE_KEY="")
    assert code == 0 and record["counts"]["fetched"] == 3, log
    assert oauth.token_calls == 1
    form = dict(parse_qsl(oauth.calls[0].body))
    assert (form["grant_type"], form["refresh_token"]) == ("refresh_token", "rt-0")


def _keys(algorithm: str) -> tuple[str, str]:
    key: Any = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if algorithm == "RS256"
        else ec.generate_private_key(ec.SECP256R1())
    )
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
def test_jwt_bearer_assertion_verifies_with_the_public_key(
    runner: Runner, oauth: OAuthServer, algorithm: str
) -> None:
    private, public = _keys(algorithm)
    oauth.jwt_public_keys[algorithm] = public
    claims = {"iss": oauth.jwt_issuer, "aud": oauth.jwt_audience, "scope": "a b"}
    jwt = {"private_key": "{secret.sa_key}", "algorithm": algorithm, "claims": claims, "key_id": "k1"}
    write_api(runner, oauth, _auth(oauth, "jwt_bearer", jwt=jwt))
    code, [record], log = runner.run_json("graph", PULLCTL_SECRET_VAULT_SA_KEY=private)
    assert code == 0 and record["counts"]["fetched"] == 3, log
    [verified] = oauth.assertions
    assert verified["alg"] == algorithm and verified["scope"] == "a b"
    assert verified["exp"] - verified["iat"] == 3600 and verified["jti"]


def test_jwt_bearer_with_a_key_of_the_wrong_kind_fails_before_any_request(
    runner: Runner, oauth: OAuthServer
) -> None:
    private, _ = _keys("RS256")
    jwt = {"private_key": "{secret.sa_key}", "algorithm": "ES256", "claims": {"iss": "x"}}
    write_api(runner, oauth, _auth(oauth, "jwt_bearer", jwt=jwt))
    code, _, log = runner.run_json("graph", PULLCTL_SECRET_VAULT_SA_KEY=private)
    assert code == 1
    assert _error(log) == (
        f"oauth2 jwt_bearer grant at {oauth.auth_url}/token: oauth2.jwt.private_key is not an EC private key"
        " (P-256) in PEM form, as ES256 needs"
    )
    assert oauth.token_calls == 0 and oauth.api_calls == 0


def test_session_login_sends_the_token_in_a_header_or_a_parameter(runner: Runner, oauth: OAuthServer) -> None:
    login = {
        "url": f"{oauth.auth_url}/login",
        "body": {"username": "{secret.user}", "password": "{secret.password}"},
    }
    for where in ({"header": "X-Session-Token"}, {"param": "session"}):
        session = {"login": login, "token_path": "session.id", **where}
        write_api(runner, oauth, {"auth_type": "session", "session": session})
        code, [record], log = runner.run_json("graph")
        assert code == 0 and record["counts"]["fetched"] == 3, log
    assert oauth.login_calls == 2
    assert json.loads(oauth.calls[0].body) == {"username": "alice", "password": oauth.users["alice"]}


# -- one token per run: expiry mid-run, a 401 ----------------------------------------------------------


def test_a_token_that_expires_mid_run_is_renewed_once_for_every_worker(
    runner: Runner, oauth: OAuthServer
) -> None:
    """The first 50 requests are held until the first token is past its lifetime (2 s, renewed 0.2 s before;
    released at 2.5 s, so a slow machine cannot make it look fresh): the 50 workers then all find it stale at
    once, and one token request serves the 50 (no request is refused: the renewal came before the 401)."""
    oauth.lifetime = 2
    oauth.hold, oauth.hold_until = 50, 2.5
    write_api(runner, oauth, _auth(oauth, "client_credentials"), items=100, concurrency=50)
    code, [record], log = runner.run_json("graph")
    assert code == 0 and record["counts"]["fetched"] == 100, log
    assert oauth.token_calls == 2
    numbers = oauth.token_numbers()
    assert sorted(numbers) == [1] * 50 + [2] * 50, numbers


def test_a_session_past_its_ttl_is_logged_in_again(runner: Runner, oauth: OAuthServer) -> None:
    oauth.session_ttl = 2
    oauth.hold, oauth.hold_until = 4, 2.5
    login = {
        "url": f"{oauth.auth_url}/login",
        "body": {"username": "{secret.user}", "password": "{secret.password}"},
    }
    session = {"login": login, "token_path": "session.id", "header": "X-Session-Token", "ttl_seconds": 2}
    write_api(runner, oauth, {"auth_type": "session", "session": session}, items=8, concurrency=4)
    code, [record], log = runner.run_json("graph")
    assert code == 0 and record["counts"]["fetched"] == 8, log
    assert oauth.login_calls == 2 and sorted(oauth.token_numbers()) == [1] * 4 + [2] * 4


def test_a_401_on_a_valid_looking_token_renews_it_once_and_retries(
    runner: Runner, oauth: OAuthServer
) -> None:
    """The API's 3rd request revokes every token: the workers that meet the 401 share one renewal."""
    oauth.lifetime = None  # no expires_in: renewed on a 401 only
    oauth.revoke_after = 3
    write_api(runner, oauth, _auth(oauth, "client_credentials"), items=12, concurrency=4)
    code, [record], log = runner.run_json("graph")
    assert code == 0 and record["counts"]["fetched"] == 12, log
    assert oauth.token_calls == 2
    statuses = [c for c in oauth.calls if c.server == "api"]
    assert len(statuses) > 12  # the refused requests were sent again


def test_a_second_401_fails_the_item_with_a_clear_message(runner: Runner, oauth: OAuthServer) -> None:
    oauth.refuse_all = True
    write_api(runner, oauth, _auth(oauth, "client_credentials"), items=1)
    code, [record], log = runner.run_json("graph")
    assert code == 1 and record["counts"]["failed"] == 1, log
    assert oauth.token_calls == 2 and oauth.api_calls == 2
    url = f"{oauth.api_url}/api/items?item=i0"
    assert record["errors"][0]["message"] == (
        f'HTTP 401 Unauthorized from {url}: {{"message":"invalid or expired token"}} (refused again with a new'
        f" token from the oauth2 client_credentials grant at {oauth.auth_url}/token: the API does not accept"
        " what it hands out; check the scopes or the account's access)"
    )


# -- rotation --------------------------------------------------------------------------------------------


def _stored(runner: Runner) -> list[tuple[Any, ...]]:
    with sqlite3.connect(runner.db) as conn:
        return conn.execute("SELECT _id, ciphertext, fingerprint, run_id FROM auth_state").fetchall()


def test_a_rotated_refresh_token_is_kept_for_the_next_run_even_when_the_run_fails(
    runner: Runner, oauth: OAuthServer
) -> None:
    oauth.rotate = True
    write_api(runner, oauth, _auth(oauth, "refresh_token"), items=2)
    oauth.refuse_all = True  # run 1 rotates rt-0 into rt-1 (then rt-2 on the 401), then fails every item
    code, [first], log = runner.run_json("graph")
    assert code == 1 and first["status"] == "failed", log
    [(key, sealed, _, run_id)] = _stored(runner)
    assert (key, run_id) == ("graph", first["run_id"]) and "rt-" not in sealed
    oauth.refuse_all = False
    code, [second], log = runner.run_json("graph")  # rt-0 is spent: only the stored token works
    assert code == 0 and second["counts"]["fetched"] == 2, log
    code, [_third], log = runner.run_json("graph")
    assert code == 0, log
    assert _spent(oauth) == ["rt-0", "rt-1", "rt-2", "rt-3"]
    assert oauth.refresh_tokens == {"rt-4"}


def test_a_newly_configured_refresh_token_wins_over_the_stored_one(
    runner: Runner, oauth: OAuthServer
) -> None:
    oauth.rotate = True
    write_api(runner, oauth, _auth(oauth, "refresh_token"), items=1)
    assert runner.run_json("graph")[0] == 0  # stores rt-1, rotated from rt-0
    oauth.refresh_tokens.add("rt-new")  # the operator asked the provider for a new one and configured it
    code, _, log = runner.run_json("graph", PULLCTL_SECRET_VAULT_REFRESH_TOKEN="rt-new")
    assert code == 0, log
    assert _spent(oauth) == ["rt-0", "rt-new"]


def test_a_rotating_grant_without_the_state_key_fails_before_the_token_request(
    runner: Runner, oauth: OAuthServer
) -> None:
    write_api(runner, oauth, _auth(oauth, "refresh_token"))
    code, [record], _log = runner.run_json("graph", PULLCTL_STATE_KEY="")
    assert code == 1 and record["status"] == "failed"
    assert record["message"] == (
        f"oauth2 refresh_token grant at {oauth.auth_url}/token may rotate the refresh token, and"
        " PULLCTL_STATE_KEY is not set to keep the new one encrypted in the store: set it (make one with"
        " `pullctl state keygen`), or set oauth2.rotation: false if the provider never rotates refresh tokens"
    )
    assert oauth.token_calls == 0 and oauth.calls == []


def test_a_dry_run_of_a_rotating_grant_is_refused_before_the_token_request(
    runner: Runner, oauth: OAuthServer
) -> None:
    write_api(runner, oauth, _auth(oauth, "refresh_token"))
    result = runner("run", "graph", "--dry-run", PULLCTL_LOG_FORMAT="json")
    assert result.exit_code == 1
    assert _error(result.stderr) == (
        f"oauth2 refresh_token grant at {oauth.auth_url}/token may rotate the refresh token, and a dry run"
        " stores nothing: the rotated token would be lost; run without --dry-run, or set oauth2.rotation:"
        " false if the provider never rotates refresh tokens"
    )
    assert oauth.calls == []


def test_a_stored_token_sealed_with_another_key_is_a_one_line_error(
    runner: Runner, oauth: OAuthServer
) -> None:
    oauth.rotate = True
    write_api(runner, oauth, _auth(oauth, "refresh_token"), items=1)
    assert runner.run_json("graph")[0] == 0
    [(_, _, _, run_id)] = _stored(runner)
    code, [record], _ = runner.run_json("graph", PULLCTL_STATE_KEY=new_key())
    assert code == 1 and record["message"] == (
        f"the refresh token stored for 'graph' (rotated by run {run_id}) cannot be decrypted with"
        " PULLCTL_STATE_KEY: it was sealed with another key; restore that key, or configure a new refresh"
        " token (a newly configured one wins over the stored one)"
    )
    assert oauth.token_calls == 1
    oauth.refresh_tokens.add("rt-new")  # the fix it names: a new key and a new refresh token work together
    code, _, log = runner.run_json(
        "graph", PULLCTL_STATE_KEY=new_key(), PULLCTL_SECRET_VAULT_REFRESH_TOKEN="rt-new"
    )
    assert code == 0, log


# -- token endpoint failures: one line, the run fails ------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (
            (400, '{"error": "invalid_grant", "error_description": "expired"}', "application/json"),
            "answered HTTP 400: invalid_grant (expired)",
        ),
        ((401, '{"error": "invalid_client"}', "application/json"), "answered HTTP 401: invalid_client"),
        (
            (200, "<html><body>Sign in</body></html>", "text/html"),
            "answered an HTML page, not a JSON token: is the URL the right endpoint?",
        ),
        (
            (200, '{"token": "x", "expires_in": 60}', "application/json"),
            "answered without a token at oauth2.token_path 'access_token' (nothing there; the answer is an"
            " object with keys token, expires_in): set oauth2.token_path to where the token is",
        ),
        (
            (503, "<html>down</html>", "text/html"),
            "answered HTTP 503 with an HTML page (gave up after 2 attempts)",
        ),
    ],
    ids=["invalid_grant", "invalid_client", "html", "no-token", "5xx"],
)
def test_token_endpoint_failures_fail_the_run_in_one_line(
    runner: Runner, oauth: OAuthServer, answer: tuple[int, str, str], expected: str
) -> None:
    oauth.token_failures = [answer, answer]
    write_api(runner, oauth, _auth(oauth, "client_credentials"), items=5)
    code, [record], _log = runner.run_json("graph")
    assert code == 1 and record["status"] == "failed"
    assert record["message"] == f"oauth2 client_credentials grant at {oauth.auth_url}/token: {expected}"
    assert [e["item"] for e in record["errors"]] == [None]  # the run's error, not 5 item failures
    assert record["counts"]["requests"] == 0  # no API request went out without a token
    assert oauth.api_calls == 0 and oauth.token_calls == (2 if "5xx" in expected or "503" in expected else 1)


def test_a_session_login_refused_fails_the_run(runner: Runner, oauth: OAuthServer) -> None:
    login = {
        "url": f"{oauth.auth_url}/login",
        "body": {"username": "{secret.user}", "password": "{secret.password}"},
    }
    session = {"login": login, "token_path": "session.id", "header": "X-Session-Token"}
    write_api(runner, oauth, {"auth_type": "session", "session": session})
    code, [record], _ = runner.run_json("graph", PULLCTL_SECRET_VAULT_PASSWORD="wrong")
    assert code == 1 and record["message"] == f"session login at {oauth.auth_url}/login: answered HTTP 401"


# -- where credentials go ---------------------------------------------------------------------------------


def test_credentials_go_only_to_the_token_url_and_the_token_only_to_the_api(
    runner: Runner, oauth: OAuthServer
) -> None:
    write_api(runner, oauth, _auth(oauth, "refresh_token", rotation=False, client_auth="basic"), items=2)
    assert runner.run_json("graph", PULLCTL_STATE_KEY="")[0] == 0
    [token] = oauth.issued()
    api, auth = oauth.seen("api"), oauth.seen("auth")
    for credential in (oauth.client_secret, "rt-0", oauth.client_id):
        assert credential not in api
    assert token in api and token not in auth


@pytest.mark.parametrize("path", ["/api/pages", "/api/away"])
def test_the_token_never_follows_a_next_page_or_redirect_to_another_origin(
    runner: Runner, oauth: OAuthServer, path: str
) -> None:
    oauth.next_url = f"{oauth.auth_url}/api/pages?page=2"
    pagination = {"type": "next_url", "next_url_path": "next"} if path == "/api/pages" else {"type": "none"}
    write_api(runner, oauth, _auth(oauth, "client_credentials"), items=1, path=path, pagination=pagination)
    code, [record], log = runner.run_json("graph")
    assert code == 1, log
    [error] = record["errors"]
    if path == "/api/pages":
        assert error["message"].startswith("the next page is on another origin (127.0.0.1)")
    else:
        assert error["message"] == "redirected to another origin (127.0.0.1); credentials not sent"
    [token] = oauth.issued()
    assert token not in oauth.seen("auth")
    assert [c.path for c in oauth.calls if c.server == "auth"] == ["/token"]


# -- the store refuses the rotated token; MongoDB; a parent source with its own token ------------------------


class _RefusingAuthState:
    """The real SQLite store, except that keeping a credential fails (a full disk, a lost primary)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def put_auth_state(self, state: Any) -> None:
        raise StoreError("cannot write to /data/pullctl.db: disk I/O error")


@pytest.mark.anyio
async def test_a_rotated_token_the_store_refuses_fails_the_run_loudly(
    tmp_path: Path, oauth: OAuthServer
) -> None:
    from pullctl.config.loader import load_paths
    from pullctl.pipeline.store import open_store
    from pullctl.run.runner import run_source
    from pullctl.settings import Settings

    oauth.rotate = True
    runner = Runner(Cli(), tmp_path, {})
    write_api(runner, oauth, _auth(oauth, "refresh_token"), items=2)
    settings = Settings.from_env(
        {**env_for(oauth, PULLCTL_STATE_KEY=new_key()), "PULLCTL_STORE": f"sqlite:///{runner.db}"}
    )
    [loaded] = load_paths([runner.config]).sources
    async with open_store(settings) as store:
        record = await run_source(loaded, settings, _RefusingAuthState(store))
    assert record.status == "failed" and record.message == (
        f"oauth2 refresh_token grant at {oauth.auth_url}/token rotated the refresh token, but the store refused"
        " to keep it (cannot write to /data/pullctl.db: disk I/O error); the next run will need a new refresh"
        " token configured"
    )
    assert oauth.api_calls == 0  # nothing was fetched with a token whose successor is lost
    assert "rt-1" not in record.message


@pytest.mark.mongo
@pytest.mark.usefixtures("pymongo_socket_leaks_tolerated")
def test_rotation_across_runs_with_the_mongodb_store(
    runner: Runner, oauth: OAuthServer, mongo_uri: str, mongo_database: str
) -> None:
    oauth.rotate = True
    store = {"PULLCTL_STORE": mongo_uri, "PULLCTL_MONGODB_DATABASE": mongo_database}
    write_api(runner, oauth, _auth(oauth, "refresh_token"), items=1)
    for _ in range(3):
        code, _, log = runner.run_json("graph", **store)
        assert code == 0, log
    assert _spent(oauth) == ["rt-0", "rt-1", "rt-2"]


def test_a_parent_source_gets_its_own_token(runner: Runner, oauth: OAuthServer) -> None:
    auth = _auth(oauth, "client_credentials")
    parent = {"base_url": f"{oauth.api_url}/api/pages", **auth}
    write_source(
        runner.config, "teams", secrets=SECRETS, request=parent, records={"path": "data"}, retry=RETRY
    )
    child = {"base_url": f"{oauth.api_url}/api/items", "parameters": {"item": "{team.id}"}, **auth}
    iteration = {"foreach": "team", "from_source": "teams", "key": "id"}
    write_source(runner.config, "channels", secrets=SECRETS, request=child, iteration=iteration, retry=RETRY)
    code, [record], log = runner.run_json("channels")
    assert code == 0 and record["counts"]["fetched"] == 1 and record["counts"]["parent_requests"] == 1, log
    assert oauth.token_calls == 2  # one token per source's auth, each for its whole run
