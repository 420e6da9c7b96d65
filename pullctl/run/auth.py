"""Tokens a run obtains itself (SOURCES.md §6): OAuth2 grants and session logins, one token per run.

Two halves, as pagination has them (STYLE 13):

- one class per flow, pure (``auth_flows.py``): ``ClientCredentials``, ``RefreshToken``, ``JwtBearer`` and
  ``SessionLogin`` each answer "what request gets the token" (``request``), "what the answer says"
  (``read``: the token, its lifetime, a rotated refresh token, or a ``TokenAnswerError`` naming what came
  back) and "what an API request carries" (``carry``). No I/O, so their table of cases needs no server.
- ``TokenManager`` (here) does the I/O: it sends a flow's request (the source's retry policy for 5xx, 429
  and the wire; 4xx is final), keeps the one token every worker shares, renews it once when it nears its
  expiry (a margin of 10 % of the lifetime, at most 60 s) or when the API answers 401, and keeps a rotated
  refresh token in the store (``RotationKeeper``) before anything else can fail.

Single flight: renewing takes an ``asyncio.Lock`` and compares the generation the caller saw with the
current one, so 50 workers that meet one expired token (or one 401) cause one token request; the other 49
find a newer generation once they hold the lock and take it.

Where credentials go: the flow's request goes only to ``token_url`` (or the login URL), never redirected;
the token only to the API (``fetch.py`` refuses next pages and redirects to another origin whenever a
request carries credentials). Every credential is added to the run's ``Redactor`` the moment it exists:
the named secrets before the run starts (``secrets.py``), a token and a rotated refresh token as soon as
their answer is parsed, the JWT assertion and the Basic pair as soon as they are built.

A token endpoint that refuses (``invalid_grant``, ``invalid_client``), fails (5xx after the retries), or
answers HTML or JSON without the token is an ``AuthError``: the run fails (exit 1) with one line naming the
grant and the URL, since every item would fail the same way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import httpx

from pullctl.canonical import canonical_hash
from pullctl.config.models import SourceConfig
from pullctl.errors import AuthError, PullctlError
from pullctl.pipeline.state import AuthState
from pullctl.pipeline.state_key import STATE_KEY_VAR, StateCipher, StateKeyError
from pullctl.pipeline.store import StateStore
from pullctl.redact import Redactor
from pullctl.retry import AttemptFailed, GaveUp, Outcome, Policy, call_with_retries
from pullctl.run.auth_flows import (
    JWT_BEARER_GRANT,
    ClientCredentials,
    Flow,
    JwtBearer,
    RefreshToken,
    SessionLogin,
    Token,
    TokenAnswerError,
    TokenRequest,
    flow_for,
    margin,
)
from pullctl.run.transport import TRANSPORT_ERRORS, env_proxy, make_transport
from pullctl.settings import Settings
from pullctl.transport_errors import host_of, transport_failure

# The flows are imported from here too (``from pullctl.run.auth import flow_for``).
__all__ = [
    "JWT_BEARER_GRANT",
    "ClientCredentials",
    "Flow",
    "Grant",
    "JwtBearer",
    "RefreshToken",
    "RotationKeeper",
    "SessionLogin",
    "Token",
    "TokenAnswerError",
    "TokenManager",
    "TokenRequest",
    "flow_for",
    "margin",
    "open_tokens",
]

ANSWER_CAP = 1024 * 1024  # a token answer is a few hundred bytes; a larger one is not a token endpoint's


# -- rotation: the refresh token the next run needs -----------------------------------------------------


@dataclass
class RotationKeeper:
    """Keeps a rotated refresh token in ``auth_state``, sealed with ``PULLCTL_STATE_KEY``.

    ``fingerprint`` identifies the configured refresh token: a stored token rotated from it wins over it
    (it is newer); an operator who configures another one wins over the stored token (the fingerprints
    differ)."""

    store: StateStore
    cipher: StateCipher
    key: str
    configured: str
    run_id: str

    @property
    def fingerprint(self) -> str:
        return canonical_hash({"refresh_token": self.configured})

    async def current(self) -> str:
        """The stored refresh token when it was rotated from the configured one, else the configured one."""
        stored = await self.store.get_auth_state(self.key)
        if stored is None or stored.fingerprint != self.fingerprint:
            return self.configured
        try:
            return self.cipher.open(stored.ciphertext)
        except StateKeyError:
            raise AuthError(
                f"the refresh token stored for '{self.key}' (rotated by run {stored.run_id}) cannot be"
                f" decrypted with {STATE_KEY_VAR}: it was sealed with another key; restore that key, or"
                " configure a new refresh token (a newly configured one wins over the stored one)"
            ) from None

    async def keep(self, refresh_token: str) -> None:
        sealed = self.cipher.seal(refresh_token)
        await self.store.put_auth_state(AuthState(self.key, sealed, self.fingerprint, self.run_id))


# -- the I/O: one token per run ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Grant:
    """The token in use: its ``generation`` (1 for the run's first), what a request carries, and when to
    renew it (a monotonic time; None: only on a 401)."""

    generation: int
    headers: Mapping[str, str]
    params: Mapping[str, str]
    renew_at: float | None

    def stale(self, now: float) -> bool:
        return self.renew_at is not None and now >= self.renew_at


class TokenManager:
    """The run's one token: obtained on first use, renewed once (single flight) before it expires and
    after a 401, a rotated refresh token kept before the new token is handed out."""

    def __init__(
        self,
        flow: Flow,
        transport: httpx.AsyncBaseTransport,
        redact: Redactor,
        policy: Policy,
        timeout: float,
        *,
        keeper: RotationKeeper | None = None,
        owns_transport: bool = False,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.flow = flow
        self.transport = transport
        self.redact = redact
        self.policy = policy
        self.timeout = timeout
        self.keeper = keeper
        self._owns_transport = owns_transport
        self._clock, self._wall, self._sleep = clock, wall, sleep
        self._lock = asyncio.Lock()
        self._grant: Grant | None = None
        self._failure: AuthError | None = None
        self.requests = 0  # token requests sent (attempts included)

    async def start(self) -> None:
        """Before the first token request: the refresh token to spend (a stored, rotated one wins)."""
        if self.keeper is not None and isinstance(self.flow, RefreshToken):
            self.flow = self.flow.using(await self.keeper.current())
            self.redact.add(self.flow.refresh_token)

    async def grant(self) -> Grant:
        """The token every request carries now; renewed first when it is near its expiry."""
        current = self._grant
        if current is not None and not current.stale(self._clock()):
            return current
        return await self.renew(current)

    async def renew(self, seen: Grant | None) -> Grant:
        """A token newer than ``seen`` (the one that is stale or got a 401): the first caller asks for it,
        every caller that waited on the lock meanwhile takes the same one."""
        async with self._lock:
            if self._failure is not None:
                raise self._failure
            current = self._grant
            newer = current is not None and (seen is None or current.generation > seen.generation)
            if newer and current is not None and not current.stale(self._clock()):
                return current
            try:
                token = await self._obtain()
            except AuthError as exc:
                self._failure = exc  # every worker fails with the one reason, no second request
                raise
            generation = (current.generation if current else 0) + 1
            headers, params = self.flow.carry(token.value)
            renew_at = None
            if token.lifetime is not None:
                renew_at = self._clock() + token.lifetime - margin(token.lifetime)
            self._grant = Grant(generation, headers, params, renew_at)
            return self._grant

    async def _obtain(self) -> Token:
        request = self.flow.request(self._wall())
        for value in self.flow.credentials():
            self.redact.add(value)
        if request.form is not None and "assertion" in request.form:
            self.redact.add(request.form["assertion"])

        async def attempt() -> Token:
            self.requests += 1
            try:
                async with asyncio.timeout(self.timeout):
                    return await self._send(request)
            except TRANSPORT_ERRORS as exc:
                failure = transport_failure(exc, host_of(request.url), self.timeout)
                raise AttemptFailed(Outcome(failure.reason, transport=failure.kind)) from None

        try:
            token = await call_with_retries(attempt, self.policy, sleep=self._sleep)
        except GaveUp as exc:
            raise AuthError(self.redact(f"{self.flow.what}: {exc.reason}")) from None
        if token.refresh_token is not None and isinstance(self.flow, RefreshToken):
            await self._keep(token.refresh_token)
        return token

    async def _send(self, request: TokenRequest) -> Token:
        resp = await self.transport.handle_async_request(request.build())
        try:
            if resp.status_code in (301, 302, 303, 307, 308):
                where = resp.headers.get("location", "")
                reason = f"answered a redirect (HTTP {resp.status_code} to {where[:200]}); credentials are"
                raise AttemptFailed(Outcome(f"{reason} not sent anywhere but the configured URL", final=True))
            body = await _read(resp)
            status = resp.status_code
            try:
                token = self.flow.read(status, resp.headers.get("content-type", ""), body)
            except TokenAnswerError as exc:
                retried = status in self.policy.retry_on_status
                outcome = Outcome(
                    str(exc),
                    status=status if retried else None,
                    headers=resp.headers,
                    final=not retried,
                )
                raise AttemptFailed(outcome) from None
        finally:
            await resp.aclose()
        self.redact.add(token.value)  # masked from the moment it exists
        if token.refresh_token is not None:
            self.redact.add(token.refresh_token)
        return token

    async def _keep(self, refresh_token: str) -> None:
        """The old refresh token is spent: the new one is stored before anything else can fail."""
        assert isinstance(self.flow, RefreshToken)
        self.flow = self.flow.using(refresh_token)
        if self.keeper is None:  # rotation: false, and the provider rotated after all
            return
        try:
            await self.keeper.keep(refresh_token)
        except PullctlError as exc:  # a store failure: the rotated token is lost, and the run says so
            raise AuthError(
                self.redact(
                    f"{self.flow.what} rotated the refresh token, but the store refused to keep it ({exc});"
                    " the next run will need a new refresh token configured"
                )
            ) from None

    async def aclose(self) -> None:
        if self._owns_transport:
            await self.transport.aclose()


async def _read(resp: httpx.Response) -> bytes:
    chunks: list[bytes] = []
    total = 0
    async for chunk in resp.aiter_bytes():
        total += len(chunk)
        if total > ANSWER_CAP:
            raise AttemptFailed(Outcome(f"the answer is larger than {ANSWER_CAP} bytes", final=True))
        chunks.append(chunk)
    return b"".join(chunks)


async def open_tokens(
    config: SourceConfig,
    secrets: Mapping[str, str],
    *,
    redact: Redactor,
    settings: Settings,
    store: StateStore | None,
    dry_run: bool,
    run_id: str,
    transport: httpx.AsyncBaseTransport | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> TokenManager | None:
    """The token manager of ``config``'s auth (None for static auth), checked before any token request:
    a rotating refresh-token grant needs ``PULLCTL_STATE_KEY`` and a store to keep what it rotates.

    A dry run opens no store, so a rotating grant refuses it: spending the refresh token would lose the
    one the provider hands back (``rotation: false`` dry-runs)."""
    ing = config.ingestion
    assert ing.request is not None
    flow = flow_for(ing.request, secrets)
    if flow is None:
        return None
    if isinstance(flow, JwtBearer):
        redact.add(flow.private_key)  # as it is used: a JSON key file's \n escapes undone
    keeper: RotationKeeper | None = None
    if isinstance(flow, RefreshToken) and ing.request.rotates_refresh_token:
        keeper = _rotation_keeper(flow, config.source_id, settings, store, dry_run, run_id)
    owns = transport is None
    if transport is None:  # its own small pool, through the proxy the environment names for its host
        transport = make_transport(1, env_proxy(flow.request_url, settings.proxies))
    manager = TokenManager(
        flow,
        transport,
        redact,
        ing.retry,
        ing.request.timeout_seconds,
        keeper=keeper,
        owns_transport=owns,
        sleep=sleep,
    )
    try:
        await manager.start()
    except BaseException:
        await manager.aclose()
        raise
    return manager


def _rotation_keeper(
    flow: RefreshToken,
    key: str,
    settings: Settings,
    store: StateStore | None,
    dry_run: bool,
    run_id: str,
) -> RotationKeeper:
    """Where a rotating grant keeps what it rotates (the state key and a store), or an ``AuthError``."""
    cipher = StateCipher.from_settings(settings)
    fix = "or set oauth2.rotation: false if the provider never rotates refresh tokens"
    if cipher is None:
        raise AuthError(
            f"{flow.what} may rotate the refresh token, and {STATE_KEY_VAR} is not set to keep the new"
            f" one encrypted in the store: set it (make one with `pullctl state keygen`), {fix}"
        )
    if store is None:
        why = "a dry run stores nothing" if dry_run else "this run has no store"
        raise AuthError(
            f"{flow.what} may rotate the refresh token, and {why}: the rotated token would be lost;"
            f" run without --dry-run, {fix}"
        )
    return RotationKeeper(store, cipher, key, flow.refresh_token, run_id)
