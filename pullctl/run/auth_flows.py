"""The pure half of the run's tokens (``auth.py`` has the I/O): one class per flow, each answering what
request gets the token, what its answer says, and what an API request carries. No I/O.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol
from urllib.parse import urlencode

import httpx

from pullctl.config import templates
from pullctl.config.models import OAuth2, Request, Session
from pullctl.config.paths import MISSING, describe, parse_path
from pullctl.errors import AuthError

MAX_MARGIN_SECONDS = 60.0
FORM = "application/x-www-form-urlencoded"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


# -- what the flows exchange (pure data) -----------------------------------------------------------------


@dataclass(frozen=True)
class TokenRequest:
    """One request for a token: where, and what it carries (a form body, or a JSON body for a login)."""

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    form: Mapping[str, str] | None = None
    json: Any = None

    def build(self) -> httpx.Request:
        headers = {"Accept": "application/json", **self.headers}
        if self.form is not None:
            headers["Content-Type"] = FORM
            return httpx.Request(self.method, self.url, headers=headers, content=urlencode(self.form))
        return httpx.Request(self.method, self.url, headers=headers, json=self.json)


@dataclass(frozen=True)
class Token:
    """What a token answer says: the token, its lifetime (None: until a 401) and a rotated refresh token."""

    value: str
    lifetime: float | None = None
    refresh_token: str | None = None


class TokenAnswerError(Exception):
    """A token answer that holds no usable token; the message names what came back, never a value."""


def margin(lifetime: float) -> float:
    """How long before its expiry a token is renewed: 10 % of its lifetime, at most 60 s."""
    return min(lifetime * 0.1, MAX_MARGIN_SECONDS)


def read_answer(status: int, content_type: str, body: bytes) -> Any:
    """The JSON of a token or login answer; a ``TokenAnswerError`` for a refusal, HTML, or no JSON."""
    kind = content_type.split(";")[0].strip().lower() or "no content-type"
    html = "html" in kind or body.lstrip()[:1] == b"<"
    try:
        data = json.loads(body) if body.strip() and not html else MISSING
    except ValueError:
        data = MISSING
    if not 200 <= status < 300:
        said = ""
        if isinstance(data, dict) and isinstance(data.get("error"), str):  # RFC 6749 §5.2
            said = f": {data['error']}"
            if isinstance(data.get("error_description"), str):
                said += f" ({data['error_description'][:200]})"
        elif html:
            said = " with an HTML page"
        raise TokenAnswerError(f"answered HTTP {status}{said}")
    if data is MISSING:
        shape = "an HTML page" if html else f"a body that is not JSON ({kind})"
        raise TokenAnswerError(f"answered {shape}, not a JSON token: is the URL the right endpoint?")
    return data


def token_at(data: Any, path: str, field_name: str) -> str:
    """The non-empty string at ``path`` of an answer, or a ``TokenAnswerError`` naming the answer's shape."""
    value = parse_path(path).get(data, MISSING)
    if isinstance(value, str) and value.strip():
        return value
    if value is MISSING or value is None:
        found = "nothing" if value is MISSING else "null"
    elif isinstance(value, str):
        found = "an empty string"
    else:
        found = describe(_shape(value)) if isinstance(value, dict | list) else f"a {type(value).__name__}"
    raise TokenAnswerError(
        f"answered without a token at {field_name} '{path}' ({found} there; the answer is"
        f" {describe(_shape(data))}): set {field_name} to where the token is"
    )


def _shape(data: Any) -> Any:
    """``data`` with its values left out, for a message (an answer's values may be credentials)."""
    return (
        dict.fromkeys(data, "")
        if isinstance(data, dict)
        else ([""] * len(data) if isinstance(data, list) else "")
    )


