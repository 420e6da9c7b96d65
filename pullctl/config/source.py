"""The one way in to the source configs: ``ConfigSource(location)`` over a reader of files or of a store.

    ConfigSource(location, reader=None)
        .all(target="k8s", strict=False)   -> LoadResult: every source and every located issue
        .one(source_id, target="k8s")      -> LoadedSource: only errors in its own file block it
        .scheduled(target="k8s", only=())  -> Scheduled: the ones with a schedule, by id; any error raises

A **reader** (``ConfigReader``) yields a location's raw entries, ``ConfigEntry(name, text)``, one per file or
stored document; ``name`` is what located issues point at (``cfg/a.yaml``, ``mongodb:source_configs/<id>``).
``ConfigSource`` parses and validates every entry alike (``loader.load_entries``, with the caller's
``target`` and ``strict``). ``FilesReader`` is here; the MongoDB reader lives with the store, in
``pullctl.pipeline.config_store``, whose ``open_config_source(location, database)`` picks the reader for a
location. So this package imports nothing of pymongo, nor of the layers above it.

Every call reads the location again (``serve`` sees a pushed config at its next trigger); a caller that
needs the configs twice keeps the ``LoadResult``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

from pullctl.config.loader import ConfigEntry, LoadedSource, LoadResult, load_entries, read_files
from pullctl.config.schedule import Target
from pullctl.errors import UsageError

MONGODB_SCHEMES = ("mongodb://", "mongodb+srv://")


class Scheduled(list[LoadedSource]):
    """The sources that run by schedule, sorted by id; ``unscheduled``: the ids of the ``scheduled_pull`` ones
    without a ``schedule`` (they run by hand or as a parent only), for commands to say they skipped them."""

    def __init__(self, sources: Iterable[LoadedSource], unscheduled: Sequence[str] = ()) -> None:
        super().__init__(sorted(sources, key=lambda s: s.source_id))
        self.unscheduled = list(unscheduled)

    def notes(self) -> list[str]:
        """What a command that renders or registers these should tell its user."""
        notes = []
        if self.unscheduled:
            verb = "it runs" if len(self.unscheduled) == 1 else "they run"
            notes.append(
                f"skipped {', '.join(self.unscheduled)}: no schedule ({verb} by hand or as a parent)"
            )
        for src in self:
            iteration = src.config.ingestion.iteration
            if iteration is not None and iteration.from_source and iteration.shards > 1:
                notes.append(
                    f"{src.source_id}: each of its {iteration.shards} shards pages the parent"
                    f" {iteration.from_source} (the parent's requests repeat per shard)"
                )
        return notes


Location = str | Path | Sequence[str | Path]
_SCHEDULED_AS = {"k8s": "CronJobs", "dapr": "DAPR Jobs"}


def is_mongodb(location: str | Path) -> bool:
    return str(location).startswith(MONGODB_SCHEMES)


class ConfigReader(Protocol):
    """Where configs come from; it reads, it does not validate. Raises a ``PullctlError`` when the location
    itself cannot be read (a missing folder, an unreachable store); an unreadable entry is a ``ConfigEntry``
    without text, so that it becomes a located issue."""

    def entries(self) -> Iterable[ConfigEntry]: ...

    def where(self) -> str:
        """The location for people, to say that it holds nothing: ``docs/: 0 YAML files``."""
        ...


class FilesReader:
    """YAML files and folders (folders walked for ``*.yaml`` / ``*.yml``, sorted, hidden entries skipped)."""

    def __init__(self, paths: Sequence[str | Path]) -> None:
        for path in paths:
            if is_mongodb(path):
                raise UsageError(
                    f"'{path}' is a MongoDB config store, not a file: open it with"
                    " pullctl.pipeline.config_store.open_config_source"
                )
        self.paths = list(paths)

    def entries(self) -> Iterable[ConfigEntry]:
        return read_files(self.paths)

    def where(self) -> str:
        return f"{', '.join(str(p) for p in self.paths)}: 0 YAML files"


class ConfigSource:
    """The configs at ``location``: a folder or file (or a list of them), or whatever ``reader`` reads."""

    def __init__(self, location: Location, reader: ConfigReader | None = None) -> None:
        self.location = location
        if reader is None:
            reader = FilesReader([location] if isinstance(location, str | Path) else list(location))
        self.reader = reader

    def all(self, target: Target = "k8s", *, strict: bool = False, require: bool = False) -> LoadResult:
        """Every source and every issue; duplicate source ids are errors naming both places.

        ``require``: a location that holds no config at all (an empty folder, a folder of other files) is a
        ``UsageError``, so that a check over it cannot pass by checking nothing."""
        result = load_entries(self.reader.entries(), target=target, strict=strict)
        if require and result.files == 0:
            raise UsageError(f"no source configs in {self.reader.where()}")
        return result

    def one(self, source_id: str, target: Target = "k8s") -> LoadedSource:
        """The source ``source_id``. Errors in other files or documents do not block it, errors in its own do;
        an unknown id is a ``ConfigError`` with a did-you-mean."""
        return self.all(target).one(source_id)

    def scheduled(self, target: Target = "k8s", *, only: Sequence[str] = ()) -> Scheduled:
        """The sources that run by schedule (all of them, or those named in ``only``), sorted by id.

        Any config error raises: a source missing because it is invalid must not look deleted (and have its
        CronJob or DAPR Job pruned). A ``scheduled_pull`` without a ``schedule`` is left out and named in
        ``unscheduled``; naming one in ``only`` is a usage error."""
        result = self.all(target)
        result.raise_for_errors()
        pulls = [s for s in result.sources if s.config.is_scheduled_pull]
        if not only:
            unscheduled = [s.source_id for s in pulls if not s.config.has_schedule]
            return Scheduled([s for s in pulls if s.config.has_schedule], sorted(unscheduled))
        picked = [result.get(source_id) for source_id in dict.fromkeys(only)]
        for src in picked:
            if not src.config.is_scheduled_pull:
                raise UsageError(
                    f"source '{src.source_id}' has mode {src.config.ingestion.mode}; only scheduled_pull"
                    f" sources become {_SCHEDULED_AS[target]}"
                )
            if not src.config.has_schedule:
                raise UsageError(
                    f"source '{src.source_id}' has no schedule: it runs by hand (pullctl run"
                    f" {src.source_id}) or as a parent, and becomes no {_SCHEDULED_AS[target][:-1]}"
                )
        return Scheduled(picked)
