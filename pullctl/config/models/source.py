"""One source config file (``SourceConfig``), its hash and its JSON Schema."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from pullctl.canonical import canonical_hash
from pullctl.config.models.base import SOURCE_ID_RE
from pullctl.config.models.ingestion import Ingestion


class SourceConfig(BaseModel):
    """One source. Top-level sections other than these belong to the downstream pipeline and pass through."""

    model_config = ConfigDict(extra="allow", frozen=True)

    source_id: Annotated[str, Field(min_length=1, max_length=40, pattern=SOURCE_ID_RE)] = Field(
        description="lower-case DNS label, at most 40 characters"
    )
    display_name: str | None = None
    description: str | None = None
    enabled: bool = True
    ingestion: Ingestion

    @property
    def extra_sections(self) -> list[str]:
        return sorted(self.model_extra or {})

    @property
    def is_scheduled_pull(self) -> bool:
        return self.ingestion.mode == "scheduled_pull"

    @property
    def has_schedule(self) -> bool:
        """A ``scheduled_pull`` with a ``schedule``: rendered, registered and run by schedule. Without one, a
        source runs by hand or as another source's parent only."""
        return self.is_scheduled_pull and self.ingestion.schedule is not None


KNOWN_TOP_LEVEL = tuple(SourceConfig.model_fields)


def config_hash(raw: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of a config document, as written (defaults are not filled in)."""
    return canonical_hash(raw)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of one source config file, as shipped in ``config/source-config.schema.json``."""
    schema = SourceConfig.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "pullctl source config"
    return schema
