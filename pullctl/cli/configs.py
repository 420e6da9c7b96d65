"""`pullctl config push|get|delete`: the MongoDB config store that pods read with PULLCTL_CONFIG=mongodb://…"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated

import typer

from pullctl.cli import output
from pullctl.cli.options import SourceArgument

if TYPE_CHECKING:
    from pullctl.config.loader import LoadedSource
    from pullctl.settings import Settings

app = typer.Typer(
    help="The config store (MongoDB): push validated configs, read one back, delete one.",
    no_args_is_help=True,
)

ToOption = Annotated[
    str | None,
    typer.Option("--to", help="The config store, mongodb://… [env: PULLCTL_CONFIG]", show_default=False),
]


def _settings(to: str | None) -> Settings:
    from pullctl.settings import Settings

    return Settings.from_env(config=to)


async def _follow(settings: Settings, changed: list[LoadedSource], deleted: list[str]) -> None:
    """Re-register the DAPR Jobs of what changed (DESIGN §3), where DAPR is in use: a sidecar's variables
    are set, or ``jobs sync`` registered jobs in this store. Elsewhere (CronJobs) there is nothing to say."""
    from pullctl.errors import PullctlError
    from pullctl.pipeline.store import open_store
    from pullctl.schedulers.dapr_jobs import follow_config_change

    sidecar = settings.dapr_configured

    async def follow() -> str | None:
        async with open_store(settings, read_only=not sidecar) as store:
            if not sidecar:
                try:
                    if not await store.list_jobs():
                        return None
                except PullctlError:
                    return None
            return await follow_config_change(settings, store, changed, deleted)

    warning = await follow()
    if warning:
        output.warning(warning)


@app.command("push")
def push(
    paths: Annotated[
        list[str] | None, typer.Argument(help="Files or folders [default: config/source-configs]")
    ] = None,
    to: ToOption = None,
    strict: Annotated[bool, typer.Option(help="Unknown top-level sections are errors")] = False,
) -> None:
    """Validate configs (all or nothing), then upsert them into the store; prints created/updated/unchanged.

    Example: PULLCTL_CONFIG=mongodb://mongo:27017 pullctl config push config/source-configs
    """
    from pullctl.pipeline.config_store import push_configs
    from pullctl.settings import DEFAULT_CONFIG

    settings = _settings(to)

    async def push_and_follow() -> None:
        result = await push_configs(
            paths or [DEFAULT_CONFIG], settings.config, settings.mongodb_database, strict=strict
        )
        for source_id, outcome in result.outcomes:
            typer.echo(f"{outcome:<9}  {source_id}")
        if result.changed:
            await _follow(settings, result.changed, [])

    asyncio.run(push_and_follow())


@app.command("get")
def get(source: SourceArgument, to: ToOption = None) -> None:
    """Print one config from the store as YAML.

    Example: pullctl config get weather-api > weather-api.yaml
    """
    import yaml

    from pullctl.pipeline.config_store import get_config

    settings = _settings(to)
    config = asyncio.run(get_config(settings.config, settings.mongodb_database, source))
    typer.echo(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), nl=False)


@app.command("delete")
def delete(source: SourceArgument, to: ToOption = None) -> None:
    """Delete one config from the store (and its DAPR Job, when a sidecar is there).

    Example: pullctl config delete weather-api
    """
    from pullctl.pipeline.config_store import delete_config

    settings = _settings(to)

    async def delete_and_follow() -> None:
        await delete_config(settings.config, settings.mongodb_database, source)
        typer.echo(f"deleted    {source}")
        await _follow(settings, [], [source])

    asyncio.run(delete_and_follow())
