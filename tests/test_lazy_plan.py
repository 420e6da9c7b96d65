"""A static list's plan is rendered as the workers take it (``stream_items``): the same tasks, the same
skipped items and the same counts as the plan held whole (``plan_items``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pullctl.config.models import SourceConfig
from pullctl.run.plan import LazyTasks, Planner, Shard, plan_items, stream_items
from pullctl.run.windows import Window

WINDOW = Window(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC))


def _config(batch: int | None) -> SourceConfig:
    iteration: dict[str, Any] = {"foreach": "team", "key": "id", "items": [{"id": "x"}]}
    if batch:
        iteration["batch"] = {"size": batch}
    return SourceConfig.model_validate(
        {
            "source_id": "s",
            "ingestion": {
                "schedule": "@daily",
                "request": {
                    "base_url": "https://api.example.com/teams/{team.id}",
                    "parameters": {"region": "{team.region}", "since": "{window.start}"},
                },
                "iteration": iteration,
            },
        }
    )


_items = st.lists(
    st.fixed_dictionaries(
        {"id": st.none() | st.text(alphabet="abc/ é", min_size=1, max_size=4)},
        optional={"region": st.sampled_from(["eu", "us", None])},
    ),
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(
    _items,
    st.none() | st.integers(2, 4),
    st.none() | st.integers(0, 5),
    st.none() | st.sampled_from([Shard(0, 2), Shard(1, 3)]),
    st.none() | st.just({"region": ["eu"]}),
)
def test_a_streamed_plan_is_the_held_plan(
    items: list[dict[str, Any]],
    batch: int | None,
    limit: int | None,
    shard: Shard | None,
    only: dict[str, list[str]] | None,
) -> None:
    config = _config(batch)

    def planner() -> Planner:
        return Planner(config, WINDOW, "run-1", shard=shard, only=only, limit=limit)

    held, streamed = plan_items(planner(), items), stream_items(planner(), items)
    assert isinstance(streamed.tasks, LazyTasks)
    assert len(streamed.tasks) == len(held.tasks) and streamed.items == held.items
    assert streamed.skipped == held.skipped
    assert list(streamed.tasks) == held.tasks
    assert list(streamed.tasks) == held.tasks  # each iteration renders the tasks again, the same
    assert streamed.skipped == held.skipped  # and skips nothing twice


def test_a_source_without_iteration_streams_its_one_task() -> None:
    config = SourceConfig.model_validate(
        {
            "source_id": "s",
            "ingestion": {"schedule": "@daily", "request": {"base_url": "https://a.example/v1"}},
        }
    )
    streamed = stream_items(Planner(config, WINDOW, "r"), None)
    assert len(streamed.tasks) == 1 and [t.url for t in streamed.tasks] == ["https://a.example/v1"]
