"""The one DAPR sidecar HTTP client: secrets, pub/sub, jobs, shutdown (DESIGN §4a). The MCP path's service
invocation URL is built by ``run/iteration.py: mcp_endpoint`` (the MCP SDK sends those requests).

Endpoint from ``DAPR_HTTP_ENDPOINT`` / ``DAPR_HTTP_PORT``; ``dapr-api-token`` from ``DAPR_API_TOKEN``.
DAPR error bodies (``errorCode``, ``message``) are surfaced in ``DaprError``; a sidecar that is not
there gives one clear message, not a traceback.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from pullctl.errors import DaprError

if TYPE_CHECKING:
    from pullctl.settings import Settings

JOBS_API_VERSIONS = ("v1.0", "v1.0-alpha1")
VALUE_TYPE_URL = "type.googleapis.com/google.protobuf.Value"


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

    @classmethod
    def from_settings(cls, settings: Settings, *, timeout: float = 10.0) -> DaprClient:
        """The sidecar of ``settings`` (``DAPR_HTTP_ENDPOINT`` / ``DAPR_HTTP_PORT``, ``DAPR_API_TOKEN``)."""
        return cls(settings.dapr_endpoint, settings.dapr_api_token, timeout=timeout)

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

    # -- jobs ------------------------------------------------------------------------------------------------

    @property
    def jobs_api_version(self) -> str | None:
        """``v1.0`` or ``v1.0-alpha1`` once a jobs call found out which one the sidecar serves, else None."""
        return self._jobs_version

    async def _jobs_request(self, method: str, name: str, what: str, **kwargs: Any) -> httpx.Response:
        """A jobs call on ``/v1.0/jobs``, falling back to ``/v1.0-alpha1/jobs`` on 404 (DAPR < 1.18).

        The version that answered is remembered for the life of this client.
        """
        versions = (self._jobs_version,) if self._jobs_version else JOBS_API_VERSIONS
        response: httpx.Response | None = None
        for version in versions:
            response = await self._request(method, f"/{version}/jobs/{quote(name, safe='')}", what, **kwargs)
            if response.status_code != 404:
                self._jobs_version = version
                return response
        assert response is not None
        if self._jobs_version is None:
            raise DaprError(
                f"DAPR could not {what}: the sidecar at {self.endpoint} serves neither /v1.0/jobs nor"
                " /v1.0-alpha1/jobs (the jobs API needs DAPR 1.14 or later)",
                404,
            )
        raise self._error(response, what)

    async def schedule_job(
        self,
        name: str,
        *,
        schedule: str,
        data: Any = None,
        failure_policy: dict[str, Any] | None = None,
    ) -> None:
        """Create or replace the job ``name`` (``overwrite: true``; the name goes in the URL only)."""
        what = f"schedule job '{name}'"
        body: dict[str, Any] = {"schedule": schedule, "overwrite": True}
        if data is not None:
            body["data"] = data
        if failure_policy is not None:
            body["failurePolicy"] = failure_policy
        response = await self._jobs_request(
            "POST",
            name,
            what,
            content=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        if response.status_code not in (200, 204):
            raise self._error(response, what)

    async def get_job(self, name: str) -> dict[str, Any] | None:
        """The job as DAPR holds it (``data`` unwrapped from its ``protobuf.Value``), or None if missing.

        DAPR answers a GET of a missing job with 500 ``DAPR_SCHEDULER_GET_JOB`` "... job not found ...".
        """
        what = f"get job '{name}'"
        response = await self._jobs_request("GET", name, what)
        if response.status_code != 200:
            error = self._error(response, what)
            if error.error_code == "DAPR_SCHEDULER_GET_JOB" and "not found" in error.message.lower():
                return None
            raise error
        try:
            job = response.json()
        except ValueError:
            raise DaprError(f"DAPR could not {what}: the answer is not JSON") from None
        if not isinstance(job, dict):
            raise DaprError(f"DAPR could not {what}: the answer is not a JSON object")
        if "data" in job:
            job["data"] = unwrap_value(job["data"])
        return job

    async def delete_job(self, name: str) -> None:
        """Delete the job ``name``; deleting a missing job is no error (DAPR answers 204)."""
        what = f"delete job '{name}'"
        response = await self._jobs_request("DELETE", name, what)
        if response.status_code not in (200, 204):
            raise self._error(response, what)

    async def shutdown(self) -> None:
        response = await self._request("POST", "/v1.0/shutdown", "shut the sidecar down")
        if response.status_code not in (200, 204):
            raise self._error(response, "shut the sidecar down")


def unwrap_value(data: Any) -> Any:
    """``{"@type": "type.googleapis.com/google.protobuf.Value", "value": X}`` -> ``X``; else as is."""
    if isinstance(data, dict) and data.get("@type") == VALUE_TYPE_URL and set(data) <= {"@type", "value"}:
        return data.get("value")
    return data
