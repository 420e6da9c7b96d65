"""`pullctl serve`: the DAPR job callback app under uvicorn, in the foreground."""

from __future__ import annotations

from typing import Annotated

import typer

from pullctl.cli.options import ConfigOption, StoreOption

# uvicorn stops waiting for open requests after this long; then the app gives in-flight runs a few more
# seconds and records the rest as interrupted: in all under Kubernetes' default grace period (30 s).
GRACEFUL_SHUTDOWN_SECONDS = 20


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port (the DAPR app-port)")] = 8080,
    config: ConfigOption = None,
    store: StoreOption = None,
    max_concurrent_runs: Annotated[
        int, typer.Option(min=1, max=256, help="Runs at once across sources; beyond, a trigger gets 429")
    ] = 4,
    allow_unauthenticated: Annotated[
        bool,
        typer.Option(
            "--allow-unauthenticated",
            help="Serve a non-loopback address without APP_API_TOKEN (anyone reaching it can trigger pulls)",
        ),
    ] = False,
) -> None:
    """Serve DAPR job callbacks (POST /job/{name}); register every job at start-up (`jobs sync`).

    Also POST /api/v1/triggers/job/{source_id}, GET /healthz, GET /readyz. One run per source at a time: a
    trigger while one runs gets 409; at most --max-concurrent-runs runs in all (429 beyond). On an address
    other than loopback, APP_API_TOKEN (the DAPR app API token) is required. JSON log lines on stderr.

    Example: dapr run --app-id pullctl --app-port 8080 -- pullctl serve --port 8080
    """
    import uvicorn

    from pullctl.cli import output
    from pullctl.logs import uvicorn_log_config
    from pullctl.server import PullService, check_exposure, create_app
    from pullctl.settings import Settings

    settings = Settings.from_env(config=config, store=store)
    warning = check_exposure(host, settings.app_api_token, allow_unauthenticated)
    if warning:
        output.warning(warning)
    uvicorn.run(
        create_app(settings, PullService(settings, max_concurrent_runs=max_concurrent_runs)),
        host=host,
        port=port,
        log_config=uvicorn_log_config(),
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
