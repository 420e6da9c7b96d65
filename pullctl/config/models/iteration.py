"""``ingestion.iteration`` (items from MCP, a static list or a parent source) and ``records``."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, ValidatorFunctionWrapHandler, WrapValidator, field_validator, model_validator

from pullctl.config import templates
from pullctl.config.models.base import IDENT_RE, PATH_HELP, SOURCE_ID_RE, FieldProblem, Strict, check_path


def _items_as_written(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """A list of mappings with string keys (what the YAML reader gives) is kept, not copied: the loaded
    source's raw config and its model hold one list (100,000 items: 19 MB less at the peak). Anything else
    goes through pydantic's checks, with their messages."""
    if (
        type(value) is list
        and all(type(i) is dict for i in value)
        and all(type(k) is str for i in value for k in i)
    ):
        return value
    return handler(value)


StaticItems = Annotated[list[dict[str, Any]], WrapValidator(_items_as_written)]


class Batch(Strict):
    size: Annotated[int, Field(ge=2, le=1000, description="items per fetch")]
    join: str = Field(",", description="what joins the items' values in a template, e.g. {team.id}")


class Records(Strict):
    path: str | None = Field(
        None,
        description=f"where a page's list of records is (absent: the page, if it is a list): {PATH_HELP}",
    )
    split: bool = Field(False, description="store one document per record (its own hash, dedup and event)")

    @field_validator("path")
    @classmethod
    def _path(cls, v: str | None) -> str | None:
        return check_path(v)


class Iteration(Strict):
    foreach: Annotated[str, Field(pattern=IDENT_RE, description="template variable name for the item")]
    source_mcp: str | None = Field(None, description="MCP server: DAPR app-id")
    source_tool: str | None = Field(None, description="MCP tool that returns the items")
    tool_arguments: dict[str, Any] = Field(default_factory=dict)
    mcp_url: str | None = Field(None, description="direct streamable-HTTP URL instead of DAPR invocation")
    mcp_path: str = Field("/mcp", pattern=r"^/", description="the MCP endpoint's path, for DAPR invocation")
    items: StaticItems | None = Field(None, description="static list instead of an MCP tool")
    from_source: Annotated[str, Field(pattern=SOURCE_ID_RE)] | None = Field(
        None, description="the items are the records of this source's pages, fetched now (a parent)"
    )
    items_path: str | None = Field(None, description=f"where the list is inside the tool result: {PATH_HELP}")
    key: str | None = Field(None, description="item field naming the item; default: first scalar field")
    linkage: dict[str, str] | None = Field(None, description="{name: template}; default: every scalar field")
    concurrency: Annotated[int, Field(ge=1, le=256)] = 5
    shards: Annotated[int, Field(ge=1, le=100)] = 1
    batch: Batch | None = Field(None, description="one fetch per up to `size` items, their values joined")

    @field_validator("items_path")
    @classmethod
    def _items_path(cls, v: str | None) -> str | None:
        return check_path(v)

    @field_validator("foreach")
    @classmethod
    def _not_builtin(cls, v: str) -> str:
        if v == templates.INCREMENTAL_VARIABLE:
            raise ValueError(f"'{v}' is the incremental state's variable ({{{v}.start}}); pick another name")
        if v in templates.BUILTIN_VARIABLES:
            raise ValueError(
                f"'{v}' is a built-in variable ({', '.join(templates.BUILTIN_VARIABLES)}); pick another name"
            )
        return v

    @model_validator(mode="after")
    def _one_source(self) -> Iteration:
        mcp = self.source_mcp is not None or self.mcp_url is not None
        given = [
            name
            for name, on in (
                ("source_mcp", mcp),
                ("items", self.items is not None),
                ("from_source", self.from_source is not None),
            )
            if on
        ]
        if len(given) > 1:
            raise FieldProblem(
                given[1],
                "set one of source_mcp/source_tool (an MCP tool), items (a static list) or from_source"
                f" (another source's records), not {' and '.join(given)}",
            )
        if not given:
            raise FieldProblem(
                "source_mcp",
                "set source_mcp and source_tool (an MCP tool), items (a static list), or from_source"
                " (another source's records)",
            )
        if mcp and not self.source_tool:
            raise FieldProblem(
                "source_tool", "required with source_mcp/mcp_url: the MCP tool that lists the items"
            )
        if self.items is not None and not self.items:
            raise FieldProblem("items", "the static list is empty")
        return self
