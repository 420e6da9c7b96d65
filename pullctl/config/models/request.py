"""``ingestion.request`` and its auth blocks (``oauth2``, ``session``), and named secrets."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from pullctl.config.models.base import (
    IDENT_RE,
    MAX_STREAMED_BYTES,
    PATH_HELP,
    FieldProblem,
    Strict,
    check_path,
    check_url,
)


class GraphQL(Strict):
    query: Annotated[str, Field(min_length=1, description="sent as written: its braces are GraphQL's")]
    variables: dict[str, Any] = Field(default_factory=dict, description="string values are templates")


def _literal_url(v: str) -> str:
    """A URL written out in full: http(s), a host, no templates (credentials go there and nowhere else)."""
    if not re.match(r"^https?://[^/{}?#]+", v) or "{" in v or "}" in v:
        raise ValueError(f"must be a literal absolute http(s) URL, no templates (got {v!r})")
    return v


class Jwt(Strict):
    """A signed JWT assertion (RFC 7523), e.g. a Google service account's."""

    private_key: str = Field(description="the PEM private key: {secret.NAME}")
    algorithm: Literal["RS256", "ES256"] = "RS256"
    claims: dict[str, Any] = Field(
        default_factory=dict, description="iss, sub, aud, scope...; iat and exp are added; {secret.NAME}"
    )
    key_id: str | None = Field(None, description="the kid header, when the provider wants one")
    lifetime_seconds: Annotated[int, Field(ge=60, le=86400)] = Field(3600, description="exp - iat")


class OAuth2(Strict):
    """``auth_type: oauth2``: a token from ``token_url``, sent as ``Authorization: Bearer`` (SOURCES §6)."""

    grant: Literal["client_credentials", "refresh_token", "jwt_bearer"]
    token_url: str = Field(description="the token endpoint: a literal URL, the only place credentials go")
    client_id: str | None = Field(None, description="{secret.NAME} or a literal")
    client_secret: str | None = Field(None, description="{secret.NAME}")
    refresh_token: str | None = Field(None, description="refresh_token grant: {secret.NAME}")
    scopes: list[str] = Field(default_factory=list, description="sent space-separated as scope")
    extra_params: dict[str, str] = Field(default_factory=dict, description="more token request fields")
    client_auth: Literal["body", "basic"] = Field(
        "body", description="client_id/client_secret in the form body, or as HTTP Basic"
    )
    token_path: str = Field("access_token", description=f"the token in the answer: {PATH_HELP}")
    expires_in_path: str | None = Field(
        "expires_in", description="its lifetime in seconds (absent: refreshed on a 401 only)"
    )
    rotation: bool = Field(
        True,
        description="refresh_token grant: the provider may hand out a new refresh token (kept encrypted"
        " in the store; needs PULLCTL_STATE_KEY); false: it never does",
    )
    jwt: Jwt | None = Field(None, description="jwt_bearer: the assertion")

    @field_validator("token_url")
    @classmethod
    def _url(cls, v: str) -> str:
        return _literal_url(v)

    @field_validator("token_path", "expires_in_path")
    @classmethod
    def _paths(cls, v: str | None) -> str | None:
        return check_path(v)

    @model_validator(mode="after")
    def _grant_needs(self) -> OAuth2:
        given = self.model_fields_set
        needs = {
            "client_credentials": ("client_id", "client_secret"),
            "refresh_token": ("refresh_token",),
            "jwt_bearer": ("jwt",),
        }[self.grant]
        for name in needs:
            if getattr(self, name) is None:
                raise FieldProblem(name, f"required for grant {self.grant}")
        owned = {"refresh_token": "refresh_token", "rotation": "refresh_token", "jwt": "jwt_bearer"}
        for name, grant in owned.items():
            if name in given and grant != self.grant:
                raise FieldProblem(name, f"applies to grant {grant}, not {self.grant}")
        if self.client_auth == "basic" and (self.client_id is None or self.client_secret is None):
            missing = "client_id" if self.client_id is None else "client_secret"
            raise FieldProblem(missing, "required with client_auth: basic")
        for name in ("client_id", "client_secret", "refresh_token"):
            if name in self.extra_params:
                raise FieldProblem("extra_params", f"{name} has its own field: set oauth2.{name}")
        for name in ("grant_type", "scope", "assertion"):
            if name in self.extra_params:
                raise FieldProblem("extra_params", f"{name} is set by pullctl from grant/scopes/jwt")
        return self


class SessionLogin(Strict):
    url: str = Field(description="the login endpoint: a literal URL, the only place the login goes")
    method: Literal["GET", "POST"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict, description="{secret.NAME} allowed")
    body: Any = Field(None, description="a JSON body; {secret.NAME} inside string values")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return _literal_url(v)

    @model_validator(mode="after")
    def _body(self) -> SessionLogin:
        if self.method == "GET" and self.body is not None:
            raise FieldProblem("body", "a body needs method: POST")
        return self


