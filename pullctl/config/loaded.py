"""What loading gives: ``LoadedSource`` (a valid source and where it was written) and ``LoadResult``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from difflib import get_close_matches
from pathlib import Path
from typing import Any

from pullctl.config.models import SourceConfig
from pullctl.errors import ConfigError, Issue


@dataclass(frozen=True)
class LoadedSource:
    config: SourceConfig
    raw: dict[str, Any]
    file: str
    line: int
    config_hash: str
    # where the fields checked across sources sit: "ingestion.iteration.from_source" -> (line, col)
    positions: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    # iteration.from_source: the parent chain, nearest first (teams <- channels <- messages: channels, teams)
    parents: tuple[LoadedSource, ...] = ()

    @property
    def source_id(self) -> str:
        return self.config.source_id

    def at(self, field_path: str) -> tuple[int, int]:
        return self.positions.get(field_path, (self.line, 1))


@dataclass
class LoadResult:
    sources: list[LoadedSource] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    invalid: dict[str, str] = field(default_factory=dict)  # source_id -> file, for sources that did not load
    files: int = 0

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "warning"]

    def raise_for_errors(self) -> None:
        if self.errors:
            noun = "error" if len(self.errors) == 1 else "errors"
            lines = "\n".join(str(i) for i in self.errors)
            raise ConfigError(f"{len(self.errors)} config {noun}:\n{lines}", self.errors)

    def get(self, source_id: str) -> LoadedSource:
        for s in self.sources:
            if s.source_id == source_id:
                return s
        if source_id in self.invalid:
            self._raise_for(self.invalid[source_id])
        own = [f for f in self._broken_files() if Path(f).stem == source_id]
        if own:  # weather-api.yaml that does not parse: its errors, not "no source 'weather-api'"
            self._raise_for(own[0])
        known = [s.source_id for s in self.sources]
        hint = get_close_matches(source_id, known, n=1)
        suggestion = f"; did you mean '{hint[0]}'?" if hint else f" (known: {', '.join(known) or 'none'})"
        message = f"no source '{source_id}' in the configs{suggestion}"
        broken = [i for i in self.errors if i.file in self._broken_files()]
        if broken:
            files = sorted({i.file for i in broken})
            which = "a file that has" if len(files) == 1 else f"{len(files)} files that have"
            message += f"; it may be in {which} errors:\n" + "\n".join(str(i) for i in broken)
        raise ConfigError(message, broken)

    def _broken_files(self) -> list[str]:
        """Files with errors that gave no source (a YAML syntax error, a source_id that is not one)."""
        loaded = {s.file for s in self.sources} | set(self.invalid.values())
        return sorted({i.file for i in self.errors} - loaded)

    def one(self, source_id: str) -> LoadedSource:
        """``get``, refused when the source's own file has errors (errors in other files do not block it)."""
        source = self.get(source_id)
        self._raise_for(source.file)
        return source

    def _raise_for(self, file: str) -> None:
        """A ``ConfigError`` with the errors of ``file``, when it has any."""
        errors = [i for i in self.errors if i.file == file]
        if errors:
            noun = "error" if len(errors) == 1 else "errors"
            raise ConfigError(f"{len(errors)} config {noun}:\n" + "\n".join(str(i) for i in errors), errors)
