"""An OAuth2 token endpoint, a session login and the API they protect, served for real by uvicorn on loopback.

Two servers, so two origins: ``OAuthServer.auth_url`` serves the token endpoint and the login (and an
``/echo`` that records what reaches it), ``OAuthServer.api_url`` the protected API. Every request to either
lands in ``calls`` (``Call``: which server, path, query, lower-case headers, body text), so a test can show
that client credentials never reached the API and the access token never reached anything else.

``POST /token`` (form body, RFC 6749): ``grant_type``
    ``client_credentials``: the client (``client_id``/``client_secret`` in the body, or HTTP Basic) must be
    ``OAuthServer.client_id``/``client_secret``, else 401 ``invalid_client``.
    ``refresh_token``: ``refresh_token`` must be one of ``refresh_tokens`` (a set), else 400
    ``invalid_grant``; with ``rotate`` the used one is removed and the answer carries a new one (``rt-N``).
    A client, when one is sent, must be the right one.
    ``urn:ietf:params:oauth:grant-type:jwt-bearer``: ``assertion`` is verified with ``jwt_public_keys``
    (PEM by algorithm) and must have ``aud`` = ``jwt_audience`` and ``iss`` = ``jwt_issuer``; else 400
    ``invalid_grant``. The verified claims are kept in ``assertions``.
    The answer: ``{token_field: token, "token_type": "Bearer", expires_field: lifetime}`` (no lifetime key when
    ``lifetime`` is None), ``scope`` echoed. ``token_failures`` (a list of ``(status, body, content_type)``)
    is answered first, one per request (with ``echo_on_token_error``, ``ECHO`` in a body becomes the client
    secret and the request's form). ``token_calls`` counts requests.
``POST /login`` (JSON ``{"username", "password"}`` = ``users``): ``{"session": {"id": token}}``; 401 otherwise.
    A session lasts ``session_ttl`` seconds (server side). ``login_calls`` counts requests.
``GET /api/items?item=X`` (the API origin): the token in ``Authorization: Bearer``, ``X-Session-Token`` or the
    ``session`` query parameter must be live (issued, not revoked, within its lifetime), else 401. Answers
    ``{"item": X, "token_number": n}`` (n: which token it was, 1 for the first issued). The first ``hold``
    requests wait until ``hold_until`` seconds after the first token was issued (so a run outlives its first
    token: the token expiring mid-run). ``revoke_after``: the request with that number revokes every token
    issued so far, first (a valid-looking token refused). ``refuse_all``: every request is 401;
    ``echo_on_401``: a 401's message repeats the Authorization header and the query it got.
``GET /api/pages?page=N``: ``{"data": [{"id": "pN"}], "next": next_url or null}``; page 1's ``next`` is ``next_url``
    (a test points it at another origin).
``GET /api/away``: 302 to ``auth_url/echo`` (another origin).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from pullctl.asgi import BackgroundServer

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


@dataclass(frozen=True)
class Call:
    server: str  # "auth" | "api"
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: str


def _oauth_error(code: str, status: int, description: str = "") -> JSONResponse:
    body = {"error": code, **({"error_description": description} if description else {})}
    return JSONResponse(body, status_code=status)


class OAuthServer:
    def __init__(self) -> None:
        self.client_id = "test-client"
        self.client_secret = "client-s3cret/with+odd=chars"
        self.refresh_tokens: set[str] = {"rt-0"}
        self.rotate = False
        self.rotation_suffix = ""  # appended to rotated refresh tokens (rt-1<suffix>)
        self.lifetime: float | None = 3600
        self.token_field, self.expires_field = "access_token", "expires_in"
        self.token_failures: list[tuple[int, str, str]] = []
        self.jwt_public_keys: dict[str, str] = {}
        self.jwt_audience, self.jwt_issuer = "https://auth.test/token", "svc@test.iam"
        self.assertions: list[dict[str, Any]] = []
        self.users = {"alice": "pa55/word+x"}
        self.session_ttl: float | None = None
        self.hold, self.hold_until = 0, 0.0
        self.revoke_after: int | None = None
        self.refuse_all = False
        self.echo_on_401 = False  # a 401's body repeats the credential it got (a careless API)
        self.echo_on_token_error = False  # token_failures' bodies carry the client secret too
        self.next_url: str | None = None
        self.calls: list[Call] = []
        self.token_calls = self.login_calls = self.api_calls = 0
        self._live: dict[str, tuple[int, float | None]] = {}  # token -> (number, expires at)
        self._numbers = itertools.count(1)
        self._rotations = itertools.count(1)
        self._first_issue: float | None = None
        self._lock = threading.Lock()
        self._auth: BackgroundServer | None = None
        self._api: BackgroundServer | None = None

    # -- lifecycle

    def start(self) -> OAuthServer:
        self._auth = BackgroundServer(self._app("auth")).start()
        self._api = BackgroundServer(self._app("api")).start()
        return self

    def stop(self) -> None:
        for server in (self._auth, self._api):
            if server is not None:
                server.stop()
        self._auth = self._api = None

    def __enter__(self) -> OAuthServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def auth_url(self) -> str:
        assert self._auth is not None
        return self._auth.url

    @property
    def api_url(self) -> str:
        assert self._api is not None
        return self._api.url

    # -- what a test reads

    def seen(self, server: str) -> str:
        """Everything that reached ``server`` ("auth" or "api"): paths, queries, headers and bodies."""
        return json.dumps([c.__dict__ for c in self.calls if c.server == server])

    def issued(self) -> list[str]:
        return list(self._live)

    def token_numbers(self) -> list[int]:
        """The ``token_number`` of every API request that got through, in order."""
        return [int(c.headers.get("x-token-number", 0)) for c in self.calls if c.server == "api"]

    # -- the apps

    def _app(self, server: str) -> Starlette:
        async def record(request: Request) -> Call:
            body = (await request.body()).decode("utf-8", "replace")
            call = Call(
                server,
                request.method,
                request.url.path,
                dict(request.query_params),
                {k.lower(): v for k, v in request.headers.items()},
                body,
            )
            with self._lock:
                self.calls.append(call)
            return call

        def endpoint(handler: Any) -> Any:
            async def wrapped(request: Request) -> Response:
                call = await record(request)
                response: Response = await handler(request, call)
                return response

            return wrapped

        if server == "auth":
            routes = [
                Route("/token", endpoint(self._token), methods=["POST"]),
                Route("/login", endpoint(self._login), methods=["POST"]),
                Route("/echo", endpoint(self._echo), methods=["GET", "POST"]),
                Route("/api/pages", endpoint(self._echo)),
            ]
        else:
            routes = [
                Route("/api/items", endpoint(self._items)),
                Route("/api/pages", endpoint(self._pages)),
                Route("/api/away", endpoint(self._away)),
            ]
        return Starlette(routes=routes)

    def _issue(self, lifetime: float | None) -> tuple[str, int]:
        import secrets

        with self._lock:
            number = next(self._numbers)
            token = f"tok{number}-{secrets.token_urlsafe(12)}"
            now = time.monotonic()
            self._first_issue = self._first_issue or now
            self._live[token] = (number, now + lifetime if lifetime else None)
        return token, number

    def _client_ok(self, call: Call, form: dict[str, str], required: bool) -> bool:
        auth = call.headers.get("authorization", "")
        if auth.startswith("Basic "):
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
        elif "client_id" in form or "client_secret" in form:
            user, password = form.get("client_id", ""), form.get("client_secret", "")
        else:
            return not required
        return (user, password) == (self.client_id, self.client_secret)

    async def _token(self, request: Request, call: Call) -> Response:
        self.token_calls += 1
        if self.token_failures:
            status, body, content_type = self.token_failures.pop(0)
            if self.echo_on_token_error:
                body = body.replace("ECHO", f"{self.client_secret} {call.body}")
            return Response(body, status_code=status, media_type=content_type)
        form = dict(parse_qsl(call.body))
        grant = form.get("grant_type")
        extra: dict[str, Any] = {}
        if grant == "client_credentials":
            if not self._client_ok(call, form, required=True):
                return _oauth_error("invalid_client", 401, "client authentication failed")
        elif grant == "refresh_token":
            if not self._client_ok(call, form, required=False):
                return _oauth_error("invalid_client", 401)
            used = form.get("refresh_token", "")
            with self._lock:
                if used not in self.refresh_tokens:
                    return _oauth_error("invalid_grant", 400, "the refresh token is invalid or was used")
                if self.rotate:
                    self.refresh_tokens.discard(used)
                    new = f"rt-{next(self._rotations)}{self.rotation_suffix}"
                    self.refresh_tokens.add(new)
                    extra["refresh_token"] = new
        elif grant == JWT_GRANT:
            claims = self._verify(form.get("assertion", ""))
            if claims is None:
                return _oauth_error("invalid_grant", 400, "the assertion does not verify")
            self.assertions.append(claims)
        else:
            return _oauth_error("unsupported_grant_type", 400)
        token, _ = self._issue(self.lifetime)
        answer: dict[str, Any] = {self.token_field: token, "token_type": "Bearer", **extra}
        if self.lifetime is not None:
            answer[self.expires_field] = self.lifetime
        if "scope" in form:
            answer["scope"] = form["scope"]
        return JSONResponse(answer)

    def _verify(self, assertion: str) -> dict[str, Any] | None:
        import jwt

        try:
            algorithm = jwt.get_unverified_header(assertion)["alg"]
            key = self.jwt_public_keys[algorithm]
            claims: dict[str, Any] = jwt.decode(
                assertion, key, algorithms=[algorithm], audience=self.jwt_audience, issuer=self.jwt_issuer
            )
        except (jwt.PyJWTError, KeyError):
            return None
        return {**claims, "alg": algorithm}

    async def _login(self, request: Request, call: Call) -> Response:
        self.login_calls += 1
        try:
            body = json.loads(call.body)
        except ValueError:
            return JSONResponse({"message": "send JSON"}, status_code=400)
        if self.users.get(body.get("username")) != body.get("password"):
            return JSONResponse({"message": "wrong username or password"}, status_code=401)
        token, _ = self._issue(self.session_ttl)
        return JSONResponse({"session": {"id": token}})

    async def _echo(self, request: Request, call: Call) -> Response:
        return JSONResponse({"data": [], "next": None})

    def _live_number(self, call: Call) -> int | None:
        auth = call.headers.get("authorization", "")
        token = (
            auth.removeprefix("Bearer ")
            if auth.startswith("Bearer ")
            else call.headers.get("x-session-token") or call.query.get("session", "")
        )
        found = self._live.get(token)
        if found is None or (found[1] is not None and time.monotonic() >= found[1]):
            return None
        return found[0]

    async def _guard(self, call: Call) -> int | Response:
        with self._lock:
            self.api_calls += 1
            number = self.api_calls
            if self.revoke_after is not None and number == self.revoke_after:
                self._live.clear()
        token_number = self._live_number(call)  # checked on arrival; then it may be held
        if number <= self.hold and self._first_issue is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(max(self._first_issue + self.hold_until - time.monotonic(), 0))
        if token_number is None or self.refuse_all:
            said = f" {call.headers.get('authorization')} {call.query}" if self.echo_on_401 else ""
            return JSONResponse({"message": f"invalid or expired token{said}"}, status_code=401)
        call.headers["x-token-number"] = str(token_number)
        return token_number

    async def _items(self, request: Request, call: Call) -> Response:
        guarded = await self._guard(call)
        if isinstance(guarded, Response):
            return guarded
        return JSONResponse({"item": call.query.get("item"), "token_number": guarded})

    async def _pages(self, request: Request, call: Call) -> Response:
        guarded = await self._guard(call)
        if isinstance(guarded, Response):
            return guarded
        page = int(call.query.get("page", "1"))
        return JSONResponse({"data": [{"id": f"p{page}"}], "next": self.next_url if page == 1 else None})

    async def _away(self, request: Request, call: Call) -> Response:
        return RedirectResponse(f"{self.auth_url}/echo", status_code=302)


@pytest.fixture
def oauth() -> Iterator[OAuthServer]:
    """A started ``OAuthServer`` (token endpoint and login on one origin, the API on another)."""
    with OAuthServer() as server:
        yield server