class Session(Strict):
    """``auth_type: session``: log in, then send the session token in a header or a query parameter."""

    login: SessionLogin
    token_path: str = Field(description=f"the token in the login answer: {PATH_HELP}")
    header: str | None = Field(None, description="send the token in this header (X-Session-Token)")
    param: str | None = Field(None, description="or in this query parameter")
    prefix: str = Field("", description='written before the token, e.g. "Bearer "')
    ttl_seconds: Annotated[int, Field(ge=1, le=30 * 86400)] | None = Field(
        None, description="how long a session lasts (absent: logged in again on a 401 only)"
    )

    @field_validator("token_path")
    @classmethod
    def _path(cls, v: str) -> str:
        check_path(v)
        return v

    @model_validator(mode="after")
    def _where(self) -> Session:
        if self.header is not None and self.param is not None:
            raise FieldProblem("param", "set header or param, not both: the token goes in one place")
        if self.header is None and self.param is None:
            raise FieldProblem("header", "set header (e.g. X-Session-Token) or param: where the token goes")
        return self


STATIC_AUTH = ("api_key", "bearer", "basic")  # a secret_store/secret_key secret, sent as it is
TOKEN_AUTH = ("oauth2", "session")  # a token pullctl obtains per run (run/auth.py)


class Request(Strict):
    base_url: Annotated[str, Field(min_length=1, description="URL to fetch; templates allowed")]
    method: Literal["GET", "POST"] = "GET"
    auth_type: Literal["none", "api_key", "bearer", "basic", "oauth2", "session"] = "none"
    oauth2: OAuth2 | None = Field(None, description="auth_type oauth2: how to get the token")
    session: Session | None = Field(None, description="auth_type session: how to log in")
    auth_header: str = Field("X-API-Key", description="api_key: the header to set")
    auth_query_param: str | None = Field(None, description="api_key: send as this query parameter instead")
    secret_store: str | None = Field(None, description='DAPR secret store name, or "kubernetes"')
    secret_key: str | None = Field(None, description="the secret's name in that store")
    parameters: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="query; templates"
    )
    headers: dict[str, str] = Field(default_factory=dict, description="templates")
    body: Any = Field(None, description="POST JSON body; templates inside string values")
    graphql: GraphQL | None = Field(None, description='a POST of {"query", "variables"}; no body')
    raw_parameters: dict[str, str] = Field(
        default_factory=dict, description="query parameters appended as written, not percent-encoded; static"
    )
    timeout_seconds: Annotated[float, Field(gt=0, le=3600)] = 30.0
    max_response_bytes: Annotated[int, Field(ge=1024, le=MAX_STREAMED_BYTES)] = Field(
        10 * 1024 * 1024,
        description="the most a body may hold, counted decompressed; above 1 GiB only for streamed rows"
        " (response.format jsonl, csv or tsv with records.split)",
    )

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        return check_url(v)

    @property
    def rotates_refresh_token(self) -> bool:
        """A refresh-token grant whose provider may rotate the token: it needs ``PULLCTL_STATE_KEY``."""
        oauth2 = self.oauth2
        return (
            self.auth_type == "oauth2"
            and oauth2 is not None
            and oauth2.grant == "refresh_token"
            and oauth2.rotation
        )

    @model_validator(mode="after")
    def _auth(self) -> Request:
        if self.auth_type in STATIC_AUTH:
            for name in ("secret_store", "secret_key"):
                if not getattr(self, name):
                    raise FieldProblem(name, f"required when auth_type is {self.auth_type}")
        for block in TOKEN_AUTH:
            if block == self.auth_type and getattr(self, block) is None:
                raise FieldProblem(block, f"required when auth_type is {block}")
            if block != self.auth_type and getattr(self, block) is not None:
                raise FieldProblem(block, f"applies with auth_type: {block}, not {self.auth_type}")
        if self.auth_type in TOKEN_AUTH:
            for name in ("secret_store", "secret_key"):
                if getattr(self, name):
                    raise FieldProblem(
                        name,
                        f"auth_type {self.auth_type} takes its credentials from {{secret.NAME}} in"
                        f" request.{self.auth_type} (declared in ingestion.secrets), not {name}",
                    )
        if self.method == "GET" and self.body is not None:
            raise FieldProblem("body", "a body needs method: POST")
        if self.graphql is not None and self.body is not None:
            raise FieldProblem("body", "graphql is the body (a POST of its query and variables): set one")
        for name, value in self.raw_parameters.items():
            if any(c in name + value for c in "&#\r\n ") or "=" in name:
                raise FieldProblem(
                    "raw_parameters",
                    f"{name}={value!r} holds a character that would break the query (& # = space)",
                )
        for name, value in self.headers.items():
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
                raise FieldProblem("headers", f"header {name!r} contains a line break")
        return self


class NamedSecret(Strict):
    """Where a named secret comes from (DESIGN §4): ``PULLCTL_SECRET_<STORE>_<KEY>``, else the DAPR store."""

    secret_store: Annotated[str, Field(min_length=1, description='DAPR secret store name, or "kubernetes"')]
    secret_key: Annotated[str, Field(min_length=1, description="the secret's name in that store")]


SecretName = Annotated[str, Field(pattern=IDENT_RE)]
