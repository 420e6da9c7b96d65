"""``Settings``: every variable pullctl reads, typed and checked, with errors that name the variable."""

from __future__ import annotations

import pytest

from pullctl.errors import UsageError
from pullctl.settings import Settings
from tests.conftest import Cli


def test_every_variable_lands_in_its_field() -> None:
    s = Settings.from_env(
        {
            "PULLCTL_CONFIG": "cfg",
            "PULLCTL_STORE": "sqlite:///x.db",
            "PULLCTL_MONGODB_DATABASE": "db",
            "DAPR_HTTP_PORT": "3999",
            "DAPR_API_TOKEN": "dapr-tok",
            "PULLCTL_EVENTS": "dapr://pubsub/topic",
            "PULLCTL_LOG_FORMAT": "JSON",
            "PULLCTL_TRIGGER": "schedule",
            "PULLCTL_DAPR_SHUTDOWN": "true",
            "JOB_COMPLETION_INDEX": "2",
            "APP_API_TOKEN": "app-tok",
            "PULLCTL_STATE_KEY": "k",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel:4318",
            "KUBECONFIG": "/k/config",
            "KUBERNETES_SERVICE_HOST": "10.0.0.1",
            "PULLCTL_SECRET_KV_TOKEN": "s3cret",
            "PULLCTL_MCP_URL_REGIONS": "http://mcp/mcp",
            "https_proxy": "http://proxy:3128",
            "NO_PROXY": "",
            "HOME": "/root",
        }
    )
    assert (s.config, s.store, s.mongodb_database) == ("cfg", "sqlite:///x.db", "db")
    assert (s.dapr_endpoint, s.dapr_api_token, s.events) == (
        "http://127.0.0.1:3999",
        "dapr-tok",
        "dapr://pubsub/topic",
    )
    assert (s.log_format, s.trigger, s.dapr_shutdown, s.job_completion_index) == (
        "json",
        "schedule",
        True,
        "2",
    )
    assert (s.app_api_token, s.state_key, s.otel_endpoint) == ("app-tok", "k", "http://otel:4318")
    assert (s.kubeconfig, s.in_cluster) == ("/k/config", True)
    assert s.secret_from_env("kv", "token") == "s3cret"
    assert s.mcp_url_for("regions") == "http://mcp/mcp"
    assert dict(s.proxies) == {"https_proxy": "http://proxy:3128"}
    assert "s3cret" not in repr(s) and "app-tok" not in repr(s) and "dapr-tok" not in repr(s)


def test_flags_win_over_the_environment_and_none_keeps_it() -> None:
    s = Settings.from_env({"PULLCTL_STORE": "sqlite:///env.db"}, store="sqlite:///flag.db", config=None)
    assert (s.store, s.config) == ("sqlite:///flag.db", "config/source-configs")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PULLCTL_LOG_FORMAT": "jsno"}, "PULLCTL_LOG_FORMAT='jsno' is not one of: auto, json, text"),
        (
            {"PULLCTL_TRIGGER": "cron"},
            "PULLCTL_TRIGGER='cron' is not one of: schedule, dapr, manual, backfill",
        ),
        (
            {"PULLCTL_DAPR_SHUTDOWN": "maybe"},
            "PULLCTL_DAPR_SHUTDOWN='maybe' is not a yes/no value: use 1/true/yes or 0/false/no",
        ),
    ],
)
def test_a_value_outside_its_set_names_the_variable_and_the_allowed_values(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(UsageError) as caught:
        Settings.from_env(env)
    assert caught.value.message == message


def test_a_bad_log_format_is_a_one_line_usage_error_on_any_command(cli: Cli) -> None:
    result = cli("list", env={"PULLCTL_LOG_FORMAT": "jsno"})
    assert result.exit_code == 2
    assert result.stderr == "error: PULLCTL_LOG_FORMAT='jsno' is not one of: auto, json, text\n"
