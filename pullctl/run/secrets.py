"""Secret resolution (DESIGN §4): the PULLCTL_SECRET_<STORE>_<KEY> variable, else the DAPR secret store."""

from __future__ import annotations

from pullctl.config.models import Request
from pullctl.errors import DaprError, SecretError
from pullctl.settings import Settings, env_name


async def resolve_secret(request: Request, settings: Settings) -> str | None:
    """The secret the request's auth needs, or None for ``auth_type: none``. The value is never logged."""
    if request.auth_type == "none":
        return None
    store, key = request.secret_store, request.secret_key
    assert store and key, "validated: auth needs secret_store and secret_key"
    value = settings.secret_from_env(store, key)
    if value is not None:
        return value
    from pullctl.dapr import DaprClient

    try:
        async with DaprClient(settings.dapr_endpoint, settings.dapr_api_token) as dapr:
            return await dapr.get_secret(store, key)
    except DaprError as exc:
        raise SecretError(
            f"secret '{key}' of store '{store}' not found: set {env_name('PULLCTL_SECRET', store, key)}"
            f" or make it available in the DAPR secret store '{store}' ({exc})"
        ) from None
