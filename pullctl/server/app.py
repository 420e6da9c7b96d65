"""`pullctl serve`'s HTTP app: the routes DAPR and people call, over one ``PullService``."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pullctl.dapr import unwrap_value
from pullctl.schedulers.dapr_jobs import source_id_of
from pullctl.server.service import MAX_CALLBACK_BYTES, PullService
from pullctl.settings import Settings


async def _capped_body(request: Request) -> bytes | None:
    """The request's body, or None when it is over ``MAX_CALLBACK_BYTES`` (read no further than that)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_CALLBACK_BYTES:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_CALLBACK_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _job_source_id(name: str, body: bytes) -> str | None:
    """The source of a job trigger: the body's ``source_id``, else the job name ``pull-<source_id>``."""
    data: Any = None
    with contextlib.suppress(ValueError):
        data = unwrap_value(json.loads(body)) if body.strip() else None
    if isinstance(data, dict) and isinstance(data.get("source_id"), str) and data["source_id"]:
        return str(data["source_id"])
    return source_id_of(name)


class _Routes:
    """The app's handlers over one ``PullService``."""

    def __init__(self, svc: PullService) -> None:
        self.svc = svc

    def unauthorized(self, request: Request) -> JSONResponse:
        self.svc.log("warning", "trigger_unauthorized", path=request.url.path)
        return JSONResponse({"error": "missing or wrong dapr-api-token (APP_API_TOKEN)"}, status_code=401)

    def too_large(self, where: dict[str, str]) -> JSONResponse:
        self.svc.log("warning", "trigger_refused", **where, reason=f"body over {MAX_CALLBACK_BYTES} bytes")
        return JSONResponse({"error": f"the body is larger than {MAX_CALLBACK_BYTES} bytes"}, status_code=413)

    async def job(self, request: Request) -> JSONResponse:
        svc = self.svc
        if not svc.authorized(request):
            return self.unauthorized(request)
        name = request.path_params["name"]
        body = await _capped_body(request)
        if body is None:
            return self.too_large({"job": name})
        source_id = _job_source_id(name, body)
        if source_id is None:
            message = f"job '{name}' names no source (pullctl's jobs are pull-<source_id>)"
            svc.log("error", "unknown_job", job=name, message=message, note="DAPR drops a 404 silently")
            return JSONResponse({"error": message}, status_code=404)
        outcome = await svc.trigger(source_id, via=f"job/{name}")
        return JSONResponse(outcome.body, status_code=outcome.status, headers=outcome.headers)

    async def api_trigger(self, request: Request) -> JSONResponse:
        if not self.svc.authorized(request):
            return self.unauthorized(request)
        if await _capped_body(request) is None:
            return self.too_large({"source_id": request.path_params["source_id"]})
        outcome = await self.svc.trigger(request.path_params["source_id"], via="api")
        return JSONResponse(outcome.body, status_code=outcome.status, headers=outcome.headers)

    async def healthz(self, request: Request) -> JSONResponse:
        ok, reason = await self.svc.healthy()
        body: dict[str, Any] = {"status": "ok" if ok else "unhealthy"}
        if reason:
            body["error"] = reason
        return JSONResponse(body, status_code=200 if ok else 503)

    async def readyz(self, request: Request) -> JSONResponse:
        svc = self.svc
        ready = svc.store is not None and svc.jobs_state in ("synced", "partial", "off")
        body = {"ready": ready, "jobs": svc.jobs_state, **svc.jobs_detail}
        return JSONResponse(body, status_code=200 if ready else 503)


def create_app(settings: Settings, service: PullService | None = None) -> Starlette:
    """The Starlette app ``pullctl serve`` runs (``service`` lets tests tune retries and grace)."""
    svc = service or PullService(settings)
    routes = _Routes(svc)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await svc.start()
        try:
            yield
        finally:
            await svc.stop()

    app = Starlette(
        routes=[
            Route("/job/{name}", routes.job, methods=["POST"]),
            Route("/api/v1/triggers/job/{source_id}", routes.api_trigger, methods=["POST"]),
            Route("/healthz", routes.healthz, methods=["GET"]),
            Route("/readyz", routes.readyz, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.service = svc
    return app
