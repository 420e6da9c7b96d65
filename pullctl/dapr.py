"""The one DAPR sidecar HTTP client: secrets, service invocation URLs, pub/sub, jobs, shutdown (DESIGN §4a).

Endpoint from ``DAPR_HTTP_ENDPOINT`` / ``DAPR_HTTP_PORT``; ``dapr-api-token`` from ``DAPR_API_TOKEN``.
DAPR error bodies (``errorCode``, ``message``) are surfaced in ``DaprError``; a sidecar that is not
there gives one clear message, not a traceback.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import httpx

from pullctl.errors import DaprError

JOBS_API_VERSIONS = ("v1.0", "v1.0-alpha1")


class DaprClient:
    def __init__(
        self,
        endpoint: str,
        api_token: str | None = None,
        client: httpx.AsyncClient | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.api_token = api_token
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(timeout=timeout)
        self._jobs_version: str | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"dapr-api-token": self.api_token} if self.api_token else {}

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()

    async def __aenter__(self) -> DaprClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def invoke_url(self, app_id: str, path: str) -> str:
        return f"{self.endpoint}/v1.0/invoke/{quote(app_id, safe='')}/method{path}"

    async def _request(self, method: str, path: str, what: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._client.request(
                method,
                f"{self.endpoint}{path}",
                headers={**self.headers, **kwargs.pop("headers", {})},
                **kwargs,
            )
        except httpx.TransportError as exc:
            raise DaprError(
                f"cannot reach the DAPR sidecar at {self.endpoint} to {what}:"
                f" {type(exc).__name__}: {exc or 'no answer'}"
                " (is the sidecar running? set DAPR_HTTP_ENDPOINT or DAPR_HTTP_PORT)"
            ) from None
        return response

    @staticmethod
    def _error(response: httpx.Response, what: str) -> DaprError:
        code, message = None, response.text[:300]
        try:
            body = response.json()
            code, message = body.get("errorCode"), body.get("message", message)
        except (ValueError, AttributeError):
            pass
        detail = f"{code}: {message}" if code else message
        return DaprError(
            f"DAPR could not {what}: HTTP {response.status_code} {detail}", response.status_code, code
        )

    async def get_secret(self, store: str, key: str) -> str:
        """The value of ``key`` in secret store ``store``; a multi-valued secret must hold ``key`` itself."""
        what = f"read secret '{key}' from secret store '{store}'"
        path = f"/v1.0/secrets/{quote(store, safe='')}/{quote(key, safe='')}"
        response = await self._request("GET", path, what)
        if response.status_code != 200:
            raise self._error(response, what)
        try:
            values = response.json()
        except ValueError:
            raise DaprError(f"DAPR could not {what}: the answer is not JSON") from None
        if key in values:
            return str(values[key])
        if len(values) == 1:
            return str(next(iter(values.values())))
        raise DaprError(f"DAPR could not {what}: the secret has keys {sorted(values)}, none named '{key}'")

    async def publish(self, pubsub: str, topic: str, data: dict[str, Any], event_id: str) -> None:
        what = f"publish to {pubsub}/{topic}"
        response = await self._request(
            "POST",
            f"/v1.0/publish/{quote(pubsub, safe='')}/{quote(topic, safe='')}",
            what,
            content=json.dumps(data, default=str).encode(),
            headers={"Content-Type": "application/json"},
            params={"metadata.cloudevent.id": event_id},
        )
        if response.status_code not in (200, 204):
            raise self._error(response, what)

    async def shutdown(self) -> None:
        response = await self._request("POST", "/v1.0/shutdown", "shut the sidecar down")
        if response.status_code not in (200, 204):
            raise self._error(response, "shut the sidecar down")