def lifetime_at(data: Any, path: str | None) -> float | None:
    """Seconds at ``expires_in_path`` (a number or a numeric string); None when absent or not a number."""
    if path is None:
        return None
    value = parse_path(path).get(data, None)
    if isinstance(value, bool):
        return None
    try:
        seconds = float(value) if isinstance(value, int | float | str) else None
    except ValueError:
        return None
    return seconds if seconds is not None and seconds > 0 else None


# -- one class per flow (pure) ---------------------------------------------------------------------------


class Flow(Protocol):
    """What ``TokenManager`` asks of a flow."""

    @property
    def what(self) -> str:
        """The flow and its URL, for messages: ``oauth2 client_credentials grant at https://…/token``."""
        ...

    @property
    def request_url(self) -> str:
        """Where its request goes (``token_url``, the login URL): the only place its credentials go."""
        ...

    def request(self, now: float) -> TokenRequest: ...

    def read(self, status: int, content_type: str, body: bytes) -> Token: ...

    def carry(self, token: str) -> tuple[dict[str, str], dict[str, str]]:
        """(headers, query parameters) an API request carries the token in."""
        ...

    def credentials(self) -> list[str]:
        """Values this flow builds from its secrets that travel in another form (to be masked)."""
        ...


@dataclass(frozen=True)
class _OAuth2Flow:
    """What the three grants share: client authentication, scopes, extra fields, reading the answer."""

    config: OAuth2
    client_id: str | None
    client_secret: str | None
    extra: Mapping[str, str]

    @property
    def what(self) -> str:
        return f"oauth2 {self.config.grant} grant at {self.config.token_url}"

    @property
    def request_url(self) -> str:
        return self.config.token_url

    def grant_fields(self, now: float) -> dict[str, str]:
        raise NotImplementedError

    def request(self, now: float) -> TokenRequest:
        cfg = self.config
        form = {**self.grant_fields(now)}
        if cfg.scopes:
            form["scope"] = " ".join(cfg.scopes)
        form.update(self.extra)
        headers: dict[str, str] = {}
        if cfg.client_auth == "basic":
            headers["Authorization"] = "Basic " + base64.b64encode(self._pair().encode()).decode()
        else:
            if self.client_id is not None:
                form["client_id"] = self.client_id
            if self.client_secret is not None:
                form["client_secret"] = self.client_secret
        return TokenRequest("POST", cfg.token_url, headers, form)

    def _pair(self) -> str:
        return f"{self.client_id}:{self.client_secret}"

    def read(self, status: int, content_type: str, body: bytes) -> Token:
        data = read_answer(status, content_type, body)
        value = token_at(data, self.config.token_path, "oauth2.token_path")
        return Token(value, lifetime_at(data, self.config.expires_in_path))

    def carry(self, token: str) -> tuple[dict[str, str], dict[str, str]]:
        return {"Authorization": f"Bearer {token}"}, {}

    def credentials(self) -> list[str]:
        return [self._pair()] if self.config.client_auth == "basic" else []


@dataclass(frozen=True)
class ClientCredentials(_OAuth2Flow):
    def grant_fields(self, now: float) -> dict[str, str]:
        return {"grant_type": "client_credentials"}


@dataclass(frozen=True)
class RefreshToken(_OAuth2Flow):
    """The refresh_token grant; ``read`` reports a new ``refresh_token`` in the answer (rotation)."""

    refresh_token: str = ""

    def grant_fields(self, now: float) -> dict[str, str]:
        return {"grant_type": "refresh_token", "refresh_token": self.refresh_token}

    def read(self, status: int, content_type: str, body: bytes) -> Token:
        token = super().read(status, content_type, body)
        data = json.loads(body)
        rotated = data.get("refresh_token") if isinstance(data, dict) else None
        if isinstance(rotated, str) and rotated.strip() and rotated != self.refresh_token:
            return replace(token, refresh_token=rotated)
        return token

    def using(self, refresh_token: str) -> RefreshToken:
        """The same grant, spending ``refresh_token`` next (the stored one, or the one just rotated)."""
        return replace(self, refresh_token=refresh_token)


