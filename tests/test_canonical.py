"""The one canonical-JSON hash: its output is pinned, because stored content hashes must never change."""

from __future__ import annotations

import datetime

from pullctl.canonical import canonical_hash, canonical_json
from pullctl.config.models import config_hash
from pullctl.pipeline.documents import content_hash
from pullctl.schedulers.kubernetes.render import rendering_hash

RESPONSE = {
    "latitude": 52.52,
    "hourly": {"time": ["2026-01-01T00:00"], "temperature_2m": [1.5, -0.0, 1e21]},
    "name": "Zürich \u2603",
    "generationtime_ms": 0.12,
    "list": [{"b": 1, "a": None, "c": True}],
}


def test_content_hashes_are_the_ones_stored_by_earlier_versions() -> None:
    # computed by the three hash functions this one replaced (pullctl 0.1, before issue 12)
    assert content_hash(RESPONSE, []) == "56edb6bbd7b3c1b9a09b4c930725c08e321f0795bef00f8ab3cb118424644edb"
    assert (
        content_hash(RESPONSE, ["generationtime_ms", "list.b"])
        == "e0abd0c0fc2f4de56c7b55d5d96b67963ce1736228b7329a8b4b681b0272eb59"
    )


def test_config_and_rendering_hashes_are_unchanged() -> None:
    config = {
        "source_id": "x",
        "ingestion": {
            "schedule": "0 6 * * *",
            "window": {"initial": datetime.date(2024, 1, 1)},
            "request": {"base_url": "https://a.example/ü"},
        },
    }
    assert config_hash(config) == "0adc20cbf984f92f667ef0ae131444a2d2424bf7acee2a4bb7eab5ec3047c1cf"
    cronjob = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "pull-x", "annotations": {"pullctl.dev/config-hash": "old"}},
        "spec": {"schedule": "0 6 * * *", "n": 1.0},
    }
    assert rendering_hash(cronjob) == "8062d7dc18cad74f69fb3f8d902e3cc7e23ae5fd11276521023e7ab9684d30c6"


def test_canonical_json_sorts_keys_and_keeps_unicode() -> None:
    assert (
        canonical_json({"b": [1, {"d": "é", "c": None}], "a": 1.5})
        == '{"a":1.5,"b":[1,{"c":null,"d":"é"}]}'.encode()
    )
    assert canonical_hash({"a": 1}) == canonical_hash({"a": 1})


def test_a_response_with_nan_hashes_instead_of_crashing() -> None:
    # json.loads accepts NaN; the old content hash raised ValueError on it and ended the run with a traceback
    assert len(content_hash({"v": float("nan")}, [])) == 64


def test_ignore_fields_take_json_pointers_for_keys_with_dots() -> None:
    page = {"@odata.context": "changes", "value": [{"id": 1, "etag": "x"}]}
    assert content_hash(page, ["/@odata.context", "value.etag"]) == content_hash({"value": [{"id": 1}]}, [])
