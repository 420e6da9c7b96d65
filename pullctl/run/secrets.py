"""Secret resolution (DESIGN §4): the PULLCTL_SECRET_<STORE>_<KEY> variable, else the DAPR secret store.

The auth secret (``request.secret_store``/``secret_key``) and every named secret (``ingestion.secrets``,
SOURCES.md §2) resolve through ``resolve_one``, once per run, before planning. Values are never logged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pullctl.config.models import STATIC_AUTH, Ingestion, Request
from pullctl.errors import DaprError, SecretError
from pullctl.redact import Redactor
from pullctl.settings import Settings, env_name

if TYPE_CHECKING:
    from pullctl.dapr import DaprClient


async def resolve_one(
    store: str, key: str, settings: Settings, what: str = "", dapr: DaprClient | None = None
) -> str:
    """The value of secret ``key`` in ``store``; ``what`` says where the config names it (for the error).
    ``dapr``: the sidecar client to ask (``serve``'s one), else one opened for this secret."""
    value = settings.secret_from_env(store, key)
    if value is not None:
        return value
    from pullctl.dapr import DaprClient

    try:
        if dapr is not None:
            return await dapr.get_secret(store, key)
        async with DaprClient.from_settings(settings) as own:
            return await own.get_secret(store, key)
    except DaprError as exc:
        raise SecretError(
            f"secret '{key}' of store '{store}'{what} not found: set {env_name('PULLCTL_SECRET', store, key)}"
            f" or make it available in the DAPR secret store '{store}' ({exc})"
        ) from None


async def resolve_secret(request: Request, settings: Settings, dapr: DaprClient | None = None) -> str | None:
    """The secret the request's static auth needs, or None for ``auth_type: none`` and the token flows
    (``oauth2``, ``session``: their credentials are named secrets, run/auth.py)."""
    if request.auth_type not in STATIC_AUTH:
        return None
    store, key = request.secret_store, request.secret_key
    assert store and key, "validated: auth needs secret_store and secret_key"
    return await resolve_one(store, key, settings, dapr=dapr)


async def resolve_named_secrets(
    ingestion: Ingestion, settings: Settings, redact: Redactor, dapr: DaprClient | None = None
) -> dict[str, str]:
    """The value of every secret in ``ingestion.secrets`` by name, each added to ``redact`` (plain,
    URL-encoded and base64) before anything can print it."""
    values: dict[str, str] = {}
    for name, ref in ingestion.secrets.items():
        value = await resolve_one(
            ref.secret_store, ref.secret_key, settings, f" (ingestion.secrets.{name})", dapr=dapr
        )
        redact.add(value)
        values[name] = value
    return values