@dataclass(frozen=True)
class JwtBearer(_OAuth2Flow):
    """RFC 7523: a JWT signed with the configured private key (PyJWT, RS256 or ES256) is the grant."""

    private_key: str = ""
    claims: Mapping[str, Any] = field(default_factory=dict)
    jti: Callable[[], str] = field(default=lambda: uuid.uuid4().hex)

    def grant_fields(self, now: float) -> dict[str, str]:
        return {"grant_type": JWT_BEARER_GRANT, "assertion": self.assertion(now)}

    def assertion(self, now: float) -> str:
        import jwt as pyjwt

        cfg = self.config.jwt
        assert cfg is not None, "validated: jwt_bearer needs jwt"
        issued = int(now)
        claims = {"iat": issued, "exp": issued + cfg.lifetime_seconds, "jti": self.jti(), **self.claims}
        headers = {"kid": cfg.key_id} if cfg.key_id else None
        try:
            return pyjwt.encode(claims, self.private_key, algorithm=cfg.algorithm, headers=headers)
        except (pyjwt.PyJWTError, ValueError, TypeError):
            wanted = "an RSA private key" if cfg.algorithm == "RS256" else "an EC private key (P-256)"
            raise AuthError(
                f"{self.what}: oauth2.jwt.private_key is not {wanted} in PEM form, as {cfg.algorithm} needs"
            ) from None


@dataclass(frozen=True)
class SessionLogin:
    """``auth_type: session``: the login request; its answer's token goes in a header or a parameter."""

    config: Session
    headers: Mapping[str, str]
    body: Any

    @property
    def what(self) -> str:
        return f"session login at {self.config.login.url}"

    @property
    def request_url(self) -> str:
        return self.config.login.url

    def request(self, now: float) -> TokenRequest:
        login = self.config.login
        return TokenRequest(login.method, login.url, self.headers, None, self.body)

    def read(self, status: int, content_type: str, body: bytes) -> Token:
        data = read_answer(status, content_type, body)
        value = token_at(data, self.config.token_path, "session.token_path")
        return Token(value, float(self.config.ttl_seconds) if self.config.ttl_seconds else None)

    def carry(self, token: str) -> tuple[dict[str, str], dict[str, str]]:
        value = f"{self.config.prefix}{token}"
        if self.config.header is not None:
            return {self.config.header: value}, {}
        assert self.config.param is not None, "validated: header or param"
        return {}, {self.config.param: value}

    def credentials(self) -> list[str]:
        return []


def flow_for(request: Request, secrets: Mapping[str, str]) -> Flow | None:
    """The flow of ``request``'s auth with its ``{secret.NAME}`` filled in; None for static auth."""
    context = {templates.SECRET_VARIABLE: dict(secrets)}

    def fill(value: Any) -> Any:
        return templates.render_value(value, context) if value is not None else None

    if request.auth_type == "session":
        assert request.session is not None, "validated: session needs its block"
        login = request.session.login
        headers = {k: templates.render_header(v, context) for k, v in login.headers.items()}
        return SessionLogin(request.session, headers, fill(login.body))
    if request.auth_type != "oauth2":
        return None
    cfg = request.oauth2
    assert cfg is not None, "validated: oauth2 needs its block"
    common = (cfg, fill(cfg.client_id), fill(cfg.client_secret), fill(cfg.extra_params))
    if cfg.grant == "client_credentials":
        return ClientCredentials(*common)
    if cfg.grant == "refresh_token":
        return RefreshToken(*common, refresh_token=fill(cfg.refresh_token))
    assert cfg.jwt is not None, "validated: jwt_bearer needs jwt"
    key = fill(cfg.jwt.private_key)
    if "\\n" in key and "\n" not in key:  # a PEM pasted from a JSON key file keeps its \n escapes
        key = key.replace("\\n", "\n")
    return JwtBearer(*common, private_key=key, claims=fill(cfg.jwt.claims))
